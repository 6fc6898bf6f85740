//! Traces over OpenTelemetry: spans of `tracing` exported by OTLP
//! (HTTP/protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and nothing at
//! all when it is not: no exporter, no thread, no layer.
//!
//! [`init`] installs the global subscriber (the JSON or text logs of
//! [`crate::init_tracing`], plus the OpenTelemetry layer when exporting) and
//! returns a [`Telemetry`] guard that flushes and shuts the exporter down
//! when dropped, so `main` keeps it until it returns. [`remote_context`] and
//! [`span_traceparent`] move a W3C `traceparent` in and out of a `tracing`
//! span; how ingest and the projector use them is in `docs/tracing.md`.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};
use vibemon_schemas::event::TraceParent;

/// Set once [`init`] installed an exporting subscriber.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported in this process: code that would build many
/// spans (one per record) builds them only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The variable that turns exporting on; the exporter reads it (and the
/// other `OTEL_EXPORTER_OTLP_*` variables) itself.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Keeps the exporter alive; dropping it exports what is buffered and stops
/// the exporter's thread. Without an endpoint it holds nothing.
#[must_use = "dropping the guard stops exporting spans"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported (an endpoint was set and this call
    /// installed the subscriber).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every finished span now: for tests, which read them back.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "could not flush spans");
            }
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("telemetry: shutting the span exporter down: {e}");
            }
        }
    }
}

/// Installs the global subscriber: logs as [`crate::init_tracing`] writes
/// them and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported as
/// `OTEL_SERVICE_NAME` (default `default_service`, the binary's name). A
/// second call in one process keeps the first subscriber and exports
/// nothing of its own.
pub fn init(default_service: &str) -> Telemetry {
    let endpoint = std::env::var(ENDPOINT_VAR).ok().filter(|v| !v.is_empty());
    let provider = match endpoint.map(|_| provider(default_service)) {
        Some(Ok(provider)) => Some(provider),
        Some(Err(e)) => {
            // Logs still work; the service runs without traces rather than
            // not at all.
            eprintln!("telemetry: {ENDPOINT_VAR} is set but the exporter failed: {e}");
            None
        }
        None => None,
    };
    // `RUST_LOG` filters logs and spans alike (a span the filter drops is
    // neither logged nor exported); the exporter also leaves out the `http`
    // span every request opens (probes and scrapes too), which would be a
    // one-span trace of its own per request.
    let installed = match &provider {
        Some(p) => {
            let filter = filter();
            if filter
                .max_level_hint()
                .is_some_and(|max| max < tracing::level_filters::LevelFilter::INFO)
            {
                eprintln!(
                    "telemetry: RUST_LOG is quieter than info, so the info spans that make a \
                     deployment's trace (webhook, project) are dropped and nothing is exported; \
                     keep vibemon's crates at info, e.g. RUST_LOG=warn,vibemon_ingest=info,vibemon_projector=info"
                );
            }
            let otel = tracing_opentelemetry::layer()
                .with_tracer(p.tracer("vibemon"))
                .with_threads(false)
                .with_filter(filter_fn(exported));
            Registry::default()
                .with(filter)
                .with(otel)
                .with(log_layer())
                .try_init()
                .is_ok()
        }
        None => Registry::default()
            .with(filter())
            .with(log_layer())
            .try_init()
            .is_ok(),
    };
    if !installed {
        // Another subscriber is global: ours would never see a span.
        if let Some(p) = provider {
            let _ = p.shutdown();
        }
        return Telemetry { provider: None };
    }
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    Telemetry { provider }
}

/// What the exporter sees: everything `RUST_LOG` lets through but each
/// request's `http` span.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.is_span() && meta.name() == "http")
}

/// The filter from `RUST_LOG` (default `info`), for logs and spans alike.
pub(crate) fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// JSON lines on stderr, or plain text with `LOG_FORMAT=text`.
pub(crate) fn log_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let text = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "text");
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if text {
        layer.boxed()
    } else {
        layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed()
    }
}

/// The tracer provider: a batch exporter over OTLP HTTP/protobuf, on a
/// thread of its own, to `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
fn provider(default_service: &str) -> Result<SdkTracerProvider, Box<dyn std::error::Error>> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default_service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// A `traceparent` as OpenTelemetry's remote span context.
pub fn span_context(parent: &TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from(parent.trace_id()),
        SpanId::from(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    )
}

/// A context whose span is the remote `parent`: what `set_parent` takes to
/// continue its trace.
pub fn remote_context(parent: &TraceParent) -> Context {
    Context::new().with_remote_span_context(span_context(parent))
}

/// Makes `span` a child of `parent`, when spans are exported. Call it
/// before anything reads the span's context (which starts it).
pub fn continue_trace(span: &tracing::Span, parent: &TraceParent) {
    // Without the OpenTelemetry layer (not exporting) there is nothing to set.
    let _ = span.set_parent(remote_context(parent));
}

/// Links `span` to a record's trace (OpenTelemetry span links), when spans
/// are exported.
pub fn link(span: &tracing::Span, to: &TraceParent) {
    span.add_link(span_context(to));
}

/// The `traceparent` naming `span` itself, when spans are exported and it is
/// sampled into a valid context; `None` otherwise.
pub fn span_traceparent(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    TraceParent::new(
        u128::from_be_bytes(sc.trace_id().to_bytes()),
        u64::from_be_bytes(sc.span_id().to_bytes()),
        sc.trace_flags().to_u8(),
    )
}
