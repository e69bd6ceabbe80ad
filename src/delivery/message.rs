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
    /// The last line of defence against a message that was never rendered: nothing without a
    /// subject, or without a body, leaves rebuy.
    #[error("the message has no subject or no body (was it ever rendered?); `rebuy outbox retry` renders it again")]
    Empty,
    #[error("cannot build the message: {0}")]
    Message(#[from] lettre::error::Error),
}

pub fn build(row: &OutboxRow, from: &Mailbox, now: DateTime<Utc>) -> Result<Message, BuildError> {
    if row.subject.trim().is_empty()
        || (row.html.trim().is_empty() && row.body_text.trim().is_empty())
    {
        return Err(BuildError::Empty);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subject: &str, text: &str, html: &str) -> OutboxRow {
        OutboxRow {
            id: 1,
            enrollment_id: 1,
            step_index: 0,
            step_id: "thanks".into(),
            scenario_id: "first".into(),
            customer_id: "C1".into(),
            transactional: 1,
            skip_when_capped: 0,
            status: "sending".into(),
            to_email: "hanako@example.jp".into(),
            to_name: "山田 花子".into(),
            subject: subject.into(),
            html: html.into(),
            body_text: text.into(),
            unsubscribe_url: String::new(),
            message_id: "<1.0.1@example.jp>".into(),
            due_at: 0,
            attempts: 1,
            last_error: None,
            sent_at: None,
            variant: None,
            expires_at: None,
            recommended: None,
        }
    }

    #[test]
    fn a_message_without_a_subject_or_without_a_body_is_never_built() {
        let from: Mailbox = "shop <shop@example.jp>".parse().unwrap();
        let now = chrono::Utc::now();
        for (s, t, h) in [
            ("", "body", "<p>body</p>"),
            ("Thanks", "", " "),
            ("", "", ""),
        ] {
            assert!(
                matches!(build(&row(s, t, h), &from, now), Err(BuildError::Empty)),
                "{s:?} {t:?} {h:?}"
            );
        }
        assert!(build(&row("Thanks", "body", ""), &from, now).is_ok());
    }
}
