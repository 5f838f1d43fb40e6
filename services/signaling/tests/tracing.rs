//! Traces and logs as an operator sees them: one relayed message is one trace
//! across two nodes, and logs carry its trace id but never tokens or SDP.
//! In a test binary of its own, because the tracing subscriber is process-wide.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::Backing;
use common::{spawn_node, Client};
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use serde_json::json;
use vc_signaling::config::{LogFormat, TelemetrySettings};
use vc_signaling::telemetry::{install, Export};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn a_relay_across_nodes_is_one_trace_and_logs_keep_secrets() {
    let exporter = InMemorySpanExporter::default();
    let logs = Captured::default();
    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        log_level: "debug".into(),
    };
    let _telemetry = install(
        &settings,
        Some(Export::Simple(exporter.clone())),
        logs.clone(),
    );

    let redis = common::fleet::redis(Backing::Standalone);
    let url = redis.url();
    let a = spawn_node(|s| {
        s.node.id = "trace-a".into();
        s.redis.url = url.clone().into();
    })
    .await;
    let b = spawn_node(|s| {
        s.node.id = "trace-b".into();
        s.redis.url = url.clone().into();
    })
    .await;

    let mut ann = Client::connect(&a.ws_url()).await;
    ann.send(
        json!({"type": "join", "room": "traced", "name": "Ann", "token": "TOKEN-MUST-NOT-APPEAR"}),
    )
    .await;
    let joined = ann.recv_type("joined").await;
    ann.adopt(&joined);
    let (mut bob, _) = Client::joined(&b.ws_url(), "traced", "Bob").await;
    ann.recv_type("peer-joined").await;
    bob.send(json!({"type": "offer", "to": ann.peer, "sdp": "v=0 SDP-MUST-NOT-APPEAR"}))
        .await;
    ann.recv_type("offer").await;

    let deadline = Instant::now() + Duration::from_secs(5);
    let (relay, deliver) = loop {
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let relay = spans
            .iter()
            .find(|s| s.name == "relay" && attribute(s, "node").as_deref() == Some("trace-b"))
            .cloned();
        let deliver = relay.as_ref().and_then(|relay| {
            spans
                .iter()
                .find(|s| {
                    s.name == "deliver"
                        && attribute(s, "node").as_deref() == Some("trace-a")
                        && s.span_context.trace_id() == relay.span_context.trace_id()
                })
                .cloned()
        });
        if let (Some(relay), Some(deliver)) = (relay, deliver) {
            break (relay, deliver);
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Bob's node started the trace; Ann's node continued it as a child.
    assert_eq!(relay.parent_span_id, SpanId::INVALID);
    assert_eq!(deliver.parent_span_id, relay.span_context.span_id());
    assert_eq!(attribute(&relay, "kind").as_deref(), Some("offer"));

    let logs = logs.text();
    let trace_id = relay.span_context.trace_id().to_string();
    let relayed = logs
        .lines()
        .find(|line| line.contains("\"relayed\""))
        .unwrap_or_else(|| panic!("no relay log line in:\n{logs}"));
    assert!(relayed.contains(&trace_id), "{relayed}");
    assert!(
        serde_json::from_str::<serde_json::Value>(relayed).is_ok(),
        "{relayed}"
    );
    assert!(
        !logs.contains("TOKEN-MUST-NOT-APPEAR"),
        "a token was logged"
    );
    assert!(
        !logs.contains("SDP-MUST-NOT-APPEAR"),
        "an SDP body was logged"
    );
}
