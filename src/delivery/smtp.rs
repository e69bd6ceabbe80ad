//! rebuy's SMTP client: a small pool of lettre `AsyncSmtpConnection`s on TCP sockets with
//! `TCP_NODELAY` (lettre 0.11.23's own pool never sets it, so every message waited ~40 ms for a
//! delayed ACK), and a transaction driven step by step so that a failure is classified by
//! where it happened: a reply refusing the message is transient (4xx) or permanent (5xx); a
//! network failure before the end of the data means nothing was accepted (transient); a
//! network failure or timeout after the data was sent means the server may have accepted it,
//! and the outcome is `Unknown`, never retried silently.

use super::mailer::SendError;
use crate::config::{SmtpConfig, TlsMode};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// An idle connection older than this is checked with NOOP before it is used again: the
/// server may have closed it, and a message must not be half-sent into a closed socket.
const STALE_AFTER: Duration = Duration::from_secs(5);

pub struct SmtpPool {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    permits: Semaphore,
    size: usize,
}

/// A failed protocol step: the server's reply refusing it, or a network, TLS or protocol
/// failure (including a timeout).
#[derive(Debug)]
enum Fail {
    Reply {
        permanent: bool,
        code: String,
        text: String,
    },
    Network(String),
}

impl From<lettre::transport::smtp::Error> for Fail {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() || e.is_transient() {
            Fail::Reply {
                permanent: e.is_permanent(),
                code: e.status().map(|c| c.to_string()).unwrap_or_default(),
                text: e.to_string(),
            }
        } else {
            Fail::Network(e.to_string())
        }
    }
}

/// Where in the SMTP transaction a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Connecting, greeting, TLS, AUTH, MAIL or DATA: nothing can have been accepted.
    Before,
    /// RCPT: a permanent refusal here is about the recipient's address (a hard bounce).
    Recipient,
    /// After the message data was written: the server may have accepted it.
    After,
}

impl SmtpPool {
    pub fn new(cfg: &SmtpConfig, password: Option<String>) -> anyhow::Result<Self> {
        let credentials = match &cfg.username {
            Some(user) => Some(Credentials::new(
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
        Ok(Self {
            host: cfg.host.clone(),
            port: cfg.port,
            tls: cfg.tls,
            credentials,
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            hello: ClientId::default(),
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
                if matches!(e, Fail::Reply { .. })
                    && !conn.has_broken()
                    && self.step(conn.command(Rset)).await.is_ok()
                {
                    self.checkin(conn);
                } else {
                    conn.abort().await;
                }
                Err(classify(stage, &e))
            }
        }
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), (Stage, Fail)> {
        let before = |e| (Stage::Before, e);
        let mut params = Vec::new();
        let non_ascii = envelope
            .to()
            .iter()
            .chain(envelope.from())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii && conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            params.push(MailParameter::SmtpUtfEight);
        }
        if !bytes.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step(conn.command(Mail::new(envelope.from().cloned(), params)))
            .await
            .map_err(before)?;
        for to in envelope.to() {
            self.step(conn.command(Rcpt::new(to.clone(), vec![])))
                .await
                .map_err(|e| (Stage::Recipient, e))?;
        }
        self.step(conn.command(Data)).await.map_err(before)?;
        self.step(conn.message(bytes))
            .await
            .map_err(|e| (Stage::After, e))?;
        Ok(())
    }

    /// One protocol step under the configured timeout.
    async fn step<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, Fail> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r.map_err(Fail::from),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> Fail {
        Fail::Network(format!(
            "no answer from the SMTP server within {} s",
            self.timeout.as_secs()
        ))
    }

    /// An idle connection (checked with NOOP if it waited long), or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let idle = self.idle.lock().expect("pool lock").pop();
            let Some((mut conn, since)) = idle else { break };
            if since.elapsed() < STALE_AFTER || self.step_ok(conn.test_connected()).await {
                return Ok(conn);
            }
            conn.abort().await;
        }
        self.connect()
            .await
            .map_err(|e| classify(Stage::Before, &e))
    }

    async fn step_ok(&self, f: impl std::future::Future<Output = bool>) -> bool {
        tokio::time::timeout(self.timeout, f).await.unwrap_or(false)
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .expect("pool lock")
            .push((conn, Instant::now()));
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Fail> {
        let mut conn = match self.tls {
            // TLS from the first byte is set up inside lettre, which gives no access to the
            // socket: these connections keep the delayed-ACK wait (port 465 only).
            TlsMode::Tls => {
                let params = TlsParameters::new(self.host.clone())?;
                self.step(AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(params),
                    None,
                ))
                .await?
            }
            TlsMode::None | TlsMode::Starttls => {
                let stream = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|e| {
                    Fail::Network(format!(
                        "cannot connect to {}:{}: {e}",
                        self.host, self.port
                    ))
                })?;
                stream
                    .set_nodelay(true)
                    .map_err(|e| Fail::Network(e.to_string()))?;
                self.step(AsyncSmtpConnection::connect_with_transport(
                    Box::new(stream),
                    &self.hello,
                ))
                .await?
            }
        };
        if self.tls == TlsMode::Starttls {
            let params = TlsParameters::new(self.host.clone())?;
            self.step(conn.starttls(params, &self.hello)).await?;
        }
        if let Some(credentials) = &self.credentials {
            self.step(conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials))
                .await?;
        }
        Ok(conn)
    }
}

/// What a failure means for the message.
fn classify(stage: Stage, e: &Fail) -> SendError {
    match (e, stage) {
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
        | (Fail::Network(text), Stage::Before | Stage::Recipient) => {
            SendError::Transient(text.clone())
        }
        (Fail::Network(text), Stage::After) => SendError::Unknown(format!(
            "the connection failed after the message was sent, before the server confirmed it: {text}"
        )),
    }
}
