//! Logs and traces, set up once per process.
//!
//! Logs are human-readable by default and JSON when `telemetry.log_format =
//! "json"`; `RUST_LOG` overrides the configured filter. Traces go to an OTLP
//! collector over gRPC when the standard OpenTelemetry variables ask for it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
//! `OTEL_TRACES_EXPORTER=otlp`), and are off otherwise, with nothing to report.
//!
//! The W3C trace context of a relayed message travels in its bus envelope
//! (`traceparent`), so that the `relay` span on the sender's node and the
//! `deliver` span on the receiver's node form one trace. Log lines inside those
//! spans carry the trace id. Nothing logs tokens or SDP bodies: spans and events
//! record ids, kinds and codes only.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};
use crate::envelope::{Envelope, Event};

/// Keeps the trace pipeline alive; dropping it flushes the spans still queued.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("flushing traces failed: {e}");
            }
        }
    }
}

/// How spans leave the process.
pub enum Export<E> {
    /// In batches from a background thread: production.
    Batch(E),
    /// As each span ends: tests, which read spans right after the fact.
    Simple(E),
}

/// Installs logging, and tracing when the OpenTelemetry environment asks for it.
/// Must run inside a tokio runtime (the gRPC exporter needs one). Later calls in
/// the same process keep the first setup.
pub fn init(settings: &TelemetrySettings) -> TelemetryGuard {
    let exporter = otlp_requested()
        .then(|| {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| eprintln!("OTLP trace exporter not started: {e}"))
                .ok()
        })
        .flatten()
        .map(Export::Batch);
    install(settings, exporter, std::io::stderr)
}

/// Installs the global subscriber with an explicit exporter and log writer.
pub fn install<E, W>(
    settings: &TelemetrySettings,
    exporter: Option<Export<E>>,
    writer: W,
) -> TelemetryGuard
where
    E: SpanExporter + 'static,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.log_format {
        LogFormat::Text => fmt::layer().with_writer(writer).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    }
    .with_filter(log_filter);

    let provider = exporter.map(|export| {
        let builder = SdkTracerProvider::builder().with_resource(resource());
        match export {
            Export::Batch(e) => builder.with_batch_exporter(e),
            Export::Simple(e) => builder.with_simple_exporter(e),
        }
        .build()
    });
    // Per-message spans (`relay`, `deliver`) are at debug level so that they cost
    // nothing when tracing is off; the trace layer takes them when it is on.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("vc-signaling"))
            .with_filter(
                Targets::new()
                    .with_target("vc_signaling", LevelFilter::DEBUG)
                    .with_default(LevelFilter::INFO),
            )
    });
    let _first_setup_wins = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    TelemetryGuard { provider }
}

/// Whether the standard OpenTelemetry variables ask for OTLP trace export.
fn otlp_requested() -> bool {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        Some("none") => false,
        Some("otlp") => true,
        _ => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    }
}

/// The resource from `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, with a
/// service name of `video-caller` when none is given.
fn resource() -> Resource {
    let builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name("video-caller").build()
    }
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The W3C `traceparent` of the current span, when it is being traced.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut Carrier(&mut fields));
    fields.remove("traceparent")
}

/// The span a relay's delivery runs in on the receiving node, a child of the
/// sender's `relay` span when the envelope carries its `traceparent`; no span
/// for anything else, which is not traced per message.
pub fn deliver_span(node: &str, envelope: &Envelope) -> Span {
    match (&envelope.event, &envelope.traceparent) {
        (Event::Relay { message, .. }, Some(traceparent)) => {
            let span = tracing::debug_span!(
                "deliver",
                node = %node,
                kind = %message,
                trace_id = tracing::field::Empty
            );
            continue_trace(&span, traceparent);
            span
        }
        _ => Span::none(),
    }
}

/// Makes `span` a child of the remote span named by `traceparent`.
pub fn continue_trace(span: &Span, traceparent: &str) {
    let parent = TraceContextPropagator::new().extract(&Traceparent(traceparent));
    if parent.span().span_context().is_valid() {
        // Fails only for a span no subscriber traces; then there is no trace.
        span.set_parent(parent).ok();
    }
    record_trace_id(span);
}

/// Writes the span's trace id into its `trace_id` field, so that log lines
/// inside it can be matched with the trace.
pub fn record_trace_id(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}
