//! Human renderings of the admin API's answers: plain tables (comfy-table, without borders,
//! so that they read and `grep` like `ps`), one line per row.

use comfy_table::{Table, presets::NOTHING};
use serde_json::Value as Json;

/// Widest a cell of a free-form column (arguments, results) is printed; `--json` has it whole.
const CELL_CHARS_MAX: usize = 120;

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()));
    for row in rows {
        t.add_row(row);
    }
    // comfy-table pads every line to the widest; trailing spaces help nobody.
    t.to_string()
        .lines()
        .map(|l| l.trim_end().trim_start_matches(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value as text: strings bare, everything else as compact JSON.
fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    }
}

fn short(s: String) -> String {
    if s.chars().count() <= CELL_CHARS_MAX {
        return s;
    }
    let cut: String = s.chars().take(CELL_CHARS_MAX - 1).collect();
    format!("{cut}…")
}

pub fn pretty(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).expect("JSON prints"),
    }
}

fn items(v: &Json) -> impl Iterator<Item = &Json> {
    v.as_array().into_iter().flatten()
}

pub fn components(v: &Json) -> String {
    table(
        &["NAME", "HASH", "EXPORTS"],
        items(v).map(|c| {
            vec![
                text(&c["name"]),
                text(&c["hash"]).chars().take(12).collect(),
                c["exports"].as_array().map_or(0, Vec::len).to_string(),
            ]
        }),
    )
}

pub fn component(v: &Json) -> String {
    let exports = table(
        &["EXPORT", "PARAMS", "RESULTS"],
        items(&v["exports"]).map(|e| {
            let params: Vec<String> = items(&e["params"])
                .map(|p| format!("{}: {}", text(&p["name"]), text(&p["type"])))
                .collect();
            let results: Vec<String> = items(&e["results"]).map(text).collect();
            vec![
                text(&e["name"]),
                format!("({})", params.join(", ")),
                results.join(", "),
            ]
        }),
    );
    format!(
        "component {}\nhash      {}\n\n{exports}",
        text(&v["name"]),
        text(&v["hash"])
    )
}

pub fn component_deployed(v: &Json) -> String {
    format!(
        "deployed component {} version {} (hash {}, {} exports)",
        text(&v["name"]),
        v["version"],
        text(&v["hash"]).chars().take(12).collect::<String>(),
        v["exports"].as_array().map_or(0, Vec::len)
    )
}

fn route_list(routes: &Json) -> Vec<String> {
    items(routes)
        .map(|r| match r {
            Json::String(s) => s.clone(),
            other => {
                let method = other["method"].as_str().unwrap_or("");
                let path = other["path"].as_str().unwrap_or("");
                if method.is_empty() && path.is_empty() {
                    other.to_string()
                } else {
                    format!("{method} {path}")
                }
            }
        })
        .collect()
}

pub fn definition_deployed(v: &Json) -> String {
    let routes = route_list(&v["routes"]);
    let mut out = format!(
        "deployed api {} version {} ({} routes)",
        text(&v["name"]),
        v["version"],
        routes.len()
    );
    for r in routes {
        out.push_str("\n  ");
        out.push_str(&r);
    }
    out
}

pub fn definitions(v: &Json) -> String {
    table(
        &["NAME", "VERSION", "ROUTES"],
        items(v).map(|d| {
            vec![
                text(&d["name"]),
                text(&d["version"]),
                short(route_list(&d["routes"]).join(", ")),
            ]
        }),
    )
}

pub fn workers(v: &Json) -> String {
    table(
        &["WORKER", "STATUS", "LAST INDEX"],
        items(v).map(|w| {
            vec![
                format!("{}/{}", text(&w["component"]), text(&w["name"])),
                text(&w["status"]),
                text(&w["last_index"]),
            ]
        }),
    )
}

pub fn worker(v: &Json) -> String {
    [
        (
            "worker",
            format!("{}/{}", text(&v["component"]), text(&v["name"])),
        ),
        ("status", text(&v["status"])),
        ("last index", text(&v["last_index"])),
        ("snapshot index", text(&v["snapshot_index"])),
        ("log bytes", text(&v["log_bytes"])),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k:<15}{v}"))
    .collect::<Vec<_>>()
    .join("\n")
}

pub fn log_lines(v: &Json) -> String {
    items(&v["lines"])
        .map(|l| {
            format!(
                "{:>8} {:<6} {}",
                text(&l["index"]),
                text(&l["stream"]),
                text(&l["line"])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One entry's summary for the timeline table.
fn detail(e: &Json) -> String {
    let args = |v: &Json| {
        items(v)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key = |e: &Json| match e["idempotency_key"].as_str() {
        Some(k) => format!(" [key {k}]"),
        None => String::new(),
    };
    match e["kind"].as_str().unwrap_or("") {
        "create" => format!("component {}", text(&e["component_hash"])),
        "engine" => text(&e["settings"]),
        "invocation_started" => {
            format!("{}({}){}", text(&e["function"]), args(&e["args"]), key(e))
        }
        "host_call" => format!(
            "{}.{} {} -> {}",
            text(&e["interface"]),
            text(&e["function"]),
            e["request"],
            e["response"]
        ),
        "invocation_completed" => match e.get("result_digest") {
            Some(d) => format!(
                "-> ({} bytes, sha256 {})",
                d["bytes"],
                text(&d["sha256"]).chars().take(12).collect::<String>()
            ),
            None => format!("-> {}{}", e["result"], key(e)),
        },
        "invocation_failed" => format!("{}: {}{}", text(&e["code"]), text(&e["error"]), key(e)),
        "snapshot" => format!("part {}/{}, {} bytes", e["part"], e["parts"], e["bytes"]),
        "guest_output" => format!("{}: {}", text(&e["stream"]), text(&e["text"]).trim_end()),
        "exited" => format!("code {}", e["code"]),
        _ => String::new(),
    }
}

pub fn oplog(v: &Json) -> String {
    table(
        &["INDEX", "KIND", "DETAIL"],
        items(&v["entries"]).map(|e| {
            vec![
                text(&e["index"]),
                text(&e["kind"]),
                short(detail(e).replace('\n', "\\n")),
            ]
        }),
    )
}
