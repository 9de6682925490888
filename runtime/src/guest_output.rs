//! What guests write to stdout and stderr: captured per store, up to
//! `GUEST_OUTPUT_BYTES_PER_INVOCATION_MAX` per invocation (past it the bytes are counted, not
//! kept, and a write never fails for it), then recorded in the worker's log with the invocation
//! (`OplogEntry::GuestOutput`) and emitted as log lines carrying the worker's id once the log
//! holds them. Output written while an invocation is replayed is discarded: its lines were
//! recorded and emitted when it first ran. Ephemeral and read-only calls record nothing; their
//! lines are emitted only.
//!
//! By hand rather than wasmtime-wasi's `MemoryOutputPipe`: that pipe cannot be emptied between
//! invocations, fails a write past its capacity, and cannot tell a replay from a live call.

use crate::durability::Chokepoint;
use crate::limits::GUEST_OUTPUT_BYTES_PER_INVOCATION_MAX;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// `OplogEntry::GuestOutput::stream` of stdout.
pub const STDOUT: u8 = 1;
/// `OplogEntry::GuestOutput::stream` of stderr.
pub const STDERR: u8 = 2;

/// How much a guest may write in one go (`check-write`): the bound applies over the whole
/// invocation, so this only keeps single writes of a sensible size.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

/// What one invocation wrote: per stream, the bytes kept and the number dropped.
#[derive(Default)]
struct Captured {
    kept: [Vec<u8>; 2],
    dropped: [u64; 2],
}

/// One store's output, shared by its stdout and stderr streams.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    captured: Arc<Mutex<Captured>>,
    chokepoint: Chokepoint,
}

/// One stream's part of what an invocation wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub stream: u8,
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

impl GuestOutput {
    pub fn new(chokepoint: Chokepoint) -> Self {
        Self {
            captured: Arc::new(Mutex::new(Captured::default())),
            chokepoint,
        }
    }

    /// The stream to give the guest as its stdout (`STDOUT`) or stderr (`STDERR`).
    pub fn stream(&self, stream: u8) -> OutputSink {
        OutputSink {
            output: self.clone(),
            index: usize::from(stream == STDERR),
        }
    }

    fn write(&self, index: usize, bytes: &[u8]) {
        if self.chokepoint.replaying() {
            return;
        }
        let mut c = self.captured.lock().expect("never poisoned");
        let used = c.kept[0].len() + c.kept[1].len();
        let room = GUEST_OUTPUT_BYTES_PER_INVOCATION_MAX.saturating_sub(used);
        let kept = bytes.len().min(room);
        c.kept[index].extend_from_slice(&bytes[..kept]);
        c.dropped[index] += (bytes.len() - kept) as u64;
    }

    /// Takes what was written since the last call: a part per stream that has anything.
    pub fn take(&self) -> Vec<Written> {
        let taken = std::mem::take(&mut *self.captured.lock().expect("never poisoned"));
        let [out, err] = taken.kept;
        [
            (STDOUT, out, taken.dropped[0]),
            (STDERR, err, taken.dropped[1]),
        ]
        .into_iter()
        .filter(|(_, bytes, dropped)| !bytes.is_empty() || *dropped > 0)
        .map(|(stream, bytes, dropped)| Written {
            stream,
            bytes,
            dropped,
        })
        .collect()
    }
}

/// Emits what an invocation of `worker` wrote, a log line per line of output.
pub(crate) fn emit(worker: &str, written: &[Written], recorded: bool) {
    for w in written {
        let stream = if w.stream == STDERR {
            "stderr"
        } else {
            "stdout"
        };
        for line in String::from_utf8_lossy(&w.bytes).lines() {
            tracing::info!(target: "revenant::guest", worker, stream, recorded, "{line}");
        }
        if w.dropped > 0 {
            tracing::warn!(target: "revenant::guest", worker, stream, dropped = w.dropped, "output past {GUEST_OUTPUT_BYTES_PER_INVOCATION_MAX} bytes in one invocation was dropped");
        }
    }
}

/// A guest's stdout or stderr.
#[derive(Clone)]
pub(crate) struct OutputSink {
    output: GuestOutput,
    index: usize,
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for OutputSink {
    /// Always ready: a write is taken (or counted) at once.
    async fn ready(&mut self) {}
}

impl OutputStream for OutputSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.output.write(self.index, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

impl tokio::io::AsyncWrite for OutputSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.write(self.index, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
