//! Where messages go: `.eml` files in a folder (the embedded default, no server needed) or an
//! SMTP relay through rebuy's pool of SMTP sessions. Errors say whether retrying can help.

use super::smtp::SmtpPool;
use crate::config::SmtpConfig;
use lettre::Message;
use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: a 4xx reply (RFC 5321 §4.2.1), a dropped connection, a timeout.
    #[error("transient: {0}")]
    Transient(String),
    /// Not worth retrying: a 5xx reply, a message the server refuses.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The server asks to slow down (421, 454): retried later, and sending pauses.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A permanent refusal of the recipient's address (a hard bounce, e.g. 550 at RCPT): the
    /// address goes on the suppression list.
    #[error("permanent failure for the address: {0}")]
    Bounced(String),
    /// The server may have accepted the message: the connection failed after its data was
    /// sent. Retrying could send it twice.
    #[error("unknown: {0}")]
    Unknown(String),
    /// Not tried at all: sending is paused after a throttling reply (`paused`), or the
    /// connection failed because of the message before it on the same connection. Nothing
    /// went out; no attempt counts.
    #[error("not tried: {why}")]
    NotTried { why: String, paused: bool },
    /// Not sent: the server refused this address for good earlier in the round (another
    /// message to it was handed over at the same time). It is suppressed.
    #[error("{0}")]
    AlreadyRefused(String),
}

pub enum Mailer {
    File(PathBuf),
    Smtp(SmtpPool),
}

impl Mailer {
    pub fn file(dir: PathBuf) -> Self {
        Mailer::File(dir)
    }

    pub fn smtp(cfg: &SmtpConfig, password: Option<String>) -> anyhow::Result<Self> {
        Ok(Mailer::Smtp(SmtpPool::new(cfg, password)?))
    }

    /// Messages handed over at once: one for files, two per connection for SMTP.
    pub fn concurrency(&self) -> usize {
        match self {
            Mailer::File(_) => 1,
            Mailer::Smtp(pool) => pool.concurrency(),
        }
    }

    /// Starts a delivery round: ends a pause that a throttling reply started, and forgets the
    /// addresses refused in the last round (the suppression list has them now).
    pub fn new_round(&self) {
        if let Mailer::Smtp(pool) = self {
            pool.new_round();
        }
    }

    /// Sends one message. The file transport writes `<outbox id>.eml` through a temporary
    /// file and a rename, so a file is either complete or absent, and a resend overwrites.
    pub async fn send(&self, outbox_id: i64, message: &Message) -> Result<(), SendError> {
        self.send_as(&outbox_id.to_string(), message).await
    }

    /// Sends one message that has no outbox row; the file transport names it `<name>.eml`.
    pub async fn send_as(&self, name: &str, message: &Message) -> Result<(), SendError> {
        match self {
            Mailer::File(dir) => {
                let dir = dir.clone();
                let bytes = message.formatted();
                let name = name.to_string();
                tokio::task::spawn_blocking(move || write_eml(&dir, &name, &bytes))
                    .await
                    .map_err(|e| SendError::Transient(format!("file writer stopped: {e}")))?
            }
            Mailer::Smtp(pool) => pool.send(message.envelope(), message.formatted()).await,
        }
    }
}

/// Writes `<id>.eml` through a temporary file and a rename: complete or absent.
fn write_eml(dir: &std::path::Path, id: &str, bytes: &[u8]) -> Result<(), SendError> {
    let path = dir.join(format!("{id}.eml"));
    let io =
        |e: std::io::Error| SendError::Transient(format!("cannot write {}: {e}", path.display()));
    let tmp = dir.join(format!(".{id}.eml.tmp"));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(io(e));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(&tmp, bytes).map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)
}
