//! Customer records: id, email, name, time zone, locale; every other column (CSV) or key
//! (JSON Lines, or its `attributes` object) becomes a free attribute.

use super::{either_id, text, ImportOptions, ImportReport, Invalid, Record};
use crate::clock::to_millis;
use crate::domain::{parse_timezone, Email};
use crate::store::{NewCustomer, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::Path;

/// The fields a customer record names; in a CSV or JSON Lines file any other becomes an
/// attribute, over the API it is refused (attributes go in `attributes`).
pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "email",
    "name",
    "timezone",
    "locale",
    "attributes",
    "marketing_consent",
    "consent_at",
];

/// The most a customer's attributes may hold, as JSON.
pub const MAX_ATTRIBUTES: usize = 64 * 1024;

/// Validates one record into a customer, or says what is wrong with it. A `consent_at` without
/// an offset (a date, a local time) is read in `zone`, the shop's, as an order's `placed_at` is.
pub fn parse_customer(
    r: &Record,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<NewCustomer, Invalid> {
    let f = &r.fields;
    super::scalars_only(|k| f.get(k), CUSTOMER_FIELDS, "attributes")?;
    let id = either_id(f, "id", "customer_id")?.ok_or_else(|| Invalid::missing("id"))?;
    let email = Email::parse(&text(f, "email").ok_or_else(|| Invalid::missing("email"))?)
        .map_err(|e| Invalid::at("email", e))?;
    let timezone = match text(f, "timezone") {
        Some(z) => Some(
            parse_timezone(&z)
                .map_err(|e| Invalid::at("timezone", e))?
                .name()
                .to_string(),
        ),
        None => None,
    };
    let mut attributes = serde_json::Map::new();
    if let Some(obj) = f.get("attributes") {
        match obj {
            serde_json::Value::Object(m) => attributes.extend(m.clone()),
            _ => return Err(Invalid::at("attributes", "'attributes' must be an object")),
        }
    }
    for (k, v) in f.iter().filter(|(k, _)| !CUSTOMER_FIELDS.contains(k)) {
        attributes.insert(k.to_string(), v.clone());
    }
    let attributes = serde_json::Value::Object(attributes);
    let attributes = super::structured_fits("attributes", &attributes, MAX_ATTRIBUTES)?;
    let marketing_consent = super::yes_no(f, "marketing_consent")?;
    let consent_at = text(f, "consent_at")
        .map(|v| super::parse_instant(&v, zone).map(to_millis))
        .transpose()
        .map_err(|e| Invalid::at("consent_at", format!("'consent_at': {e}")))?;
    // A date ahead would outrank every later statement (the latest wins), opt-outs included.
    if let Some(at) = consent_at {
        super::not_ahead("consent_at", at, now, zone).map_err(|e| Invalid::at("consent_at", e))?;
    }
    Ok(NewCustomer {
        id,
        marketing_consent,
        consent_at,
        email: email.as_str().to_string(),
        name: text(f, "name").unwrap_or_default(),
        timezone,
        locale: text(f, "locale"),
        attributes,
    })
}

pub(super) async fn run(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let (mut reader, mut report) =
        super::open(path, opts, &[&["id", "customer_id"], &["email"]], &[])?;
    // The line each customer was first seen on: a second row for the same id is reported,
    // as a repeated order is, rather than silently overwriting the first.
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    while let Some(chunk) = reader.next_chunk()? {
        let good = super::unique_records(
            &chunk,
            &mut seen,
            &mut report,
            "customer",
            |r| parse_customer(r, opts.default_timezone, now),
            |c| &c.id,
        );
        let counts = store.upsert_customers(&good, to_millis(now)).await?;
        report.add(good.len(), counts);
    }
    report.finish(reader.unreadable);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        super::super::parse_instant("2026-12-07T00:00:00Z", chrono_tz::UTC).unwrap()
    }

    /// A JSON record, as a line of JSON Lines or an API body gives it.
    fn record(fields: serde_json::Value) -> Record {
        Record {
            line: 1,
            fields: fields.as_object().unwrap().clone().into(),
        }
    }

    #[test]
    fn consent_dated_ahead_of_the_clock_is_refused_so_that_no_later_opt_out_is_outranked() {
        let consent = |at: &str| {
            record(
                serde_json::json!({"id": "c1", "email": "a@example.jp", "marketing_consent": true, "consent_at": at}),
            )
        };
        let e = parse_customer(
            &consent("2099-12-01T00:00:00Z"),
            chrono_tz::Asia::Tokyo,
            now(),
        )
        .unwrap_err();
        assert_eq!(e.field, "consent_at");
        assert!(
            e.message
                .contains("'consent_at' 2099-12-01 09:00 +09:00 is in the future"),
            "{}",
            e.message
        );
        // The clock a little behind the shop's is allowed, as for orders.
        assert!(parse_customer(&consent("2026-12-07T20:00:00Z"), chrono_tz::UTC, now()).is_ok());
    }

    #[test]
    fn attributes_with_a_nul_or_beyond_their_bound_are_refused() {
        let parse = |attributes: serde_json::Value| {
            let fields =
                serde_json::json!({"id": "c1", "email": "a@example.jp", "attributes": attributes});
            parse_customer(&record(fields), chrono_tz::UTC, now())
        };
        let e = parse(serde_json::json!({"k": ["a\u{0}b"]})).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.contains("NUL")),
            ("attributes", true)
        );
        let e = parse(serde_json::json!({"k": "x".repeat(MAX_ATTRIBUTES)})).unwrap_err();
        assert!(e.message.contains("at most 65536"), "{}", e.message);
        assert!(parse(serde_json::json!({"skin": "dry"})).is_ok());
    }
}
