//! rebuy's SMTP client pool: a few sessions of rebuy's own (`session`) on TCP sockets with
//! `TCP_NODELAY` (lettre 0.11.23's pool never sets it, so every message waited ~40 ms for a
//! delayed ACK), pipelined when the server offers it, and each failure classified by where it
//! happened: a reply refusing the message is transient (4xx) or permanent (5xx); a network
//! failure before the end of the data means nothing was accepted (transient); a network
//! failure or timeout after the data was sent means the server may have accepted it, and the
//! outcome is `Unknown`, never retried silently.

use super::mailer::SendError;
use super::session::{tls_config, Dial, Fail, Session, Stage};
use crate::config::{SmtpConfig, TlsMode};
use lettre::address::Envelope;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// An idle connection older than this is checked with NOOP before it is used again: the
/// server may have closed it, and a message must not be half-sent into a closed socket.
const STALE_AFTER: Duration = Duration::from_secs(5);

pub struct SmtpPool {
    host: String,
    port: u16,
    tls: TlsMode,
    tls_config: Arc<rustls::ClientConfig>,
    credentials: Option<(String, String)>,
    timeout: Duration,
    hello: String,
    idle: Mutex<Vec<(Session, Instant)>>,
    permits: Semaphore,
    size: usize,
}

impl SmtpPool {
    pub fn new(cfg: &SmtpConfig, password: Option<String>) -> anyhow::Result<Self> {
        let credentials = match &cfg.username {
            Some(user) => Some((
                user.clone(),
                password.ok_or_else(|| {
                    anyhow::anyhow!(
                        "smtp.username is set but no password was found in ${} or smtp.password_file",
                        cfg.password_env
                    )
                })?,
            )),
            None => None,
        };
        let size = cfg.pool_size.max(1) as usize;
        let hello = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty() && h.is_ascii())
            .unwrap_or_else(|| "localhost".into());
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            tls: cfg.tls,
            tls_config: tls_config(cfg.ca_file.as_deref())?,
            credentials,
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            hello,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size),
            size,
        })
    }

    /// Connections open at most at once; the deliverer sends this many messages in parallel.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sends one message over a pooled connection.
    pub async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Transient("the SMTP pool is closed".into()))?;
        let mut conn = self.checkout().await?;
        match self.transaction(&mut conn, envelope, bytes).await {
            Ok(()) => {
                self.checkin(conn);
                Ok(())
            }
            Err((stage, e)) => {
                // A refusal leaves the connection usable after RSET; anything else drops it.
                if matches!(e, Fail::Reply { .. }) && self.step(conn.reset()).await.is_ok() {
                    self.checkin(conn);
                }
                Err(classify(stage, &e))
            }
        }
    }

    async fn transaction(
        &self,
        conn: &mut Session,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), (Stage, Fail)> {
        match tokio::time::timeout(self.timeout, conn.envelope(envelope, !bytes.is_ascii())).await {
            Ok(r) => r?,
            Err(_) => return Err((Stage::Before, self.timed_out())),
        }
        self.step(conn.data(bytes))
            .await
            .map_err(|e| (Stage::After, e))
    }

    /// One protocol step under the configured timeout.
    async fn step<T>(&self, f: impl Future<Output = Result<T, Fail>>) -> Result<T, Fail> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| Err(self.timed_out()))
    }

    fn timed_out(&self) -> Fail {
        Fail::Network(format!(
            "no answer from the SMTP server within {} s",
            self.timeout.as_secs()
        ))
    }

    /// An idle connection (checked with NOOP if it waited long), or a new one.
    async fn checkout(&self) -> Result<Session, SendError> {
        loop {
            let idle = self.idle.lock().expect("pool lock").pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < STALE_AFTER
                || tokio::time::timeout(self.timeout, conn.alive())
                    .await
                    .unwrap_or(false)
            {
                return Ok(conn);
            }
        }
        self.step(Session::open(&self.dial()))
            .await
            .map_err(|e| classify(Stage::Connect, &e))
    }

    fn dial(&self) -> Dial<'_> {
        Dial {
            host: &self.host,
            port: self.port,
            hello: &self.hello,
            tls: (self.tls != TlsMode::None).then_some(&self.tls_config),
            starttls: self.tls == TlsMode::Starttls,
            credentials: self
                .credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str())),
        }
    }

    fn checkin(&self, conn: Session) {
        self.idle
            .lock()
            .expect("pool lock")
            .push((conn, Instant::now()));
    }
}

/// What a failure means for the message.
fn classify(stage: Stage, e: &Fail) -> SendError {
    match (e, stage) {
        // A refused session (a wrong password, a policy) is about the settings, not the
        // message: it waits and is retried like any transient failure.
        (Fail::Reply { text, .. }, Stage::Connect) => SendError::Transient(format!(
            "the SMTP server refused the session (check the smtp settings): {text}"
        )),
        (
            Fail::Reply {
                permanent: true,
                text,
                ..
            },
            Stage::Recipient,
        ) => SendError::Bounced(text.clone()),
        (
            Fail::Reply {
                permanent: true,
                text,
                ..
            },
            _,
        ) => SendError::Permanent(text.clone()),
        (Fail::Reply { code, text, .. }, _) if code == "421" || code == "454" => {
            SendError::Throttled(text.clone())
        }
        (Fail::Reply { text, .. }, _)
        | (Fail::Network(text), Stage::Connect | Stage::Before | Stage::Recipient) => {
            SendError::Transient(text.clone())
        }
        (Fail::Network(text), Stage::After) => SendError::Unknown(format!(
            "the connection failed after the message was sent, before the server confirmed it: {text}"
        )),
    }
}
