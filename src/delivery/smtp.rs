//! rebuy's SMTP client pool: `pool_size` connection workers, each owning one session of
//! rebuy's own (`session`) on a TCP socket with `TCP_NODELAY` (lettre 0.11.23's pool never
//! sets it, so every message waited ~40 ms for a delayed ACK) and taking messages from one
//! queue. When the server offers PIPELINING, a worker writes a message's data together with
//! the next message's MAIL, RCPT and DATA, and reads the first one's answer with the second
//! one's replies: one round trip per message. Each failure is classified by where it
//! happened: a reply refusing the message is transient (4xx) or permanent (5xx); a network
//! failure before the end of the data means nothing was accepted (transient); a network
//! failure or timeout after the data was sent means the server may have accepted it, and the
//! outcome is `Unknown`, never retried silently.

use super::mailer::SendError;
use super::session::{tls_config, Dial, Fail, Session, Stage};
use crate::config::{SmtpConfig, TlsMode};
use lettre::address::Envelope;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// An idle connection older than this is checked with NOOP before it is used again: the
/// server may have closed it, and a message must not be half-sent into a closed socket.
const STALE_AFTER: Duration = Duration::from_secs(5);

pub struct SmtpPool {
    dialer: Arc<Dialer>,
    jobs: flume::Sender<Job>,
    queue: flume::Receiver<Job>,
    workers: OnceLock<()>,
    size: usize,
}

/// How to open a session, and how long to wait for each answer.
struct Dialer {
    host: String,
    port: u16,
    tls: TlsMode,
    tls_config: Arc<rustls::ClientConfig>,
    credentials: Option<(String, String)>,
    timeout: Duration,
    hello: String,
    /// Set when the server asked to slow down (421, 454): queued messages are handed back
    /// untried until the next round.
    paused: AtomicBool,
    /// Addresses the server refused for good in this round: a message to one of them that was
    /// handed over at the same time is not tried.
    refused: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// One message for a worker, and where its outcome goes.
struct Job {
    envelope: Envelope,
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), SendError>>,
}

/// A message whose data is written (perhaps still buffered) and whose answer is not read yet.
type Pending = oneshot::Sender<Result<(), SendError>>;

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
        let hello = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty() && h.is_ascii())
            .unwrap_or_else(|| "localhost".into());
        let (jobs, queue) = flume::unbounded();
        Ok(Self {
            dialer: Arc::new(Dialer {
                host: cfg.host.clone(),
                port: cfg.port,
                tls: cfg.tls,
                tls_config: tls_config(cfg.ca_file.as_deref())?,
                credentials,
                timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
                hello,
                paused: AtomicBool::new(false),
                refused: Default::default(),
            }),
            jobs,
            queue,
            workers: OnceLock::new(),
            size: cfg.pool_size.max(1) as usize,
        })
    }

    /// Messages to hand over at once: two per connection, so that a worker always has the
    /// next message to write behind the current one's data.
    pub fn concurrency(&self) -> usize {
        self.size * 2
    }

    /// Starts a round: ends a pause that a throttling reply started, forgets the addresses
    /// refused in the last one.
    pub fn new_round(&self) {
        self.dialer.paused.store(false, Ordering::SeqCst);
        self.dialer.refused.lock().expect("not poisoned").clear();
    }

    /// Sends one message over one of the pool's connections.
    pub async fn send(&self, envelope: &Envelope, bytes: Vec<u8>) -> Result<(), SendError> {
        self.workers.get_or_init(|| {
            for _ in 0..self.size {
                tokio::spawn(work(self.dialer.clone(), self.queue.clone()));
            }
        });
        let (done, outcome) = oneshot::channel();
        let job = Job {
            envelope: envelope.clone(),
            bytes,
            done,
        };
        if self.jobs.send(job).is_err() {
            return Err(SendError::Transient("the SMTP pool is closed".into()));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(SendError::Unknown(
                "the SMTP connection worker stopped while it had the message".into(),
            ))
        })
    }
}

/// A connection worker: takes messages from the queue until the pool is dropped.
async fn work(dialer: Arc<Dialer>, queue: flume::Receiver<Job>) {
    let mut conn: Option<(Session, Instant)> = None;
    let mut pending: Option<Pending> = None;
    loop {
        let job = match pending {
            // Something to write behind the pending data, if it is there (or arrives while
            // other tasks get a turn: the next message is usually being built right now).
            Some(_) => match queue.try_recv() {
                Ok(job) => Some(job),
                Err(_) => {
                    tokio::task::yield_now().await;
                    queue.try_recv().ok()
                }
            },
            None => match queue.recv_async().await {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        match job {
            // Paused: the messages handed over go back untried; the round stops claiming.
            Some(job) if dialer.paused.load(Ordering::SeqCst) => {
                let why = crate::reasons::Reason::Paused.to_string();
                dialer.tell(job.done, Err(SendError::NotTried { why, paused: true }));
            }
            Some(job) if dialer.was_refused(&job.envelope) => {
                let why = crate::reasons::Reason::RefusedMomentsAgo.to_string();
                dialer.tell(job.done, Err(SendError::AlreadyRefused(why)));
            }
            Some(job) => dialer.transact(&mut conn, &mut pending, job).await,
            // Nothing to pipeline with: hear the pending message's answer now.
            None => dialer.finish(&mut conn, &mut pending).await,
        }
    }
    dialer.finish(&mut conn, &mut pending).await;
}

impl Dialer {
    /// Hands a message its outcome after its envelope's replies; an address refused for good
    /// is remembered for the round.
    fn answer(&self, job: Job, outcome: Result<(), SendError>) {
        if matches!(outcome, Err(SendError::Bounced(_))) {
            let mut refused = self.refused.lock().expect("not poisoned");
            refused.extend(
                job.envelope
                    .to()
                    .iter()
                    .map(|a| a.to_string().to_lowercase()),
            );
        }
        self.tell(job.done, outcome);
    }

    /// Whether the server refused one of the envelope's addresses for good in this round.
    fn was_refused(&self, envelope: &Envelope) -> bool {
        let refused = self.refused.lock().expect("not poisoned");
        envelope
            .to()
            .iter()
            .any(|a| refused.contains(&a.to_string().to_lowercase()))
    }

    /// Hands a message its outcome; a throttling reply pauses the pool.
    fn tell(&self, done: Pending, outcome: Result<(), SendError>) {
        if matches!(outcome, Err(SendError::Throttled(_))) {
            self.paused.store(true, Ordering::SeqCst);
        }
        let _ = done.send(outcome);
    }

    /// Sends the pending message's data (if still buffered) and reads its answer.
    async fn finish(&self, conn: &mut Option<(Session, Instant)>, pending: &mut Option<Pending>) {
        let Some(done) = pending.take() else { return };
        let Some((session, _)) = conn.as_mut() else {
            let gone = "the connection was gone before the server confirmed the message";
            return self.tell(done, Err(SendError::Unknown(gone.into())));
        };
        let answer = self
            .step(async {
                session.flush().await?;
                session.final_reply().await
            })
            .await;
        if matches!(answer, Err(Fail::Network(_))) {
            *conn = None;
        }
        self.tell(done, answer.map_err(|e| classify(Stage::After, &e)));
    }

    /// Sends one message: its envelope behind the pending message's data (one write), the
    /// pending message's answer, this one's replies, and this one's data, which stays
    /// buffered until the next message or `finish`.
    async fn transact(
        &self,
        conn: &mut Option<(Session, Instant)>,
        pending: &mut Option<Pending>,
        job: Job,
    ) {
        if pending.is_none() {
            if let Err(e) = self.ready(conn).await {
                let _ = job.done.send(Err(e));
                return;
            }
        }
        let Some((session, last_used)) = conn.as_mut() else {
            let _ = job
                .done
                .send(Err(SendError::Transient("no connection".into())));
            return;
        };
        if !session.can_carry(&job.envelope) {
            let why = "the address is not in ASCII and the SMTP server does not offer SMTPUTF8; \
                       nothing was sent (the address is not suppressed: a relay with SMTPUTF8 can send it)";
            return self.answer(job, Err(SendError::Permanent(why.into())));
        }
        let eight_bit = !job.bytes.is_ascii();
        if !session.pipelining() {
            let outcome = self.one_by_one(session, &job).await;
            *last_used = Instant::now();
            if let Err((keep, _)) = &outcome {
                if !keep {
                    *conn = None;
                }
            }
            return self.answer(job, outcome.map_err(|(_, e)| e));
        }
        let stages = match self
            .step(async {
                let stages = session.queue_envelope(&job.envelope, eight_bit).await?;
                session.flush().await?;
                Ok(stages)
            })
            .await
        {
            Ok(stages) => stages,
            Err(e) => return self.lost(conn, pending, job, e),
        };
        if let Some(done) = pending.take() {
            match self.step(session.final_reply()).await {
                Ok(()) => self.tell(done, Ok(())),
                Err(e @ Fail::Reply { .. }) => self.tell(done, Err(classify(Stage::After, &e))),
                Err(e) => {
                    *pending = Some(done);
                    return self.lost(conn, pending, job, e);
                }
            }
        }
        match tokio::time::timeout(self.timeout, session.envelope_replies(&stages)).await {
            Err(_) => return self.lost(conn, pending, job, self.timed_out()),
            Ok(Err((stage, e))) => {
                // A refusal leaves the connection usable after RSET; anything else drops it.
                if !matches!(e, Fail::Reply { .. }) || self.step(session.reset()).await.is_err() {
                    *conn = None;
                }
                return self.answer(job, Err(classify(stage, &e)));
            }
            Ok(Ok(())) => {}
        }
        if let Err(e) = self.step(session.queue_data(&job.bytes)).await {
            *conn = None;
            return self.tell(job.done, Err(classify(Stage::After, &e)));
        }
        *last_used = Instant::now();
        *pending = Some(job.done);
    }

    /// The connection failed before `job`'s data was written: `job` was not tried (nothing of
    /// it was accepted) and goes back to the queue; the pending message's data had been sent,
    /// so its outcome is unknown.
    fn lost(
        &self,
        conn: &mut Option<(Session, Instant)>,
        pending: &mut Option<Pending>,
        job: Job,
        e: Fail,
    ) {
        *conn = None;
        match pending.take() {
            Some(done) => {
                self.tell(done, Err(classify(Stage::After, &e)));
                let why = format!(
                    "the connection failed while the message before it was being confirmed: {}",
                    e.text()
                );
                self.tell(job.done, Err(SendError::NotTried { why, paused: false }));
            }
            None => self.tell(job.done, Err(classify(Stage::Before, &e))),
        }
    }

    /// A whole transaction, one command at a time (a server without PIPELINING). On error,
    /// whether the connection can be kept.
    async fn one_by_one(&self, session: &mut Session, job: &Job) -> Result<(), (bool, SendError)> {
        let eight_bit = !job.bytes.is_ascii();
        let result =
            match tokio::time::timeout(self.timeout, session.envelope(&job.envelope, eight_bit))
                .await
            {
                Ok(Ok(())) => self
                    .step(session.data(&job.bytes))
                    .await
                    .map_err(|e| (Stage::After, e)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err((Stage::Before, self.timed_out())),
            };
        match result {
            Ok(()) => Ok(()),
            Err((stage, e)) => {
                let keep = match (&e, stage) {
                    // After the data a refusal ends the transaction by itself.
                    (Fail::Reply { .. }, Stage::After) => true,
                    (Fail::Reply { .. }, _) => self.step(session.reset()).await.is_ok(),
                    _ => false,
                };
                Err((keep, classify(stage, &e)))
            }
        }
    }

    /// Makes sure there is a live connection: the one there (checked with NOOP if it waited
    /// long), or a new one.
    async fn ready(&self, conn: &mut Option<(Session, Instant)>) -> Result<(), SendError> {
        if let Some((session, last_used)) = conn.as_mut() {
            if last_used.elapsed() < STALE_AFTER
                || tokio::time::timeout(self.timeout, session.alive())
                    .await
                    .unwrap_or(false)
            {
                return Ok(());
            }
        }
        *conn = None;
        let session = self
            .step(Session::open(&self.dial()))
            .await
            .map_err(|e| classify(Stage::Connect, &e))?;
        *conn = Some((session, Instant::now()));
        Ok(())
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
}

/// What a failure means for the message.
/// Replies about the conversation itself (RFC 5321 §4.2.3): a syntax error, a command not
/// implemented, a bad sequence of commands, a parameter not implemented.
const SESSION_CODES: [&str; 4] = ["500", "502", "503", "504"];

fn classify(stage: Stage, e: &Fail) -> SendError {
    match (e, stage) {
        // A refused session (a wrong password, a policy) is about the settings, not the
        // message: it waits and is retried like any transient failure.
        (Fail::Reply { text, .. }, Stage::Connect) => SendError::Transient(format!(
            "the SMTP server refused the session (check the smtp settings): {text}"
        )),
        // A command out of order or not understood (500, 502, 503, 504) says the session went
        // wrong, not the message or the address: retried, never failed or suppressed for it.
        (Fail::Reply { code, text, .. }, _) if SESSION_CODES.contains(&code.as_str()) => {
            SendError::Transient(format!("the SMTP session went wrong (retried): {text}"))
        }
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
