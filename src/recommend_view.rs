//! One customer's recommendations as the CLI and the API show them: the shop's purchases read
//! from the store, the catalog's filter (in stock, active) and facts (category, price,
//! upgrades) applied, each product with its name, catalog entry and reason in words.

use crate::clock::from_millis;
use crate::metrics::day_number;
use crate::recommend::model::{Catalog, Facts, Kind, Reason};
use crate::recommend::{Bought, Histories, Model, Params, Pick};
use crate::store::{Product, Store};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// The day of the sample shop (the sample context's `now`).
const SAMPLE_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2026, 1, 1) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// The item fields recommendations read, borrowed from the order's JSON where it has no
/// escapes (millions of items are read at each learning).
#[derive(serde::Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    sku: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    name: std::borrow::Cow<'a, str>,
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
    let shop = read_shop(store, zone, None).await?;
    Ok((shop.histories, shop.names))
}

/// Every purchase in the store, read once: the histories, each product's latest name, the
/// purchases on the days of `recent` (after its first, up to its last: SKUs by customer) and
/// the last order seq read.
struct Shop {
    histories: Histories,
    names: HashMap<String, String>,
    recent: HashMap<String, HashSet<String>>,
    seq: i64,
}

async fn read_shop(
    store: &Store,
    zone: chrono_tz::Tz,
    recent_days: Option<(i64, i64)>,
) -> anyhow::Result<Shop> {
    let mut h = Histories::default();
    // Each product's latest name, by product number (a lookup per item would cost a hash).
    let mut names: Vec<String> = Vec::new();
    let mut recent: HashMap<String, HashSet<String>> = HashMap::new();
    let seq = read_orders(store, zone, 0, |customer, day, items| {
        let is_recent = recent_days.is_some_and(|(after, upto)| day > after && day <= upto);
        let c = h.customer_id(customer);
        for i in items {
            let sku = h.sku_id(&i.sku);
            h.push(c, Bought { day, sku });
            let at = sku as usize;
            if names.len() <= at {
                names.resize(at + 1, String::new());
            }
            if !i.name.is_empty() && names[at] != i.name {
                names[at] = i.name.to_string();
            }
            if is_recent {
                recent
                    .entry(customer.to_string())
                    .or_default()
                    .insert(i.sku.to_string());
            }
        }
    })
    .await?;
    let names = names
        .into_iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, n)| (h.skus[i].clone(), n))
        .collect();
    Ok(Shop {
        histories: h.finish(),
        names,
        recent,
        seq,
    })
}

/// Hands each order stored after `seq` to `f` (customer, day in `zone`, items); returns the
/// last seq read.
async fn read_orders(
    store: &Store,
    zone: chrono_tz::Tz,
    seq: i64,
    mut f: impl FnMut(&str, i64, &[Item]),
) -> anyhow::Result<i64> {
    let mut unreadable = 0u64;
    let last = store
        .for_each_order_items_after(seq, |customer, placed_at, items| {
            let day = day_number(from_millis(placed_at).with_timezone(&zone).date_naive());
            match serde_json::from_str::<Vec<Item>>(items) {
                Ok(items) => f(customer, day, &items),
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
    Ok(last)
}

/// What the shop's orders and catalog taught, as of one day: the model, every customer's
/// purchases, and the catalog's filter, facts and entries. Built once (`rebuy recommend`, the
/// API, and the engine once a shop day, for templates) and asked for many lists.
#[derive(Debug)]
pub struct Learned {
    h: Histories,
    names: HashMap<String, String>,
    catalog: HashMap<String, Product>,
    allowed: Option<Vec<bool>>,
    facts: Catalog,
    model: Model,
    /// The day learnt as of (the shop's zone): purchases after its end are not learnt from.
    pub as_of: NaiveDate,
    /// The last day whose purchases take products off the lists (`as_of` or later).
    pub through: NaiveDate,
    /// Purchases after `as_of` up to the end of `through` (the last order seq read, and SKUs by
    /// customer): they take products off the lists at once; the similarities take them in at
    /// the next learning.
    since: std::sync::Mutex<(i64, HashMap<String, HashSet<String>>)>,
}

/// What customers buy next after a product, and when (`Learned::next_purchase`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NextPurchase {
    /// The SKU of the order it follows.
    pub after: String,
    /// The SKU most bought in the next order.
    pub next: String,
    /// The mean days between the two orders.
    pub days: i64,
}

/// One product of a customer's list, as shown: the catalog's entry when there is one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shown {
    pub sku: String,
    pub name: String,
    /// Relative to the first product of the list (1.00).
    pub score: f32,
    pub reason: Reason,
    pub because: Option<String>,
    pub why: String,
    pub product: Option<Product>,
}

impl Learned {
    /// Reads every order and the catalog from the store and learns as of the end of `as_of`.
    pub async fn load(
        store: &Store,
        zone: chrono_tz::Tz,
        as_of: NaiveDate,
    ) -> anyhow::Result<Self> {
        Self::load_until(store, zone, as_of, as_of).await
    }

    /// [`Learned::load`], with the purchases after `as_of` up to the end of `through` kept
    /// apart to take products off the lists: what the engine learns each shop day (as of the
    /// day before, through today), so that every list of a day comes from the same model
    /// whenever and wherever it is learnt. The learning itself runs off the async threads.
    pub async fn load_until(
        store: &Store,
        zone: chrono_tz::Tz,
        as_of: NaiveDate,
        through: NaiveDate,
    ) -> anyhow::Result<Self> {
        let catalog = store.products().await?;
        let days = (day_number(as_of), day_number(through));
        let shop = read_shop(store, zone, Some(days)).await?;
        let (histories, names) = (shop.histories, shop.names);
        let mut learned =
            tokio::task::spawn_blocking(move || Self::from_parts(histories, names, catalog, as_of))
                .await?;
        learned.through = through.max(as_of);
        *learned.lock_since() = (shop.seq, shop.recent);
        Ok(learned)
    }

    fn lock_since(&self) -> std::sync::MutexGuard<'_, (i64, HashMap<String, HashSet<String>>)> {
        self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the orders stored since it learnt, so that what a customer bought since is never
    /// recommended to them; returns how many purchases it read.
    pub async fn catch_up(&self, store: &Store, zone: chrono_tz::Tz) -> anyhow::Result<usize> {
        let from = self.lock_since().0;
        let last_day = day_number(self.through);
        let mut fresh: Vec<(String, String)> = Vec::new();
        let seq = read_orders(store, zone, from, |customer, day, items| {
            if day <= last_day {
                fresh.extend(
                    items
                        .iter()
                        .map(|i| (customer.to_string(), i.sku.to_string())),
                );
            }
        })
        .await?;
        let mut since = self.lock_since();
        // Another catch-up may have read them meanwhile; sets make it harmless.
        since.0 = since.0.max(seq);
        let read = fresh.len();
        for (customer, sku) in fresh {
            since.1.entry(customer).or_default().insert(sku);
        }
        Ok(read)
    }

    /// Learns from purchases already read (tests and benchmarks start here).
    pub fn from_parts(
        mut h: Histories,
        mut names: HashMap<String, String>,
        catalog: Vec<Product>,
        as_of: NaiveDate,
    ) -> Self {
        // Products no order names yet (a new upgrade) still get a number, so they can be offered.
        for p in &catalog {
            h.sku_id(&p.sku);
            names.insert(p.sku.clone(), p.name.clone());
        }
        let allowed = allowed_by(&catalog, &h);
        let facts = Catalog::new(facts_of(&catalog, &h));
        let model = Model::learn(&h, day_number(as_of), Params::default());
        let catalog = catalog.into_iter().map(|p| (p.sku.clone(), p)).collect();
        Self {
            h,
            names,
            catalog,
            allowed,
            facts,
            model,
            as_of,
            through: as_of,
            since: Default::default(),
        }
    }

    /// A made-up shop for `rebuy check`: the sample customer bought the sample lotion
    /// (`SKU-1`), others bought it with a serum and a cream, and a large lotion is its upgrade;
    /// so every kind of list has products with every catalog field to render.
    pub fn sample() -> Self {
        let mut h = Histories::default();
        let day = day_number(SAMPLE_DAY);
        h.add("SAMPLE", "SKU-1", day - 30);
        for (i, other) in ["SKU-2", "SKU-3", "SKU-2"].iter().enumerate() {
            let c = format!("C{i}");
            h.add(&c, "SKU-1", day - 60);
            h.add(&c, other, day - 20);
        }
        let product = |sku: &str, name: &str, category: &str, price: i64| Product {
            sku: sku.into(),
            name: name.into(),
            category: category.into(),
            price: Some(price),
            url: Some(format!("https://shop.example.jp/p/{sku}")),
            image_url: Some(format!("https://shop.example.jp/img/{sku}.jpg")),
            in_stock: true,
            active: true,
            brand: Some("rebuy".into()),
            size: Some("150ml".into()),
            upgrade_of: None,
        };
        let mut large = product("SKU-1L", "しっとり化粧水 大容量", "lotion", 6980);
        large.upgrade_of = Some("SKU-1".into());
        let catalog = vec![
            product("SKU-1", "しっとり化粧水", "lotion", 3980),
            product("SKU-2", "美容液", "serum", 5980),
            product("SKU-3", "保湿クリーム", "cream", 4580),
            large,
        ];
        Self::from_parts(h.finish(), HashMap::new(), catalog, SAMPLE_DAY)
    }

    /// For an order of `skus`: of the products customers bought in their next order after one
    /// of them, the one with the largest share (that the catalog lets through), with the SKU it
    /// follows and the mean days between the two orders (at least 1). What the
    /// `next_purchase_due` trigger times its mail by.
    pub fn next_purchase(&self, skus: &[String]) -> Option<NextPurchase> {
        let allowed = |s: u32| self.allowed.as_ref().is_none_or(|a| a[s as usize]);
        skus.iter()
            .filter_map(|sku| {
                let a = self.h.find(sku)?;
                let (b, share, days) = self.model.next_due(a, &allowed)?;
                Some((share, sku, b, days))
            })
            // The largest share; among equals, the first SKU by name, so that it is the same
            // whatever the order of the items.
            .max_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(x.1)))
            .map(|(_, sku, b, days)| NextPurchase {
                after: sku.clone(),
                next: self.h.skus[b as usize].clone(),
                days: (days.round() as i64).max(1),
            })
    }

    /// How many customers' orders it learnt from.
    pub fn customers(&self) -> usize {
        self.h.customers.len()
    }

    /// The customer's purchases up to the end of the day learnt as of.
    fn history(&self, customer: &str) -> Vec<Bought> {
        let day = day_number(self.as_of);
        self.h
            .of(customer)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|b| b.day <= day)
            .collect()
    }

    /// How many products the customer had bought by the day learnt as of.
    pub fn bought(&self, customer: &str) -> usize {
        self.history(customer).len()
    }

    /// Up to `n` products of `kind` for `customer` (the shop's id), only of `category` when
    /// given. The same customer, data and day always give the same list.
    pub fn list(&self, customer: &str, kind: Kind, n: usize, category: Option<&str>) -> Vec<Shown> {
        let history = self.history(customer);
        let in_category = |s: u32| match category {
            None => true,
            Some(c) => self.facts.fact(s).is_some_and(|f| f.category == c),
        };
        let bought_since = self
            .lock_since()
            .1
            .get(customer)
            .cloned()
            .unwrap_or_default();
        let picks = self
            .model
            .recommend_kind(kind, &history, n, &self.facts, &|s| {
                self.allowed.as_ref().is_none_or(|a| a[s as usize])
                    && in_category(s)
                    && !bought_since.contains(&self.h.skus[s as usize])
            });
        // Scores relative to the first: their scale depends on how old the purchases are.
        let top = picks
            .first()
            .map_or(1.0, |p| p.score.max(f32::MIN_POSITIVE));
        let sku = |i: u32| self.h.skus[i as usize].as_str();
        picks
            .iter()
            .map(|p| Shown {
                sku: sku(p.sku).to_string(),
                name: self.names.get(sku(p.sku)).cloned().unwrap_or_default(),
                score: p.score / top,
                reason: p.reason,
                because: p.because.map(|b| sku(b).to_string()),
                why: why(p, &sku),
                product: self.catalog.get(sku(p.sku)).cloned(),
            })
            .collect()
    }
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
    let learned = Learned::load(store, zone, as_of).await?;
    Ok(view(&learned, &c.id, kind, n))
}

/// [`recommendations`] from a model already learnt (the daemon's, shared with its mail):
/// `as_of` is the day it was learnt as of.
pub async fn recommendations_from(
    store: &Store,
    learned: &Learned,
    customer: &str,
    kind: Kind,
    n: usize,
) -> anyhow::Result<Value> {
    let c = store.find_customer(customer).await?;
    Ok(view(learned, &c.id, kind, n))
}

fn view(learned: &Learned, customer: &str, kind: Kind, n: usize) -> Value {
    json!({
        "customer": customer,
        "as_of": learned.as_of.to_string(),
        "kind": kind,
        "bought": learned.bought(customer),
        "learnt_from": learned.customers(),
        "products": learned.list(customer, kind, n, None),
    })
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
