//! `POST /v1/customers` and `POST /v1/orders`: one record or a batch of up to 1,000, through
//! the same validation and upserts as `rebuy import`. A batch is all or nothing: any invalid
//! record refuses the request with every problem named, and nothing is stored; a 2xx means
//! the records are committed. The one exception is found only while writing: an order whose
//! id is stored for another customer is refused (422 at its `customer_id`) while the request's
//! other records are written, as its `detail` says.

use super::auth::Scope;
use super::problem::{FieldError, Problem};
use super::{idempotent, Api, Body, Reply};
use crate::clock::to_millis;
use crate::import::{
    order_from_record, parse_customer, Invalid, Record, CUSTOMER_FIELDS, ITEM_FIELDS, ORDER_FIELDS,
};
use crate::import::{parse_event, parse_product, EVENT_FIELDS, PRODUCT_FIELDS};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// The most records one request may carry.
pub const MAX_BATCH: usize = 1_000;

/// What an ingest request did: like `rebuy import`'s report, without rejections (a request
/// with any is refused whole).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl Ingested {
    fn of(records: usize, (inserted, updated): (u64, u64)) -> Self {
        let records = records as u64;
        Self {
            records,
            inserted,
            updated,
            unchanged: records.saturating_sub(inserted + updated),
        }
    }
}

/// A record and the JSON pointer of its place in the body.
type Located = (String, Map<String, Value>);

/// The records of a body: a batch `{"<kind>": [...]}` (pointers `/<kind>/3/…`), a bare
/// array (`/3/…`), or one record (`/…`); each with the pointer prefix of its fields.
fn records(body: Value, kind: &str) -> Result<Vec<Located>, Problem> {
    let (list, prefix) = match body {
        Value::Object(mut m) if m.len() == 1 && m.contains_key(kind) => match m.remove(kind) {
            Some(Value::Array(list)) => (list, format!("/{kind}/")),
            _ => {
                return Err(Problem::invalid(
                    format!("invalid {kind}"),
                    vec![FieldError {
                        at: format!("/{kind}"),
                        message: "must be a list of records".into(),
                    }],
                ))
            }
        },
        Value::Array(list) => (list, "/".to_string()),
        Value::Object(m) => return Ok(vec![(String::new(), m)]),
        _ => {
            return Err(
                Problem::new(StatusCode::BAD_REQUEST, "not a record").detail(format!(
                    "send one record as a JSON object, or a batch as {{\"{kind}\": [ … ]}}"
                )),
            )
        }
    };
    if list.len() > MAX_BATCH {
        return Err(
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "batch too large").detail(format!(
                "{} records; send at most {MAX_BATCH} per request",
                list.len()
            )),
        );
    }
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(m) => Ok((format!("{prefix}{i}"), m)),
            _ => Err(Problem::invalid(
                format!("invalid {kind}"),
                vec![FieldError {
                    at: format!("{prefix}{i}"),
                    message: "must be a JSON object".into(),
                }],
            )),
        })
        .collect()
}

/// Fields the API does not know, as errors: refused, not ignored (a misspelt `totl` would
/// otherwise store an order without its total).
fn unknown_fields(at: &str, m: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for k in m.keys().filter(|k| !known.contains(&k.as_str())) {
        let mut hint = strsim_hint(k, known);
        if hint.is_empty() && known.contains(&"attributes") {
            // A customer's own data (`skin`) has its place, which the CSV import fills from
            // any other column.
            hint = format!("; a customer's own data goes under 'attributes': {{\"attributes\": {{\"{k}\": …}}}}");
        }
        errors.push(FieldError {
            at: format!("{at}/{k}"),
            message: format!("unknown field '{k}'{hint}"),
        });
    }
}

fn strsim_hint(k: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|c| (strsim::levenshtein(k, c), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

fn item_fields(at: &str, m: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    if let Some(Value::Array(items)) = m.get("items") {
        for (i, item) in items.iter().enumerate() {
            match item {
                // The place is spelt out only for an item that has something to report.
                Value::Object(im) if im.keys().all(|k| ITEM_FIELDS.contains(&k.as_str())) => {}
                Value::Object(im) => {
                    unknown_fields(&format!("{at}/items/{i}"), im, ITEM_FIELDS, errors)
                }
                _ => {}
            }
        }
    }
}

/// Refuses the records whose customer is not stored: `owners` pairs each record's place with
/// the customer it names in `field`.
async fn unknown_customers(
    api: &Api,
    owners: Vec<(&str, &str)>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Result<(), Problem> {
    let ids: Vec<String> = owners
        .iter()
        .map(|(_, c)| c.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known = api.store.existing_customer_ids(&ids).await?;
    for (at, customer) in owners.into_iter().filter(|(_, c)| !known.contains(*c)) {
        errors.push(FieldError {
            at: format!("{at}/{field}"),
            message: format!(
                "unknown customer '{customer}'; post the customer to /v1/customers first"
            ),
        });
    }
    Ok(())
}

/// A request whose orders include ids stored for other customers (`store::Moves::Refuse`):
/// those are refused at their `customer_id`; the request's other records were stored.
fn refused_moves(
    refused: &[crate::store::MovedOrder],
    ids: &[String],
    places: &[String],
    count: usize,
) -> Problem {
    let errors = refused
        .iter()
        .map(|r| FieldError {
            at: ids
                .iter()
                .position(|id| *id == r.order)
                .map_or_else(String::new, |i| format!("{}/customer_id", places[i])),
            message: format!(
                "order '{}' is stored for customer '{}', not '{}': an order does not move to \
                 another customer; if two sources reuse order numbers, give each source's ids a \
                 prefix of its own (A-1001)",
                r.order, r.from, r.to
            ),
        })
        .collect();
    let written = count - refused.len();
    Problem::invalid("order stored for another customer", errors).detail(format!(
        "the request's other {written} order(s) were written (or were stored already); sending \
         them again changes nothing"
    ))
}

/// The good records of a body with their places, and every problem found.
type Parsed<T> = (Vec<(String, T)>, Vec<FieldError>);

/// The records of a body (see [`records`]), each checked for unknown fields and parsed by
/// `parse`; one whose `key` repeats an earlier one's is refused at `<place>/<key_field>`. The
/// good ones with their places, and every problem, in record order.
fn parse_unique<T>(
    json: Value,
    kind: &str,
    known: &[&str],
    (noun, key_field): (&str, &str),
    parse: impl Fn(&Record) -> Result<T, Invalid>,
    key: impl Fn(&T) -> &str,
) -> Result<Parsed<T>, Problem> {
    let mut errors = Vec::new();
    let mut good = Vec::new();
    let mut seen = HashSet::new();
    for (i, (at, m)) in records(json, kind)?.into_iter().enumerate() {
        unknown_fields(&at, &m, known, &mut errors);
        match parse(&record(i, m)) {
            Ok(r) if !seen.insert(key(&r).to_string()) => errors.push(FieldError {
                at: format!("{at}/{key_field}"),
                message: format!("{noun} '{}' appears twice in this request", key(&r)),
            }),
            Ok(r) => good.push((at, r)),
            Err(e) => errors.push(field_error(&at, e)),
        }
    }
    Ok((good, errors))
}

fn record(index: usize, m: Map<String, Value>) -> Record {
    Record {
        line: index as u64,
        fields: m.into_iter().collect(),
    }
}

fn field_error(at: &str, e: Invalid) -> FieldError {
    let at = if e.field.is_empty() {
        at.to_string()
    } else {
        format!("{at}/{}", e.field)
    };
    FieldError {
        at,
        message: e.message,
    }
}

#[utoipa::path(
    post, path = "/v1/customers", tag = "ingest",
    request_body(content = super::openapi::CustomersBody, description = "one record, {\"customers\": [...]}, or an array; at most 1,000"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a request sent again with the same key gets the first reply (Idempotent-Replayed: true)")),
    responses((status = 200, description = "every record committed", body = Ingested)),
    security(("bearer" = []))
)]
pub async fn post_customers(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Reply {
    idempotent(
        &api,
        &headers,
        "customers",
        Scope::Ingest,
        body,
        |api, json| async move {
            let (good, errors) = parse_unique(
                json,
                "customers",
                CUSTOMER_FIELDS,
                ("customer", "id"),
                |r| parse_customer(r, api.zone, api.clock.now()),
                |c| &c.id,
            )?;
            if !errors.is_empty() {
                return Err(Problem::invalid("invalid customer", errors));
            }
            let good: Vec<_> = good.into_iter().map(|(_, c)| c).collect();
            let counts = api
                .store
                .upsert_customers(&good, to_millis(api.clock.now()))
                .await?;
            Ok((
                StatusCode::OK,
                serde_json::to_value(Ingested::of(good.len(), counts)).unwrap_or_default(),
            ))
        },
    )
    .await
}

#[utoipa::path(
    post, path = "/v1/orders", tag = "ingest",
    request_body(content = super::openapi::OrdersBody, description = "one record, {\"orders\": [...]}, or an array; at most 1,000"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a request sent again with the same key gets the first reply (Idempotent-Replayed: true)")),
    responses((status = 200, description = "every record committed", body = Ingested)),
    security(("bearer" = []))
)]
pub async fn post_orders(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Reply {
    idempotent(
        &api,
        &headers,
        "orders",
        Scope::Ingest,
        body,
        |api, json| async move {
            let mut errors = Vec::new();
            let mut good = Vec::new();
            let mut places = Vec::new();
            let mut seen = HashSet::new();
            for (i, (at, m)) in records(json, "orders")?.into_iter().enumerate() {
                unknown_fields(&at, &m, ORDER_FIELDS, &mut errors);
                item_fields(&at, &m, &mut errors);
                match order_from_record(&record(i, m), api.zone, api.clock.now()) {
                    Ok(o) if !seen.insert(o.id.clone()) => errors.push(FieldError {
                        at: format!("{at}/order_id"),
                        message: format!("order '{}' appears twice in this request", o.id),
                    }),
                    Ok(o) => {
                        places.push(at);
                        good.push(o);
                    }
                    Err(e) => errors.push(field_error(&at, e)),
                }
            }
            let owners = places
                .iter()
                .zip(&good)
                .map(|(at, o)| (at.as_str(), o.customer_id.as_str()));
            unknown_customers(&api, owners.collect(), "customer_id", &mut errors).await?;
            if !errors.is_empty() {
                errors.sort_by(|a, b| place_key(&a.at).cmp(&place_key(&b.at)));
                return Err(Problem::invalid("invalid order", errors));
            }
            let count = good.len();
            let ids: Vec<String> = good.iter().map(|o| o.id.clone()).collect();
            let outcome = api.writer.write_orders(good).await?;
            // The tick enrolls the customers now rather than at its next interval.
            api.wake.notify_one();
            if !outcome.refused.is_empty() {
                return Err(refused_moves(&outcome.refused, &ids, &places, count));
            }
            let done = Ingested::of(count, (outcome.inserted, outcome.updated));
            Ok((
                StatusCode::OK,
                serde_json::to_value(done).unwrap_or_default(),
            ))
        },
    )
    .await
}

/// `POST /v1/products`: the catalog, one product or `{"products": [...]}`, upserted by SKU as
/// `rebuy import products` does.
#[utoipa::path(
    post, path = "/v1/products", tag = "ingest",
    request_body(content = super::openapi::ProductsBody, description = "one record, {\"products\": [...]}, or an array; at most 1,000"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a request sent again with the same key gets the first reply (Idempotent-Replayed: true)")),
    responses((status = 200, description = "every record committed", body = Ingested)),
    security(("bearer" = []))
)]
pub async fn post_products(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Reply {
    idempotent(
        &api,
        &headers,
        "products",
        Scope::Ingest,
        body,
        |api, json| async move {
            let (good, mut errors) = parse_unique(
                json,
                "products",
                PRODUCT_FIELDS,
                ("product", "sku"),
                parse_product,
                |p| &p.sku,
            )?;
            if !errors.is_empty() {
                errors.sort_by(|a, b| place_key(&a.at).cmp(&place_key(&b.at)));
                return Err(Problem::invalid("invalid product", errors));
            }
            let good: Vec<_> = good.into_iter().map(|(_, p)| p).collect();
            let counts = api
                .store
                .upsert_products(&good, to_millis(api.clock.now()))
                .await?;
            Ok((
                StatusCode::OK,
                serde_json::to_value(Ingested::of(good.len(), counts)).unwrap_or_default(),
            ))
        },
    )
    .await
}

/// `POST /v1/events`: custom events, one or `{"events": [...]}`. Each is stored once by its id
/// (or, without one, by its content); the tick is woken to start `event` scenarios.
#[utoipa::path(
    post, path = "/v1/events", tag = "ingest",
    request_body(content = super::openapi::EventsBody, description = "one record, {\"events\": [...]}, or an array; at most 1,000"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a request sent again with the same key gets the first reply (Idempotent-Replayed: true)")),
    responses((status = 200, description = "every record committed", body = Ingested)),
    security(("bearer" = []))
)]
pub async fn post_events(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Reply {
    idempotent(
        &api,
        &headers,
        "events",
        Scope::Ingest,
        body,
        |api, json| async move {
            let (good, mut errors) = parse_unique(
                json,
                "events",
                EVENT_FIELDS,
                ("event", "id"),
                |r| parse_event(r, api.zone, api.clock.now()),
                |e| &e.id,
            )?;
            let owners = good
                .iter()
                .map(|(at, e)| (at.as_str(), e.customer_id.as_str()));
            unknown_customers(&api, owners.collect(), "customer", &mut errors).await?;
            if !errors.is_empty() {
                errors.sort_by(|a, b| place_key(&a.at).cmp(&place_key(&b.at)));
                return Err(Problem::invalid("invalid event", errors));
            }
            let (places, good): (Vec<String>, Vec<_>) = good.into_iter().unzip();
            let count = good.len();
            let stored = api
                .writer
                .write_events(good, to_millis(api.clock.now()))
                .await?;
            if !stored.conflicts.is_empty() {
                let errors = stored
                    .conflicts
                    .iter()
                    .map(|(i, row)| FieldError {
                        at: format!("{}/id", places[*i]),
                        message: crate::import::conflicting_event(row, api.zone),
                    })
                    .collect();
                return Err(Problem::invalid("invalid event", errors));
            }
            api.wake.notify_one();
            let done = Ingested::of(count, (stored.inserted, 0));
            Ok((
                StatusCode::OK,
                serde_json::to_value(done).unwrap_or_default(),
            ))
        },
    )
    .await
}

/// A JSON pointer as a reader orders places: `/orders/2` before `/orders/10`.
fn place_key(at: &str) -> Vec<(u8, u64, &str)> {
    at.split('/')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (0, n, ""),
            Err(_) => (1, 0, part),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_record_a_batch_or_an_array_with_pointers_to_match() {
        let one = records(serde_json::json!({"id": "c1"}), "customers").unwrap();
        assert_eq!(one[0].0, "");
        let batch = records(
            serde_json::json!({"customers": [{"id": "a"}, {"id": "b"}]}),
            "customers",
        )
        .unwrap();
        assert_eq!(batch[1].0, "/customers/1");
        let array = records(serde_json::json!([{"id": "a"}]), "customers").unwrap();
        assert_eq!(array[0].0, "/0");
        let too_many = Value::Array(vec![serde_json::json!({}); MAX_BATCH + 1]);
        assert_eq!(
            records(too_many, "orders").unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            records(serde_json::json!(3), "orders").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn an_unknown_field_is_refused_with_a_suggestion() {
        let mut errors = Vec::new();
        let m = serde_json::json!({"order_id": "o", "totl": 5});
        unknown_fields(
            "/orders/2",
            m.as_object().unwrap(),
            ORDER_FIELDS,
            &mut errors,
        );
        assert_eq!(
            errors,
            [FieldError {
                at: "/orders/2/totl".into(),
                message: "unknown field 'totl'; did you mean 'total'?".into()
            }]
        );
        // A customer's own data, with no near miss, is shown its place.
        let mut errors = Vec::new();
        let m = serde_json::json!({"id": "c", "skin": "dry"});
        unknown_fields(
            "/customers/0",
            m.as_object().unwrap(),
            CUSTOMER_FIELDS,
            &mut errors,
        );
        assert_eq!(
            errors[0].message,
            "unknown field 'skin'; a customer's own data goes under 'attributes': {\"attributes\": {\"skin\": …}}"
        );
    }
}
