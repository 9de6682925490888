//! Health for supervisors and load balancers, on the public and the admin listener:
//! `GET /healthz` answers while the process serves at all; `GET /readyz` answers 200 once the
//! node can serve calls (the store answers a read and would accept a write, start-up recovery
//! has finished) and 503
//! `not_ready` naming what is missing otherwise. On the public listener a route of the same path
//! takes precedence, as for `/openapi.json`.

use crate::error::{ApiError, ErrorCode, json_response};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use revenant_runtime::{Recovery, Runtime};
use serde_json::json;

pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";

pub(crate) fn healthz() -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(crate) async fn readyz(runtime: &Runtime) -> Response<Full<Bytes>> {
    let r = runtime.readiness().await;
    let store = match &r.store {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let recovery = match &r.recovery {
        Recovery::Pending => "pending".to_string(),
        Recovery::Done => "done".to_string(),
        Recovery::Failed(e) => format!("failed: {e}"),
    };
    let writes = match &r.writes {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let checks = json!({"store": store, "writes": writes, "recovery": recovery});
    if r.ready() {
        return json_response(
            StatusCode::OK,
            &json!({"status": "ready", "checks": checks}),
        );
    }
    let mut missing = Vec::new();
    if let Err(e) = &r.store {
        missing.push(format!("the store does not answer ({e})"));
    }
    if let Err(e) = &r.writes {
        missing.push(format!("the store refuses writes ({e})"));
    }
    if r.recovery != Recovery::Done {
        missing.push(format!("start-up recovery is {recovery}"));
    }
    ApiError::new(
        ErrorCode::NotReady,
        format!("not ready: {}", missing.join("; ")),
    )
    .with_details(checks)
    .into_response()
}
