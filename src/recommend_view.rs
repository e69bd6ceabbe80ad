//! One customer's recommendations as the CLI and the API show them: the shop's purchases read
//! from the store, the catalog's filter (in stock, active) and facts (category, price,
//! upgrades) applied, each product with its name, catalog entry and reason in words.

use crate::clock::from_millis;
use crate::metrics::day_number;
use crate::recommend::model::{Catalog, Facts, Kind, Reason};
use crate::recommend::sums::Sums;
use crate::recommend::{Bought, Histories, Model, Params, Pick};
use crate::store::{Product, Store};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::HashMap;

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
pub fn facts_of(catalog: &[Product], h: &Histories) -> Vec<Option<Facts>> {
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
    let shop = read_shop(store, zone).await?;
    Ok((shop.histories, shop.names))
}

/// Every purchase in the store, read once: the histories, each product's latest name and the
/// last order seq read.
struct Shop {
    histories: Histories,
    names: HashMap<String, String>,
    seq: i64,
}

async fn read_shop(store: &Store, zone: chrono_tz::Tz) -> anyhow::Result<Shop> {
    let mut h = Histories::default();
    // Each product's latest name, by product number (a lookup per item would cost a hash).
    let mut names: Vec<String> = Vec::new();
    let seq = read_orders(store, zone, 0, |customer, day, items| {
        let c = h.customer_id(customer);
        for i in items {
            let sku = h.sku_id(&i.sku);
            h.push(c, Bought::new(sku, day));
            let at = sku as usize;
            if names.len() <= at {
                names.resize(at + 1, String::new());
            }
            if !i.name.is_empty() && names[at] != i.name {
                names[at] = i.name.to_string();
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

/// What the shop's orders and catalog taught, as of one day: the model and the sums it came
/// from, every customer's purchases, and the catalog's filter, facts and entries. Built once
/// (`rebuy recommend`, the API, and the engine at its first tick) and asked for many lists;
/// the engine then brings it to each new day with the orders stored since
/// ([`Learned::advance`]), and between two days takes what customers bought off their lists
/// ([`Learned::catch_up`]).
#[derive(Debug)]
pub struct Learned {
    state: std::sync::RwLock<State>,
}

#[derive(Debug)]
struct State {
    h: Histories,
    names: HashMap<String, String>,
    catalog: HashMap<String, Product>,
    allowed: Option<Vec<bool>>,
    facts: Catalog,
    sums: Sums,
    model: Model,
    /// The day learnt as of (the shop's zone): purchases after its end are not learnt from.
    as_of: NaiveDate,
    /// The last day whose purchases take products off the lists (`as_of` or later): those
    /// after `as_of` are in `h`, and the similarities take them in at the next day.
    through: NaiveDate,
    /// The last order seq read into `h`.
    seq: i64,
    /// The day (number) the sums hold every customer's part as of: `as_of`, or the next day's
    /// while the model of that day is being worked out.
    sums_day: i64,
    /// The store's count of orders changed in place when it was read (`Store::orders_edited`):
    /// a change since is not in `h`, so the next day learns afresh.
    edited: i64,
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
    /// For a consumable due again: how many of its buyers buy it again, and how often.
    pub again: Option<Again>,
    pub product: Option<Product>,
}

/// A consumable's repeat purchases: the share of its buyers who buy it again (0 to 1), and the
/// mean days between two purchases.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Again {
    pub share: f32,
    pub days: f32,
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

    /// [`Learned::load`], with the purchases after `as_of` up to the end of `through` taking
    /// products off the lists: what the engine learns at its first tick (as of the day before,
    /// through today), so that every list of a day comes from the same model whenever and
    /// wherever it is learnt. The learning itself runs off the async threads.
    pub async fn load_until(
        store: &Store,
        zone: chrono_tz::Tz,
        as_of: NaiveDate,
        through: NaiveDate,
    ) -> anyhow::Result<Self> {
        let catalog = store.products().await?;
        let edited = store.orders_edited().await?;
        let shop = read_shop(store, zone).await?;
        let (histories, names) = (shop.histories, shop.names);
        let learned =
            tokio::task::spawn_blocking(move || Self::from_parts(histories, names, catalog, as_of))
                .await?;
        {
            let mut state = learned.write();
            state.through = through.max(as_of);
            state.seq = shop.seq;
            state.edited = edited;
        }
        Ok(learned)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The day learnt as of.
    pub fn as_of(&self) -> NaiveDate {
        self.read().as_of
    }

    /// The last day whose purchases take products off the lists.
    pub fn through(&self) -> NaiveDate {
        self.read().through
    }

    /// Reads the orders stored since it last read, so that what a customer bought since is
    /// never recommended to them; returns how many purchases it read. The lists' similarities
    /// stay those of the day learnt as of (a preview and the mail of a day agree); a back-dated
    /// order goes into the sums at once, the model takes it in at the next day.
    pub async fn catch_up(&self, store: &Store, zone: chrono_tz::Tz) -> anyhow::Result<usize> {
        let seq = self.read().seq;
        let fresh = read_since(store, zone, seq).await?;
        let mut state = self.write();
        let state = &mut *state;
        // Another catch-up may have read them meanwhile.
        if fresh.seq <= state.seq {
            return Ok(0);
        }
        let day = state.sums_day;
        state.absorb(&fresh, day);
        Ok(fresh.purchases.len())
    }

    /// Brings what was learnt to `as_of` (through `through`) with the orders stored since it
    /// last read and the catalog as it is now: only the customers with new purchases, or with
    /// purchases after the day it was learnt as of, have their part of the sums replaced; the
    /// model is then worked out from the sums. The same as learning afresh, to the bit
    /// (`recommend::sums`). Returns false, changing nothing, when it cannot: a day before the
    /// one learnt as of, or in a later period of the sums; then learn afresh.
    pub async fn advance(
        self: &std::sync::Arc<Self>,
        store: &Store,
        zone: chrono_tz::Tz,
        as_of: NaiveDate,
        through: NaiveDate,
    ) -> anyhow::Result<bool> {
        let (from, seq, covered, edited) = {
            let state = self.read();
            let covered = state.sums.covers(day_number(as_of));
            (state.as_of, state.seq, covered, state.edited)
        };
        if as_of < from || !covered || store.orders_edited().await? != edited {
            return Ok(false);
        }
        let catalog = store.products().await?;
        let fresh = read_since(store, zone, seq).await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            {
                let mut state = me.write();
                let state = &mut *state;
                if state.as_of != from {
                    // Another advance went first.
                    return;
                }
                state.absorb(&fresh, day_number(as_of));
                state.set_catalog(catalog);
            }
            // The model is worked out under a read lock: lists are still given meanwhile,
            // from the model of the day before.
            let model = Model::from_sums(&me.read().sums, day_number(as_of));
            let mut state = me.write();
            if state.as_of == from {
                state.model = model;
                state.as_of = as_of;
                state.through = through.max(as_of);
            }
        })
        .await?;
        Ok(true)
    }

    /// Learns from purchases already read (tests and benchmarks start here).
    pub fn from_parts(
        h: Histories,
        names: HashMap<String, String>,
        catalog: Vec<Product>,
        as_of: NaiveDate,
    ) -> Self {
        let mut state = State {
            h,
            names,
            catalog: HashMap::new(),
            allowed: None,
            facts: Catalog::default(),
            sums: Sums::learn(&Histories::default(), 0, Params::default()),
            model: Model::learn(&Histories::default(), 0, Params::default()),
            as_of,
            through: as_of,
            seq: 0,
            edited: 0,
            sums_day: day_number(as_of),
        };
        state.set_catalog(catalog);
        state.sums = Sums::learn(&state.h, day_number(as_of), Params::default());
        state.model = Model::from_sums(&state.sums, day_number(as_of));
        Self {
            state: std::sync::RwLock::new(state),
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
        self.read().next_purchase(skus)
    }

    /// How many customers' orders it learnt from.
    pub fn customers(&self) -> usize {
        self.read().h.customers.len()
    }

    /// How many products the customer had bought by the day learnt as of.
    pub fn bought(&self, customer: &str) -> usize {
        self.read().history(customer).len()
    }

    /// Up to `n` products of `kind` for `customer` (the shop's id), only of `category` when
    /// given. The same customer, data and day always give the same list.
    pub fn list(&self, customer: &str, kind: Kind, n: usize, category: Option<&str>) -> Vec<Shown> {
        self.read().list(customer, kind, n, category)
    }
}

/// Orders read since a seq: their purchases (customer, SKU, day), the products' names, and the
/// last seq read.
struct Fresh {
    purchases: Vec<(String, String, i64)>,
    names: Vec<(String, String)>,
    seq: i64,
}

async fn read_since(store: &Store, zone: chrono_tz::Tz, seq: i64) -> anyhow::Result<Fresh> {
    let (mut purchases, mut names) = (Vec::new(), Vec::new());
    let seq = read_orders(store, zone, seq, |customer, day, items| {
        for i in items {
            purchases.push((customer.to_string(), i.sku.to_string(), day));
            if !i.name.is_empty() {
                names.push((i.sku.to_string(), i.name.to_string()));
            }
        }
    })
    .await?;
    Ok(Fresh {
        purchases,
        names,
        seq,
    })
}

impl State {
    /// Takes in orders read since `seq`, the sums moving on to the day `to`.
    fn absorb(&mut self, fresh: &Fresh, to: i64) {
        let as_of = self.sums_day;
        let new = fresh
            .purchases
            .iter()
            .map(|(c, s, d)| (c.as_str(), s.as_str(), *d));
        self.h.update(&mut self.sums, as_of, to, new);
        self.sums_day = to;
        for (sku, name) in &fresh.names {
            if self.names.get(sku) != Some(name) && !self.catalog.contains_key(sku) {
                self.names.insert(sku.clone(), name.clone());
            }
        }
        self.seq = self.seq.max(fresh.seq);
    }

    /// The catalog's entries, filter and facts; its products get numbers (a new upgrade no
    /// order names yet can be offered) and names.
    fn set_catalog(&mut self, catalog: Vec<Product>) {
        for p in &catalog {
            self.h.sku_id(&p.sku);
            self.names.insert(p.sku.clone(), p.name.clone());
        }
        self.sums.grow(self.h.skus.len());
        self.allowed = allowed_by(&catalog, &self.h);
        self.facts = Catalog::new(facts_of(&catalog, &self.h));
        self.catalog = catalog.into_iter().map(|p| (p.sku.clone(), p)).collect();
    }

    fn next_purchase(&self, skus: &[String]) -> Option<NextPurchase> {
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

    /// The customer's purchases up to the end of the day learnt as of.
    fn history(&self, customer: &str) -> &[Bought] {
        let bought = self.h.of(customer).unwrap_or_default();
        &bought[..bought.partition_point(|b| b.day() <= day_number(self.as_of))]
    }

    /// A consumable's repeat figures, when it is on the list for being due again.
    fn again(&self, p: &Pick) -> Option<Again> {
        match (p.reason, self.model.consumable(p.sku)) {
            (Reason::DueAgain, Some((share, days))) => Some(Again { share, days }),
            _ => None,
        }
    }

    fn list(&self, customer: &str, kind: Kind, n: usize, category: Option<&str>) -> Vec<Shown> {
        let history = self.history(customer);
        let in_category = |s: u32| match category {
            None => true,
            Some(c) => self.facts.fact(s).is_some_and(|f| f.category == c),
        };
        // Bought after the day learnt as of, up to `through`: off the list too.
        let bought = self.h.of(customer).unwrap_or_default();
        let since =
            &bought[history.len()..bought.partition_point(|b| b.day() <= day_number(self.through))];
        let ok = |s: u32| {
            self.allowed.as_ref().is_none_or(|a| a[s as usize])
                && in_category(s)
                && !since.iter().any(|b| b.sku == s)
        };
        let mut picks = self
            .model
            .recommend_kind(kind, history, n, &self.facts, &ok);
        if kind == Kind::Next {
            // A consumable they bought, due again today, comes back on the list.
            let today = day_number(self.through);
            picks = self.model.with_due_again(picks, history, today, n, &ok);
        }
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
                why: match self.again(p) {
                    Some(a) => format!(
                        "due again: {:.0}% of its buyers buy it again, about every {:.0} days",
                        a.share * 100.0,
                        a.days
                    ),
                    None => why(p, &sku),
                },
                again: self.again(p),
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
        "as_of": learned.as_of().to_string(),
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
