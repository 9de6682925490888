//! The configuration's layers, merged into one YAML tree before it is read as a typed
//! `ConfigFile`: the defaults (`defaults.rs`), the project file, `REVENANT_*` variables with
//! nested keys joined by `__`, then `--set key.path=value` flags. Each layer's nodes keep
//! their own source id, so a problem is reported where its value came from: the file's line
//! and column, or the variable or flag that set it.
//!
//! The merge is written here because no YAML crate we use layers documents with their
//! positions kept (marked-yaml parses one document with positions; this joins several).

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoaderOptions, Marker, Node, Span};
use revenant_api_definitions::{Diagnostic, Diagnostics, Location};

/// Source ids of the layers: the defaults, the file, then one per variable or flag.
const DEFAULTS: usize = 0;
const FILE: usize = 1;

/// Keys only the project file may set: an API definition is a document, not a setting.
const FILE_ONLY: [&str; 2] = ["routes", "auth"];

/// Where each value of the tree came from, by marker source id.
#[derive(Debug)]
pub struct Sources {
    names: Vec<String>,
}

impl Sources {
    /// The file name, for messages that are about the file as a whole.
    pub fn file(&self) -> &str {
        &self.names[FILE]
    }

    pub fn at(&self, span: &Span) -> Location {
        self.at_marker(span.start())
    }

    pub fn at_marker(&self, marker: Option<&Marker>) -> Location {
        match marker {
            Some(m) if m.source() > FILE => Location {
                file: self.names[m.source()].clone(),
                line: 1,
                column: 1,
            },
            Some(m) => Location {
                file: self.names[m.source()].clone(),
                line: m.line(),
                column: m.column(),
            },
            None => Location {
                file: self.file().to_string(),
                line: 1,
                column: 1,
            },
        }
    }
}

/// One override from outside the file: the name it is reported under, the key's path, and its
/// value as YAML (`5000`, `true`, `[a, b]`, `text`).
pub struct Override {
    pub name: String,
    pub path: Vec<String>,
    pub value: String,
}

/// `REVENANT_*` variables with `__` in their name, as overrides: `REVENANT_LIMITS__GUEST_MEMORY_MB`
/// sets `limits.guest_memory_mb`. Names without `__` are the flags' own variables.
pub fn from_environment(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("REVENANT_") && k.contains("__"))
        .map(|(k, v)| Override {
            path: k["REVENANT_".len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect(),
            name: format!("environment variable {k}"),
            value: v,
        })
        .collect();
    // The same tree whatever order the process's environment lists them in.
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// `--set key.path=value` flags, as overrides.
pub fn from_flags(sets: &[String]) -> Result<Vec<Override>, Diagnostics> {
    sets.iter()
        .map(|s| {
            let Some((key, value)) = s.split_once('=') else {
                return Err(Diagnostics(vec![Diagnostic::new(
                    Location {
                        file: format!("--set {s}"),
                        line: 1,
                        column: 1,
                    },
                    "expected key.path=value, e.g. --set limits.invocation_timeout_ms=5000",
                )]));
            };
            Ok(Override {
                name: format!("--set {s}"),
                path: key.split('.').map(str::to_string).collect(),
                value: value.to_string(),
            })
        })
        .collect()
}

/// The merged tree and where its values came from. `file` is the project file's name and text.
pub fn merge(file: (&str, &str), overrides: &[Override]) -> Result<(Node, Sources), Diagnostics> {
    let mut sources = Sources {
        names: vec!["the defaults".to_string(), file.0.to_string()],
    };
    let defaults =
        parse(DEFAULTS, &super::defaults::text(), &sources).expect("the defaults are a valid tree");
    let mut tree = defaults;
    let from_file = parse(FILE, file.1, &sources)?;
    layer(&mut tree, from_file);
    let mut problems = Vec::new();
    for o in overrides {
        let source = sources.names.len();
        sources.names.push(o.name.clone());
        if o.path.iter().any(String::is_empty) {
            problems.push(Diagnostic::new(
                sources.at_marker(Some(&Marker::new(source, 0, 1, 1))),
                "a key has an empty part",
            ));
            continue;
        }
        if FILE_ONLY.contains(&o.path[0].as_str()) {
            problems.push(Diagnostic::new(
                sources.at_marker(Some(&Marker::new(source, 0, 1, 1))),
                format!(
                    "`{}` comes from the project file or a deployed API definition only",
                    o.path[0]
                ),
            ));
            continue;
        }
        let value = match value_node(source, &o.value, &sources) {
            Ok(v) => v,
            Err(Diagnostics(mut d)) => {
                problems.append(&mut d);
                continue;
            }
        };
        layer(&mut tree, nested(source, &o.path, value));
    }
    strip_nulls(&mut tree);
    if problems.is_empty() {
        Ok((tree, sources))
    } else {
        Err(Diagnostics(problems))
    }
}

fn parse(source: usize, text: &str, sources: &Sources) -> Result<Node, Diagnostics> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // An empty file is an empty tree.
    if text.trim().is_empty() {
        return Ok(Node::Mapping(MarkedMappingNode::new_empty(
            Span::new_start(Marker::new(source, 0, 1, 1)),
        )));
    }
    marked_yaml::parse_yaml_with_options(source, text, options).map_err(|load| {
        let (marker, message) = revenant_api_definitions::load_error(&load);
        Diagnostics(vec![Diagnostic::new(
            sources.at_marker(marker.as_ref()),
            message,
        )])
    })
}

/// An override's value: YAML on one line (so `5000` is a number, `[a, b]` a list), or else the
/// text as a string.
fn value_node(source: usize, value: &str, sources: &Sources) -> Result<Node, Diagnostics> {
    let span = Span::new_start(Marker::new(source, 0, 1, 1));
    if value.contains('\n') || value.trim().is_empty() {
        return Ok(Node::Scalar(MarkedScalarNode::new(span, value)));
    }
    let doc = parse(source, &format!("v: {value}"), sources)?;
    let mut node = doc
        .as_mapping()
        .and_then(|m| m.get_node("v"))
        .cloned()
        .unwrap_or_else(|| Node::Scalar(MarkedScalarNode::new(span, value)));
    respan(&mut node, source);
    Ok(node)
}

/// Points every marker of an override's node at line 1, column 1 of its source: its name says
/// where it is, not a position in the one-line document it was parsed from.
fn respan(node: &mut Node, source: usize) {
    let here = Span::new_start(Marker::new(source, 0, 1, 1));
    *node.span_mut() = here;
    match node {
        Node::Scalar(_) => {}
        Node::Sequence(items) => items.iter_mut().for_each(|n| respan(n, source)),
        Node::Mapping(map) => map.values_mut().for_each(|n| respan(n, source)),
    }
}

/// `value` under the keys of `path`, as a tree of its own.
fn nested(source: usize, path: &[String], value: Node) -> Node {
    let span = Span::new_start(Marker::new(source, 0, 1, 1));
    path.iter().rev().fold(value, |inner, key| {
        let mut map = MarkedMappingNode::new_empty(span);
        map.insert(MarkedScalarNode::new(span, key.as_str()), inner);
        Node::Mapping(map)
    })
}

/// Whether a node is YAML's null written plainly (`null`, `~`, or nothing): a key set to it is
/// unset, as if no layer had set it (`--set admin_listen=null` turns the admin API off).
fn is_null(node: &Node) -> bool {
    match node {
        Node::Scalar(s) => {
            s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
        }
        _ => false,
    }
}

/// Removes the keys whose value is null, at every depth: the typed tree reads them as unset.
fn strip_nulls(node: &mut Node) {
    if let Node::Mapping(map) = node {
        map.retain(|_, v| !is_null(v));
        map.values_mut().for_each(strip_nulls);
    }
}

/// Lays `over` on `base`: mappings merge key by key, anything else replaces what was there.
fn layer(base: &mut Node, over: Node) {
    match (base, over) {
        (Node::Mapping(b), Node::Mapping(o)) => {
            for (key, value) in o.iter() {
                match b.get_mut(key) {
                    Some(existing) => layer(existing, value.clone()),
                    None => {
                        b.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
