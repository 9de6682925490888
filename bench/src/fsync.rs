//! `fsync-bench`: how long this disk takes to make a small write durable, the floor under a
//! durable call's latency. Appends 4 KiB and calls `fdatasync` (what fjall's journal sync
//! does), `--count` times, in a file under `--dir`, and prints
//! `FSYNC <p50 ms> <p99 ms> <count>`.

// A benchmark measures real time (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use clap::Parser;
use hdrhistogram::Histogram;
use std::io::Write;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// A folder on the disk to measure (the server's data folder's disk).
    #[arg(long)]
    dir: std::path::PathBuf,
    #[arg(long, default_value_t = 500)]
    count: u32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir_in(&args.dir)?;
    let mut file = std::fs::File::create(dir.path().join("fsync"))?;
    let block = vec![0x5a_u8; 4096];
    let mut micros = Histogram::<u64>::new(3)?;
    for _ in 0..args.count {
        let began = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        micros.record(began.elapsed().as_micros() as u64)?;
    }
    println!(
        "FSYNC {:.3} {:.3} {}",
        micros.value_at_quantile(0.5) as f64 / 1e3,
        micros.value_at_quantile(0.99) as f64 / 1e3,
        args.count
    );
    Ok(())
}
