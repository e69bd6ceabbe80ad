//! Builds the MIME message for an outbox row: multipart/alternative (plain text + HTML),
//! RFC 2047-encoded headers (Japanese subjects and names arrive intact), the Date from the
//! engine's clock, the recorded Message-ID, and List-Unsubscribe headers (RFC 2369 / 8058) on
//! marketing mail.

use crate::store::OutboxRow;
use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("bad recipient address '{0}': {1}")]
    Recipient(String, String),
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
}

pub fn build(row: &OutboxRow, from: &Mailbox, now: DateTime<Utc>) -> Result<Message, BuildError> {
    let address = row
        .to_email
        .parse()
        .map_err(|e: lettre::address::AddressError| {
            BuildError::Recipient(row.to_email.clone(), e.to_string())
        })?;
    let name = crate::render::one_line(&row.to_name);
    let to = Mailbox::new((!name.is_empty()).then_some(name), address);
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(crate::render::one_line(&row.subject))
        .date(now.into())
        .message_id(Some(row.message_id.clone()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Rebuy-Scenario"),
            format!("{}/{}", row.scenario_id, row.step_id),
        ));
    if row.transactional == 0 && !row.unsubscribe_url.is_empty() {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{}>", row.unsubscribe_url),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    Ok(builder.multipart(MultiPart::alternative_plain_html(
        row.body_text.clone(),
        row.html.clone(),
    ))?)
}
