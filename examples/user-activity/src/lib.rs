//! The demo worker for Revenant: a user's activity list, kept in ordinary guest memory.
//!
//! Nothing here knows about durability: the host records every clock read and random draw
//! in the worker's oplog and replays them after a crash, so the list comes back exactly.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(not(feature = "v2"))]
wit_bindgen::generate!({
    world: "user-activity",
    // `wit/deps/durable` links to Revenant's shared interfaces (`/wit`): the snapshot interface.
    path: "wit",
});
#[cfg(feature = "v2")]
wit_bindgen::generate!({
    world: "user-activity-v2",
    path: "wit",
});

#[cfg(feature = "v2")]
impl exports::revenant::user_activity::about::Guest for UserActivity {
    fn version() -> String {
        "2".into()
    }
}

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

/// A minimal GET (http:// or https://) over `wasi:http/outgoing-handler`: no redirects, body as UTF-8.
fn http_get(url: &str) -> Result<String, String> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!(
            "only http:// and https:// URLs are supported, got {url}"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&scheme))
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

/// The snapshot encoding: a count, then each activity as id, timestamp, and two length-prefixed
/// strings, all little-endian.
impl exports::revenant::durable::snapshot::Guest for UserActivity {
    fn save_snapshot() -> Vec<u8> {
        ACTIVITIES.with_borrow(|list| {
            let mut out = Vec::new();
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for a in list {
                out.extend_from_slice(&a.id.to_le_bytes());
                out.extend_from_slice(&a.timestamp_ms.to_le_bytes());
                for s in [&a.kind, &a.detail] {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            out
        })
    }

    fn load_snapshot(bytes: Vec<u8>) {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let slice = &bytes[at..at + n];
            at += n;
            slice
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize;
        let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let count = u32_at(take(4));
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            let id = u64_at(take(8));
            let timestamp_ms = u64_at(take(8));
            let kind_len = u32_at(take(4));
            let kind = String::from_utf8(take(kind_len).to_vec()).expect("utf-8");
            let detail_len = u32_at(take(4));
            let detail = String::from_utf8(take(detail_len).to_vec()).expect("utf-8");
            list.push(Activity {
                id,
                kind,
                detail,
                timestamp_ms,
            });
        }
        ACTIVITIES.with_borrow_mut(|l| *l = list);
    }
}

export!(UserActivity);
