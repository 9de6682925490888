//! Loading components: compile once, cache the compiled artifact on disk, discover the exports
//! and their WIT signatures.

use crate::durability::HostState;
use crate::error::RuntimeError;
use crate::types::{FunctionSignature, ValueType};
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

/// An exported function of a component.
#[derive(Clone, Debug)]
pub struct ExportInfo {
    /// Fully qualified name: `interface.function` for functions in an exported interface
    /// (`revenant:user-activity/api.add-activity`), the bare name for world-level functions.
    pub name: String,
    pub signature: FunctionSignature,
    pub(crate) index: ComponentExportIndex,
}

/// What the rest of Revenant may know about a loaded component.
#[derive(Clone, Debug)]
pub struct ComponentInfo {
    pub name: String,
    /// SHA-256 of the component's bytes, hex.
    pub hash: String,
    pub exports: BTreeMap<String, ExportInfo>,
}

const SNAPSHOT_INTERFACE: &str = "revenant:durable/snapshot";

impl ComponentInfo {
    /// The `save-snapshot` and `load-snapshot` exports, if the component exports
    /// `revenant:durable/snapshot`.
    pub(crate) fn snapshot_exports(&self) -> Option<(&ExportInfo, &ExportInfo)> {
        let find = |function: &str| {
            self.exports.values().find(|e| {
                e.name.starts_with(SNAPSHOT_INTERFACE) && e.name.ends_with(&format!(".{function}"))
            })
        };
        Some((find("save-snapshot")?, find("load-snapshot")?))
    }

    /// Finds the export a route's `call:` names: the fully qualified name, `interface.function`
    /// with the interface's short name (`api.add-activity`), or the bare function name when
    /// only one interface exports it.
    pub fn resolve(&self, call: &str) -> Result<&ExportInfo, String> {
        if let Some(e) = self.exports.get(call) {
            return Ok(e);
        }
        let matches: Vec<&ExportInfo> = self
            .exports
            .values()
            .filter(|e| {
                let (iface, func) = e.name.rsplit_once('.').unwrap_or(("", &e.name));
                let short_iface = iface.rsplit('/').next().unwrap_or(iface);
                let short_iface = short_iface.split('@').next().unwrap_or(short_iface);
                func == call || format!("{short_iface}.{func}") == call
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "component `{}` has no export `{call}`; it exports: {}",
                self.name,
                self.exports.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            many => Err(format!(
                "`{call}` is ambiguous in component `{}`; qualify it as one of: {}",
                self.name,
                many.iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

pub(crate) struct LoadedComponent {
    pub info: ComponentInfo,
    pub pre: InstancePre<HostState>,
}

pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    name: &str,
    path: &Path,
    cache_dir: &Path,
) -> Result<LoadedComponent, RuntimeError> {
    let bytes = std::fs::read(path).map_err(|source| RuntimeError::ReadComponent {
        name: name.to_string(),
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(
        engine,
        linker,
        name,
        &path.display().to_string(),
        &bytes,
        cache_dir,
    )
}

/// Compiles (or loads from the cache) a component from its bytes; `origin` names where they
/// came from, for errors.
pub(crate) fn load_bytes(
    engine: &Engine,
    linker: &Linker<HostState>,
    name: &str,
    origin: &str,
    bytes: &[u8],
    cache_dir: &Path,
) -> Result<LoadedComponent, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidComponent {
        name: name.to_string(),
        path: origin.to_string(),
        reason,
    };
    let hash = revenant_storage::catalog::sha256_hex(bytes);
    let component = compile_cached(engine, bytes, &hash, cache_dir).map_err(invalid)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| invalid(format!("{e:#}")))?;
    let exports = discover_exports(engine, &component);
    Ok(LoadedComponent {
        info: ComponentInfo {
            name: name.to_string(),
            hash,
            exports,
        },
        pre,
    })
}

/// Compiling takes tens of milliseconds to seconds; loading a cached artifact takes well under a
/// millisecond (NOTES-wasmtime.md). The cache key covers the component's bytes and the engine's
/// settings, since an artifact is only valid for the engine that made it.
fn compile_cached(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    cache_dir: &Path,
) -> Result<Component, String> {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file = cache_dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish()));
    if file.exists() {
        match deserialize_cached(engine, &file) {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %file.display(), "ignoring unusable cached component: {e:#}")
            }
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
    match component.serialize() {
        Ok(serialized) => {
            // Written to a temporary name and renamed, so a crash never leaves a torn artifact.
            let tmp = file.with_extension("tmp");
            let written = std::fs::create_dir_all(cache_dir)
                .and_then(|()| std::fs::write(&tmp, serialized))
                .and_then(|()| std::fs::rename(&tmp, &file));
            if let Err(e) = written {
                tracing::warn!(path = %file.display(), "cannot cache compiled component: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot serialize compiled component: {e:#}"),
    }
    Ok(component)
}

#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is one this runtime wrote with `Component::serialize`, under a name that
    // includes the engine's compatibility hash; wasmtime additionally checks its header and
    // version and refuses a mismatched artifact, which we then recompile.
    unsafe { Component::deserialize_file(engine, file) }
}

fn discover_exports(engine: &Engine, component: &Component) -> BTreeMap<String, ExportInfo> {
    let mut out = BTreeMap::new();
    let ty = component.component_type();
    for (name, ext) in ty.exports(engine) {
        match &ext.ty {
            ComponentItem::ComponentFunc(f) => {
                if let Some(index) = component.get_export_index(None, name) {
                    out.insert(name.to_string(), export_info(name.to_string(), f, index));
                }
            }
            ComponentItem::ComponentInstance(instance) => {
                let Some(instance_index) = component.get_export_index(None, name) else {
                    continue;
                };
                for (fname, fext) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(f) = &fext.ty
                        && let Some(index) =
                            component.get_export_index(Some(&instance_index), fname)
                    {
                        let qualified = format!("{name}.{fname}");
                        out.insert(qualified.clone(), export_info(qualified, f, index));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn export_info(name: String, f: &ComponentFunc, index: ComponentExportIndex) -> ExportInfo {
    ExportInfo {
        name,
        signature: FunctionSignature {
            params: f
                .params()
                .map(|(n, t)| (n.to_string(), ValueType::from_wasmtime(&t)))
                .collect(),
            results: f.results().map(|t| ValueType::from_wasmtime(&t)).collect(),
        },
        index,
    }
}
