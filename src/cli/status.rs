//! `rebuy status`: is mail flowing, per scenario.

use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{from_millis, Clock, SystemClock};
use crate::store::{FlowStatus, ScenarioStatus, Store};
use chrono::{DateTime, Utc};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

pub const HEADERS: &[&str] = &[
    "scenario",
    "enrolled",
    "active",
    "completed",
    "reached goal",
    "queued",
    "sent",
    "failed",
    "skipped",
    "suppressed",
    "cancelled",
    "unknown",
    "expired",
    "held out",
];

pub async fn run(app: &App, args: &StatusArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let zone = app.resolved.default_timezone;
    print_status(&store, args.format, zone).await?;
    if args.format == OutputFormat::Table {
        println!(
            "{}",
            flow_line(&store.flow_status().await?, SystemClock.now(), zone)
        );
        let workers = crate::delivery::workers(&store).await?;
        let last = store.last_worker().await?;
        for line in worker_lines(&workers, last.as_ref(), SystemClock.now(), zone) {
            println!("{line}");
        }
    }
    store.close().await;
    Ok(exit::OK)
}

/// The per-scenario counts as a table or CSV (one row a scenario); as JSON the whole status
/// of `GET /v1/status`: the counts, the flow and the workers.
pub async fn print_status(
    store: &Store,
    format: OutputFormat,
    zone: chrono_tz::Tz,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        let view = crate::status::status_view(store, zone).await?;
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let status: Vec<ScenarioStatus> = store.scenario_status().await?.into_values().collect();
    let rows: Vec<Vec<String>> = status
        .iter()
        .map(|s| {
            vec![
                s.scenario.clone(),
                s.enrolled.to_string(),
                s.active.to_string(),
                s.completed.to_string(),
                s.reached_goal.to_string(),
                s.queued.to_string(),
                s.sent.to_string(),
                s.failed.to_string(),
                s.skipped.to_string(),
                s.suppressed.to_string(),
                s.cancelled.to_string(),
                s.unknown.to_string(),
                s.expired.to_string(),
                s.held_out.to_string(),
            ]
        })
        .collect();
    print_rows(format, HEADERS, &rows, &serde_json::Value::Null)
}

/// The workers for people: how many are alive, then one line each (the leader first).
/// With none running, the last one that stopped (`last`) says since when mail has had no
/// daemon.
pub fn worker_lines(
    workers: &[crate::delivery::WorkerView],
    last: Option<&crate::store::WorkerRow>,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> Vec<String> {
    if workers.is_empty() {
        return vec![match last {
            None => "workers: none has run on this database yet".into(),
            Some(w) => format!(
                "workers: none running; the last, {} on {} (pid {}), stopped after its last heartbeat {} ({}): start one with `rebuy run`",
                w.owner,
                w.host,
                w.pid,
                ago(now, w.heartbeat_at),
                crate::cli::output::local_minutes(w.heartbeat_at, zone),
            ),
        }];
    }
    let alive = workers.iter().filter(|w| w.alive == Some(true)).count();
    let mut sorted: Vec<_> = workers.iter().collect();
    sorted.sort_by_key(|w| (!w.row.leader, w.alive != Some(true), w.row.owner.clone()));
    let mut lines = vec![format!("workers: {alive} alive of {}", workers.len())];
    for w in sorted {
        let state = match w.alive {
            Some(true) => "alive",
            Some(false) => "stopped (its messages are recovered by the next cycle of another)",
            None => "cannot tell from here",
        };
        let role = if w.row.leader { "leader, " } else { "" };
        lines.push(format!(
            "  {} on {} (pid {}): {role}{state}; last heartbeat {}, running since {}",
            w.row.owner,
            w.row.host,
            w.row.pid,
            ago(now, w.row.heartbeat_at),
            crate::cli::output::local_minutes(w.row.started_at, zone),
        ));
    }
    lines
}

/// How long ago `ms` was, in words.
fn ago(now: DateTime<Utc>, ms: i64) -> String {
    match (now - from_millis(ms)).num_minutes() {
        m if m < 1 => "just now".to_string(),
        m if m < 120 => format!("{m} min ago"),
        m if m < 48 * 60 => format!("{} h ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    }
}

/// One line for people: is mail flowing?
pub fn flow_line(f: &FlowStatus, now: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    let ago = |ms: i64| ago(now, ms);
    let sent = f
        .last_sent_at
        .map(|t| format!("last sent {}", ago(t)))
        .unwrap_or_else(|| "nothing sent yet".into());
    let waiting = match f.oldest_queued_at {
        Some(t) => format!("{} waiting, the oldest due {}", f.queued, ago(t)),
        None => "nothing waiting".into(),
    };
    let doubt = if f.unknown > 0 {
        format!(
            "; {} unknown (whether they were delivered cannot be known: check before re-sending)",
            f.unknown
        )
    } else {
        String::new()
    };
    let retrying = match (f.retrying, &f.retry_error) {
        (0, _) => String::new(),
        (n, Some(e)) => format!("; {n} to be tried again after a failed attempt (last: {e})"),
        (n, None) => format!("; {n} to be tried again after a failed attempt"),
    };
    let failed = match (f.failed_since_sent, &f.failed_error) {
        (0, _) => String::new(),
        (n, e) => format!(
            "; {n} given up after their attempts since the last send{}: fix the cause, then \
             `rebuy outbox retry --all-failed` sends them again",
            e.as_ref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        ),
    };
    let paused = match f.paused_until.filter(|u| *u > now.timestamp_millis()) {
        Some(u) => format!(
            "; sending paused until {} (the server asked to slow down)",
            crate::cli::output::local_minutes(u, zone)
        ),
        None => String::new(),
    };
    // A stall stays worth saying for a day.
    let stalled = match &f.stalled {
        Some(s) if now.timestamp_millis() - s.at < 24 * 3_600_000 => {
            format!("; delivery stalled {} ({}; see the log)", ago(s.at), s.said)
        }
        _ => String::new(),
    };
    format!("mail: {sent}; {waiting}{doubt}{retrying}{failed}{paused}{stalled}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_listed_leader_first_with_their_heartbeat() {
        let now = from_millis(10 * 3_600_000);
        let worker = |owner: &str, leader, alive, beat_min_ago: i64| crate::delivery::WorkerView {
            row: crate::store::WorkerRow {
                owner: owner.into(),
                host: "shop-db".into(),
                pid: 42,
                started_at: 3_600_000,
                heartbeat_at: now.timestamp_millis() - beat_min_ago * 60_000,
                leader,
            },
            alive,
        };
        let lines = worker_lines(
            &[
                worker("9-b", false, Some(false), 90),
                worker("7-a", true, Some(true), 0),
            ],
            None,
            now,
            chrono_tz::Asia::Tokyo,
        );
        assert_eq!(
            lines,
            [
                "workers: 1 alive of 2",
                "  7-a on shop-db (pid 42): leader, alive; last heartbeat just now, running since 1970-01-01 10:00",
                "  9-b on shop-db (pid 42): stopped (its messages are recovered by the next cycle of another); last heartbeat 90 min ago, running since 1970-01-01 10:00",
            ]
        );
        assert_eq!(
            worker_lines(&[], None, now, chrono_tz::Asia::Tokyo),
            ["workers: none has run on this database yet"]
        );
        // After a clean stop: since when mail has had no daemon.
        let last = worker("9-b", true, None, 30).row;
        assert_eq!(
            worker_lines(&[], Some(&last), now, chrono_tz::Asia::Tokyo),
            ["workers: none running; the last, 9-b on shop-db (pid 42), stopped after its last heartbeat 30 min ago (1970-01-01 18:30): start one with `rebuy run`"]
        );
    }

    #[test]
    fn the_flow_line_says_whether_mail_is_flowing() {
        let now = from_millis(10 * 3_600_000);
        let f = FlowStatus {
            last_sent_at: Some(now.timestamp_millis() - 5 * 60_000),
            oldest_queued_at: Some(now.timestamp_millis() - 3 * 3_600_000),
            queued: 12,
            unknown: 1,
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f, now, chrono_tz::Asia::Tokyo),
            "mail: last sent 5 min ago; 12 waiting, the oldest due 3 h ago; 1 unknown (whether they were delivered cannot be known: check before re-sending)"
        );
        assert_eq!(
            flow_line(&FlowStatus::default(), now, chrono_tz::Asia::Tokyo),
            "mail: nothing sent yet; nothing waiting"
        );
        let f = FlowStatus {
            paused_until: Some(now.timestamp_millis() + 60_000),
            stalled: Some(crate::store::Stall {
                at: now.timestamp_millis() - 3 * 60_000,
                said: "delivery made no progress for 600 s".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f, now, chrono_tz::Asia::Tokyo),
            "mail: nothing sent yet; nothing waiting; sending paused until 1970-01-01 19:01 (the server asked to slow down); delivery stalled 3 min ago (delivery made no progress for 600 s; see the log)"
        );
        // Waiting after failed attempts: said, with the last error.
        let f = FlowStatus {
            oldest_queued_at: Some(now.timestamp_millis() - 60_000),
            queued: 3,
            retrying: 2,
            retry_error: Some("cannot write outbox/16.eml: Not a directory".into()),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f, now, chrono_tz::Asia::Tokyo),
            "mail: nothing sent yet; 3 waiting, the oldest due 1 min ago; 2 to be tried again after a failed attempt (last: cannot write outbox/16.eml: Not a directory)"
        );
        // Every attempt used up while the relay is down: not "nothing waiting" alone.
        let f = FlowStatus {
            last_sent_at: Some(now.timestamp_millis() - 60_000),
            failed_since_sent: 5,
            failed_error: Some(
                "gave up after 5 attempts: cannot connect to 127.0.0.1:2525: Connection refused"
                    .into(),
            ),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f, now, chrono_tz::Asia::Tokyo),
            "mail: last sent 1 min ago; nothing waiting; 5 given up after their attempts since the last send (last: gave up after 5 attempts: cannot connect to 127.0.0.1:2525: Connection refused): fix the cause, then `rebuy outbox retry --all-failed` sends them again"
        );
        // Over: a pause that ended, a stall more than a day old.
        let f = FlowStatus {
            paused_until: Some(now.timestamp_millis() - 1),
            stalled: Some(crate::store::Stall {
                at: now.timestamp_millis() - 25 * 3_600_000,
                said: "old".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            flow_line(&f, now, chrono_tz::Asia::Tokyo),
            "mail: nothing sent yet; nothing waiting"
        );
    }
}
