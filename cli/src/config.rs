//! The project file, `revenant.yaml`: one typed tree. Values come from the defaults, then the
//! file, then `REVENANT_*` environment variables and command-line flags (see `main.rs`).
//! Relative paths in the file are relative to the file's own folder, so the demo runs from any
//! working directory.

use marked_yaml::Spanned;
use revenant_api_definitions::{ApiDefinition, Diagnostic, Diagnostics, Location, RouteSpec};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA: &str = "./data";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    components: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    routes: Vec<RouteSpec>,
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub components: Vec<(String, PathBuf)>,
    pub api: ApiDefinition,
}

/// Flags and environment variables that override the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
}

pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, Diagnostics> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            Location {
                file: file_name.clone(),
                line: 1,
                column: 1,
            },
            format!("cannot read the configuration: {e}"),
        )])
    })?;
    let file: ConfigFile = revenant_api_definitions::parse_yaml(&file_name, &text)
        .map_err(|d| Diagnostics(vec![d]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();

    let listen = match (&overrides.listen, &file.listen) {
        (Some(addr), _) => Some(*addr),
        (None, Some(s)) => s
            .parse::<SocketAddr>()
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    Location::of_span(&file_name, s.span()),
                    format!("`listen` must be an address like 127.0.0.1:8080: {e}"),
                ))
            })
            .ok(),
        (None, None) => Some(DEFAULT_LISTEN.parse().expect("valid default")),
    };
    let data = match (&overrides.data, &file.data) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => base.join(d.as_str()),
        (None, None) => base.join(DEFAULT_DATA),
    };
    if file.components.is_empty() {
        problems.push(Diagnostic::new(
            Location {
                file: file_name.clone(),
                line: 1,
                column: 1,
            },
            "`components` names no component",
        ));
    }
    let components: Vec<(String, PathBuf)> = file
        .components
        .iter()
        .map(|(name, p)| (name.clone(), base.join(p.as_str())))
        .collect();
    for ((name, resolved), (_, spanned)) in components.iter().zip(&file.components) {
        if !resolved.is_file() {
            problems.push(Diagnostic::new(
                Location::of_span(&file_name, spanned.span()),
                format!(
                    "component `{name}`: no file at {} (build it first: see README.md)",
                    resolved.display()
                ),
            ));
        }
    }
    let api = revenant_api_definitions::compile(&file_name, &file.routes, |c| {
        file.components.contains_key(c)
    });
    let api = match api {
        Ok(api) => Some(api),
        Err(Diagnostics(mut ds)) => {
            problems.append(&mut ds);
            None
        }
    };
    match (listen, api) {
        (Some(listen), Some(api)) if problems.is_empty() => Ok(Config {
            data,
            listen,
            components,
            api,
        }),
        _ => Err(Diagnostics(problems)),
    }
}
