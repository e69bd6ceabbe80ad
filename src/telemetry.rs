//! Operational metrics in Prometheus's text format (`GET /metrics`), through the `metrics`
//! facade and its Prometheus exporter: messages in the outbox by state (read from the database
//! when scraped), sends by outcome, tick and delivery latency, HTTP requests by route and status.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Seconds: from a fast tick to a slow delivery round.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process's recorder, installed on first use; `None` if another recorder was installed
/// first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            ::metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    ::metrics::describe_gauge!("rebuy_outbox_messages", "messages in the outbox, by status");
    ::metrics::describe_counter!("rebuy_sends_total", "delivery outcomes, by outcome");
    ::metrics::describe_counter!(
        "rebuy_tracking_total",
        "tracked clicks and opens, by kind, person or bot, and first or repeat"
    );
    ::metrics::describe_histogram!("rebuy_tick_seconds", "how long a tick took");
    ::metrics::describe_histogram!("rebuy_delivery_seconds", "how long a delivery round took");
    ::metrics::describe_counter!(
        "rebuy_http_requests_total",
        "HTTP requests, by route, method and status"
    );
    ::metrics::describe_histogram!(
        "rebuy_http_request_seconds",
        "HTTP request latency, by route"
    );
}

/// Records one daemon cycle: the tick's and the delivery round's durations and outcomes.
pub fn record_cycle(
    tick_secs: f64,
    delivery_secs: f64,
    delivery: &crate::delivery::DeliveryReport,
) {
    if handle().is_none() {
        return;
    }
    ::metrics::histogram!("rebuy_tick_seconds").record(tick_secs);
    ::metrics::histogram!("rebuy_delivery_seconds").record(delivery_secs);
    let outcomes = [
        ("sent", delivery.sent),
        ("retried", delivery.retried),
        ("failed", delivery.failed),
        ("unknown", delivery.unknown),
        ("suppressed", delivery.suppressed),
        ("skipped", delivery.skipped),
        ("expired", delivery.expired),
    ];
    for (outcome, n) in outcomes {
        ::metrics::counter!("rebuy_sends_total", "outcome" => outcome).increment(n);
    }
}

/// Records one HTTP request under its route's pattern (`/v1/customers/{id}`), never its path.
pub fn record_request(route: &str, method: &str, status: u16, secs: f64) {
    if handle().is_none() {
        return;
    }
    let (route, method) = (route.to_string(), method.to_string());
    ::metrics::counter!("rebuy_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    ::metrics::histogram!("rebuy_http_request_seconds", "route" => route).record(secs);
}

/// Counts a click or open: `counted` false for bots, `first` false for a repeat of the same
/// message (recorded once, counted here so that repeats are visible).
pub fn record_tracking(kind: &'static str, counted: bool, first: bool) {
    let who = if counted { "person" } else { "bot" };
    let repeat = if first { "first" } else { "repeat" };
    ::metrics::counter!("rebuy_tracking_total", "kind" => kind, "by" => who, "hit" => repeat)
        .increment(1);
}

/// Sets the outbox gauges from counts by status (read when `/metrics` is scraped).
pub fn set_outbox(counts: &[(String, i64)]) {
    for (status, n) in counts {
        ::metrics::gauge!("rebuy_outbox_messages", "status" => status.clone()).set(*n as f64);
    }
}
