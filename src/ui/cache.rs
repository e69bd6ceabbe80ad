//! Figures that take seconds to compute at a million customers (the scenario report, the
//! RFM grid, the cohorts), kept for the pages: computed once, served until `FRESH` old, then
//! served while a new one is computed in the background.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// How old figures may be before a page asks for new ones.
pub const FRESH: Duration = Duration::from_secs(300);

/// The latest value, and a lock held while one is computed.
pub struct Cached<T> {
    latest: RwLock<Option<(Instant, Arc<T>)>>,
    computing: Mutex<()>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self {
            latest: RwLock::new(None),
            computing: Mutex::new(()),
        }
    }
}

impl<T: Send + Sync + 'static> Cached<T> {
    /// The latest value; computed now (once, however many ask at the same time) when there is
    /// none. Whether it is older than `FRESH` comes back too, for the caller to renew it.
    pub async fn get<E, F, Fut>(&self, compute: F) -> Result<(Arc<T>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some((at, v)) = self.latest.read().await.clone() {
            return Ok((v, at.elapsed() > FRESH));
        }
        let _one = self.computing.lock().await;
        if let Some((at, v)) = self.latest.read().await.clone() {
            return Ok((v, at.elapsed() > FRESH));
        }
        let v = Arc::new(compute().await?);
        *self.latest.write().await = Some((Instant::now(), v.clone()));
        Ok((v, false))
    }

    /// Computes a new value unless one is being computed; a failure keeps the last one.
    pub async fn renew<E: std::fmt::Display, F, Fut>(&self, compute: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Ok(_one) = self.computing.try_lock() else {
            return;
        };
        match compute().await {
            Ok(v) => *self.latest.write().await = Some((Instant::now(), Arc::new(v))),
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the figures of the pages; the last ones are shown")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn computed_once_then_served_and_renewed() {
        let c: Cached<u32> = Cached::default();
        let (v, stale) = c.get(|| async { Ok::<_, String>(1) }).await.unwrap();
        assert_eq!((*v, stale), (1, false));
        let (v, _) = c
            .get(|| async { panic!("not computed again") as Result<u32, String> })
            .await
            .unwrap();
        assert_eq!(*v, 1);
        c.renew(|| async { Err::<u32, _>("broken".to_string()) })
            .await;
        assert_eq!(*c.get(|| async { Ok::<_, String>(9) }).await.unwrap().0, 1);
        c.renew(|| async { Ok::<_, String>(2) }).await;
        assert_eq!(*c.get(|| async { Ok::<_, String>(9) }).await.unwrap().0, 2);
    }

    #[tokio::test]
    async fn a_failure_is_not_kept() {
        let c: Cached<u32> = Cached::default();
        assert!(c.get(|| async { Err::<u32, _>("no") }).await.is_err());
        assert_eq!(*c.get(|| async { Ok::<_, &str>(3) }).await.unwrap().0, 3);
    }
}
