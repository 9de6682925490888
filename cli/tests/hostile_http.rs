//! Hostile HTTP, over raw TCP so that the server sees exactly these bytes: request smuggling
//! (conflicting `Content-Length` and `Transfer-Encoding`), malformed framing, huge and many
//! headers, a huge chunked body, garbage, and hundreds of slow connections at once. Each is
//! refused with its status or a closed connection, nothing of it reaches a worker, the server
//! stays up, and normal traffic is answered throughout; its p99 is printed with and without
//! the attacks (a benchmark figure, not asserted).

// Tests read the clock (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Http, Server, demo_with, tcp_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The header read timeout of the server under attack (the default is 10 s).
const HEADER_TIMEOUT_MS: u64 = 1_000;
const SLOW_CONNECTIONS: usize = 400;
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// The status of every response in `answer` (a pipelined second response would show here).
fn statuses(answer: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answer);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

/// A POST to the `smuggle` worker whose framing headers are `framing`, followed by `rest`.
/// Every body carries a second, smuggled request to the same worker: if any framing were
/// read two ways, that request would run.
fn smuggling(framing: &str, rest: &str) -> Vec<u8> {
    format!(
        "POST /user/smuggle/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         {framing}\r\n{rest}"
    )
    .into_bytes()
}

/// A complete request that, run, would add an activity to the `smuggle` worker.
const SMUGGLED: &str = "POST /user/smuggle/activities HTTP/1.1\r\nHost: x\r\nContent-Length: \
                        25\r\n\r\n{\"kind\":\"s\",\"detail\":\"s\"}";

/// Attacks on framing. With both `Content-Length` and `Transfer-Encoding`, hyper reads the
/// chunked body, drops the length and closes the connection after the answer (RFC 9112 §6.3):
/// the first request is answered (here 400: its body is not what the route takes), the
/// smuggled one never read.
fn framing_attacks() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "CL.TE",
            smuggling(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
        ),
        (
            "TE.CL",
            smuggling(
                "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                &format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()),
            ),
        ),
        (
            "two Content-Lengths",
            smuggling("Content-Length: 0\r\nContent-Length: 200\r\n", SMUGGLED),
        ),
        (
            "a Content-Length list",
            smuggling("Content-Length: 0, 200\r\n", SMUGGLED),
        ),
        (
            "a signed Content-Length",
            smuggling("Content-Length: +0\r\n", SMUGGLED),
        ),
        (
            "an unknown Transfer-Encoding",
            smuggling("Transfer-Encoding: xchunked\r\n", SMUGGLED),
        ),
        (
            "chunked not last",
            smuggling("Transfer-Encoding: chunked, identity\r\n", SMUGGLED),
        ),
        (
            "Transfer-Encoding twice",
            smuggling(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{SMUGGLED}"),
            ),
        ),
        (
            "a space before the colon",
            smuggling(
                "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n",
                SMUGGLED,
            ),
        ),
        (
            "an obsolete line folding",
            smuggling("Content-Length: 0\r\n 200\r\n", SMUGGLED),
        ),
        (
            "a chunk size past u64",
            smuggling(
                "Transfer-Encoding: chunked\r\n",
                &format!("1ffffffffffffffff\r\n{SMUGGLED}\r\n0\r\n\r\n"),
            ),
        ),
        (
            "a bad chunk size",
            smuggling(
                "Transfer-Encoding: chunked\r\n",
                &format!("zz\r\n{SMUGGLED}\r\n0\r\n\r\n"),
            ),
        ),
    ]
}

/// Sends every framing attack: each answered with one 400 (or a closed connection), and the
/// connection closed after it, so that the smuggled request is never read.
async fn refuse_framing_attacks(url: &str) {
    for (name, request) in framing_attacks() {
        let answer = tcp_exchange(url, &request, ANSWER_DEADLINE).await;
        let got = statuses(&answer);
        assert!(
            got.is_empty() || got == [400],
            "{name}: answered {got:?}: {}",
            String::from_utf8_lossy(&answer)
        );
        // What hyper accepts, the gateway refuses, naming the header.
        if name == "Transfer-Encoding twice" {
            assert!(
                String::from_utf8_lossy(&answer).contains("\"bad_header\""),
                "{name}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
}

/// Oversized requests: each refused with its status.
async fn refuse_oversized(url: &str) {
    let many: String = (0..5_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /user/big/count HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let got = statuses(&tcp_exchange(url, request.as_bytes(), ANSWER_DEADLINE).await);
    assert_eq!(got, vec![431], "5,000 headers");

    let long_path = format!(
        "GET /user/{}/count HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let got = statuses(&tcp_exchange(url, long_path.as_bytes(), ANSWER_DEADLINE).await);
    assert!(
        matches!(got[..], [414] | [431] | [400]),
        "a 100 KiB path: {got:?}"
    );

    // 2 MiB in chunks, no Content-Length: refused at the body bound all the same.
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "d".repeat(64 * 1024));
    let mut request = b"POST /user/big/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..32 {
        request.extend_from_slice(chunk.as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = tcp_exchange(url, &request, ANSWER_DEADLINE).await;
    assert_eq!(
        statuses(&answer),
        vec![413],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("\"body_too_large\""));
}

/// Random bytes, and random bytes after a valid request line, on `rounds` connections at once
/// (an unfinished header waits for the header timeout): never a 2xx, never a crash.
async fn send_garbage(url: &str, rounds: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let sends: Vec<_> = (0..rounds)
        .map(|i| {
            let len = rng.usize(1..4096);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if i % 2 == 1 {
                let mut line = b"POST /user/garbage/activities HTTP/1.1\r\n".to_vec();
                line.append(&mut bytes);
                bytes = line;
            }
            let url = url.to_string();
            tokio::spawn(async move {
                let answer =
                    tcp_exchange(&url, &bytes, Duration::from_millis(HEADER_TIMEOUT_MS * 3)).await;
                let got = statuses(&answer);
                assert!(
                    got.iter().all(|s| !(200..300).contains(s)),
                    "garbage {i} (seed {seed}) was accepted: {got:?}"
                );
            })
        })
        .collect();
    for s in sends {
        s.await.unwrap();
    }
}

/// Connections that send a header a byte every 100 ms and never finish; each must be closed by
/// the server (end of stream or a reset). Returns how many were.
async fn slow_connections(url: &str, n: usize) -> usize {
    let addr = url.trim_start_matches("http://").to_string();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                    return true; // refused: the server's connection bound
                };
                let began = Instant::now();
                let head = b"GET /user/slow/count HTTP/1.1\r\nX-Slow: ";
                let mut sent = 0;
                while began.elapsed() < ANSWER_DEADLINE {
                    let byte = head.get(sent).copied().unwrap_or(b'a');
                    if stream.write_all(&[byte]).await.is_err() {
                        return true;
                    }
                    sent += 1;
                    let mut probe = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut probe))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => return true,
                        Ok(Ok(_)) => {} // a 408 before closing
                        Err(_) => {}
                    }
                }
                false
            })
        })
        .collect();
    let mut closed = 0;
    for t in tasks {
        closed += t.await.unwrap() as usize;
    }
    closed
}

const NORMAL_CLIENTS: usize = 4;
const NORMAL_CALLS: usize = 150;

/// Durable calls by well-behaved clients, one user each; the latencies, sorted.
async fn normal_traffic(url: &str, round: u64) -> Vec<Duration> {
    support::counted_calls(
        url,
        NORMAL_CLIENTS,
        NORMAL_CALLS,
        round,
        |c| format!("/user/normal-{c}/activities"),
        Some(json!({"kind": "k", "detail": "d"})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_while_normal_traffic_is_served() {
    let (_dir, config) = demo_with(&format!(
        "limits:\n  header_read_timeout_ms: {HEADER_TIMEOUT_MS}\n"
    ));
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&config, data.path());
    let url = server.url.clone();
    let http = Http::new();

    // Each attack on its own first.
    refuse_framing_attacks(&url).await;
    refuse_oversized(&url).await;
    send_garbage(&url, 100, 1).await;
    assert_eq!(
        slow_connections(&url, 50).await,
        50,
        "every slow connection was closed"
    );

    let quiet = normal_traffic(&url, 0).await;

    // All of them again, repeatedly, during the same traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let slow = tokio::spawn({
                let url = url.clone();
                async move { slow_connections(&url, SLOW_CONNECTIONS).await }
            });
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                refuse_framing_attacks(&url).await;
                refuse_oversized(&url).await;
                send_garbage(&url, 20, 100 + rounds).await;
                rounds += 1;
            }
            (rounds, slow.await.unwrap())
        })
    };
    let attacked = normal_traffic(&url, 1).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, closed) = attacks.await.unwrap();
    assert_eq!(closed, SLOW_CONNECTIONS, "every slow connection was closed");

    // Nothing smuggled, oversized or garbled reached a worker.
    for user in ["smuggle", "big", "garbage", "slow"] {
        let (status, count) = http
            .request("GET", &format!("{url}/user/{user}/count"), None)
            .await
            .unwrap();
        assert_eq!((status, count), (200, json!(0)), "{user}");
    }
    eprintln!(
        "HOSTILE HTTP normal p99 without attack {:.2} ms, during {rounds} attack rounds and \
         {SLOW_CONNECTIONS} slow connections {:.2} ms ({} calls each)",
        support::p99_ms(&quiet),
        support::p99_ms(&attacked),
        quiet.len()
    );
}
