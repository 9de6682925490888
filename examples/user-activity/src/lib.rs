//! The demo worker for Revenant: a user's activity list, kept in ordinary guest memory.
//!
//! Nothing here knows about durability: the host records every clock read and random draw
//! in the worker's oplog and replays them after a crash, so the list comes back exactly.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

wit_bindgen::generate!({
    world: "user-activity",
    path: "wit",
});

use exports::revenant::user_activity::api::{Activity, Guest};

thread_local! {
    // A component instance is single-threaded; the state is the worker's memory.
    static ACTIVITIES: RefCell<Vec<Activity>> = const { RefCell::new(Vec::new()) };
}

struct UserActivity;

impl Guest for UserActivity {
    fn import_activity(url: String) -> Result<u64, String> {
        let detail = http_get(&url)?;
        Ok(Self::add_activity("import".into(), detail))
    }

    fn add_activity(kind: String, detail: String) -> u64 {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        #[cfg(not(feature = "diverge"))]
        let id = wasip2::random::random::get_random_u64();
        #[cfg(feature = "diverge")]
        let id = u64::from_le_bytes(
            wasip2::random::random::get_random_bytes(8)
                .try_into()
                .unwrap_or([0; 8]),
        );
        ACTIVITIES.with_borrow_mut(|list| {
            list.push(Activity {
                id,
                kind,
                detail,
                timestamp_ms,
            });
            list.len() as u64
        })
    }

    fn activities() -> Vec<Activity> {
        ACTIVITIES.with_borrow(|list| list.clone())
    }

    fn count() -> u64 {
        ACTIVITIES.with_borrow(|list| list.len() as u64)
    }
}

/// A minimal HTTP/1.1 GET over `wasi:http/outgoing-handler`: no redirects, body as UTF-8.
fn http_get(url: &str) -> Result<String, String> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported, got {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let body = request.body().map_err(|()| "no request body")?;
    wasip2::http::types::OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let pending = handle(request, None).map_err(|e| format!("request refused: {e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("request failed: {e:?}"))?;
    if response.status() != 200 {
        return Err(format!("status {}", response.status()));
    }
    let body = response.consume().map_err(|()| "no response body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

export!(UserActivity);
