#!/usr/bin/env python3
"""How long a small append's fdatasync takes while another file in the same folder is written.

This is what the embedded store's commit thread sees when fjall flushes a memtable or writes a
compacted table: the journal's 2 KiB write and fdatasync, while a 64 MiB table is written and
fsynced beside it. On a disk with a volatile write cache every fdatasync sends a cache flush,
and the flush waits for whatever the other writer has in flight (docs/performance.md, "The
tail at saturation").

    bench/fsync_contention.py DIR [--seconds 8] [--table-mib 64] [--chunk-mib 0] [--zeroed]

--chunk-mib N makes the other writer fdatasync every N MiB (0: once, at the table's end, as
fjall does): how much the stall shrinks when the other writer's in-flight bytes are bounded.
--zeroed writes the journal file full of zeros first instead of leaving it sparse as fjall
does: whether the file system's block allocation is part of the stall.
Prints one line: samples, p50, p99, p99.9 and max of the fdatasync, in ms. Bounded: it stops
after --seconds and removes its files.
"""

import argparse
import os
import threading
import time

APPEND_BYTES = 2048
JOURNAL_BYTES = 64 << 20


def table_writer(folder, table_mib, chunk_mib, stop):
    """Writes tables of `table_mib` MiB in turn until `stop` is set."""
    block = os.urandom(1 << 20)
    n = 0
    while not stop.is_set():
        path = os.path.join(folder, f"table-{n % 2}")
        n += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for i in range(table_mib):
                os.write(fd, block)
                if chunk_mib and (i + 1) % chunk_mib == 0:
                    os.fdatasync(fd)
            os.fsync(fd)
        finally:
            os.close(fd)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--table-mib", type=int, default=64)
    p.add_argument("--chunk-mib", type=int, default=0)
    p.add_argument("--zeroed", action="store_true")
    a = p.parse_args()
    folder = os.path.join(a.dir, f"fsync-contention-{os.getpid()}")
    os.makedirs(folder)
    journal = os.path.join(folder, "journal")
    fd = os.open(journal, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    if a.zeroed:
        zeros = bytes(1 << 20)
        for _ in range(JOURNAL_BYTES >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
    else:
        # Sparse, as fjall's journal is (it sets the file's length up front).
        os.ftruncate(fd, JOURNAL_BYTES)
    stop = threading.Event()
    other = threading.Thread(target=table_writer, args=(folder, a.table_mib, a.chunk_mib, stop))
    other.start()
    samples = []
    offset = 0
    record = os.urandom(APPEND_BYTES)
    end = time.monotonic() + a.seconds
    try:
        while time.monotonic() < end:
            os.pwrite(fd, record, offset)
            offset = (offset + APPEND_BYTES) % (JOURNAL_BYTES - APPEND_BYTES)
            began = time.perf_counter()
            os.fdatasync(fd)
            samples.append((time.perf_counter() - began) * 1e3)
    finally:
        stop.set()
        other.join()
        os.close(fd)
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)
    samples.sort()
    n = len(samples)
    print(
        f"fdatasync ({'zeroed' if a.zeroed else 'sparse'} journal) beside a {a.table_mib} MiB "
        f"writer (sync every {a.chunk_mib or a.table_mib} MiB): {n} samples, p50 {samples[n // 2]:.2f} ms, "
        f"p99 {samples[n * 99 // 100]:.2f} ms, p99.9 {samples[n * 999 // 1000]:.2f} ms, "
        f"max {samples[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
