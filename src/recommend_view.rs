//! One customer's recommendations as the CLI and the API show them: the shop's purchases read
//! from the store, the catalog's filter (in stock, active) and facts (category, price,
//! upgrades) applied, each product with its name, catalog entry and reason in words.

use crate::clock::from_millis;
use crate::metrics::day_number;
use crate::recommend::model::{Facts, Kind, Reason};
use crate::recommend::{Histories, Model, Params, Pick};
use crate::store::{Product, Store};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The item fields recommendations read.
#[derive(serde::Deserialize)]
struct Item {
    sku: String,
    #[serde(default)]
    name: String,
}

/// Which products may be recommended: with a catalog, those in it, in stock and active (a
/// SKU only old orders name is learnt from, never recommended); without one, every product.
pub fn allowed_by(catalog: &[Product], h: &Histories) -> Option<Vec<bool>> {
    if catalog.is_empty() {
        return None;
    }
    let mut ok = vec![false; h.skus.len()];
    for p in catalog.iter().filter(|p| p.in_stock && p.active) {
        if let Some(i) = h.find(&p.sku) {
            ok[i as usize] = true;
        }
    }
    Some(ok)
}

/// The catalog's category, price and upgrade of each product, by product number.
fn facts_of(catalog: &[Product], h: &Histories) -> Vec<Option<Facts>> {
    let mut facts = vec![None; h.skus.len()];
    for p in catalog {
        if let Some(i) = h.find(&p.sku) {
            facts[i as usize] = Some(Facts {
                category: p.category.clone(),
                price: p.price,
                upgrade_of: p.upgrade_of.as_deref().and_then(|u| h.find(u)),
            });
        }
    }
    facts
}

/// Every purchase in the store, by day in `zone`, and each product's latest name.
pub async fn histories(
    store: &Store,
    zone: chrono_tz::Tz,
) -> anyhow::Result<(Histories, HashMap<String, String>)> {
    let mut h = Histories::default();
    let mut names = HashMap::new();
    let mut unreadable = 0u64;
    store
        .for_each_order_items(|customer, placed_at, items| {
            let day = day_number(from_millis(placed_at).with_timezone(&zone).date_naive());
            match serde_json::from_str::<Vec<Item>>(items) {
                Ok(items) => {
                    for i in items {
                        h.add(customer, &i.sku, day);
                        if !i.name.is_empty() {
                            names.insert(i.sku, i.name);
                        }
                    }
                }
                Err(_) => unreadable += 1,
            }
        })
        .await?;
    if unreadable > 0 {
        tracing::warn!(
            orders = unreadable,
            "orders whose items could not be read were left out"
        );
    }
    Ok((h.finish(), names))
}

/// Up to `n` products of `kind` for `customer` (id or e-mail), learnt from the orders up to the
/// end of `as_of`: `{customer, as_of, kind, bought, learnt_from, products: [{sku, name, score,
/// reason, because, why, product}]}`, `score` relative to the first product's.
pub async fn recommendations(
    store: &Store,
    zone: chrono_tz::Tz,
    customer: &str,
    kind: Kind,
    n: usize,
    as_of: NaiveDate,
) -> anyhow::Result<Value> {
    let c = store.find_customer(customer).await?;
    let (mut h, mut names) = histories(store, zone).await?;
    let catalog = store.products().await?;
    // Products no order names yet (a new upgrade) still get a number, so they can be offered.
    for p in &catalog {
        h.sku_id(&p.sku);
        names.insert(p.sku.clone(), p.name.clone());
    }
    let allowed = allowed_by(&catalog, &h);
    let facts = facts_of(&catalog, &h);
    let day = day_number(as_of);
    let model = Model::learn(&h, day, Params::default());
    let history: Vec<_> = h
        .of(&c.id)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|b| b.day <= day)
        .collect();
    let picks = model.recommend_kind(kind, &history, n, &facts, &|s| {
        allowed.as_ref().is_none_or(|a| a[s as usize])
    });
    // Scores relative to the first: their scale depends on how old the purchases are.
    let top = picks
        .first()
        .map_or(1.0, |p| p.score.max(f32::MIN_POSITIVE));
    let by_sku: HashMap<&str, &Product> = catalog.iter().map(|p| (p.sku.as_str(), p)).collect();
    let sku = |i: u32| h.skus[i as usize].as_str();
    let products: Vec<Value> = picks
        .iter()
        .map(|p| {
            json!({
                "sku": sku(p.sku),
                "name": names.get(sku(p.sku)).cloned().unwrap_or_default(),
                "score": p.score / top,
                "reason": p.reason,
                "because": p.because.map(sku),
                "why": why(p, &sku),
                "product": by_sku.get(sku(p.sku)),
            })
        })
        .collect();
    Ok(json!({
        "customer": c.id,
        "as_of": as_of.to_string(),
        "kind": kind,
        "bought": history.len(),
        "learnt_from": h.customers.len(),
        "products": products,
    }))
}

/// Why a product is on the list, in words.
fn why<'a>(p: &Pick, sku: &impl Fn(u32) -> &'a str) -> String {
    match (p.reason, p.because) {
        (Reason::BoughtTogether, Some(b)) => format!("bought together with {}", sku(b)),
        (Reason::BoughtNext, Some(b)) => format!("bought in the order after {}", sku(b)),
        (Reason::UpgradeOf, Some(b)) => format!("the upgrade of {}", sku(b)),
        (Reason::MovedUpFrom, Some(b)) => format!("customers moved up to it from {}", sku(b)),
        _ => "among the most bought lately".to_string(),
    }
}
