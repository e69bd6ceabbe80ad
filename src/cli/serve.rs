//! `rebuy serve`, and the HTTP server `rebuy run` starts next to the daemon: the API,
//! webhooks, health and the unsubscribe page on `http.listen`.

use super::{exit, App};
use crate::clock::SystemClock;
use crate::daemon::shutdown_signal;
use crate::http::{Api, Limits};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::{watch, Notify};

/// The HTTP server running, and the engine its handlers use (to swap on a reload).
pub type Serving = (tokio::task::JoinHandle<()>, crate::http::SharedEngine);

/// Binds `http.listen` and serves until `shutdown`; `Ok(None)` when no address is set,
/// `Err(code)` when the server cannot start (the message is printed).
pub async fn start(
    app: &App,
    store: &Store,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Result<Option<Serving>, u8>> {
    let Some(addr) = app.config.http_listen() else {
        return Ok(Ok(None));
    };
    let engine = match app.engine(store).await? {
        Ok(e) => Arc::new(std::sync::RwLock::new(Arc::new(e))),
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("refusing to start: {} problem(s) in the scenarios or templates (see `rebuy check`)", diags.len());
            return Ok(Err(exit::INVALID));
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {addr} (http.listen): {e}; pick a free address or port"
            );
            return Ok(Err(exit::FAILURE));
        }
    };
    let unsubscriber = app.unsubscriber(store).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, unsubscribe = %unsubscriber.path(), "serving HTTP");
    let shop = app.config.shop.get("name").cloned().unwrap_or_default();
    let clock = Arc::new(SystemClock);
    let mut pages =
        crate::http::unsubscribe::router(store.clone(), unsubscriber, &shop, clock.clone());
    if let Some(tracker) = app.tracker(store).await? {
        tracing::info!(path = %tracker.path(), "tracking clicks");
        pages = pages.merge(crate::http::tracking::router(
            store.clone(),
            tracker,
            clock.clone(),
        ));
    }
    let shopify = &app.config.shopify;
    let shopify_secret =
        crate::config::read_secret(&shopify.secret_env, shopify.secret_file.as_deref())?
            .map(|s| {
                crate::config::check_shopify_secret(&s)
                    .map_err(|e| {
                        anyhow::anyhow!("{e} (from ${} or shopify.secret_file)", shopify.secret_env)
                    })
                    .map(|_| s.into_bytes())
            })
            .transpose()?;
    let api = Arc::new(Api {
        store: store.clone(),
        engine: engine.clone(),
        clock,
        wake,
        zone: app.resolved.default_timezone,
        attribution_window: app.resolved.attribution_window,
        shopify_secret,
        writer: crate::http::IngestWriter::start(store.clone()),
        request_timeout: std::time::Duration::from_secs(app.config.http.request_timeout_secs),
    });
    tokio::spawn(prune_keys(store.clone(), shutdown.clone()));
    let launcher = crate::ui::Launcher::for_this_binary(
        app.config_path.clone(),
        app.local_file("backtest.db"),
    );
    let pages = pages.merge(crate::ui::router(api.clone(), &app.currency(), launcher)?);
    let limits = Limits::from(&app.config.http);
    let router = crate::http::router(api, pages, &limits);
    let server = tokio::spawn(crate::http::serve(listener, router, limits, shutdown));
    Ok(Ok(Some((server, engine))))
}

pub async fn run(app: &App) -> anyhow::Result<u8> {
    if app.config.http_listen().is_none() {
        eprintln!("error: nothing to serve: set http.listen in the config (e.g. 127.0.0.1:8025)");
        return Ok(exit::INVALID);
    }
    // Only requests here, no million-customer pass: give freed memory back after mimalloc's
    // usual short delay rather than at once, which made every request fault pages in again
    // (10% of a batch ingest's time in page faults and madvise; 84,000 orders/s instead of
    // 76,000 in batches of 1,000).
    super::purge_freed_memory_after(100);
    let store = app.store().await?.for_server().await?;
    let shutdown = shutdown_signal();
    let server = match start(app, &store, Arc::new(Notify::new()), shutdown).await? {
        Ok(Some((s, _))) => s,
        Ok(None) => return Ok(exit::INVALID),
        Err(code) => return Ok(code),
    };
    let _ = server.await;
    tracing::info!("stopped cleanly");
    store.close().await;
    Ok(exit::OK)
}

/// How long a reply to an `Idempotency-Key` is kept: a client retries within minutes, not days.
const KEYS_KEPT: chrono::Duration = chrono::Duration::days(1);

/// Forgets old idempotency keys every hour until `shutdown`.
async fn prune_keys(store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        let before = crate::clock::to_millis(chrono::Utc::now() - KEYS_KEPT);
        match store.prune_keys(before).await {
            Ok(n) if n > 0 => tracing::debug!(keys = n, "old idempotency keys forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot forget old idempotency keys"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
