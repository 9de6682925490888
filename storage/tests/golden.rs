//! Golden files pin the persisted oplog format: one file per entry kind and format version under
//! `tests/golden/v<N>/`. This test decodes every file to the entry it was written from and
//! re-encodes that entry byte for byte. A change to any encoding fails it.
//!
//! The files are NEVER regenerated. A new entry kind or format version gets new files, written
//! once with `REVENANT_WRITE_NEW_GOLDEN=1 cargo test -p revenant-storage --test golden`, which
//! only creates files that do not exist yet, and committed; existing files are never touched.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use revenant_storage::oplog::{ChunkedRef, FORMAT_VERSION, Stored, decode, encode, store};
use revenant_storage::{OplogEntry, Value};
use std::path::PathBuf;

/// One value of every kind, nested, so the golden files pin `Value`'s encoding too.
fn every_value() -> Vec<Value> {
    vec![
        Value::Bool(true),
        Value::S8(-8),
        Value::U8(8),
        Value::S16(-16),
        Value::U16(16),
        Value::S32(-32),
        Value::U32(32),
        Value::S64(-64),
        Value::U64(u64::MAX),
        Value::F32(1.5),
        Value::F64(-2.25),
        Value::Char('é'),
        Value::String("héllo".into()),
        Value::List(vec![Value::U8(1), Value::U8(2)]),
        Value::Record(vec![
            ("kind".into(), Value::String("run".into())),
            ("n".into(), Value::U32(3)),
        ]),
        Value::Tuple(vec![Value::U64(1), Value::U32(2)]),
        Value::Variant("some-case".into(), Some(Box::new(Value::S32(-1)))),
        Value::Variant("no-payload".into(), None),
        Value::Enum("red".into()),
        Value::Option(None),
        Value::Option(Some(Box::new(Value::String("x".into())))),
        Value::Result(Ok(Some(Box::new(Value::U8(0))))),
        Value::Result(Err(None)),
        Value::Flags(vec!["read".into(), "write".into()]),
    ]
}

fn v1_entries() -> Vec<(&'static str, OplogEntry)> {
    vec![
        (
            "create",
            OplogEntry::Create {
                component_hash: "a6338479398ccc36f7fa0cc975c853f9408012fb93d9a4577cd011a5a30d3989"
                    .into(),
            },
        ),
        (
            "invocation-started",
            OplogEntry::InvocationStarted {
                idempotency_key: "key-1".into(),
                function: "revenant:user-activity/api.add-activity".into(),
                args: vec![Value::String("run".into()), Value::String("5 km".into())],
            },
        ),
        (
            "host-call",
            OplogEntry::HostCall {
                interface: "wasi:clocks/wall-clock".into(),
                function: "now".into(),
                request: Value::Tuple(vec![]),
                response: Value::Tuple(vec![Value::U64(1_795_615_600), Value::U32(541_000_000)]),
            },
        ),
        (
            "invocation-completed",
            OplogEntry::InvocationCompleted {
                idempotency_key: "key-1".into(),
                result: every_value(),
            },
        ),
        (
            "invocation-failed",
            OplogEntry::InvocationFailed {
                idempotency_key: "key-2".into(),
                error: "wasm trap: unreachable".into(),
            },
        ),
        (
            "snapshot",
            OplogEntry::Snapshot {
                part: 1,
                parts: 3,
                bytes: vec![0, 1, 2, 254, 255],
            },
        ),
        ("interrupted", OplogEntry::Interrupted),
        ("resumed", OplogEntry::Resumed),
        ("exited", OplogEntry::Exited { code: 3 }),
        (
            "host-call-bytes",
            OplogEntry::HostCall {
                interface: "wasi:http/outgoing-handler".into(),
                function: "handle".into(),
                request: Value::Record(vec![("method".into(), Value::String("GET".into()))]),
                response: Value::Result(Ok(Some(Box::new(Value::Bytes(b"body".to_vec()))))),
            },
        ),
        (
            "invocation-failed-with-code",
            OplogEntry::InvocationFailedWithCode {
                idempotency_key: "key-3".into(),
                code: "invocation_timeout".into(),
                error: "the invocation ran past its deadline of 500ms and was interrupted".into(),
            },
        ),
        ("invocation-completed-digest", {
            let (sha256, bytes) = revenant_storage::oplog::result_digest(&every_value());
            OplogEntry::InvocationCompletedDigest { sha256, bytes }
        }),
        (
            "engine",
            OplogEntry::Engine {
                settings: "nan-canonicalization relaxed-simd-deterministic no-threads".into(),
            },
        ),
        (
            "guest-output",
            OplogEntry::GuestOutput {
                stream: 1,
                bytes: b"line one\nline two\n".to_vec(),
                dropped: 7,
            },
        ),
    ]
}

/// A large entry, stored in chunks: the row that points at them is pinned by
/// `chunked/reference.bin`.
fn large_entry() -> OplogEntry {
    OplogEntry::InvocationCompleted {
        idempotency_key: "key-4".into(),
        result: vec![Value::String(
            (0..200_000u32)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect(),
        )],
    }
}

#[test]
fn the_chunked_reference_row_is_pinned_and_its_chunks_are_the_entrys_encoding() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/chunked/reference.bin");
    let Stored::Chunked { reference, chunks } = store(&large_entry()).unwrap() else {
        panic!("a 200 KB entry is chunked");
    };
    if !path.exists() && std::env::var_os("REVENANT_WRITE_NEW_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, reference.encode()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        reference.encode(),
        golden,
        "the reference row's encoding changed"
    );
    let decoded = ChunkedRef::of_row(&golden).unwrap().unwrap();
    assert_eq!(decoded.chunks, 4);
    assert_eq!(chunks.concat(), encode(&large_entry()).unwrap());
    assert_eq!(decoded.assemble(&chunks).unwrap(), large_entry());
}

#[test]
fn every_golden_file_decodes_and_reencodes_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let write_new = std::env::var_os("REVENANT_WRITE_NEW_GOLDEN").is_some();
    assert_eq!(
        FORMAT_VERSION, 1,
        "a new format version needs its own golden files and decoder"
    );
    for (name, entry) in v1_entries() {
        let path = dir.join("v1").join(format!("{name}.bin"));
        if !path.exists() && write_new {
            std::fs::write(&path, encode(&entry).unwrap()).unwrap();
        }
        let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            decode(&golden).unwrap(),
            entry,
            "{name}: the golden file no longer decodes to its entry"
        );
        assert_eq!(
            encode(&entry).unwrap(),
            golden,
            "{name}: the encoding changed"
        );
    }
    // Every file in the folder is covered: none is left unchecked.
    let files = std::fs::read_dir(dir.join("v1")).unwrap().count();
    assert_eq!(files, v1_entries().len());
}
