//! The daemon's status as one JSON value: each scenario's counts, whether mail is flowing, and
//! the workers. `rebuy status --format json` and `GET /v1/status` both print it.

use crate::store::{FlowStatus, ScenarioStatus, Store};
use serde_json::{json, Value};

/// `{"scenarios": […], "flow": {…}, "workers": […], "last_stopped": {…}|null}`, times in the
/// shop's zone.
pub async fn status_view(store: &Store, zone: chrono_tz::Tz) -> anyhow::Result<Value> {
    let scenarios: Vec<ScenarioStatus> = store.scenario_status().await?.into_values().collect();
    let flow = store.flow_status().await?;
    let workers = crate::delivery::workers(store).await?;
    let workers: Vec<Value> = workers.iter().map(|w| worker_view(w, zone)).collect();
    let local = |ms| crate::customer_view::local(Some(ms), zone);
    // The last worker that stopped: with none running, since when mail has had no daemon.
    let last_stopped = store.last_worker().await?.map(|w| {
        json!({ "owner": w.owner, "host": w.host, "pid": w.pid, "heartbeat_at": local(w.heartbeat_at) })
    });
    Ok(json!({
        "scenarios": scenarios,
        "flow": flow_view(&flow, zone),
        "workers": workers,
        "last_stopped": last_stopped,
    }))
}

/// A worker with its times in the shop's zone.
fn worker_view(w: &crate::delivery::WorkerView, zone: chrono_tz::Tz) -> Value {
    let local = |ms| crate::customer_view::local(Some(ms), zone);
    json!({
        "owner": w.row.owner,
        "host": w.row.host,
        "pid": w.row.pid,
        "leader": w.row.leader,
        "alive": w.alive,
        "started_at": local(w.row.started_at),
        "heartbeat_at": local(w.row.heartbeat_at),
    })
}

/// The flow figures with their times in the shop's zone (RFC 3339), like every time the API
/// and the CLI show.
fn flow_view(f: &FlowStatus, zone: chrono_tz::Tz) -> Value {
    let local = |ms| crate::customer_view::local(ms, zone);
    json!({
        "last_sent_at": local(f.last_sent_at),
        "oldest_queued_at": local(f.oldest_queued_at),
        "queued": f.queued,
        "unknown": f.unknown,
        "retrying": f.retrying,
        "retry_error": f.retry_error,
        "failed_since_sent": f.failed_since_sent,
        "failed_error": f.failed_error,
        "paused_until": local(f.paused_until),
        "stalled": f.stalled.as_ref().map(|s| json!({ "at": local(Some(s.at)), "said": s.said })),
    })
}
