//! One conformance suite for every backend: the KV interface's semantics (FoundationDB's) and
//! the oplog's. Each backend's test file calls [`kv_suite`] and [`oplog_suite`].
//!
//! Each check uses its own key prefix, so the checks can share one store.

#![allow(dead_code)]

use foundationdb_tuple::pack;
use revenant_storage::kv::{KvError, KvStore, RangeOptions, Transaction};
use revenant_storage::{
    Append, Fence, OplogEntry, OplogStore, SequencedEntry, StorageError, Value, WorkerId,
    WorkerMetadata, leases,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

fn key(prefix: &str, n: u64) -> Vec<u8> {
    pack(&("conformance", prefix, n))
}

fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut end = pack(&("conformance", prefix));
    let begin = end.clone();
    end.push(0xff);
    (begin, end)
}

async fn put<K: KvStore>(kv: &K, k: Vec<u8>, v: Vec<u8>) {
    kv.transact(|tx, _| {
        let (k, v) = (k.clone(), v.clone());
        async move {
            tx.set(&k, &v);
            Ok(())
        }
    })
    .await
    .unwrap();
}

async fn get<K: KvStore>(kv: &K, k: &[u8]) -> Option<Vec<u8>> {
    kv.transact(|tx, _| async move { tx.get(k, false).await })
        .await
        .unwrap()
}

/// `faults`: the backend injects failures, so attempt counts are not exact and only idempotent
/// transactions keep exact results.
pub async fn kv_suite<K: KvStore + Clone>(kv: K, faults: bool) {
    ordering_and_paging(&kv).await;
    read_your_writes(&kv).await;
    read_modify_write_is_serializable(&kv).await;
    if !faults {
        conflicting_and_snapshot_reads(&kv).await;
        atomic_ops_never_conflict(&kv).await;
    }
    limits_are_refused_not_truncated(&kv).await;
}

async fn ordering_and_paging<K: KvStore>(kv: &K) {
    let numbers = [0u64, 1, 9, 10, 255, 256, 65_535, 65_536, 1 << 32, u64::MAX];
    for n in numbers.iter().rev() {
        put(kv, key("order", *n), n.to_le_bytes().to_vec()).await;
    }
    let (begin, end) = prefix_range("order");
    let all = kv
        .transact(|tx, _| {
            let (b, e) = (begin.clone(), end.clone());
            async move { tx.get_range(&b, &e, RangeOptions::default()).await }
        })
        .await
        .unwrap();
    let got: Vec<u64> = all
        .iter()
        .map(|(_, v)| u64::from_le_bytes(v.as_slice().try_into().unwrap()))
        .collect();
    assert_eq!(got, numbers, "tuple-encoded integers sort numerically");

    // Paging: read 3 at a time, continuing after the last key.
    let mut paged = Vec::new();
    let mut from = begin.clone();
    loop {
        let page = kv
            .transact(|tx, _| {
                let (b, e) = (from.clone(), end.clone());
                async move {
                    tx.get_range(
                        &b,
                        &e,
                        RangeOptions {
                            limit: 3,
                            ..Default::default()
                        },
                    )
                    .await
                }
            })
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        from = last.clone();
        from.push(0);
        paged.extend(page);
    }
    assert_eq!(paged, all);

    let reversed = kv
        .transact(|tx, _| {
            let (b, e) = (begin.clone(), end.clone());
            async move {
                tx.get_range(
                    &b,
                    &e,
                    RangeOptions {
                        limit: 2,
                        reverse: true,
                        snapshot: false,
                    },
                )
                .await
            }
        })
        .await
        .unwrap();
    assert_eq!(reversed, vec![all[9].clone(), all[8].clone()]);
}

async fn read_your_writes<K: KvStore>(kv: &K) {
    for n in 0..5 {
        put(kv, key("ryw", n), vec![n as u8]).await;
    }
    let (begin, end) = prefix_range("ryw");
    let seen = kv
        .transact(|tx, _| {
            let (b, e) = (begin.clone(), end.clone());
            async move {
                tx.set(&key("ryw", 7), b"new");
                tx.clear(&key("ryw", 0));
                tx.clear_range(&key("ryw", 2), &key("ryw", 4));
                tx.atomic_add(&key("ryw", 9), 5);
                tx.atomic_add(&key("ryw", 9), 6);
                let one = tx.get(&key("ryw", 0), false).await?;
                let add = tx.get(&key("ryw", 9), false).await?;
                let range = tx.get_range(&b, &e, RangeOptions::default()).await?;
                Ok((one, add, range))
            }
        })
        .await
        .unwrap();
    assert_eq!(seen.0, None);
    assert_eq!(seen.1, Some(11u64.to_le_bytes().to_vec()));
    let keys: Vec<Vec<u8>> = seen.2.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        vec![key("ryw", 1), key("ryw", 4), key("ryw", 7), key("ryw", 9)]
    );
    // And the same after commit.
    let after = kv
        .transact(|tx, _| {
            let (b, e) = (begin.clone(), end.clone());
            async move { tx.get_range(&b, &e, RangeOptions::default()).await }
        })
        .await
        .unwrap();
    assert_eq!(after, seen.2);
}

async fn read_modify_write_is_serializable<K: KvStore + Clone>(kv: &K) {
    // Under group commit a contended key advances one transaction per batch, and every task
    // pays an attempt per batch it loses: TASKS * INCREMENTS stays well below the attempt
    // bound (`KV_ATTEMPTS_MAX`), since the check is about lost updates, not contention.
    const TASKS: u64 = 4;
    const INCREMENTS: u64 = 10;
    let counter = key("rmw", 0);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (kv, counter) = (kv.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..INCREMENTS {
                // Idempotent the FoundationDB way: the increment writes a marker of its own, and
                // an attempt that may follow a committed one checks the marker first.
                let marker = pack(&("conformance", "rmw-done", task, i));
                kv.transact(|tx, maybe_committed| {
                    let (counter, marker) = (counter.clone(), marker.clone());
                    async move {
                        if maybe_committed.0 && tx.get(&marker, false).await?.is_some() {
                            return Ok(());
                        }
                        let n = tx
                            .get(&counter, false)
                            .await?
                            .map_or(0, |v| u64::from_le_bytes(v.as_slice().try_into().unwrap()));
                        tokio::task::yield_now().await;
                        tx.set(&counter, &(n + 1).to_le_bytes());
                        tx.set(&marker, b"");
                        Ok(())
                    }
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = get(kv, &counter).await.unwrap();
    assert_eq!(
        u64::from_le_bytes(n.as_slice().try_into().unwrap()),
        TASKS * INCREMENTS
    );
}

/// A transaction reads X; before it commits, another transaction writes X and commits. With a
/// normal read the first attempt conflicts and is retried; with a snapshot read it commits.
async fn conflicting_and_snapshot_reads<K: KvStore + Clone>(kv: &K) {
    for (snapshot, expected_attempts) in [(false, 2), (true, 1)] {
        let x = key("conflict-x", snapshot as u64);
        let y = key("conflict-y", snapshot as u64);
        let attempts = Arc::new(AtomicU32::new(0));
        kv.transact(|tx, _| {
            let (kv, x, y, attempts) = (kv.clone(), x.clone(), y.clone(), attempts.clone());
            async move {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst);
                let _ = tx.get(&x, snapshot).await?;
                if attempt == 0 {
                    put(&kv, x.clone(), b"changed".to_vec()).await;
                }
                tx.set(&y, b"written");
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            expected_attempts,
            "snapshot read: {snapshot}"
        );
        assert_eq!(get(kv, &y).await.as_deref(), Some(&b"written"[..]));
    }
}

async fn atomic_ops_never_conflict<K: KvStore + Clone>(kv: &K) {
    let k = key("atomic", 0);
    let m = key("atomic", 1);
    let attempts = Arc::new(AtomicU32::new(0));
    kv.transact(|tx, _| {
        let (kv, k, m, attempts) = (kv.clone(), k.clone(), m.clone(), attempts.clone());
        async move {
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                kv.transact(|inner, _| {
                    let (k, m) = (k.clone(), m.clone());
                    async move {
                        inner.atomic_add(&k, 40);
                        inner.atomic_max(&m, 7);
                        Ok(())
                    }
                })
                .await?;
            }
            tx.atomic_add(&k, 2);
            tx.atomic_max(&m, 3);
            Ok(())
        }
    })
    .await
    .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(get(kv, &k).await, Some(42u64.to_le_bytes().to_vec()));
    assert_eq!(get(kv, &m).await, Some(7u64.to_le_bytes().to_vec()));
    put(kv, k.clone(), 5u64.to_le_bytes().to_vec()).await;
    kv.transact(|tx, _| {
        let k = k.clone();
        async move {
            tx.atomic_add(&k, -6);
            Ok(())
        }
    })
    .await
    .unwrap();
    assert_eq!(
        get(kv, &k).await,
        Some(u64::MAX.to_le_bytes().to_vec()),
        "adds wrap"
    );
}

async fn limits_are_refused_not_truncated<K: KvStore>(kv: &K) {
    let attempts = AtomicU32::new(0);
    let too_big = vec![7u8; 100_001];
    let err = kv
        .transact(|tx, _| {
            attempts.fetch_add(1, Ordering::SeqCst);
            let v = too_big.clone();
            async move {
                tx.set(&key("limits", 0), &v);
                Ok(())
            }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, KvError::ValueTooLarge { bytes: 100_001, .. }),
        "{err}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "a limit is not retried");
    assert_eq!(
        get(kv, &key("limits", 0)).await,
        None,
        "nothing was written"
    );

    let err = kv
        .transact(|tx, _| async move {
            tx.set(&vec![1u8; 10_001], b"v");
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::KeyTooLarge { .. }), "{err}");

    let err = kv
        .transact(|tx, _| async move {
            for n in 0..101 {
                tx.set(&key("limits-tx", n), &vec![1u8; 99_999]);
            }
            Ok(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::TransactionTooLarge { .. }), "{err}");
}

pub fn entry(worker: &WorkerId, seq: u64) -> OplogEntry {
    OplogEntry::InvocationStarted {
        idempotency_key: format!("{worker}#{seq}"),
        function: "f".into(),
        args: vec![Value::U64(seq), Value::String(worker.name.clone())],
    }
}

pub fn append_of(
    worker: &WorkerId,
    seqs: std::ops::RangeInclusive<u64>,
    fence: Option<Fence>,
) -> Append {
    let first = *seqs.start();
    let mut append = append_entries(worker, first, seqs.map(|seq| entry(worker, seq)).collect());
    append.fence = fence;
    append
}

/// Reads a whole log, page by page.
pub async fn read_all<O: OplogStore + ?Sized>(oplog: &O, worker: &WorkerId) -> Vec<SequencedEntry> {
    let mut out: Vec<SequencedEntry> = Vec::new();
    loop {
        let from = out.last().map_or(1, |e| e.seq + 1);
        let page = oplog.read(worker, from, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Reads a log from `from`, page by page.
pub async fn read_all_from<O: OplogStore + ?Sized>(
    oplog: &O,
    worker: &WorkerId,
    from: u64,
) -> Vec<SequencedEntry> {
    let mut out: Vec<SequencedEntry> = Vec::new();
    loop {
        let next = out.last().map_or(from, |e| e.seq + 1);
        let page = oplog.read(worker, next, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Checks a log holds exactly entries 1..=n as written by `append_of`.
pub fn assert_exact(worker: &WorkerId, log: &[SequencedEntry], n: u64) {
    assert_eq!(log.len() as u64, n, "{worker}: entry count");
    for (i, e) in log.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(e.seq, seq, "{worker}: entry {i} out of order");
        assert_eq!(e.entry, entry(worker, seq), "{worker}: entry {seq} content");
    }
}

pub async fn oplog_suite<K: KvStore, O: OplogStore>(kv: &K, oplog: &O) {
    let w = WorkerId::new("conformance", "paging");
    let mut seq = 0;
    let mut size = 1;
    while seq < 2_500 {
        let last = (seq + size).min(2_500);
        oplog
            .append(append_of(&w, seq + 1..=last, None))
            .await
            .unwrap();
        seq = last;
        size = size % 7 + 1;
    }
    let log = read_all(oplog, &w).await;
    assert_exact(&w, &log, 2_500);
    let middle = oplog.read(&w, 1_234, 10).await.unwrap();
    assert_eq!(
        middle.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1_234..1_244).collect::<Vec<_>>()
    );
    assert_eq!(oplog.metadata(&w).await.unwrap().unwrap().last_index, 2_500);

    // Truncation removes what precedes a position and nothing else; appends carry on.
    oplog.truncate_before(&w, 1_001).await.unwrap();
    let head = oplog.read(&w, 1, 3).await.unwrap();
    assert_eq!(
        head.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1_001, 1_002, 1_003]
    );
    assert_eq!(oplog.metadata(&w).await.unwrap().unwrap().last_index, 2_500);
    oplog
        .append(append_of(&w, 2_501..=2_501, None))
        .await
        .unwrap();
    assert_eq!(read_all_from(oplog, &w, 1_001).await.len(), 1_501);

    // Gaps and overwrites are refused; an identical repeat is a no-op.
    let g = WorkerId::new("conformance", "gaps");
    oplog.append(append_of(&g, 1..=3, None)).await.unwrap();
    let err = oplog.append(append_of(&g, 5..=5, None)).await.unwrap_err();
    assert!(matches!(err, StorageError::Rejected(_)), "{err}");
    oplog.append(append_of(&g, 1..=3, None)).await.unwrap();
    let mut different = append_of(&g, 3..=3, None);
    different.entries[0].entry = entry(&WorkerId::new("other", "x"), 3);
    let err = oplog.append(different).await.unwrap_err();
    assert!(matches!(err, StorageError::Rejected(_)), "{err}");
    assert_exact(&g, &read_all(oplog, &g).await, 3);

    // The idempotency index is written atomically with the entries it points at.
    let mut keyed = append_of(&g, 4..=5, None);
    keyed.idempotency = Some(("call-key".into(), 5));
    oplog.append(keyed).await.unwrap();
    assert_eq!(
        oplog.idempotent_outcome(&g, "call-key").await.unwrap(),
        Some(5)
    );
    assert_eq!(
        oplog.idempotent_outcome(&g, "other-key").await.unwrap(),
        None
    );
    let mut refused = append_of(&g, 9..=9, None);
    refused.idempotency = Some(("refused-key".into(), 9));
    assert!(oplog.append(refused).await.is_err());
    assert_eq!(
        oplog.idempotent_outcome(&g, "refused-key").await.unwrap(),
        None,
        "nothing of a refused append is written"
    );

    // The in-flight marker: set by one append, cleared by a later one.
    let mut opened = append_of(&g, 6..=6, None);
    opened.in_flight = Some(true);
    oplog.append(opened).await.unwrap();
    assert!(oplog.in_flight_workers().await.unwrap().contains(&g));
    let mut closed = append_of(&g, 7..=7, None);
    closed.in_flight = Some(false);
    oplog.append(closed).await.unwrap();
    assert!(!oplog.in_flight_workers().await.unwrap().contains(&g));

    // Listing and deleting workers.
    let listed: Vec<String> = oplog
        .list_workers("conformance", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(w, _)| w.name)
        .collect();
    assert!(
        listed.contains(&"gaps".to_string()) && listed.contains(&"paging".to_string()),
        "{listed:?}"
    );
    let after: Vec<String> = oplog
        .list_workers("conformance", Some("gaps"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(w, _)| w.name)
        .collect();
    assert!(
        !after.contains(&"gaps".to_string()) && after.contains(&"paging".to_string()),
        "{after:?}"
    );
    let doomed = WorkerId::new("conformance", "doomed");
    let mut keyed = append_of(&doomed, 1..=3, None);
    keyed.idempotency = Some(("k".into(), 3));
    keyed.in_flight = Some(true);
    oplog.append(keyed).await.unwrap();
    oplog.delete_worker(&doomed).await.unwrap();
    assert!(oplog.metadata(&doomed).await.unwrap().is_none());
    assert!(read_all(oplog, &doomed).await.is_empty());
    assert_eq!(oplog.idempotent_outcome(&doomed, "k").await.unwrap(), None);
    assert!(!oplog.in_flight_workers().await.unwrap().contains(&doomed));
    // The deleted log's tail is gone too: an append that would have followed it does not now.
    let stale = oplog.append(append_of(&doomed, 4..=4, None)).await;
    assert!(stale.is_err(), "appended after a deleted tail: {stale:?}");
    oplog.append(append_of(&doomed, 1..=1, None)).await.unwrap();

    // Fencing: an appender with a stale lease epoch cannot append.
    let f = WorkerId::new("conformance", "fenced");
    let shard = 7;
    let a = leases::acquire(kv, shard, "node-a", 1_000, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.epoch, 1);
    let fence_a = Some(Fence {
        shard,
        epoch: a.epoch,
    });
    oplog.append(append_of(&f, 1..=1, fence_a)).await.unwrap();
    assert!(
        leases::acquire(kv, shard, "node-b", 1_050, 100)
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    let b = leases::acquire(kv, shard, "node-b", 2_000, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.epoch, 2, "a new holder gets a new epoch");
    let err = oplog
        .append(append_of(&f, 2..=2, fence_a))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Fenced {
                shard: 7,
                expected: 1,
                found: Some(2)
            }
        ),
        "{err}"
    );
    oplog
        .append(append_of(&f, 2..=2, Some(Fence { shard, epoch: 2 })))
        .await
        .unwrap();
    assert_exact(&f, &read_all(oplog, &f).await, 2);
    // A repeat of an append that committed under its lease (its first attempt's outcome was
    // unknown) succeeds even after the lease moved: it wrote nothing new, and refusing it would
    // make the caller retry elsewhere and apply the call twice.
    oplog
        .append(append_of(&f, 1..=1, fence_a))
        .await
        .expect("a committed append repeated after the lease moved");
    leases_suite(kv, oplog).await;
    assert!(
        oplog
            .metadata(&WorkerId::new("conformance", "nobody"))
            .await
            .unwrap()
            .is_none()
    );
    large_entries(kv, oplog).await;
}

/// Several shards' leases changed in one transaction; a release fences its holder at once.
async fn leases_suite<K: KvStore, O: OplogStore>(kv: &K, oplog: &O) {
    let (s1, s2, s3) = (101, 102, 103);
    let got = leases::update(kv, "node-a", 10_000, 500, &[s1, s2, s3], &[])
        .await
        .unwrap();
    assert!(
        got.iter()
            .all(|(_, l)| l.as_ref().is_some_and(|l| l.epoch == 1))
    );
    // Another node cannot take them while they are held; renewing keeps the epoch.
    let other = leases::update(kv, "node-b", 10_100, 500, &[s1], &[])
        .await
        .unwrap();
    assert_eq!(other, vec![(s1, None)]);
    let renewed = leases::update(kv, "node-a", 10_200, 500, &[s1], &[s2])
        .await
        .unwrap();
    assert_eq!(
        renewed[0].1.as_ref().map(|l| (l.epoch, l.expires_at_ms)),
        Some((1, 10_700))
    );
    let all: std::collections::BTreeMap<u32, leases::Lease> =
        leases::all(kv).await.unwrap().into_iter().collect();
    let released = &all[&s2];
    assert_eq!(
        (
            released.node.as_str(),
            released.epoch,
            released.expires_at_ms
        ),
        ("", 2, 0),
        "a release empties the holder and grows the epoch"
    );
    // The releaser's appends are refused at once, before anyone takes the shard.
    let w = WorkerId::new("conformance", "released");
    let err = oplog
        .append(append_of(
            &w,
            1..=1,
            Some(Fence {
                shard: s2,
                epoch: 1,
            }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Fenced { found: Some(2), .. }),
        "{err}"
    );
    // The next taker need not wait for the lease to expire.
    let b = leases::acquire(kv, s2, "node-b", 10_300, 500)
        .await
        .unwrap();
    assert_eq!(b.map(|l| l.epoch), Some(3));
    // A node whose lease moved repeats an append whose first entry the new holder wrote with
    // the same bytes: it stands only if every entry is the same (a deterministic worker
    // computed the same thing); if any differs the log is the new holder's and it is fenced.
    let w = WorkerId::new("conformance", "raced");
    let (e1, e2) = (entry(&w, 1), entry(&w, 2));
    let by = |entries: Vec<OplogEntry>, epoch| {
        let mut a = append_entries(&w, 1, entries);
        a.fence = Some(Fence { shard: s2, epoch });
        a
    };
    oplog
        .append(by(vec![e1.clone(), e2.clone()], 3))
        .await
        .unwrap();
    oplog
        .append(by(vec![e1.clone(), e2.clone()], 1))
        .await
        .expect("the same entries stand whoever wrote them");
    let err = oplog
        .append(by(vec![e1.clone(), OplogEntry::Interrupted], 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Fenced { found: Some(3), .. }),
        "{err}"
    );
    assert_eq!(read_all(oplog, &w).await.last().unwrap().entry, e2);
    // Releasing a shard one does not hold changes nothing.
    leases::update(kv, "node-a", 10_400, 500, &[], &[s2])
        .await
        .unwrap();
    let all: std::collections::BTreeMap<u32, leases::Lease> =
        leases::all(kv).await.unwrap().into_iter().collect();
    assert_eq!((all[&s2].node.as_str(), all[&s2].epoch), ("node-b", 3));
    assert_eq!(all[&s3].node, "node-a");
    // The shard count is fixed by the first node to ask.
    assert_eq!(leases::shard_count(kv, 64).await.unwrap(), 64);
    assert_eq!(leases::shard_count(kv, 16).await.unwrap(), 64);
}

/// Text of `bytes` bytes that differs per entry and does not repeat within a chunk.
fn text(seq: u64, bytes: usize) -> String {
    (0..bytes as u64)
        .map(|i| (b'a' + ((i.wrapping_mul(2_654_435_761) ^ seq) % 26) as u8) as char)
        .collect()
}

/// An entry holding one value of `bytes` bytes.
pub fn large_entry(worker: &WorkerId, seq: u64, bytes: usize) -> OplogEntry {
    OplogEntry::InvocationCompleted {
        idempotency_key: format!("{worker}#{seq}"),
        result: vec![Value::String(text(seq, bytes))],
    }
}

/// An append of the given entries, numbered from `first`.
pub fn append_entries(worker: &WorkerId, first: u64, entries: Vec<OplogEntry>) -> Append {
    let last = first + entries.len() as u64 - 1;
    Append {
        worker: worker.clone(),
        fence: None,
        entries: entries
            .into_iter()
            .zip(first..)
            .map(|(entry, seq)| SequencedEntry { seq, entry })
            .collect(),
        metadata: WorkerMetadata {
            component_hash: "h".into(),
            last_index: last,
            snapshot_index: 0,
        },
        idempotency: None,
        in_flight: None,
    }
}

async fn rows_in<K: KvStore>(kv: &K, (begin, end): (Vec<u8>, Vec<u8>)) -> usize {
    kv.transact(|tx, _| {
        let (b, e) = (begin.clone(), end.clone());
        async move {
            let options = RangeOptions {
                limit: 100_000,
                ..RangeOptions::default()
            };
            tx.get_range(&b, &e, options).await
        }
    })
    .await
    .unwrap()
    .len()
}

/// Entries past one backend value (chunked), and past one FoundationDB transaction (written in
/// steps), read back whole; damage to a chunk is reported; truncation and deletion take the
/// chunks with them.
async fn large_entries<K: KvStore, O: OplogStore>(kv: &K, oplog: &O) {
    use revenant_storage::keys;
    use revenant_storage::limits::{ENTRY_BYTES_MAX, READ_PAGE_BYTES_MAX, VALUE_BYTES_MAX};
    let w = WorkerId::new("conformance", "large");
    let mut written = vec![entry(&w, 1)];
    oplog
        .append(append_entries(&w, 1, written.clone()))
        .await
        .unwrap();
    // One invocation: 300 KB, a value at the bound (16 MiB, more than one FoundationDB
    // transaction), and a small entry, in one append.
    let invocation = vec![
        large_entry(&w, 2, 300_000),
        large_entry(&w, 3, VALUE_BYTES_MAX),
        entry(&w, 4),
    ];
    oplog
        .append(append_entries(&w, 2, invocation.clone()))
        .await
        .unwrap();
    written.extend(invocation.clone());
    let read: Vec<OplogEntry> = read_all(oplog, &w)
        .await
        .into_iter()
        .map(|e| e.entry)
        .collect();
    assert!(read == written, "large entries read back whole");
    // A repeat of the whole append (an unknown commit result) writes nothing.
    oplog
        .append(append_entries(&w, 2, invocation))
        .await
        .unwrap();
    assert_eq!(read_all(oplog, &w).await.len(), 4);
    let bytes = oplog.log_bytes(&w).await.unwrap();
    assert!(
        bytes > (VALUE_BYTES_MAX + 300_000) as u64 && bytes < (VALUE_BYTES_MAX + 400_000) as u64,
        "log bytes {bytes}"
    );

    // A page holds at most READ_PAGE_BYTES_MAX of entries, whatever the entry limit asks.
    let big = READ_PAGE_BYTES_MAX / VALUE_BYTES_MAX + 1;
    for seq in 5..5 + big as u64 {
        let e = large_entry(&w, seq, VALUE_BYTES_MAX);
        oplog
            .append(append_entries(&w, seq, vec![e.clone()]))
            .await
            .unwrap();
        written.push(e);
    }
    let page = oplog.read(&w, 3, 1000).await.unwrap();
    assert!(
        !page.is_empty() && page.len() < 2 + big,
        "a page of {} large entries",
        page.len()
    );
    let read: Vec<OplogEntry> = read_all(oplog, &w)
        .await
        .into_iter()
        .map(|e| e.entry)
        .collect();
    assert!(
        read == written,
        "every large entry read back whole, page by page"
    );

    // Past the bound: refused, nothing written.
    let last = written.len() as u64;
    let too_large = large_entry(&w, last + 1, ENTRY_BYTES_MAX);
    let err = oplog
        .append(append_entries(&w, last + 1, vec![too_large]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::EntryTooLarge { .. }), "{err}");
    assert_eq!(oplog.metadata(&w).await.unwrap().unwrap().last_index, last);

    // A damaged chunk, or a missing one, is reported as corruption of that entry.
    let chunk = keys::entry_chunk(&w, 3, 5);
    let original = get(kv, &chunk).await.expect("chunk 5 of entry 3");
    let mut damaged = original.clone();
    damaged[100] ^= 0x20;
    put(kv, chunk.clone(), damaged).await;
    let err = oplog.read(&w, 3, 1).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { seq: 3, reason, .. } if reason.contains("checksum")),
        "{err}"
    );
    kv.transact(|tx, _| {
        let chunk = chunk.clone();
        async move {
            tx.clear(&chunk);
            Ok(())
        }
    })
    .await
    .unwrap();
    let err = oplog.read(&w, 3, 1).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt { seq: 3, .. }),
        "{err}"
    );
    put(kv, chunk, original).await;
    assert!(oplog.read(&w, 3, 1).await.unwrap()[0].entry == written[2]);

    // Truncation takes the chunks of the entries it removes; deletion takes all.
    oplog.truncate_before(&w, 4).await.unwrap();
    assert_eq!(rows_in(kv, keys::chunks_before(&w, 4)).await, 0);
    assert!(rows_in(kv, keys::chunks_from(&w, 4)).await > 0);
    assert!(oplog.read(&w, 4, 1).await.unwrap()[0].entry == written[3]);
    oplog.delete_worker(&w).await.unwrap();
    assert_eq!(rows_in(kv, keys::chunks_from(&w, 0)).await, 0);
    assert_eq!(oplog.log_bytes(&w).await.unwrap(), 0);
}

/// A crash between the chunks of a large append and the rows that commit them leaves nothing
/// visible: after a restart the log ends where it did, and the chunks are collected by the
/// worker's next append. For the KV backends, whose large appends are written in steps.
pub async fn a_crash_between_chunks_and_rows_leaves_nothing_half_visible<K: KvStore + Clone>(
    kv: &K,
) {
    use revenant_storage::keys;
    use revenant_storage::kv_oplog::KvOplog;
    use revenant_storage::limits::VALUE_BYTES_MAX;
    let w = WorkerId::new("conformance", "crashed");
    let oplog = KvOplog::new(kv.clone());
    oplog.append(append_of(&w, 1..=1, None)).await.unwrap();
    let mut big = append_entries(&w, 2, vec![large_entry(&w, 2, VALUE_BYTES_MAX)]);
    big.in_flight = Some(false);
    oplog.stage_chunks(&big).await.unwrap();
    drop(oplog);

    // The restart: a new store handle over the same data.
    let oplog = KvOplog::new(kv.clone());
    assert_eq!(oplog.metadata(&w).await.unwrap().unwrap().last_index, 1);
    assert_exact(&w, &read_all(&oplog, &w).await, 1);
    assert!(
        rows_in(kv, keys::chunks_from(&w, 2)).await > 200,
        "the crash left chunks"
    );
    // The next append, however small, clears them.
    oplog.append(append_of(&w, 2..=2, None)).await.unwrap();
    assert_eq!(rows_in(kv, keys::chunks_from(&w, 0)).await, 0);
    assert_exact(&w, &read_all(&oplog, &w).await, 2);

    // Staged, then crashed, then retried whole: commits once, reads back whole.
    let big = append_entries(&w, 3, vec![large_entry(&w, 3, VALUE_BYTES_MAX)]);
    oplog.stage_chunks(&big).await.unwrap();
    oplog.append(big.clone()).await.unwrap();
    let log = read_all(&oplog, &w).await;
    assert_eq!(log.len(), 3);
    assert!(log[2].entry == big.entries[0].entry);
    // Staging an append that already committed changes nothing.
    oplog.stage_chunks(&big).await.unwrap();
    assert!(read_all(&oplog, &w).await[2].entry == big.entries[0].entry);
}

/// Components and API definitions as chunked, content-addressed blobs; the node registry.
pub async fn catalog_suite<K: KvStore>(kv: &K) {
    use revenant_storage::catalog::{self, BlobKind};
    let big: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let record = catalog::put_blob(kv, BlobKind::Component, "conformance-c", 1, &big)
        .await
        .unwrap();
    assert_eq!(record.size, big.len() as u64);
    let (got_record, got) = catalog::get_blob(kv, BlobKind::Component, "conformance-c", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got_record, got == big), (record.clone(), true));
    // The same bytes again are a no-op; other bytes under the same version are refused.
    catalog::put_blob(kv, BlobKind::Component, "conformance-c", 1, &big)
        .await
        .unwrap();
    let err = catalog::put_blob(kv, BlobKind::Component, "conformance-c", 1, b"other")
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::Invalid(_)), "{err}");
    catalog::put_blob(kv, BlobKind::Component, "conformance-c", 2, b"v2")
        .await
        .unwrap();
    assert_eq!(
        catalog::versions(kv, BlobKind::Component, "conformance-c")
            .await
            .unwrap(),
        vec![1, 2]
    );
    assert!(
        catalog::get_blob(kv, BlobKind::Component, "conformance-c", 3)
            .await
            .unwrap()
            .is_none()
    );

    let doc = b"routes: []\n";
    catalog::put_blob(kv, BlobKind::Definition, "conformance-api", 1, doc)
        .await
        .unwrap();
    let (_, text) = catalog::get_blob(kv, BlobKind::Definition, "conformance-api", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, doc);
    assert!(
        catalog::versions(kv, BlobKind::Component, "conformance-api")
            .await
            .unwrap()
            .is_empty()
    );

    // Deployment records: the next version, which one is live, undeploying.
    let (v, _) = catalog::put_next_version(kv, BlobKind::Definition, "conformance-api", b"v2")
        .await
        .unwrap();
    assert_eq!(v, 2);
    let err = catalog::set_live(kv, BlobKind::Definition, "conformance-api", Some(9))
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::Invalid(_)), "{err}");
    catalog::set_live(kv, BlobKind::Definition, "conformance-api", Some(2))
        .await
        .unwrap();
    catalog::set_live(kv, BlobKind::Component, "conformance-c", Some(1))
        .await
        .unwrap();
    assert_eq!(
        catalog::live(kv, BlobKind::Definition).await.unwrap(),
        vec![("conformance-api".to_string(), 2)]
    );
    catalog::set_live(kv, BlobKind::Definition, "conformance-api", None)
        .await
        .unwrap();
    assert!(
        catalog::live(kv, BlobKind::Definition)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        catalog::live(kv, BlobKind::Component).await.unwrap(),
        vec![("conformance-c".to_string(), 1)]
    );

    let record = |node: &str, heartbeat_ms| catalog::NodeRecord {
        node: node.to_string(),
        address: "http://127.0.0.1:1".into(),
        heartbeat_ms,
        leaving: false,
    };
    catalog::heartbeat(kv, &record("conformance-node-a", 1_000))
        .await
        .unwrap();
    catalog::heartbeat(kv, &record("conformance-node-b", 1_500))
        .await
        .unwrap();
    let live: Vec<String> = catalog::live_nodes(kv, 2_000, 600)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .filter(|n| n.starts_with("conformance-"))
        .collect();
    assert_eq!(live, vec!["conformance-node-b".to_string()]);
}
