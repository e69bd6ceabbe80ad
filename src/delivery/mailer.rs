//! Where messages go: `.eml` files in a folder (the embedded default, no server needed) or an
//! SMTP relay through lettre's async pooled transport. Errors say whether retrying can help.

use crate::config::{SmtpConfig, TlsMode};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: a 4xx reply (RFC 5321 §4.2.1), a dropped connection, a timeout.
    #[error("transient: {0}")]
    Transient(String),
    /// Not worth retrying: a 5xx reply, a message the server refuses.
    #[error("permanent: {0}")]
    Permanent(String),
}

pub enum Mailer {
    File(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn file(dir: PathBuf) -> Self {
        Mailer::File(dir)
    }

    pub fn smtp(cfg: &SmtpConfig, password: Option<String>) -> anyhow::Result<Self> {
        let tls = match cfg.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(TlsParameters::new(cfg.host.clone())?),
            TlsMode::Tls => Tls::Wrapper(TlsParameters::new(cfg.host.clone())?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(std::time::Duration::from_secs(cfg.timeout_secs)))
            .pool_config(PoolConfig::new().max_size(cfg.pool_size.max(1)));
        if let Some(user) = &cfg.username {
            let password = password.ok_or_else(|| {
                anyhow::anyhow!(
                    "smtp.username is set but no password was found in ${} or smtp.password_file",
                    cfg.password_env
                )
            })?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    pub fn concurrency(&self, configured: u32) -> usize {
        match self {
            Mailer::File(_) => 1,
            Mailer::Smtp(_) => configured.max(1) as usize,
        }
    }

    /// Sends one message. The file transport writes `<outbox id>.eml` through a temporary
    /// file and a rename, so a file is either complete or absent, and a resend overwrites.
    pub async fn send(&self, outbox_id: i64, message: &Message) -> Result<(), SendError> {
        match self {
            Mailer::File(dir) => {
                let dir = dir.clone();
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_eml(&dir, outbox_id, &bytes))
                    .await
                    .map_err(|e| SendError::Transient(format!("file writer stopped: {e}")))?
            }
            Mailer::Smtp(t) => t.send(message.clone()).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Transient(e.to_string())
                }
            }),
        }
    }
}

/// Writes `<id>.eml` through a temporary file and a rename: complete or absent.
fn write_eml(dir: &std::path::Path, id: i64, bytes: &[u8]) -> Result<(), SendError> {
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
