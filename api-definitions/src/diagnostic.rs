use marked_yaml::{LoaderOptions, Marker, Span};
use serde::de::DeserializeOwned;
use std::fmt;

/// A place in a source file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub(crate) fn of_marker(file: &str, marker: Option<&Marker>) -> Self {
        Self {
            file: file.to_string(),
            line: marker.map_or(1, Marker::line),
            column: marker.map_or(1, Marker::column),
        }
    }

    pub fn of_span(file: &str, span: &Span) -> Self {
        Self::of_marker(file, span.start())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem in a document, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl Diagnostic {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Self {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a document: a bad document is rejected whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Where a YAML syntax error is and what it says, without the position the loader's own
/// message starts with.
pub fn load_error(load: &marked_yaml::LoadError) -> (Option<Marker>, String) {
    use marked_yaml::LoadError;
    let marker = match load {
        LoadError::TopLevelMustBeMapping(m)
        | LoadError::TopLevelMustBeSequence(m)
        | LoadError::UnexpectedAnchor(m)
        | LoadError::MappingKeyMustBeScalar(m)
        | LoadError::UnexpectedTag(m)
        | LoadError::ScanError(m, _) => Some(*m),
        LoadError::DuplicateKey(d) => d.key.span().start().copied(),
    };
    let text = load.to_string();
    let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
    (marker, message.to_string())
}

/// Parses a YAML document into `T`, turning syntax and shape errors into a located diagnostic.
/// Duplicate keys are errors: a second `path:` silently winning would hide a mistake.
pub fn parse_yaml<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    marked_yaml::from_yaml_with_options(0, text, options).map_err(|e| {
        use marked_yaml::FromYamlError;
        match e {
            FromYamlError::ParseYaml(load) => {
                let (marker, message) = load_error(&load);
                Diagnostic::new(Location::of_marker(file, marker.as_ref()), message)
            }
            FromYamlError::FromNode(node) => {
                let marker = node.start_mark();
                Diagnostic::new(Location::of_marker(file, marker.as_ref()), node.to_string())
            }
        }
    })
}
