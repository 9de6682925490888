//! The server's log, and the export of its spans over OTLP (config `telemetry:`, cargo feature
//! `otlp`, on by default).
//!
//! The log goes to stderr, filtered by `REVENANT_LOG` (default `info`). When
//! `telemetry.otlp_endpoint` is set, a second layer (`tracing-opentelemetry`) turns the
//! `request` and `invocation` spans into OpenTelemetry spans and a batch processor posts them to
//! the collector as OTLP/HTTP protobuf. That layer has its own filter: it sees the two spans
//! (debug level) whatever `REVENANT_LOG` says, and the stderr log stays as quiet as asked.
//!
//! The runtime's trace contexts (`runtime/src/trace.rs`) are joined to the exported spans
//! through [`revenant_runtime::trace::Export`]: a caller's `traceparent` becomes the request
//! span's remote parent, and a guest's outgoing request names the invocation's exported span as
//! its parent, so that a trace viewer shows one tree from the caller to the upstream.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The stderr log's layer: `REVENANT_LOG`'s filter, colours only for a terminal (a log file or
/// a collector gets plain text).
fn stderr_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A line that cannot be written (stderr on a full disk) is lost, and that is all: by
        // default the layer reports it with `eprintln!`, which panics when stderr fails, in
        // whatever task logged, a request's included.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(
            EnvFilter::try_from_env("REVENANT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
}

/// Installs the log alone: every command but the server's.
pub fn init_log() {
    tracing_subscriber::registry().with(stderr_layer()).init();
}

/// Installs the log, and the exporter if `config` asks for one. Spans are exported by a thread
/// of the exporter's own; each export is sent on `runtime` (the server's).
pub fn init(
    config: Option<&crate::config::TelemetryConfig>,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let Some(config) = config else {
        init_log();
        return Ok(());
    };
    #[cfg(feature = "otlp")]
    {
        let layer = otlp::layer(config, runtime)?;
        tracing_subscriber::registry()
            .with(stderr_layer())
            .with(layer)
            .init();
        revenant_runtime::trace::install(Box::new(otlp::Link));
        tracing::info!(endpoint = %config.otlp_endpoint, "exporting spans over OTLP");
        Ok(())
    }
    // The configuration refuses `telemetry.otlp_endpoint` in a build without the exporter.
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (config, runtime);
        init_log();
        Ok(())
    }
}

/// Sends the spans still queued and stops the exporter: at the server's exit, from a thread
/// that is not one of `runtime`'s (the exports run there).
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
}

#[cfg(feature = "otlp")]
mod otlp {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, Limited};
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
    };
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler};
    use revenant_runtime::trace::TraceContext;
    use std::sync::OnceLock;
    use std::time::Duration;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{LevelFilter, Targets};

    /// Spans waiting to be exported. Past it new spans are dropped (and counted by the SDK):
    /// a collector that is down or slow must not grow the server's memory. 8,192 spans are
    /// about 4,000 requests, a few seconds of saturation.
    const QUEUED_SPANS_MAX: usize = 8_192;

    /// Spans in one export request: the OTLP default.
    const EXPORT_BATCH_SPANS_MAX: usize = 512;

    /// How often queued spans are sent when no batch fills.
    const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

    /// One export request, connection included. The batch thread waits for it before taking
    /// the next batch, so a collector that does not answer delays spans, never calls.
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A collector's answer read back: it is a small status message.
    const ANSWER_BYTES_MAX: usize = 64 * 1024;

    static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

    pub fn layer<S>(
        config: &crate::config::TelemetryConfig,
        runtime: &tokio::runtime::Handle,
    ) -> anyhow::Result<impl Layer<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let tls = revenant_runtime::tls::client_config(&[]).map_err(anyhow::Error::msg)?;
        let client = Collector {
            client: revenant_gateway::auth::https_client(tls),
            runtime: runtime.clone(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.otlp_endpoint.to_string())
            .with_headers(
                config
                    .headers
                    .iter()
                    .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                    .collect(),
            )
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(client)
            .build()?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(QUEUED_SPANS_MAX)
                    .with_max_export_batch_size(EXPORT_BATCH_SPANS_MAX)
                    .with_scheduled_delay(EXPORT_INTERVAL)
                    .build(),
            )
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("revenant");
        let _ = PROVIDER.set(provider);
        // The request and invocation spans are at debug level in the gateway and the runtime;
        // other crates' spans and events only from info up.
        let filter = Targets::new()
            .with_target("revenant_gateway", LevelFilter::DEBUG)
            .with_target("revenant_runtime", LevelFilter::DEBUG)
            .with_default(LevelFilter::INFO);
        Ok(tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter))
    }

    pub fn shutdown() {
        if let Some(provider) = PROVIDER.get()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {e}");
        }
    }

    /// Joins the runtime's trace contexts to the exported spans.
    pub struct Link;

    impl revenant_runtime::trace::Export for Link {
        fn adopt(&self, span: &tracing::Span, caller: &TraceContext) {
            let flags = if caller.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let parent = SpanContext::new(
                TraceId::from_bytes(caller.trace_id),
                SpanId::from_bytes(caller.parent_id),
                flags,
                true,
                TraceState::default(),
            );
            // Fails only for a span this layer does not see (filtered out): nothing to join.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        }

        fn context(&self, span: &tracing::Span) -> Option<TraceContext> {
            let cx = span.context();
            let s = cx.span().span_context().clone();
            s.is_valid().then(|| TraceContext {
                trace_id: s.trace_id().to_bytes(),
                parent_id: s.span_id().to_bytes(),
                sampled: s.is_sampled(),
            })
        }
    }

    /// The exporter's HTTP client: hyper with rustls (the system's roots), each request sent
    /// on the server's runtime, since the SDK's batch thread runs no runtime of its own.
    #[derive(Debug)]
    struct Collector {
        client: hyper_util::client::legacy::Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            Full<Bytes>,
        >,
        runtime: tokio::runtime::Handle,
    }

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for Collector {
        async fn send_bytes(
            &self,
            request: http::Request<Bytes>,
        ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
            let client = self.client.clone();
            let sent = self.runtime.spawn(async move {
                let response =
                    tokio::time::timeout(EXPORT_TIMEOUT, client.request(request.map(Full::new)))
                        .await
                        .map_err(|_| "the collector did not answer in time")??;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, ANSWER_BYTES_MAX)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
            });
            sent.await?
        }
    }
}
