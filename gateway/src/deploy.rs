//! Deploys without restart: component versions and API definitions uploaded through the admin
//! API, stored through `storage`'s catalog (content-addressed blobs, versions, a live record per
//! name), and served by swapping the public router atomically.
//!
//! The live API is the project file's routes plus every deployed definition. A change is
//! checked whole before anything is stored: the new set of definitions must bind against the
//! components (with an uploaded component in place of the old version), or it is refused and the
//! old router keeps serving. Requests in flight finish on the router they started with.

use crate::auth::AuthCache;
use crate::error::ApiError;
use crate::error::ErrorCode;
use crate::limits::{COMPONENTS_MAX, DEFINITIONS_MAX};
use crate::{Gateway, Handler};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use revenant_api_definitions::{ApiDefinition, ApiSpec, Diagnostics, compile, parse_yaml};
use revenant_runtime::{ComponentInfo, Runtime};
use revenant_storage::catalog::{self, BlobKind};
use revenant_storage::kv::KvStore;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The router the public listener serves, replaced whole on each deploy; on a node of a
/// cluster, with what it needs to send calls to the node that serves their worker.
pub struct LiveGateway {
    current: ArcSwap<Gateway>,
    cluster: std::sync::OnceLock<Arc<crate::cluster::Forwarder>>,
}

impl LiveGateway {
    pub fn new(gateway: Gateway) -> Self {
        Self {
            current: ArcSwap::from_pointee(gateway),
            cluster: std::sync::OnceLock::new(),
        }
    }

    pub fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    fn store(&self, gateway: Gateway) {
        self.current.store(Arc::new(gateway));
    }

    /// Makes this a cluster node's router. Set once, before serving.
    pub fn set_cluster(&self, forwarder: Arc<crate::cluster::Forwarder>) {
        if self.cluster.set(forwarder).is_err() {
            tracing::warn!("the router's cluster is set once; ignoring another");
        }
    }

    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Forwarder>> {
        self.cluster.get()
    }
}

impl Handler for LiveGateway {
    async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        // The request keeps the router it started with, even if a deploy swaps it meanwhile.
        let gateway = self.current.load_full();
        gateway
            .handle_in(request, self.cluster.get().map(|c| c.as_ref()))
            .await
    }
}

/// A deployed definition: its stored version and source, and the compiled form.
struct Deployed {
    version: u64,
    source: String,
    api: ApiDefinition,
}

pub struct Deployments<K: KvStore> {
    runtime: Arc<Runtime>,
    kv: Arc<K>,
    /// The project file's routes, always served.
    base: ApiDefinition,
    /// Deployed definitions by name. The lock also serialises deploys.
    deployed: tokio::sync::Mutex<BTreeMap<String, Deployed>>,
    live: Arc<LiveGateway>,
    /// Auth schemes built for the live router, kept across deploys.
    auth: AuthCache,
    env: SecretLookup,
}

/// The project file's routes, as a definition name: not available for deploys.
pub const PROJECT: &str = "project";

fn storage(e: revenant_storage::kv::KvError) -> ApiError {
    ApiError::new(ErrorCode::StorageUnavailable, format!("the catalog: {e}"))
}

fn invalid_definition(d: &Diagnostics) -> ApiError {
    let details: Vec<_> =
        d.0.iter()
            .map(|d| {
                json!({
                    "file": d.location.file,
                    "line": d.location.line,
                    "column": d.location.column,
                    "message": d.message,
                })
            })
            .collect();
    ApiError::new(ErrorCode::InvalidDefinition, d.to_string()).with_details(json!(details))
}

/// Names of components and definitions: they become file names in messages and keys in
/// storage, so they are kept plain.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_argument(format!(
            "`{name}`: a name is 1 to 64 of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        )))
    }
}

/// Where a deployed definition's `secret_env` keys find their values: handed in by whoever
/// starts the server (the CLI reads the process environment).
pub type SecretLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

fn compile_source(
    runtime: &Runtime,
    env: &SecretLookup,
    name: &str,
    source: &str,
) -> Result<ApiDefinition, Diagnostics> {
    let file = format!("{name}.yaml");
    let spec: ApiSpec = parse_yaml(&file, source).map_err(|d| Diagnostics(vec![d]))?;
    compile(&file, &spec, |c| runtime.component(c).is_some(), &**env)
}

impl<K: KvStore> Deployments<K> {
    /// Loads the deployed components and definitions from the catalog and builds the router.
    /// A stored component that no longer compiles, or a definition that no longer binds (its
    /// component left the project file, say), is skipped with an error in the log rather than
    /// keeping the server down.
    pub async fn open(
        runtime: Arc<Runtime>,
        kv: Arc<K>,
        base: ApiDefinition,
        env: SecretLookup,
    ) -> Result<Self, String> {
        for (name, version) in catalog::live(&*kv, BlobKind::Component)
            .await
            .map_err(|e| e.to_string())?
        {
            let Some((_, bytes)) = catalog::get_blob(&*kv, BlobKind::Component, &name, version)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err(format!("component `{name}` version {version} is missing"));
            };
            let rt = runtime.clone();
            let origin = format!("catalog {name} v{version}");
            let prepared =
                tokio::task::spawn_blocking(move || rt.prepare_component(&name, &origin, &bytes))
                    .await
                    .map_err(|e| e.to_string())?;
            // One that no longer compiles (after a wasmtime upgrade, say) is skipped like a
            // definition that no longer binds: the definitions that need it are skipped below.
            match prepared {
                Ok(p) => {
                    runtime.install(p);
                }
                Err(e) => tracing::error!("a deployed component is skipped: {e}"),
            }
        }
        let mut deployed = BTreeMap::new();
        for (name, version) in catalog::live(&*kv, BlobKind::Definition)
            .await
            .map_err(|e| e.to_string())?
        {
            let Some((_, bytes)) = catalog::get_blob(&*kv, BlobKind::Definition, &name, version)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Err(format!("definition `{name}` version {version} is missing"));
            };
            let source = String::from_utf8_lossy(&bytes).into_owned();
            match compile_source(&runtime, &env, &name, &source) {
                Ok(api) => {
                    deployed.insert(
                        name,
                        Deployed {
                            version,
                            source,
                            api,
                        },
                    );
                }
                Err(d) => {
                    tracing::error!("deployed definition `{name}` v{version} is skipped:\n{d}")
                }
            }
        }
        let lookup = |c: &str| runtime.component(c);
        let auth = AuthCache::new(runtime.tls_client_config());
        let gateway = loop {
            match build_gateway(
                &runtime,
                &auth,
                &base,
                deployed.values().map(|d| &d.api),
                &lookup,
            ) {
                Ok(g) => break g,
                Err(d) => {
                    // Drop the deployed definitions one at a time, last name first, until the
                    // rest serve: the project file's routes were checked already.
                    let Some((name, _)) = deployed.pop_last() else {
                        return Err(d.to_string());
                    };
                    tracing::error!("deployed definition `{name}` is skipped:\n{d}");
                }
            }
        };
        Ok(Self {
            runtime,
            kv,
            base,
            deployed: tokio::sync::Mutex::new(deployed),
            live: Arc::new(LiveGateway::new(gateway)),
            auth,
            env,
        })
    }

    /// The router to serve on the public listener.
    pub fn live(&self) -> Arc<LiveGateway> {
        self.live.clone()
    }

    /// Stores `bytes` as the next version of component `name` and serves it, if it compiles
    /// and every live route that calls it still binds.
    pub async fn upload_component(
        &self,
        name: &str,
        bytes: Bytes,
    ) -> Result<(u64, ComponentInfo), ApiError> {
        check_name(name)?;
        let deployed = self.deployed.lock().await;
        if self.runtime.component(name).is_none()
            && self.runtime.components().len() >= COMPONENTS_MAX
        {
            return Err(ApiError::new(
                ErrorCode::TooManyComponents,
                format!("{COMPONENTS_MAX} components are loaded"),
            ));
        }
        let rt = self.runtime.clone();
        let (n, b) = (name.to_string(), bytes.clone());
        let prepared = tokio::task::spawn_blocking(move || rt.prepare_component(&n, "upload", &b))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| ApiError::new(ErrorCode::InvalidComponent, e.to_string()))?;
        let info = prepared.info().clone();
        let lookup = |c: &str| {
            if c == name {
                Some(info.clone())
            } else {
                self.runtime.component(c)
            }
        };
        let apis = deployed.values().map(|d| &d.api);
        let gateway =
            build_gateway(&self.runtime, &self.auth, &self.base, apis, &lookup).map_err(|d| {
                let mut e = invalid_definition(&d);
                e.code = ErrorCode::IncompatibleComponent;
                e.message = format!("the live routes do not bind to this component:\n{d}");
                e
            })?;
        let (version, _) = catalog::put_next_version(&*self.kv, BlobKind::Component, name, &bytes)
            .await
            .map_err(storage)?;
        catalog::set_live(&*self.kv, BlobKind::Component, name, Some(version))
            .await
            .map_err(storage)?;
        let info = self.runtime.install(prepared);
        // The routes were bound against this version's types: swap them in with it.
        self.live.store(gateway);
        Ok((version, info))
    }

    /// Stores and serves `source` as the next version of definition `name`, if the whole set
    /// of definitions with it binds; otherwise nothing changes.
    pub async fn deploy(&self, name: &str, source: &str) -> Result<(u64, usize), ApiError> {
        check_name(name)?;
        if name == PROJECT {
            return Err(ApiError::bad_argument(
                "`project` names the project file's routes; choose another name",
            ));
        }
        let mut deployed = self.deployed.lock().await;
        let api = compile_source(&self.runtime, &self.env, name, source)
            .map_err(|d| invalid_definition(&d))?;
        if !deployed.contains_key(name) && deployed.len() >= DEFINITIONS_MAX {
            return Err(ApiError::new(
                ErrorCode::TooManyDefinitions,
                format!("{DEFINITIONS_MAX} definitions are deployed; delete one first"),
            ));
        }
        let others = deployed
            .iter()
            .filter(|(k, _)| *k != name)
            .map(|(_, d)| &d.api);
        let lookup = |c: &str| self.runtime.component(c);
        let gateway = build_gateway(
            &self.runtime,
            &self.auth,
            &self.base,
            others.chain([&api]),
            &lookup,
        )
        .map_err(|d| invalid_definition(&d))?;
        let (version, _) =
            catalog::put_next_version(&*self.kv, BlobKind::Definition, name, source.as_bytes())
                .await
                .map_err(storage)?;
        catalog::set_live(&*self.kv, BlobKind::Definition, name, Some(version))
            .await
            .map_err(storage)?;
        let routes = api.routes.len();
        deployed.insert(
            name.to_string(),
            Deployed {
                version,
                source: source.to_string(),
                api,
            },
        );
        self.live.store(gateway);
        Ok((version, routes))
    }

    /// Stops serving definition `name`. Its versions stay stored.
    pub async fn undeploy(&self, name: &str) -> Result<u64, ApiError> {
        let mut deployed = self.deployed.lock().await;
        let Some(version) = deployed.get(name).map(|d| d.version) else {
            return Err(not_found(name));
        };
        let others = deployed
            .iter()
            .filter(|(k, _)| *k != name)
            .map(|(_, d)| &d.api);
        let lookup = |c: &str| self.runtime.component(c);
        let gateway = build_gateway(&self.runtime, &self.auth, &self.base, others, &lookup)
            .map_err(|d| invalid_definition(&d))?;
        catalog::set_live(&*self.kv, BlobKind::Definition, name, None)
            .await
            .map_err(storage)?;
        deployed.remove(name);
        self.live.store(gateway);
        Ok(version)
    }

    /// `(name, version, routes)` of every deployed definition.
    pub async fn list(&self) -> Vec<(String, u64, usize)> {
        self.deployed
            .lock()
            .await
            .iter()
            .map(|(k, d)| (k.clone(), d.version, d.api.routes.len()))
            .collect()
    }

    /// The source of a deployed definition and its version.
    pub async fn source(&self, name: &str) -> Result<(u64, String), ApiError> {
        self.deployed
            .lock()
            .await
            .get(name)
            .map(|d| (d.version, d.source.clone()))
            .ok_or_else(|| not_found(name))
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

/// One router: the project file's routes, then the deployed definitions.
fn build_gateway<'a>(
    runtime: &Arc<Runtime>,
    auth: &AuthCache,
    base: &'a ApiDefinition,
    deployed: impl IntoIterator<Item = &'a ApiDefinition>,
    lookup: &dyn Fn(&str) -> Option<ComponentInfo>,
) -> Result<Gateway, Diagnostics> {
    let mut apis = vec![base];
    apis.extend(deployed);
    Gateway::build(runtime.clone(), auth, &apis, lookup)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::DefinitionNotFound,
        format!("no definition `{name}` is deployed"),
    )
}
