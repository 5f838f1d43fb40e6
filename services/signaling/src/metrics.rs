//! The node's Prometheus metrics: one registry per node (so that several nodes in
//! one test process do not share counters), every series labelled with the node id.
//!
//! Label values are bounded sets (message types, error codes, close reasons):
//! never a room name or a peer id, which would grow the series without limit.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use strum::VariantArray;
use vc_protocol::{BroadcastKind, CallReport, CandidateType, ErrorCode, IceOutcome, RelayKind};

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
const RTT_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const ICE_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0];

pub struct Metrics {
    registry: Registry,
    pub sessions: IntGauge,
    pub rooms: IntGauge,
    pub bus_connected: IntGauge,
    pub draining: IntGauge,
    pub sessions_opened: IntCounter,
    pub upgrades_refused: IntCounterVec,
    pub sessions_closed: IntCounterVec,
    pub joins: IntCounterVec,
    pub resumes: IntCounterVec,
    pub replays: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub received_bytes: IntCounter,
    pub sent_bytes: IntCounter,
    pub rejected: IntCounterVec,
    pub rate_limited: IntCounter,
    pub auth_failures: IntCounterVec,
    pub bus_published: IntCounter,
    pub bus_received: IntCounter,
    pub bus_errors: IntCounterVec,
    pub bus_resubscriptions: IntCounter,
    pub bus_catch_ups: IntCounterVec,
    pub bus_gaps: IntCounterVec,
    pub outage_queued: IntGauge,
    pub outage_flushed: IntCounter,
    pub outage_dropped: IntCounterVec,
    pub peers_swept: IntCounter,
    pub tls_reloads: IntCounterVec,
    pub tls_reload_failing: IntGauge,
    pub client_ice_outcomes: IntCounterVec,
    pub relay_latency: HistogramVec,
    pub bus_publish: Histogram,
    pub ping_rtt: Histogram,
    pub client_ice_connected: Histogram,
    pub client_rtt: Histogram,
}

/// Registering a metric fails only on a duplicate name or invalid options, both
/// fixed at compile time here: a failure is a programming error.
fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        panic!("metric registration is static and cannot fail: {e}");
    }
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(
        r,
        Histogram::with_opts(opts).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
}

impl Metrics {
    pub fn new(node_id: &str) -> Self {
        let labels = std::iter::once(("node".to_owned(), node_id.to_owned())).collect();
        let registry = Registry::new_custom(None, Some(labels))
            .unwrap_or_else(|e| panic!("a registry with one constant label: {e}"));
        let r = &registry;
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            panic!("the process collector registers once per registry: {e}");
        }
        let info = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "vc_node_info",
                    "Constant 1, labelled with the node's version and memory allocator.",
                ),
                &["version", "allocator"],
            )
            .unwrap_or_else(|e| panic!("vc_node_info: {e}")),
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), crate::allocator::NAME])
            .set(1);
        let metrics = Self {
            sessions: gauge(r, "vc_sessions", "Open WebSocket sessions."),
            rooms: gauge(r, "vc_rooms", "Rooms with members on this node."),
            bus_connected: gauge(
                r,
                "vc_bus_connected",
                "1 when the bus can deliver, 0 during an outage.",
            ),
            draining: gauge(r, "vc_draining", "1 while the node drains before stopping."),
            sessions_opened: counter(r, "vc_sessions_opened_total", "WebSocket sessions opened."),
            upgrades_refused: counter_vec(
                r,
                "vc_upgrades_refused_total",
                "WebSocket upgrades refused, by reason (origin, draining).",
                &["reason"],
            ),
            sessions_closed: counter_vec(
                r,
                "vc_sessions_closed_total",
                "WebSocket sessions closed, by reason.",
                &["reason"],
            ),
            joins: counter_vec(
                r,
                "vc_joins_total",
                "Join requests, by outcome.",
                &["outcome"],
            ),
            resumes: counter_vec(
                r,
                "vc_resumes_total",
                "Resume requests, by outcome.",
                &["outcome"],
            ),
            replays: counter_vec(
                r,
                "vc_replays_total",
                "Resumes that named the last seq their client processed, by whether the seat's buffer covered the gap.",
                &["outcome"],
            ),
            messages_received: counter_vec(
                r,
                "vc_messages_received_total",
                "Client frames received, by message type.",
                &["type"],
            ),
            messages_sent: counter_vec(
                r,
                "vc_messages_sent_total",
                "Frames written to clients, by message type.",
                &["type"],
            ),
            received_bytes: counter(
                r,
                "vc_received_bytes_total",
                "Bytes of client text frames received.",
            ),
            sent_bytes: counter(
                r,
                "vc_sent_bytes_total",
                "Bytes of text frames written to clients.",
            ),
            rejected: counter_vec(
                r,
                "vc_messages_rejected_total",
                "Client messages refused with an error, by error code.",
                &["code"],
            ),
            rate_limited: counter(
                r,
                "vc_rate_limited_total",
                "Client messages dropped by the per-session rate limit.",
            ),
            auth_failures: counter_vec(
                r,
                "vc_auth_failures_total",
                "Joins refused by authentication, by error code.",
                &["code"],
            ),
            bus_published: counter(
                r,
                "vc_bus_published_total",
                "Envelopes published on the bus.",
            ),
            bus_received: counter(
                r,
                "vc_bus_received_total",
                "Envelopes received from the bus.",
            ),
            bus_errors: counter_vec(
                r,
                "vc_bus_errors_total",
                "Failed bus operations, by operation.",
                &["operation"],
            ),
            bus_resubscriptions: counter(
                r,
                "vc_bus_resubscriptions_total",
                "Room subscriptions restored after a bus outage.",
            ),
            bus_catch_ups: counter_vec(
                r,
                "vc_bus_catch_ups_total",
                "Attached seats whose replay buffer was read after a bus outage, by whether it held everything they missed.",
                &["outcome"],
            ),
            bus_gaps: counter_vec(
                r,
                "vc_bus_gaps_total",
                "Seats whose frames from the bus skipped numbers (pub/sub lost some), by whether their buffer gave the missing ones back.",
                &["outcome"],
            ),
            outage_queued: gauge(
                r,
                "vc_outage_queued",
                "Messages this node keeps for the bus while it cannot take them (Redis away, or earlier ones still waiting).",
            ),
            outage_flushed: counter(
                r,
                "vc_outage_flushed_total",
                "Kept messages published once the bus took them again.",
            ),
            outage_dropped: counter_vec(
                r,
                "vc_outage_dropped_total",
                "Messages the outage queue could not keep or deliver, by reason; each sender was told unavailable.",
                &["reason"],
            ),
            peers_swept: counter(
                r,
                "vc_peers_swept_total",
                "Seats of lost nodes removed by this node.",
            ),
            tls_reloads: counter_vec(
                r,
                "vc_tls_reloads_total",
                "Changed TLS certificate files, by result (ok: served from now on; error: the previous certificate stays).",
                &["result"],
            ),
            tls_reload_failing: gauge(
                r,
                "vc_tls_reload_failing",
                "1 while the TLS certificate files hold a pair that did not load (the previous certificate is still served).",
            ),
            client_ice_outcomes: counter_vec(
                r,
                "vc_client_ice_outcomes_total",
                "Client-reported ICE outcomes of ended calls, by outcome and local candidate type.",
                &["outcome", "candidate_type"],
            ),
            relay_latency: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "vc_relay_latency_seconds",
                        "From publish on the sender's node to the write on the receiver's socket.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["path"],
                )
                .unwrap_or_else(|e| panic!("vc_relay_latency_seconds: {e}")),
            ),
            bus_publish: histogram(
                r,
                "vc_bus_publish_seconds",
                "Time to hand an envelope to the bus.",
                LATENCY_BUCKETS,
            ),
            ping_rtt: histogram(
                r,
                "vc_ping_rtt_seconds",
                "WebSocket ping to pong round-trip time.",
                RTT_BUCKETS,
            ),
            client_ice_connected: histogram(
                r,
                "vc_client_ice_connected_seconds",
                "Client-reported time from negotiation start to ICE connected.",
                ICE_BUCKETS,
            ),
            client_rtt: histogram(
                r,
                "vc_client_rtt_seconds",
                "Client-reported round-trip time of the selected candidate pair.",
                RTT_BUCKETS,
            ),
            registry,
        };
        metrics.pre_register_labels();
        metrics
    }

    /// Creates every known label combination at zero, so that dashboards and
    /// alert expressions see a series (rate 0) before the first event.
    fn pre_register_labels(&self) {
        for reason in CLOSE_REASONS {
            self.sessions_closed.with_label_values(&[reason]);
        }
        for outcome in [
            "ok",
            "full",
            "unauthorized",
            "invalid",
            "unavailable",
            "draining",
        ] {
            self.joins.with_label_values(&[outcome]);
        }
        for reason in ["origin", "draining"] {
            self.upgrades_refused.with_label_values(&[reason]);
        }
        for outcome in ["ok", "failed", "unavailable"] {
            self.resumes.with_label_values(&[outcome]);
        }
        for code in ErrorCode::ALL {
            self.rejected.with_label_values(&[code.as_str()]);
        }
        for code in [
            ErrorCode::AuthRequired,
            ErrorCode::AuthInvalid,
            ErrorCode::AuthExpired,
            ErrorCode::AuthWrongRoom,
        ] {
            self.auth_failures.with_label_values(&[code.as_str()]);
        }
        for operation in ["publish", "subscribe", "presence", "history"] {
            self.bus_errors.with_label_values(&[operation]);
        }
        for result in ["ok", "error"] {
            self.tls_reloads.with_label_values(&[result]);
        }
        for path in ["same_node", "cross_node"] {
            self.relay_latency.with_label_values(&[path]);
        }
        for &outcome in IceOutcome::VARIANTS {
            let candidates = CandidateType::VARIANTS.iter().map(|c| c.as_str());
            for candidate in candidates.chain([UNKNOWN_CANDIDATE]) {
                self.client_ice_outcomes
                    .with_label_values(&[outcome.as_str(), candidate]);
            }
        }
    }

    /// Counts a client-caused or refused message by its error code.
    pub fn reject(&self, code: ErrorCode) {
        self.rejected.with_label_values(&[code.as_str()]).inc();
        match code {
            ErrorCode::RateLimited => self.rate_limited.inc(),
            ErrorCode::AuthRequired
            | ErrorCode::AuthInvalid
            | ErrorCode::AuthExpired
            | ErrorCode::AuthWrongRoom => {
                self.auth_failures.with_label_values(&[code.as_str()]).inc();
            }
            _ => {}
        }
    }

    /// Turns a client's call report into the call-quality metrics.
    pub fn record_report(&self, report: &CallReport) {
        if let Some(ms) = report.ice_connected_ms {
            self.client_ice_connected.observe(ms / 1000.0);
        }
        if let Some(ms) = report.rtt_ms {
            self.client_rtt.observe(ms / 1000.0);
        }
        if let (true, Some(outcome)) = (report.is_final, report.outcome) {
            let candidate = report
                .candidate_type
                .map_or(UNKNOWN_CANDIDATE, CandidateType::as_str);
            self.client_ice_outcomes
                .with_label_values(&[outcome.as_str(), candidate])
                .inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The `candidate_type` label of an ICE outcome whose report named none.
const UNKNOWN_CANDIDATE: &str = "unknown";

/// Labels of `vc_sessions_closed_total`.
pub const CLOSE_REASONS: [&str; 11] = [
    "client_closed",
    "dropped",
    "timed_out",
    "abuse",
    "too_big",
    "protocol",
    "invalid_text",
    "grant_expired",
    "slow_consumer",
    "seat_moved",
    "shutdown",
];

/// The join outcome label for a refused join.
pub fn join_outcome(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RoomFull => "full",
        ErrorCode::AuthRequired
        | ErrorCode::AuthInvalid
        | ErrorCode::AuthExpired
        | ErrorCode::AuthWrongRoom => "unauthorized",
        ErrorCode::Draining => "draining",
        ErrorCode::Unavailable => "unavailable",
        _ => "invalid",
    }
}

/// Maps a relayed `type` to the static label used in metrics.
pub fn relay_kind(message: &str) -> &'static str {
    message
        .parse::<RelayKind>()
        .map(RelayKind::as_str)
        .or_else(|_| message.parse::<BroadcastKind>().map(BroadcastKind::as_str))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_carries_the_node_label_and_known_labels_exist_at_zero() {
        let metrics = Metrics::new("node-x");
        let text = metrics.render();
        assert!(
            text.contains(r#"vc_joins_total{outcome="full",node="node-x"} 0"#),
            "{text}"
        );
        let info = text
            .lines()
            .find(|l| l.starts_with("vc_node_info{"))
            .unwrap_or_else(|| panic!("no vc_node_info in {text}"));
        assert!(info.contains(r#"version=""#), "{info}");
        assert!(
            info.contains(&format!(r#"allocator="{}""#, crate::allocator::NAME)),
            "{info}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.contains(r#"node="node-x""#),
                "unlabelled series: {line}"
            );
        }
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn reports_feed_call_quality() {
        let metrics = Metrics::new("n");
        metrics.record_report(&CallReport {
            is_final: true,
            ice_connected_ms: Some(420.0),
            outcome: Some(IceOutcome::Connected),
            candidate_type: Some(CandidateType::Relay),
            rtt_ms: Some(12.0),
        });
        let relay = metrics
            .client_ice_outcomes
            .with_label_values(&["connected", "relay"])
            .get();
        assert_eq!(relay, 1);
        assert_eq!(metrics.client_ice_connected.get_sample_count(), 1);
        assert!((metrics.client_rtt.get_sample_sum() - 0.012).abs() < 1e-9);
    }
}
