//! The targets digest a cron job mails to the shop's team: the LTV targets measured as the
//! targets page shows them, with a PNG chart, one mail per address per run of the job. Each
//! is claimed in `team_mail` before it is handed over, so a run repeated (after a restart, or
//! by a second worker) sends nothing twice, and a send whose outcome was lost stays
//! `sending`, listed on the status page. A failed digest is not retried: the next run sends
//! the next one.

use crate::config::DigestConfig;
use crate::delivery::{Deliverer, SendError};
use crate::store::Store;
use crate::targets::Target;
use crate::ui::{digest::DigestMail, Lang};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart, SinglePart};
use lettre::Message;

/// What a digest needs besides the store and the transport.
#[derive(Debug, Clone, Default)]
pub struct DigestSettings {
    pub currency: String,
    pub shop: String,
    pub zone: chrono_tz::Tz,
}

/// What a run of the digest did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DigestReport {
    pub sent: u32,
    pub failed: u32,
    /// Addresses this run had already mailed (or tried to).
    pub already: u32,
}

/// A run of a digest job: its name, the time it was due (its key in `team_mail`) and now.
#[derive(Debug, Clone, Copy)]
pub struct DigestRun<'a> {
    pub job: &'a str,
    pub slot: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// The digest of `run` measuring `targets`, sent to each address of `config`.
pub async fn send(
    store: &Store,
    deliverer: &Deliverer,
    settings: &DigestSettings,
    targets: &[Target],
    config: &DigestConfig,
    run: DigestRun<'_>,
) -> anyhow::Result<DigestReport> {
    let DigestRun { job, slot, now } = run;
    let figures = crate::targets::measure_all(store, settings.zone, targets, now).await?;
    let lang = config
        .lang
        .as_ref()
        .and_then(|l| Lang::parse(&l.value))
        .unwrap_or(Lang::En);
    let mail = crate::ui::digest::mail(
        &figures,
        lang,
        &settings.currency,
        settings.zone,
        &settings.shop,
    )?;
    let mut report = DigestReport::default();
    let now_ms = crate::clock::to_millis(now);
    for to in &config.to {
        let to = &to.value;
        let claimed = store
            .claim_team_mail(
                job,
                crate::clock::to_millis(slot),
                to,
                &mail.subject,
                now_ms,
            )
            .await?;
        let Some(id) = claimed else {
            report.already += 1;
            continue;
        };
        let outcome = match message(deliverer.from(), to, &mail, now) {
            Ok(m) => deliverer.send_to_team(&format!("team-{id}"), &m).await,
            Err(e) => Err(SendError::Permanent(format!("{e:#}"))),
        };
        let (state, error) = match &outcome {
            Ok(()) => ("sent", None),
            Err(SendError::Unknown(e)) => ("unknown", Some(e.clone())),
            Err(e) => ("failed", Some(e.to_string())),
        };
        store
            .finish_team_mail(id, state, error.as_deref(), now_ms)
            .await?;
        match error {
            None => report.sent += 1,
            Some(e) => {
                tracing::warn!(job, to = %crate::domain::mask_email(to), error = %e, "digest not sent");
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

/// The mail: plain text, and HTML with the chart inline (multipart/related).
fn message(
    from: &Mailbox,
    to: &str,
    mail: &DigestMail,
    now: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let to: Mailbox = to
        .parse()
        .with_context(|| format!("digest.to '{to}' is not a mail address"))?;
    let chart = Attachment::new_inline(crate::ui::digest::CHART_CID.to_string())
        .body(mail.png.clone(), ContentType::parse("image/png")?);
    let body = MultiPart::alternative()
        .singlepart(SinglePart::plain(mail.text.clone()))
        .multipart(
            MultiPart::related()
                .singlepart(SinglePart::html(mail.html.clone()))
                .singlepart(chart),
        );
    Ok(Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .date(now.into())
        .multipart(body)?)
}
