//! W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/): the caller's trace
//! travels with its call into the worker's task, names the `invocation` span there, and goes
//! on to the upstreams the guest calls, each request a child of it.
//!
//! The gateway sets the context for the call's future ([`scope`]); `Runtime::call` takes it
//! ([`current`]) into the call it hands the worker, as a task-local: no signature between the
//! two changes, and a call made without one (a test, the admin API) simply has none.
//!
//! Parsing and formatting the header are written here: the format is 55 characters of hex and
//! dashes, and the OpenTelemetry crates that parse it would be a dependency of every build,
//! while only a build that exports spans (the CLI's `otlp` feature) runs their pipeline.
//!
//! Such a build installs an [`Export`]: it makes the request's span a child of the caller's in
//! the exported trace ([`adopt`]), and names the invocation's exported span as the parent of
//! the upstream requests ([`exported`]), so that a trace viewer shows caller → request →
//! invocation → upstream as one tree. Without one both are no-ops and the ids above are used.

/// A trace and the span a request of it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span: the parent of whatever this process does for it.
    pub parent_id: [u8; 8],
    /// The caller's `sampled` flag, passed on as it came.
    pub sampled: bool,
}

/// What an exporter of spans adds to the contexts here (see the module's documentation).
pub trait Export: Send + Sync + 'static {
    /// Makes `span`, not yet entered, a child of the caller's span in the exported trace.
    fn adopt(&self, span: &tracing::Span, caller: &TraceContext);
    /// The exported trace and span id of `span`, if it is exported.
    fn context(&self, span: &tracing::Span) -> Option<TraceContext>;
}

static EXPORT: std::sync::OnceLock<Box<dyn Export>> = std::sync::OnceLock::new();

/// Installs the process's exporter; `false` if one was installed already (the first stays).
pub fn install(export: Box<dyn Export>) -> bool {
    EXPORT.set(export).is_ok()
}

/// Makes `span` a child of the caller's span for the exporter, if there is one.
pub fn adopt(span: &tracing::Span, caller: &TraceContext) {
    if let Some(export) = EXPORT.get() {
        export.adopt(span, caller);
    }
}

/// The exported context of the current span, if spans are exported and it is one: the parent
/// an outgoing request names.
pub fn exported() -> Option<TraceContext> {
    EXPORT.get()?.context(&tracing::Span::current())
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `f` with `trace` as the current trace context.
pub async fn scope<F: Future>(trace: TraceContext, f: F) -> F::Output {
    CURRENT.scope(trace, f).await
}

/// The trace context `scope` set for this task, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|t| *t).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex only, as the header requires.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Not part of any guest's computation: drawn from the OS, never recorded. A zero draw
    // (invalid as an id) is taken again.
    while bytes.iter().all(|b| *b == 0) {
        getrandom::fill(&mut bytes).expect("the OS provides randomness");
    }
    bytes
}

impl TraceContext {
    /// A `traceparent` header's context; `None` if it is malformed, in which case the
    /// recommendation is to start a new trace. A version past 00 is read for its first four
    /// fields, as the specification asks of a parser that knows only 00.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let version = header.get(0..2)?;
        if version == "ff" || unhex::<1>(version).is_none() {
            return None;
        }
        let known = if version == "00" {
            (header.len() == 55).then_some(header)?
        } else {
            let head = header.get(0..55)?;
            (header.len() == 55 || header.as_bytes()[55] == b'-').then_some(head)?
        };
        let mut parts = known.split('-');
        let (_, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let trace_id = unhex::<16>(trace).filter(|t| t.iter().any(|b| *b != 0))?;
        let parent_id = unhex::<8>(parent).filter(|p| p.iter().any(|b| *b != 0))?;
        let flags = unhex::<1>(flags)?[0];
        Some(Self {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace, for a call that came with none.
    pub fn new_root() -> Self {
        Self {
            trace_id: random(),
            parent_id: random(),
            sampled: false,
        }
    }

    /// The context of a request this process makes for this trace: the same trace, a new
    /// span id of its own as the upstream's parent.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random(),
            ..*self
        }
    }

    /// The `traceparent` header.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            u8::from(self.sampled)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let t = TraceContext::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled);
        assert_eq!(t.header(), EXAMPLE);
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.parent_id, t.parent_id);
        assert_eq!(TraceContext::parse(&child.header()), Some(child));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may carry more fields after a dash.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert!(TraceContext::parse(later).is_some());
    }
}
