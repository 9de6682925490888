//! Start-up audit of the embedded store's journals, before fjall opens them.
//!
//! fjall's recovery reads each journal (`<store>/<id>.jnl`) batch by batch and, at the first
//! batch it cannot read, cuts the file there on disk and serves what came before: right for a
//! torn tail (the last batch, cut short by a crash), wrong for damage in the middle, where the
//! valid batches after the damage are acknowledged writes. fjall 3.1 has no setting for this
//! (its recovery mode is commented out), so this module reads the journals first, read-only:
//!
//! - a journal whose unreadable part is followed by a readable batch is damaged in the middle,
//!   and the store refuses to open, naming the file and the offset, with the file untouched;
//! - an older (sealed) journal with anything but zeros after its last batch is damaged too:
//!   fjall syncs a journal whole before it starts the next one, so only the newest can be torn;
//! - a batch whose sequence number is not above the one before it is damaged: fjall takes
//!   each batch's number under the journal's lock, so they rise in file order, and the number
//!   is the one field of a batch its checksum does not cover (a flipped bit there would make
//!   the batch's writes older or newer than they are);
//! - the newest journal's unreadable tail with no readable batch after it is a torn write;
//!   fjall drops it as before, and it is logged at WARN with its offset and length.
//!
//! Written by hand because no kept library reads fjall's journal besides fjall itself. The
//! format is fjall 3.1's (`journal/entry.rs` there): a batch is `Start` (tag 1, item count u32,
//! seqno u64), its items (tag 2: value type u8, compression u8, keyspace u64, key length u16,
//! value length u32, stored length u32, key, stored value; or tag 4: keyspace u64), then `End`
//! (tag 3, the xxh3 of the items' bytes as u64, the magic `FJL\x03`); little-endian; files are
//! preallocated with zeros. `journal_format_is_the_one_fjall_writes` in this crate's tests
//! fails if an upgrade of fjall changes it.
//!
//! What it cannot see: damage that leaves only zeros after a journal's last good batch (a
//! zeroed last block looks like the preallocated space), and damage in the tables fjall has
//! already written (their blocks carry checksums of their own, checked on every read).

use crate::StorageError;
use std::path::{Path, PathBuf};

const START: u8 = 1;
const ITEM: u8 = 2;
const END: u8 = 3;
const CLEAR: u8 = 4;
const MAGIC: &[u8] = b"FJL\x03";

/// A torn last batch the audit found, which fjall's recovery is about to drop.
#[derive(Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The end and the sequence number of the whole, valid batch that starts at `at` (count and
/// checksum checked), if one does.
fn batch_at(b: &[u8], at: usize) -> Option<(usize, u64)> {
    if *b.get(at)? != START {
        return None;
    }
    let count = u32_at(b, at + 1)?;
    let seqno = u64_at(b, at + 5)?;
    let mut pos = at + 13;
    let mut items = 0u32;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    loop {
        let item = pos;
        match *b.get(pos)? {
            ITEM => {
                let compression = *b.get(pos + 2)?;
                if compression > 1 {
                    return None;
                }
                let key = usize::from(u16_at(b, pos + 11)?);
                let stored = u32_at(b, pos + 17)? as usize;
                pos = pos.checked_add(21 + key)?.checked_add(stored)?;
                hasher.update(b.get(item..pos)?);
            }
            CLEAR => {
                pos += 9;
                hasher.update(b.get(item..pos)?);
            }
            END => {
                let checksum = u64_at(b, pos + 1)?;
                let end = pos + 9 + MAGIC.len();
                return (items == count
                    && b.get(pos + 9..end)? == MAGIC
                    && checksum == hasher.digest())
                .then_some((end, seqno));
            }
            _ => return None,
        }
        items += 1;
        if items > count {
            return None;
        }
    }
}

/// What one journal's bytes hold after its readable batches.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Zeros, or nothing.
    Clean,
    /// From `offset`, bytes that are not a batch, and no readable batch after them.
    Torn { offset: usize, bytes: usize },
    /// From `offset`, something unreadable, then a readable batch at `next`.
    Damaged { offset: usize, next: usize },
}

/// One journal's readable batches, each as (offset, sequence number), and what follows them.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    batches: Vec<(usize, u64)>,
    tail: Tail,
}

fn shape(b: &[u8]) -> Shape {
    let mut pos = 0;
    let mut batches = Vec::new();
    while let Some((end, seqno)) = batch_at(b, pos) {
        batches.push((pos, seqno));
        pos = end;
    }
    let Some(last) = b.iter().rposition(|x| *x != 0).filter(|l| *l >= pos) else {
        return Shape {
            batches,
            tail: Tail::Clean,
        };
    };
    let tail = match (pos + 1..=last).find(|o| b[*o] == START && batch_at(b, *o).is_some()) {
        Some(next) => Tail::Damaged { offset: pos, next },
        None => Tail::Torn {
            offset: pos,
            bytes: last + 1 - pos,
        },
    };
    Shape { batches, tail }
}

/// The journals of the store at `dir`, oldest first.
fn journals(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jnl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            found.push((id, path));
        }
    }
    found.sort();
    Ok(found)
}

fn damaged(file: &Path, offset: usize, reason: String) -> StorageError {
    StorageError::Damaged {
        file: file.display().to_string(),
        offset: offset as u64,
        reason,
    }
}

/// Reads every journal of the store at `dir` (a folder without any is a new store) and
/// refuses damage fjall would cut away; returns the torn tail it will drop, if any.
pub fn audit(dir: &Path) -> Result<Option<TornTail>, StorageError> {
    let all = match journals(dir) {
        Ok(all) => all,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::engine(format!("{}: {e}", dir.display()))),
    };
    let newest = all.last().map(|(id, _)| *id);
    let mut torn = None;
    // The batch before, across files: (file, offset, sequence number).
    let mut before: Option<(PathBuf, usize, u64)> = None;
    for (id, path) in &all {
        let bytes = std::fs::read(path)
            .map_err(|e| StorageError::engine(format!("{}: {e}", path.display())))?;
        let shape = shape(&bytes);
        for (offset, seqno) in &shape.batches {
            if let Some((file, at, prior)) = &before
                && seqno <= prior
            {
                return Err(damaged(
                    file,
                    *at,
                    format!(
                        "its batch has sequence number {prior}, and the batch after it (byte \
                         {offset} of {}) has {seqno}: they can only rise, so one of the two \
                         is damaged",
                        path.display()
                    ),
                ));
            }
            before = Some((path.clone(), *offset, *seqno));
        }
        match shape.tail {
            Tail::Clean => {}
            Tail::Damaged { offset, next } => {
                return Err(damaged(
                    path,
                    offset,
                    format!(
                        "the journal cannot be read from here, and a whole batch follows at \
                         byte {next}: acknowledged writes come after the damage"
                    ),
                ));
            }
            Tail::Torn { offset, bytes } if Some(*id) != newest => {
                return Err(damaged(
                    path,
                    offset,
                    format!(
                        "{bytes} bytes that are not a batch in a journal that a newer one \
                         follows (only the newest can end in a torn write)"
                    ),
                ));
            }
            Tail::Torn { offset, bytes } => {
                torn = Some(TornTail {
                    file: path.clone(),
                    offset: offset as u64,
                    bytes: bytes as u64,
                });
            }
        }
    }
    Ok(torn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch as fjall writes it: `items` are (key, value), uncompressed.
    fn batch(items: &[(&[u8], &[u8])], seqno: u64) -> Vec<u8> {
        let mut out = vec![START];
        out.extend((items.len() as u32).to_le_bytes());
        out.extend(seqno.to_le_bytes());
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for (k, v) in items {
            let mut item = vec![ITEM, 0, 0];
            item.extend(7u64.to_le_bytes());
            item.extend((k.len() as u16).to_le_bytes());
            item.extend((v.len() as u32).to_le_bytes());
            item.extend((v.len() as u32).to_le_bytes());
            item.extend(*k);
            item.extend(*v);
            hasher.update(&item);
            out.extend(item);
        }
        out.push(END);
        out.extend(hasher.digest().to_le_bytes());
        out.extend(MAGIC);
        out
    }

    fn journal(batches: usize) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for n in 0..batches {
            starts.push(out.len());
            let key = format!("key-{n}");
            out.extend(batch(&[(key.as_bytes(), b"value value value")], n as u64));
        }
        (out, starts)
    }

    #[test]
    fn whole_batches_then_zeros_are_clean() {
        let (mut b, starts) = journal(20);
        let s = shape(&b);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.batches.len(), 20);
        assert_eq!(s.batches[3], (starts[3], 3));
        b.extend(vec![0; 4096]);
        assert_eq!(shape(&b).tail, Tail::Clean);
        assert_eq!(shape(&[]).tail, Tail::Clean);
    }

    #[test]
    fn a_cut_last_batch_is_torn() {
        let (b, starts) = journal(20);
        let last = starts[19];
        for cut in [last + 1, last + 14, b.len() - 1] {
            let mut t = b[..cut].to_vec();
            t.extend(vec![0; 100]);
            assert_eq!(
                shape(&t).tail,
                Tail::Torn {
                    offset: last,
                    bytes: cut - last
                },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn damage_before_a_whole_batch_is_damage() {
        let (b, starts) = journal(20);
        // Zeroed bytes in the middle.
        let mut z = b.clone();
        z[starts[5]..starts[5] + 10].fill(0);
        assert_eq!(
            shape(&z).tail,
            Tail::Damaged {
                offset: starts[5],
                next: starts[6]
            }
        );
        // A flipped bit in a value: the checksum no longer matches.
        let mut f = b.clone();
        f[starts[7] + 40] ^= 0x10;
        assert_eq!(
            shape(&f).tail,
            Tail::Damaged {
                offset: starts[7],
                next: starts[8]
            }
        );
        // A length that runs past the batch.
        let mut l = b.clone();
        l[starts[3] + 13 + 11] = 0xff;
        assert!(matches!(shape(&l).tail, Tail::Damaged { offset, .. } if offset == starts[3]));
        // The count of items wrong.
        let mut c = b.clone();
        c[starts[2] + 1] = 2;
        assert!(matches!(shape(&c).tail, Tail::Damaged { offset, .. } if offset == starts[2]));
    }

    /// The sequence number is outside the checksum: a flipped bit there is seen by the order.
    #[test]
    fn a_sequence_number_out_of_order_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, starts) = journal(20);
        let path = dir.path().join("0.jnl");
        std::fs::write(&path, &b).unwrap();
        assert_eq!(audit(dir.path()).unwrap(), None);
        b[starts[9] + 5] ^= 0x40;
        std::fs::write(&path, &b).unwrap();
        let refused = audit(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("damaged at byte {}", starts[9])),
            "{refused}"
        );
    }
}
