//! Templates: text with `{placeholder}`s, used for worker names (`user-{user-id}`) and
//! argument sources (`{body.kind}`).

use std::fmt;

/// Where a placeholder's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// A path parameter, by name.
    Path(String),
    /// The JSON body (empty path) or a field inside it (`body.a.b` is `["a", "b"]`).
    Body(Vec<String>),
    /// A query parameter (`query.page`).
    Query(String),
    /// A request header, by lower-case name (`header.x-tenant`).
    Header(String),
    /// A claim of the caller's verified JWT (`jwt.sub`); only on routes with `auth`.
    Jwt(String),
    /// The export's result (empty path) or a field inside its JSON form (`result.ok.id`);
    /// only in `response`.
    Result(Vec<String>),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{p}"),
            Self::Body(path) if path.is_empty() => write!(f, "body"),
            Self::Body(path) => write!(f, "body.{}", path.join(".")),
            Self::Query(name) => write!(f, "query.{name}"),
            Self::Header(name) => write!(f, "header.{name}"),
            Self::Jwt(name) => write!(f, "jwt.{name}"),
            Self::Result(path) if path.is_empty() => write!(f, "result"),
            Self::Result(path) => write!(f, "result.{}", path.join(".")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Var(Var),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

impl Template {
    /// Parses `text`; `path_params` are the names a bare placeholder may use.
    pub(crate) fn parse(text: &str, path_params: &[String]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(TemplatePart::Literal(rest.to_string()));
                    break;
                }
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("`}}` without a matching `{{` in `{text}`"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(TemplatePart::Literal(rest[..i].to_string()));
                    }
                    let after = &rest[i + 1..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| format!("`{{` without a matching `}}` in `{text}`"))?;
                    let name = after[..end].trim();
                    parts.push(TemplatePart::Var(parse_var(name, path_params)?));
                    rest = &after[end + 1..];
                }
            }
        }
        Ok(Self { parts })
    }

    /// The template's only placeholder, if it is exactly one placeholder and no text.
    pub fn single_var(&self) -> Option<&Var> {
        match self.parts.as_slice() {
            [TemplatePart::Var(v)] => Some(v),
            _ => None,
        }
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Var(v) => Some(v),
            TemplatePart::Literal(_) => None,
        })
    }
}

fn parse_var(name: &str, path_params: &[String]) -> Result<Var, String> {
    if name == "body" {
        return Ok(Var::Body(Vec::new()));
    }
    if name == "result" {
        return Ok(Var::Result(Vec::new()));
    }
    if let Some(fields) = name.strip_prefix("result.") {
        let fields: Vec<String> = fields.split('.').map(str::to_string).collect();
        if fields.iter().any(String::is_empty) {
            return Err(format!("`{{{name}}}` has an empty field name"));
        }
        return Ok(Var::Result(fields));
    }
    if let Some(fields) = name.strip_prefix("body.") {
        let fields: Vec<String> = fields.split('.').map(str::to_string).collect();
        if fields.iter().any(String::is_empty) {
            return Err(format!("`{{{name}}}` has an empty field name"));
        }
        return Ok(Var::Body(fields));
    }
    if let Some(q) = name.strip_prefix("query.") {
        if q.is_empty() {
            return Err(format!("`{{{name}}}` names no query parameter"));
        }
        return Ok(Var::Query(q.to_string()));
    }
    if let Some(h) = name.strip_prefix("header.") {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!(
                "`{{{name}}}`: a header name is letters, digits and `-`"
            ));
        }
        return Ok(Var::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = name.strip_prefix("jwt.") {
        if c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_:".contains(&b))
        {
            return Err(format!(
                "`{{{name}}}`: a claim name is letters, digits, `-`, `_` and `:`"
            ));
        }
        return Ok(Var::Jwt(c.to_string()));
    }
    if path_params.iter().any(|p| p == name) {
        return Ok(Var::Path(name.to_string()));
    }
    let known = if path_params.is_empty() {
        "the path has no parameters".to_string()
    } else {
        format!("the path has: {}", path_params.join(", "))
    };
    Err(format!(
        "unknown placeholder `{{{name}}}`: use a path parameter, `body`/`body.<field>`, \
         `query.<name>`, `header.<name>` or `jwt.<claim>`; {known}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        vec!["user-id".into()]
    }

    #[test]
    fn literal_and_placeholders() {
        let t = Template::parse("user-{user-id}", &params()).unwrap();
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Literal("user-".into()),
                TemplatePart::Var(Var::Path("user-id".into()))
            ]
        );
        let t = Template::parse("{body.a.b}", &params()).unwrap();
        assert_eq!(
            t.single_var(),
            Some(&Var::Body(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn unbalanced_or_unknown_placeholders_are_errors() {
        assert!(Template::parse("user-{user-id", &params()).is_err());
        assert!(Template::parse("user-}", &params()).is_err());
        let e = Template::parse("{nope}", &params()).unwrap_err();
        assert!(e.contains("user-id"), "{e}");
        assert!(Template::parse("{body.}", &params()).is_err());
    }
}
