//! Product records (the catalog): sku, name, category, price in minor units, url, image_url,
//! in_stock, active, and optionally brand, size and upgrade_of (the SKU this one is the bigger
//! or better version of). Upserted by SKU.

use super::{id_text, text, yes_no, ImportOptions, ImportReport, Invalid, Record};
use crate::clock::to_millis;
use crate::store::{Product, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::path::Path;

/// The fields of a product record; over the API any other is refused.
pub const PRODUCT_FIELDS: &[&str] = &[
    "sku",
    "name",
    "category",
    "price",
    "url",
    "image_url",
    "in_stock",
    "active",
    "brand",
    "size",
    "upgrade_of",
];

/// Validates one record into a product, or says what is wrong with it.
pub fn parse_product(r: &Record) -> Result<Product, Invalid> {
    let f = &r.fields;
    super::scalars_only(|k| f.get(k), PRODUCT_FIELDS, "")?;
    let sku = id_text(f, "sku")?.ok_or_else(|| Invalid::missing("sku"))?;
    let price = text(f, "price")
        .map(|p| super::orders::minor(&p, "price"))
        .transpose()
        .map_err(|e| Invalid::at("price", e))?;
    if price.is_some_and(|p| p < 0) {
        return Err(Invalid::at("price", "'price' must not be negative"));
    }
    let link = |key: &str| -> Result<Option<String>, Invalid> {
        match text(f, key) {
            Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => Err(
                Invalid::at(key, format!("'{key}' must be an http(s) URL, found '{u}'")),
            ),
            other => Ok(other),
        }
    };
    let upgrade_of = id_text(f, "upgrade_of")?;
    if upgrade_of.as_deref() == Some(sku.as_str()) {
        return Err(Invalid::at(
            "upgrade_of",
            "a product cannot be an upgrade of itself",
        ));
    }
    Ok(Product {
        name: text(f, "name").unwrap_or_else(|| sku.clone()),
        category: text(f, "category").unwrap_or_default(),
        price,
        url: link("url")?,
        image_url: link("image_url")?,
        in_stock: yes_no(f, "in_stock")?.unwrap_or(true),
        active: yes_no(f, "active")?.unwrap_or(true),
        brand: text(f, "brand"),
        size: text(f, "size"),
        upgrade_of,
        sku,
    })
}

pub(super) async fn run(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    let (mut reader, mut report) = super::open(path, opts, &[&["sku"]], &[PRODUCT_FIELDS])?;
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    while let Some(chunk) = reader.next_chunk()? {
        let good = super::unique_records(
            &chunk,
            &mut seen,
            &mut report,
            "product",
            parse_product,
            |p| &p.sku,
        );
        let counts = store.upsert_products(&good, to_millis(now)).await?;
        report.add(good.len(), counts);
    }
    report.finish(reader.unreadable);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: serde_json::Value) -> Record {
        Record {
            line: 2,
            fields: fields.as_object().unwrap().clone().into_iter().collect(),
        }
    }

    #[test]
    fn a_product_is_read_with_defaults_and_every_problem_is_named() {
        let p = parse_product(&record(serde_json::json!({
            "sku": "LOTION-L", "name": "化粧水 L", "price": "3980", "in_stock": "no",
            "url": "https://shop.example/lotion-l", "upgrade_of": "LOTION"
        })))
        .unwrap();
        assert_eq!((p.price, p.in_stock, p.active), (Some(3980), false, true));
        assert_eq!(p.upgrade_of.as_deref(), Some("LOTION"));
        for (fields, says) in [
            (serde_json::json!({"name": "x"}), "sku"),
            (
                serde_json::json!({"sku": "A", "price": "39.80"}),
                "minor units",
            ),
            (serde_json::json!({"sku": "A", "price": "-5"}), "negative"),
            (
                serde_json::json!({"sku": "A", "active": "maybe"}),
                "'active' must be true or false",
            ),
            (
                serde_json::json!({"sku": "A", "url": "shop.example/a"}),
                "http(s) URL",
            ),
            (
                serde_json::json!({"sku": "A", "upgrade_of": "A"}),
                "upgrade of itself",
            ),
        ] {
            let e = parse_product(&record(fields.clone())).unwrap_err();
            assert!(e.message.contains(says), "{fields}: {}", e.message);
        }
    }
}
