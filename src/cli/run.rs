//! `rebuy run`: the daemon.

use super::{exit, App};
use crate::clock::SystemClock;
use crate::daemon::{shutdown_signal, Daemon, Job, Stopped};
use crate::import::ImportOptions;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run one cycle (jobs, tick, delivery) and exit: for cron-driven setups and checks.
    #[arg(long)]
    pub once: bool,
}

pub async fn run(app: &App, args: &RunArgs) -> anyhow::Result<u8> {
    let store = app.store_or_create().await?.for_server().await?;
    let engine = match app.engine(&store).await? {
        Ok(e) => e,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("refusing to start: {} problem(s) in the scenarios or templates (see `rebuy check`)", diags.len());
            return Ok(exit::INVALID);
        }
    };
    let shutdown = shutdown_signal();
    let deliverer = app.deliverer(&store)?.with_stop(shutdown.clone());
    let jobs = app
        .resolved
        .jobs
        .iter()
        .map(|(c, s)| Job::new(c.clone(), s.clone(), app.resolved.default_timezone))
        .collect();
    let import = ImportOptions {
        format: None,
        default_timezone: app.resolved.default_timezone,
        progress: false,
    };
    let mut daemon = Daemon {
        engine,
        deliverer,
        jobs,
        import,
    };
    if args.once {
        let report = daemon.run_once(chrono::Utc::now()).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit::OK);
    }
    let interval = app
        .resolved
        .tick_interval
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(60));
    let wake = Arc::new(tokio::sync::Notify::new());
    let http = match super::serve::start(app, &store, wake.clone(), shutdown.clone()).await? {
        Ok(h) => h,
        Err(code) => return Ok(code),
    };
    tracing::info!(
        scenarios = daemon.engine.scenarios().len(),
        interval_secs = interval.as_secs(),
        "rebuy daemon started"
    );
    let stopped = daemon
        .run(Arc::new(SystemClock), interval, shutdown, wake)
        .await;
    if stopped == Stopped::DatabaseReplaced {
        eprintln!("rebuy run: the database file {} was deleted or replaced while rebuy ran; restart rebuy run (it will use the file now at that path)", app.config.database);
        return Ok(exit::FAILURE);
    }
    // The server stops on the same signal and lets requests in flight finish.
    if let Some(server) = http {
        let _ = server.await;
    }
    store.close().await;
    Ok(exit::OK)
}
