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
    // Listening before anything is logged: SIGHUP's default action would end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
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
        bulk: false,
        move_orders: false,
    };
    let mut daemon = Daemon {
        engine,
        deliverer,
        jobs,
        import,
        digest: app.digest_settings(),
    };
    if args.once {
        let report = daemon.run_once(chrono::Utc::now()).await;
        daemon.deliverer.leave().await;
        let report = report?;
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
        targets = daemon.engine.targets().len(),
        interval_secs = interval.as_secs(),
        "rebuy daemon started"
    );
    let (reload, reloads) = tokio::sync::mpsc::unbounded_channel();
    let http_engine = http.as_ref().map(|(_, e)| e.clone());
    let stopped = tokio::select! {
        stopped = daemon.run(Arc::new(SystemClock), interval, shutdown, wake, reloads) => stopped,
        () = reload_on_hangup(app, &store, reload, http_engine, hangup) => unreachable!("never ends"),
    };
    if stopped == Stopped::DatabaseReplaced {
        eprintln!("rebuy run: the database file {} was deleted or replaced while rebuy ran; restart rebuy run (it will use the file now at that path)", app.config.database);
        return Ok(exit::FAILURE);
    }
    // The server stops on the same signal and lets requests in flight finish.
    if let Some((server, _)) = http {
        let _ = server.await;
    }
    store.close().await;
    Ok(exit::OK)
}

/// On each SIGHUP: reads and checks the scenarios, segments, targets and templates again; a valid set
/// replaces the running one (the daemon's from its next cycle, the HTTP API's at once), an
/// invalid one is logged problem by problem and the running set stays. The config file is not
/// read again (restart for that).
async fn reload_on_hangup(
    app: &App,
    store: &crate::store::Store,
    daemon: tokio::sync::mpsc::UnboundedSender<crate::engine::Engine>,
    http: Option<crate::http::SharedEngine>,
    mut hangup: tokio::signal::unix::Signal,
) {
    loop {
        if hangup.recv().await.is_none() {
            return std::future::pending().await;
        }
        match reload(app, store).await {
            Ok(Some((for_daemon, for_http))) => {
                let scenarios = for_daemon.scenarios().len();
                let targets = for_daemon.targets().len();
                let _ = daemon.send(for_daemon);
                if let Some(shared) = &http {
                    *shared.write().expect("not poisoned") = Arc::new(for_http);
                }
                tracing::info!(scenarios, targets, "SIGHUP: scenarios reloaded");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %crate::diagnostic::explained(&e), "SIGHUP: cannot reload the scenarios; the running ones stay")
            }
        }
    }
}

/// Two engines of the scenarios on disk now (the daemon's and the API's), or `None` when they
/// have problems (logged).
async fn reload(
    app: &App,
    store: &crate::store::Store,
) -> anyhow::Result<Option<(crate::engine::Engine, crate::engine::Engine)>> {
    let first = match app.engine(store).await? {
        Ok(e) => e,
        Err(diags) => {
            for d in &diags {
                tracing::error!(problem = %d, "SIGHUP: refused");
            }
            tracing::error!(
                problems = diags.len(),
                "SIGHUP: the scenarios on disk have problems (see `rebuy check`); the running ones stay"
            );
            return Ok(None);
        }
    };
    let second = app.engine(store).await?.map_err(|d| {
        anyhow::anyhow!(
            "the scenarios changed again while being reloaded ({} problem(s))",
            d.len()
        )
    })?;
    Ok(Some((first, second)))
}
