//! The embedded store's guard against a full disk.
//!
//! fjall poisons its database at the first write that fails (`ENOSPC` included) and refuses
//! every write after it, until the process restarts. So the committer asks this guard before
//! each batch: when the disk holding the store has less free space than the reserve
//! (`limits::DISK_FREE_MIN_BYTES_DEFAULT`, or `limits.store_free_min_mb`), the batch is refused
//! with `StorageError::Full` and fjall never sees it; reads go on; the next batch after space
//! is freed is written, without a restart. `/readyz` reports the same check.
//!
//! What it cannot prevent: another process filling the last of the reserve between two checks
//! faster than the store can notice, or a reserve set too small for a flush; then fjall's own
//! failure stands, as `storage_unavailable`, until a restart.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
}

impl DiskSpace {
    pub fn new(dir: PathBuf, reserve: u64) -> Self {
        Self { dir, reserve }
    }

    /// Bytes free for the store's user on its disk.
    pub fn free(&self) -> std::io::Result<u64> {
        let s = rustix::fs::statvfs(&self.dir)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// `Err` with why when writes must be refused now.
    pub fn check(&self) -> Result<(), String> {
        match self.free() {
            Ok(free) if free < self.reserve => Err(format!(
                "the disk holding the store ({}) has {} MiB free, under the {} MiB the store \
                 keeps for its own work; writes resume by themselves once space is freed",
                self.dir.display(),
                free >> 20,
                self.reserve >> 20
            )),
            Ok(_) => Ok(()),
            // A disk that cannot say how full it is does not stop writes: fjall's own errors
            // still do.
            Err(_) => Ok(()),
        }
    }
}
