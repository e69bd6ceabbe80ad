//! Shopify's `orders/create` and `orders/paid` webhook bodies as rebuy records: the customer
//! (id, e-mail, name, locale, marketing consent) and the order (id, time, currency, total, line
//! items with SKU, title, quantity, price and product type as category). The records then go
//! through the same validation as `rebuy import`. Money arrives as decimal strings in the
//! order's currency and becomes minor units; ids are kept as the exact integers Shopify sends.

use crate::domain::parse_major_amount;
use serde_json::{json, Map, Value};

/// Why a payload cannot become an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmappable(pub String);

/// A customer record and an order record in rebuy's import fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub customer: Map<String, Value>,
    pub order: Map<String, Value>,
}

/// A JSON id (a whole number, or a string such as a GraphQL id) as text. A number past 64 bits
/// arrives as a float ("1e+23"), which two different ids can share: refused, not rounded.
fn id_text(v: Option<&Value>) -> Result<Option<String>, Unmappable> {
    Ok(match v {
        Some(Value::Number(n)) if n.is_f64() => {
            return Err(Unmappable(format!(
                "id {n} is not a whole number rebuy can keep exactly (at most 64 bits)"
            )))
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// "Lovelace Ada" for a Japanese-speaking customer (family name first), else "Ada Lovelace".
fn full_name(customer: &Value, locale: Option<&str>) -> String {
    let (first, last) = (
        str_of(customer, "first_name"),
        str_of(customer, "last_name"),
    );
    let parts: Vec<&str> = if locale.is_some_and(|l| l.starts_with("ja")) {
        [last, first].into_iter().flatten().collect()
    } else {
        [first, last].into_iter().flatten().collect()
    };
    parts.join(" ")
}

fn money(raw: Option<&Value>, currency: &str, what: &str) -> Result<Option<i64>, Unmappable> {
    let text = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(Unmappable(format!("{what} is not an amount: {other}"))),
    };
    parse_major_amount(trim_zero_decimals(&text, currency), currency)
        .map(Some)
        .map_err(|e| Unmappable(format!("{what}: {e}")))
}

/// Shopify writes every amount with two decimals, yen included ("1990.00"): zeros past the
/// currency's own decimals are dropped; anything else there is left for the parser to refuse.
fn trim_zero_decimals<'a>(text: &'a str, currency: &str) -> &'a str {
    let digits = crate::domain::minor_digits(currency) as usize;
    let Some((whole, frac)) = text.split_once('.') else {
        return text;
    };
    // `get`: the cut must fall between characters (the fuzzer sent "1.0é").
    if frac
        .get(digits..)
        .is_some_and(|tail| !tail.is_empty() && tail.chars().all(|c| c == '0'))
    {
        let keep = whole.len() + if digits == 0 { 0 } else { 1 + digits };
        &text[..keep]
    } else {
        text
    }
}

fn item(v: &Value, i: usize, currency: &str) -> Result<Value, Unmappable> {
    // A line item without a SKU (a custom item, a product without one) is known by its
    // variant, else its product, else its place.
    let sku = match str_of(v, "sku") {
        Some(sku) => sku.to_string(),
        None => id_text(v.get("variant_id"))?
            .map(|id| format!("shopify-variant-{id}"))
            .or(id_text(v.get("product_id"))?.map(|id| format!("shopify-product-{id}")))
            .unwrap_or_else(|| format!("shopify-line-{i}")),
    };
    let price = money(v.get("price"), currency, &format!("line_items[{i}].price"))?
        .ok_or_else(|| Unmappable(format!("line_items[{i}] has no price")))?;
    let mut out = json!({
        "sku": sku,
        "quantity": v.get("quantity").cloned().unwrap_or(json!(1)),
        "unit_price": price,
    });
    if let Some(name) = str_of(v, "title").or_else(|| str_of(v, "name")) {
        out["name"] = json!(name);
    }
    if let Some(t) = str_of(v, "product_type") {
        out["category"] = json!(t);
    }
    Ok(out)
}

/// Maps one `orders/*` payload. The buyer's marketing consent is taken only when `consent`
/// (from `orders/create`): an `orders/updated` for an old order, arriving late, must not bring
/// back a consent the customer has withdrawn since.
pub fn map_order(payload: &Value, consent: bool) -> Result<Mapped, Unmappable> {
    let order_id = id_text(payload.get("id"))?
        .ok_or_else(|| Unmappable("the payload has no order id".into()))?;
    let currency = str_of(payload, "currency")
        .ok_or_else(|| Unmappable(format!("order {order_id} has no currency")))?
        .to_ascii_uppercase();
    let customer = payload.get("customer").filter(|c| c.is_object());
    let email = customer
        .and_then(|c| str_of(c, "email"))
        .or_else(|| str_of(payload, "email"))
        .or_else(|| str_of(payload, "contact_email"))
        .ok_or_else(|| Unmappable(format!("order {order_id} has no customer e-mail address")))?;
    // A guest checkout has no customer object: the address is the customer.
    let customer_id = match customer {
        Some(c) => id_text(c.get("id"))?,
        None => None,
    }
    .unwrap_or_else(|| email.to_ascii_lowercase());
    let locale = str_of(payload, "customer_locale");
    let placed_at = str_of(payload, "created_at")
        .or_else(|| str_of(payload, "processed_at"))
        .ok_or_else(|| Unmappable(format!("order {order_id} has no created_at")))?;

    let mut c = Map::new();
    c.insert("id".into(), json!(customer_id));
    c.insert("email".into(), json!(email));
    if let Some(name) = customer
        .map(|c| full_name(c, locale))
        .filter(|n| !n.is_empty())
    {
        c.insert("name".into(), json!(name));
    }
    if let Some(l) = locale {
        c.insert("locale".into(), json!(l));
    }
    let accepts = payload
        .get("buyer_accepts_marketing")
        .and_then(Value::as_bool)
        .filter(|_| consent);
    if let Some(accepts) = accepts {
        c.insert("marketing_consent".into(), json!(accepts));
        c.insert("consent_at".into(), json!(placed_at));
    }

    let items = payload
        .get("line_items")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, v)| item(v, i, &currency))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut o = Map::new();
    o.insert("order_id".into(), json!(order_id));
    o.insert("customer_id".into(), json!(customer_id));
    o.insert("placed_at".into(), json!(placed_at));
    o.insert("currency".into(), json!(currency));
    if let Some(total) = money(payload.get("total_price"), &currency, "total_price")? {
        o.insert("total".into(), json!(total));
    }
    o.insert("items".into(), Value::Array(items));
    Ok(Mapped {
        customer: c,
        order: o,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_amount_with_a_character_beyond_ascii_after_its_decimals_is_refused_not_a_panic() {
        // Found by the import fuzzer (fuzz/regressions/import/shopify-price-not-ascii.jsonl).
        for (text, currency) in [("1.0é", "USD"), ("14.2é0", "EUR"), ("1990.é0", "JPY")] {
            assert!(
                money(Some(&json!(text)), currency, "price").is_err(),
                "{text}"
            );
        }
        assert_eq!(
            money(Some(&json!("1990.00")), "JPY", "price").unwrap(),
            Some(1990)
        );
    }

    use super::*;

    #[test]
    fn a_guest_order_in_yen_is_mapped_with_its_address_as_the_customer() {
        let payload = json!({
            "id": 820982911946154508u64,
            "email": "Jon@Example.com",
            "created_at": "2026-11-01T10:00:00+09:00",
            "currency": "jpy",
            "total_price": "3980.00",
            "buyer_accepts_marketing": false,
            "customer_locale": "ja",
            "line_items": [{"sku": null, "variant_id": 42, "title": "化粧水", "quantity": 2, "price": "1990.00"}]
        });
        let m = map_order(&payload, true).unwrap();
        assert_eq!(m.customer["id"], "jon@example.com");
        assert_eq!(m.customer["marketing_consent"], false);
        assert_eq!(
            m.order["order_id"], "820982911946154508",
            "exact, not through f64"
        );
        assert_eq!(m.order["currency"], "JPY");
        assert_eq!(m.order["total"], 3980);
        assert_eq!(m.order["items"][0]["sku"], "shopify-variant-42");
        assert_eq!(m.order["items"][0]["unit_price"], 1990);
    }

    #[test]
    fn a_japanese_name_puts_the_family_name_first() {
        let c = json!({"first_name": "彩", "last_name": "佐藤"});
        assert_eq!(full_name(&c, Some("ja-JP")), "佐藤 彩");
        assert_eq!(full_name(&c, Some("en")), "彩 佐藤");
    }

    #[test]
    fn a_payload_without_an_address_or_with_a_bad_amount_says_why() {
        let e = map_order(
            &json!({"id": 1, "currency": "USD", "created_at": "2026-11-01T00:00:00Z"}),
            true,
        );
        assert!(e.unwrap_err().0.contains("no customer e-mail"));
        let e = map_order(
            &json!({"id": 1, "currency": "USD", "email": "a@b.c",
            "created_at": "2026-11-01T00:00:00Z", "total_price": "1.234"}),
            true,
        );
        assert!(e.unwrap_err().0.contains("more decimals"));
        let yen = json!({"id": 1, "currency": "JPY", "email": "a@b.c",
            "created_at": "2026-11-01T00:00:00Z", "total_price": "1990.50"});
        assert!(map_order(&yen, true)
            .unwrap_err()
            .0
            .contains("more decimals"));
        // Past 64 bits an id would be a float that two orders can share.
        let huge: Value = serde_json::from_str(
            r#"{"id": 99999999999999999999999, "currency": "JPY", "email": "a@b.c",
            "created_at": "2026-11-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert!(map_order(&huge, true)
            .unwrap_err()
            .0
            .contains("not a whole number"));
    }

    #[test]
    fn consent_is_taken_from_orders_create_only() {
        let payload = json!({"id": 1, "currency": "USD", "email": "a@b.c",
            "created_at": "2026-11-01T00:00:00Z", "buyer_accepts_marketing": true});
        assert_eq!(
            map_order(&payload, true).unwrap().customer["marketing_consent"],
            true
        );
        assert!(!map_order(&payload, false)
            .unwrap()
            .customer
            .contains_key("marketing_consent"));
    }
}
