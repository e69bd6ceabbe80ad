//! Custom event records (`cart_added`, `product_viewed`, …): who, what, when, and free
//! properties. From `rebuy import events FILE` (CSV with a `properties` column of JSON, or
//! JSON Lines) and `POST /v1/events`. An event without an id gets one derived from its
//! content, so that sending the same event twice stores it once.

use super::{parse_instant, text, ImportOptions, ImportReport, Invalid, Record};
use crate::clock::to_millis;
use crate::domain::valid_event_name;
use crate::store::{EventRow, NewEvent, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The fields of an event record.
pub const EVENT_FIELDS: &[&str] = &["id", "customer", "customer_id", "name", "at", "properties"];

/// The most an event's properties may hold, as JSON.
pub const MAX_PROPERTIES: usize = 16 * 1024;

/// Validates one record into an event, or says what is wrong with it.
pub fn parse_event(r: &Record, zone: Tz, now: DateTime<Utc>) -> Result<NewEvent, Invalid> {
    let f = &r.fields;
    super::scalars_only(|k| f.get(k), EVENT_FIELDS, "properties")?;
    let customer_id = super::either_id(f, "customer", "customer_id")?
        .ok_or_else(|| Invalid::missing("customer"))?;
    let name = text(f, "name").ok_or_else(|| Invalid::missing("name"))?;
    if !valid_event_name(&name) {
        return Err(Invalid::at(
            "name",
            format!("'{name}' is not an event name: 1 to 64 letters, digits, '_', '-' or '.' (cart_added)"),
        ));
    }
    let at = text(f, "at").ok_or_else(|| Invalid::missing("at"))?;
    let at = to_millis(parse_instant(&at, zone).map_err(|e| Invalid::at("at", e))?);
    // An event ahead would start its scenario on that day and hold the customer until then.
    super::not_ahead("at", at, now, zone).map_err(|e| Invalid::at("at", e))?;
    let properties = match f.get("properties") {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(serde_json::Value::Object(m)) => serde_json::Value::Object(m.clone()),
        // A CSV cell holds the properties as JSON text.
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
            serde_json::Value::Object(Default::default())
        }
        Some(serde_json::Value::String(s)) => match serde_json::from_str(s) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return Err(Invalid::at(
                    "properties",
                    "'properties' must be a JSON object",
                ))
            }
        },
        Some(_) => return Err(Invalid::at("properties", "'properties' must be an object")),
    };
    let properties = super::structured_fits("properties", &properties, MAX_PROPERTIES)?;
    let id = match super::id_text(f, "id")? {
        Some(id) => id,
        None => derived_id(&customer_id, &name, at, &properties),
    };
    Ok(NewEvent {
        id,
        customer_id,
        name,
        at,
        properties,
    })
}

/// What is said of an event whose id is stored for another event (a repeated id with other
/// content): the repeat is not stored, and not counted as unchanged.
pub fn conflicting_event(stored: &EventRow, zone: Tz) -> String {
    let at = crate::clock::from_millis(stored.at)
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %:z");
    format!(
        "event id '{}' is already stored for another event ('{}' of customer '{}' at {at}); an \
         id names one event: give this one its own id, or leave id out",
        stored.id, stored.name, stored.customer_id
    )
}

/// The id of an event sent without one: the same content gives the same id.
fn derived_id(customer: &str, name: &str, at: i64, properties: &str) -> String {
    let mut h = Sha256::new();
    for part in [customer, name, &at.to_string(), properties] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("sha256:{}", hex::encode(&h.finalize()[..16]))
}

pub(super) async fn run(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let (mut reader, mut report) = super::open(
        path,
        opts,
        &[&["customer", "customer_id"], &["name"], &["at"]],
        &[EVENT_FIELDS],
    )?;
    let mut confirmed: HashSet<String> = HashSet::new();
    while let Some(chunk) = reader.next_chunk()? {
        let mut parsed = Vec::with_capacity(chunk.len());
        for r in &chunk {
            match parse_event(r, opts.default_timezone, now) {
                Ok(e) => parsed.push((r.line, e)),
                Err(e) => report.reject(r.line, e.message),
            }
        }
        let ids: Vec<String> = parsed
            .iter()
            .map(|(_, e)| e.customer_id.clone())
            .filter(|c| !confirmed.contains(c))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        confirmed.extend(store.existing_customer_ids(&ids).await?);
        let (mut good, mut lines) = (Vec::with_capacity(parsed.len()), Vec::new());
        for (line, e) in parsed {
            if confirmed.contains(&e.customer_id) {
                good.push(e);
                lines.push(line);
            } else {
                report.reject(line, format!("unknown customer '{}'; import the customer first with `rebuy import customers`", e.customer_id));
            }
        }
        let stored = store.insert_events(&good, to_millis(now)).await?;
        for (i, row) in &stored.conflicts {
            report.reject(lines[*i], conflicting_event(row, opts.default_timezone));
        }
        let written = good.len() - stored.conflicts.len();
        report.add(written, (stored.inserted, 0));
    }
    report.finish(reader.unreadable);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: serde_json::Value) -> Record {
        Record {
            line: 1,
            fields: json.as_object().unwrap().clone().into(),
        }
    }

    fn now() -> DateTime<Utc> {
        parse_instant("2026-11-02T00:00:00Z", chrono_tz::UTC).unwrap()
    }

    #[test]
    fn an_event_without_an_id_gets_the_same_id_for_the_same_content() {
        let r = record(
            serde_json::json!({"customer": "c1", "name": "cart_added", "at": "2026-11-01 10:00", "properties": {"skus": ["A"], "value": 3980}}),
        );
        let a = parse_event(&r, chrono_tz::Asia::Tokyo, now()).unwrap();
        let b = parse_event(&r, chrono_tz::Asia::Tokyo, now()).unwrap();
        assert_eq!(a.id, b.id);
        assert!(a.id.starts_with("sha256:"));
        assert_eq!(
            a.at,
            to_millis(parse_instant("2026-11-01T01:00:00Z", chrono_tz::UTC).unwrap())
        );
        let csv = record(
            serde_json::json!({"customer_id": "c1", "name": "cart_added", "at": "2026-11-01 10:00", "properties": "{\"value\": 1}"}),
        );
        assert_eq!(
            parse_event(&csv, chrono_tz::UTC, now()).unwrap().properties,
            "{\"value\":1}"
        );
    }

    #[test]
    fn a_bad_event_names_its_field() {
        let bad = |j: serde_json::Value| {
            parse_event(&record(j), chrono_tz::UTC, now())
                .unwrap_err()
                .field
        };
        assert_eq!(
            bad(serde_json::json!({"name": "x", "at": "2026-11-01"})),
            "customer"
        );
        assert_eq!(
            bad(serde_json::json!({"customer": "c", "name": "cart added", "at": "2026-11-01"})),
            "name"
        );
        assert_eq!(bad(serde_json::json!({"customer": "c", "name": "x"})), "at");
        // An event more than a day ahead of the clock: a wrong date or zone.
        assert_eq!(
            bad(serde_json::json!({"customer": "c", "name": "x", "at": "2099-12-01T00:00:00Z"})),
            "at"
        );
        assert_eq!(
            bad(
                serde_json::json!({"customer": "c", "name": "x", "at": "2026-11-01", "properties": [1]})
            ),
            "properties"
        );
        let big = "x".repeat(MAX_PROPERTIES);
        assert_eq!(
            bad(
                serde_json::json!({"customer": "c", "name": "x", "at": "2026-11-01", "properties": {"big": big}})
            ),
            "properties"
        );
    }
}
