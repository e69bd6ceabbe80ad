//! The model: item-to-item similarity from co-purchases (cosine over recency-weighted buyer
//! counts, customers with many products counting less, shrunk towards zero for pairs few
//! customers share), what customers buy in their next order after each product, and
//! popularity; and the list it gives one customer, each product with the reason it is there.

use super::sums::{Row, Sums};
use super::{Bought, Histories};
use rustc_hash::FxHashMap as HashMap;

/// How the model learns. [`Params::default`] is rebuy's; [`Params::plain`] is plain cosine
/// co-occurrence (every purchase counts the same, no next-order signal), the baseline the
/// offline evaluation compares with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// A purchase this many days old counts half as much as one today; None: all count the same.
    pub half_life_days: Option<f64>,
    /// A customer's products beyond their most recent this many are left out of the pairs (a
    /// wholesaler's 2,000 products would otherwise make four million pairs and say little).
    pub max_items: usize,
    /// Whether a customer's pairs count 1 / ln(2 + products): someone who bought everything
    /// says less about which two things go together.
    pub damp_heavy_buyers: bool,
    /// Added to the denominator of the cosine: a pair shared by two customers is not a
    /// certainty.
    pub shrink: f64,
    /// How much "bought in the next order" adds to "bought together".
    pub next_weight: f32,
    /// Similar products kept per product.
    pub neighbours: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            half_life_days: Some(180.0),
            max_items: 50,
            damp_heavy_buyers: true,
            shrink: 2.0,
            next_weight: 0.0,
            neighbours: 100,
        }
    }
}

impl Params {
    /// Plain item-to-item cosine over co-purchase counts.
    pub fn plain() -> Self {
        Self {
            half_life_days: None,
            max_items: usize::MAX,
            damp_heavy_buyers: false,
            shrink: 0.0,
            next_weight: 0.0,
            neighbours: 100,
        }
    }
}

/// Why a product is on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Customers who bought `because` also bought it.
    BoughtTogether,
    /// Customers who bought `because` bought it in their next order.
    BoughtNext,
    /// Among the most bought lately (no history to go on, or not enough).
    Popular,
    /// The catalog says it is the bigger or better version of `because`.
    UpgradeOf,
    /// Customers who bought `because` moved up to it: same category, higher price, next order.
    MovedUpFrom,
    /// A consumable the customer bought whose typical interval is nearly up: many of its
    /// buyers buy it again (`because` is the product itself).
    DueAgain,
}

/// A product is a consumable when at least this share of its buyers bought it again...
const CONSUMABLE_SHARE: f32 = 0.2;
/// ...over at least this many (recency-weighted) repeat purchases.
const CONSUMABLE_REPEATS: f64 = 2.0;
/// A consumable is due again once this share of its typical interval has passed.
const DUE_AFTER: f32 = 0.9;

/// What the catalog says of one product, for upsell lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facts {
    pub category: String,
    pub price: Option<i64>,
    /// The product this one is the bigger or better version of.
    pub upgrade_of: Option<u32>,
}

/// The catalog's facts by product number, and each product's upgrades (the products whose
/// `upgrade_of` it is), gathered once.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub facts: Vec<Option<Facts>>,
    upgrades: HashMap<u32, Vec<u32>>,
}

impl Catalog {
    pub fn new(facts: Vec<Option<Facts>>) -> Self {
        let mut upgrades: HashMap<u32, Vec<u32>> = HashMap::default();
        for (b, f) in facts.iter().enumerate() {
            if let Some(a) = f.as_ref().and_then(|f| f.upgrade_of) {
                upgrades.entry(a).or_default().push(b as u32);
            }
        }
        Self { facts, upgrades }
    }

    pub fn fact(&self, sku: u32) -> Option<&Facts> {
        self.facts.get(sku as usize).and_then(Option::as_ref)
    }

    fn upgrades(&self, sku: u32) -> &[u32] {
        self.upgrades.get(&sku).map_or(&[], Vec::as_slice)
    }
}

/// Which list: products that go with what they bought, what customers buy next, or the
/// bigger or better version of what they bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    CrossSell,
    Next,
    Upsell,
}

/// One recommended product: its score, the product of the customer's history that contributed
/// most (None for popularity), and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub sku: u32,
    pub score: f32,
    pub because: Option<u32>,
    pub reason: Reason,
}

/// What was learned from a set of histories as of one day.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub as_of: i64,
    pub params: Params,
    /// Per product, its most similar products, best first.
    neighbours: Vec<Vec<(u32, f32)>>,
    /// Per product, what customers bought in their next order after it (share of those who
    /// ordered again), best first.
    next: Vec<Vec<(u32, f32)>>,
    /// Per product, beside `next`: the mean days from its order to that next order.
    next_days: Vec<Vec<f32>>,
    /// Products by (recency-weighted) buyers, best first.
    popular: Vec<(u32, f32)>,
    /// Per consumable: the share of its buyers who bought it again, and the mean days between
    /// two purchases of it.
    again: Vec<Option<(f32, f32)>>,
}

impl Model {
    /// Learns from `h` as of `as_of` (a day number): purchases after it are ignored.
    pub fn learn(h: &Histories, as_of: i64, params: Params) -> Model {
        Self::from_sums(&Sums::learn(h, as_of, params), as_of)
    }

    /// The model as of `as_of` from sums that cover it ([`Sums::covers`]): similarities are
    /// cosines over the buyers (shrunk by `params.shrink`), what comes next the share of those
    /// who ordered again, both with weights as of `as_of`.
    pub fn from_sums(sums: &Sums, as_of: i64) -> Model {
        let params = sums.params;
        let scale = sums.scale(as_of);
        let buyers: Vec<f64> = sums.buyers.iter().map(|&b| b as f64 * scale).collect();
        let neighbours = similarities(sums, &buyers, scale);
        let mut next = Vec::with_capacity(buyers.len());
        let mut next_days = Vec::with_capacity(buyers.len());
        for (a, row) in sums.next.iter().enumerate() {
            let total = (sums.reordered[a] as f64 * scale).max(1e-9);
            let mut v: Vec<(u32, f32, f32)> = row
                .iter()
                .map(|(b, [w, days])| {
                    let share = (w as f64 * scale / (total + params.shrink)) as f32;
                    (b, share, (days as f64 / (w as f64).max(1.0)) as f32)
                })
                .filter(|x| x.1 > 0.0)
                .collect();
            v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            v.truncate(params.neighbours);
            next.push(v.iter().map(|&(b, s, _)| (b, s)).collect());
            next_days.push(v.iter().map(|&(_, _, d)| d).collect());
        }
        let popular = best(
            buyers
                .iter()
                .enumerate()
                .map(|(i, &w)| (i as u32, w as f32)),
            usize::MAX,
        );
        let again = sums
            .again
            .iter()
            .zip(&sums.buyers)
            .map(|(&[repeaters, gaps, days], &bought)| {
                let share = (repeaters as f64 / (bought as f64).max(1.0)).min(1.0) as f32;
                let consumable =
                    share >= CONSUMABLE_SHARE && gaps as f64 * scale >= CONSUMABLE_REPEATS;
                consumable.then(|| (share, (days as f64 / gaps as f64) as f32))
            })
            .collect();
        Model {
            as_of,
            params,
            neighbours,
            next,
            next_days,
            popular,
            again,
        }
    }

    /// Whether `sku` is a consumable: the share of its buyers who bought it again and the mean
    /// days between two purchases.
    pub fn consumable(&self, sku: u32) -> Option<(f32, f32)> {
        self.again.get(sku as usize).copied().flatten()
    }

    /// The consumables of `history` whose typical interval is (nearly) up on `today`, as picks
    /// scored by the share of buyers who buy them again (comparable with the `next` list's
    /// shares), those `allowed` lets through.
    pub fn due_again(
        &self,
        history: &[Bought],
        today: i64,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<Pick> {
        latest_per_product(history, usize::MAX)
            .into_iter()
            .filter_map(|(sku, last)| {
                let (share, days) = self.consumable(sku)?;
                let due = (today - last) as f32 >= DUE_AFTER * days;
                (due && allowed(sku)).then_some(Pick {
                    sku,
                    score: share,
                    because: Some(sku),
                    reason: Reason::DueAgain,
                })
            })
            .collect()
    }

    /// `picks` with the consumables due again among them, best first, up to `n`.
    pub fn with_due_again(
        &self,
        picks: Vec<Pick>,
        history: &[Bought],
        today: i64,
        n: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<Pick> {
        let mut all = self.due_again(history, today, allowed);
        all.extend(
            picks
                .into_iter()
                .filter(|p| !history.iter().any(|b| b.sku == p.sku)),
        );
        top(all, n)
    }

    /// What most customers bought in their next order after `sku`, of what `allowed` lets
    /// through: the product, its share of those who ordered again, and the mean days between
    /// the two orders.
    pub fn next_due(&self, sku: u32, allowed: &dyn Fn(u32) -> bool) -> Option<(u32, f32, f32)> {
        let days = self.next_days.get(sku as usize)?;
        self.next_after(sku)
            .iter()
            .zip(days)
            .find(|((b, _), _)| *b != sku && allowed(*b))
            .map(|(&(b, s), &d)| (b, s, d))
    }

    /// What customers bought in their next order after `sku`, best first.
    pub fn next_after(&self, sku: u32) -> &[(u32, f32)] {
        self.next.get(sku as usize).map_or(&[], Vec::as_slice)
    }

    /// Up to `n` products of `kind` for a customer with purchases `history`: cross-sell is
    /// [`Model::recommend`]; next ranks what customers bought in the order after theirs;
    /// upsell offers the catalog's upgrades of what they bought (`catalog`, by product number),
    /// then products of the same category at a higher price that customers moved up to. Never
    /// something they bought, never what `allowed` refuses; upsell and next are not filled up
    /// with popular products (a popular product is no upgrade).
    pub fn recommend_kind(
        &self,
        kind: Kind,
        history: &[Bought],
        n: usize,
        catalog: &Catalog,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<Pick> {
        if kind == Kind::CrossSell {
            return self.recommend(history, n, allowed);
        }
        let items = latest_per_product(history, self.params.max_items);
        let owned = owned(history);
        let mut best: HashMap<u32, Pick> = HashMap::default();
        let mut offer = |sku: u32, score: f32, from: u32, reason: Reason| {
            if owned.binary_search(&sku).is_ok() || !allowed(sku) {
                return;
            }
            let e = best.entry(sku).or_insert(Pick {
                sku,
                score: 0.0,
                because: Some(from),
                reason,
            });
            if score > e.score {
                *e = Pick {
                    sku,
                    score,
                    because: Some(from),
                    reason,
                };
            }
        };
        let fact = |s: u32| catalog.fact(s);
        for (rank, &(a, _)) in items.iter().enumerate() {
            // The most recent purchases first: a small bonus for recency of the source.
            let fresh = 1.0 / (1.0 + rank as f32 * 0.01);
            match kind {
                Kind::Next => {
                    for &(b, s) in self.next_after(a) {
                        offer(b, s * fresh, a, Reason::BoughtNext);
                    }
                }
                Kind::Upsell => {
                    for &b in catalog.upgrades(a) {
                        offer(b, 2.0 * fresh, a, Reason::UpgradeOf);
                    }
                    let Some(from) = fact(a) else { continue };
                    for &(b, s) in self.next_after(a) {
                        let up = fact(b).is_some_and(|to| {
                            !from.category.is_empty()
                                && to.category == from.category
                                && matches!((to.price, from.price), (Some(t), Some(f)) if t > f)
                        });
                        if up {
                            offer(b, s * fresh, a, Reason::MovedUpFrom);
                        }
                    }
                }
                Kind::CrossSell => {}
            }
        }
        top(best.into_values().collect(), n)
    }

    /// The products most similar to `sku`, best first.
    pub fn similar(&self, sku: u32) -> &[(u32, f32)] {
        self.neighbours.get(sku as usize).map_or(&[], Vec::as_slice)
    }

    /// Up to `n` products for a customer with purchases `history`, never one they bought and
    /// only those `allowed` lets through (in the catalog, in stock, active); filled up with the
    /// most popular. The same history gives the same list.
    pub fn recommend(
        &self,
        history: &[Bought],
        n: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<Pick> {
        let items = latest_per_product(history, self.params.max_items);
        let owned = owned(history);
        let recency = |day: i64| match self.params.half_life_days {
            Some(half) => 0.5f64.powf((self.as_of - day).max(0) as f64 / half) as f32,
            None => 1.0,
        };
        // Per candidate: total score, and the strongest single contribution with its source.
        let mut scores: HashMap<u32, (f32, f32, u32, Reason)> = HashMap::default();
        scores.reserve(items.len() * self.params.neighbours.min(64));
        let mut add = |b: u32, s: f32, from: u32, reason: Reason| {
            let e = scores.entry(b).or_insert((0.0, 0.0, from, reason));
            e.0 += s;
            if s > e.1 {
                e.1 = s;
                e.2 = from;
                e.3 = reason;
            }
        };
        for &(a, day) in &items {
            let r = recency(day);
            for &(b, s) in self.similar(a) {
                add(b, r * s, a, Reason::BoughtTogether);
            }
            if self.params.next_weight > 0.0 {
                for &(b, s) in self.next_after(a) {
                    add(b, r * s * self.params.next_weight, a, Reason::BoughtNext);
                }
            }
        }
        let candidates: Vec<Pick> = scores
            .into_iter()
            .map(|(sku, (score, _, from, reason))| Pick {
                sku,
                score,
                because: Some(from),
                reason,
            })
            .collect();
        // The filters are asked only until the list is full, best candidates first.
        let mut picks = top_allowed(candidates, n, &|s| {
            owned.binary_search(&s).is_err() && allowed(s)
        });
        for &(sku, score) in &self.popular {
            if picks.len() >= n {
                break;
            }
            let fresh = !picks.iter().any(|p| p.sku == sku);
            if fresh && owned.binary_search(&sku).is_err() && allowed(sku) {
                picks.push(Pick {
                    sku,
                    score,
                    because: None,
                    reason: Reason::Popular,
                });
            }
        }
        picks
    }
}

/// The products of a history, sorted, once each (for binary search).
fn owned(history: &[Bought]) -> Vec<u32> {
    let mut v: Vec<u32> = history.iter().map(|b| b.sku).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Best first: the higher score, then the lower product number.
fn rank(x: &Pick, y: &Pick) -> std::cmp::Ordering {
    y.score.total_cmp(&x.score).then(x.sku.cmp(&y.sku))
}

/// The `n` best picks, best first.
fn top(mut picks: Vec<Pick>, n: usize) -> Vec<Pick> {
    if picks.len() > n && n > 0 {
        picks.select_nth_unstable_by(n - 1, rank);
        picks.truncate(n);
    }
    picks.sort_unstable_by(rank);
    picks.truncate(n);
    picks
}

/// The `n` best picks that `ok` lets through, best first: the candidates are ranked in slices
/// (the best 4n, then the next…), so that a filter that refuses few is asked about few.
fn top_allowed(mut picks: Vec<Pick>, n: usize, ok: &dyn Fn(u32) -> bool) -> Vec<Pick> {
    let mut out = Vec::with_capacity(n);
    let mut from = 0;
    while out.len() < n && from < picks.len() {
        let chunk = (4 * n).max(16);
        let rest = &mut picks[from..];
        if rest.len() > chunk {
            rest.select_nth_unstable_by(chunk - 1, rank);
        }
        let end = rest.len().min(chunk);
        rest[..end].sort_unstable_by(rank);
        out.extend(rest[..end].iter().filter(|p| ok(p.sku)).take(n - out.len()));
        from += end;
    }
    out
}

/// Each product's latest purchase day, the `max` most recent products, most recent first.
pub(super) fn latest_per_product(bought: &[Bought], max: usize) -> Vec<(u32, i64)> {
    let mut items: Vec<(u32, i64)> = bought.iter().map(|b| (b.sku, b.day())).collect();
    // By product, latest first; keep each product's first.
    items.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
    items.dedup_by_key(|x| x.0);
    items.sort_unstable_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    items.truncate(max);
    items
}

/// Each product's most similar products, best first: the cosine of every pair kept in the sums
/// (each pair is kept once and goes to both products' lists). The rows are shared out among
/// the cores, each gathering its own lists, merged at the end.
fn similarities(sums: &Sums, buyers: &[f64], scale: f64) -> Vec<Vec<(u32, f32)>> {
    let params = sums.params;
    let root: Vec<f64> = buyers.iter().map(|b| b.sqrt()).collect();
    let gather = |rows: std::ops::Range<usize>| {
        let mut lists: Vec<TopK> = (0..buyers.len())
            .map(|_| TopK::new(params.neighbours))
            .collect();
        for a in rows {
            for (b, c) in sums.pairs[a].iter() {
                let cos = (c as f64 * scale / (root[a] * root[b as usize] + params.shrink)) as f32;
                if cos > 0.0 {
                    lists[a].offer(b, cos);
                    lists[b as usize].offer(a as u32, cos);
                }
            }
        }
        lists
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let parts = share_out(&sums.pairs, workers);
    let mut gathered: Vec<Vec<TopK>> = std::thread::scope(|scope| {
        let running: Vec<_> = parts
            .into_iter()
            .map(|rows| scope.spawn(|| gather(rows)))
            .collect();
        running
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut lists = gathered.pop().unwrap_or_default();
    for other in gathered {
        for (list, more) in lists.iter_mut().zip(other) {
            for (b, cos) in more.buf {
                list.offer(b, cos);
            }
        }
    }
    lists.into_iter().map(TopK::into_sorted).collect()
}

/// Consecutive ranges of rows holding about the same number of pairs each, one per worker.
fn share_out<T>(rows: &[Row<T>], workers: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = rows.iter().map(|r| r.to.len()).sum();
    let per = total.div_ceil(workers.max(1)).max(1);
    let (mut parts, mut start, mut held) = (Vec::new(), 0, 0);
    for (i, r) in rows.iter().enumerate() {
        held += r.to.len();
        if held >= per {
            parts.push(start..i + 1);
            (start, held) = (i + 1, 0);
        }
    }
    if start < rows.len() || parts.is_empty() {
        parts.push(start..rows.len());
    }
    parts
}

/// The `k` best of the products offered (highest score, then lowest number), without holding
/// them all: the cosines of every pair reach each product's list one at a time. Offers gather
/// in a buffer cut back to the best `k` when full; the `k`-th best then turns away anything
/// worse at once.
struct TopK {
    k: usize,
    buf: Vec<(u32, f32)>,
    /// The worst of the `k` kept at the last cut.
    floor: Option<(u32, f32)>,
}

/// Best first: the higher score, then the lower product number.
fn better(x: &(u32, f32), y: &(u32, f32)) -> std::cmp::Ordering {
    y.1.total_cmp(&x.1).then(x.0.cmp(&y.0))
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            buf: Vec::new(),
            floor: None,
        }
    }

    fn offer(&mut self, sku: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let x = (sku, score);
        if self
            .floor
            .is_some_and(|f| better(&x, &f) != std::cmp::Ordering::Less)
        {
            return;
        }
        self.buf.push(x);
        if self.buf.len() >= (4 * self.k).max(64) {
            self.buf.select_nth_unstable_by(self.k - 1, better);
            self.buf.truncate(self.k);
            self.floor = Some(self.buf[self.k - 1]);
        }
    }

    /// Best first.
    fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.buf.sort_unstable_by(better);
        self.buf.truncate(self.k);
        self.buf
    }
}

/// The `k` best (highest score, then lowest number) of `scored`.
fn best(scored: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = scored.filter(|(_, s)| *s > 0.0).collect();
    v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    v.truncate(k);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shampoo and conditioner go together; a cleanser is followed by a lotion; water is bought
    /// by everyone.
    fn shop() -> Histories {
        let mut h = Histories::default();
        for i in 0..30 {
            let c = format!("c{i}");
            h.add(&c, "water", 100);
            if i < 20 {
                h.add(&c, "shampoo", 100);
                h.add(&c, "conditioner", 100);
            }
            if i >= 10 {
                h.add(&c, "cleanser", 110);
                h.add(&c, "lotion", 140);
            }
        }
        h.add("new", "shampoo", 150);
        h.add("fresh", "cleanser", 150);
        h.finish()
    }

    #[test]
    fn a_product_bought_with_another_is_recommended_with_the_reason() {
        let h = shop();
        let m = Model::learn(&h, 160, Params::default());
        let id = |s: &str| h.find(s).unwrap();
        let picks = m.recommend(h.of("new").unwrap(), 2, &|_| true);
        assert_eq!(picks[0].sku, id("conditioner"));
        assert_eq!(picks[0].because, Some(id("shampoo")));
        assert_eq!(picks[0].reason, Reason::BoughtTogether);
        // What comes next, and when: the lotion, 30 days after the cleanser.
        let (next, share, days) = m.next_due(id("cleanser"), &|_| true).unwrap();
        assert_eq!((next, days), (id("lotion"), 30.0));
        assert!(share > 0.5, "{share}");
        assert_eq!(m.next_due(id("cleanser"), &|s| s != id("lotion")), None);
        // What comes next: after a cleanser, the lotion (bought 30 days later by everyone).
        let picks = m.recommend(h.of("fresh").unwrap(), 1, &|_| true);
        assert_eq!(picks[0].sku, id("lotion"));
        // Nothing already bought; nothing the catalog refuses; popularity fills up.
        let all = m.recommend(h.of("c15").unwrap(), 10, &|_| true);
        assert!(all.is_empty(), "c15 bought everything: {all:?}");
        let no_conditioner = m.recommend(h.of("new").unwrap(), 3, &|s| s != id("conditioner"));
        assert!(no_conditioner.iter().all(|p| p.sku != id("conditioner")));
        let stranger = m.recommend(&[], 2, &|_| true);
        assert_eq!(stranger[0].sku, id("water"));
        assert_eq!(stranger[0].reason, Reason::Popular);
    }

    proptest::proptest! {
        // Whatever the shop and the customer, a list never holds a product they bought or one
        // the catalog refuses (out of stock, inactive), nor the same product twice.
        #[test]
        fn nothing_bought_or_refused_is_ever_recommended(
            orders in proptest::collection::vec((0u8..12, 0u8..15, 0i64..400), 0..200),
            mine in proptest::collection::vec((0u8..15, 0i64..400), 0..8),
            refused in proptest::collection::hash_set(0u8..15, 0..6),
            n in 1usize..12,
        ) {
            let mut h = Histories::default();
            for (c, p, d) in &orders {
                h.add(&format!("c{c}"), &format!("p{p}"), *d);
            }
            for (p, d) in &mine {
                h.add("me", &format!("p{p}"), *d);
            }
            let h = h.finish();
            let refused: std::collections::HashSet<u32> = refused
                .iter()
                .filter_map(|p| h.find(&format!("p{p}")))
                .collect();
            let m = Model::learn(&h, 400, Params::default());
            let history = h.of("me").unwrap_or_default();
            let picks = m.recommend(history, n, &|s| !refused.contains(&s));
            proptest::prop_assert!(picks.len() <= n);
            let mut seen = std::collections::HashSet::new();
            for p in &picks {
                proptest::prop_assert!(!history.iter().any(|b| b.sku == p.sku));
                proptest::prop_assert!(!refused.contains(&p.sku));
                proptest::prop_assert!(seen.insert(p.sku));
            }
        }
    }

    #[test]
    fn upsell_offers_the_catalogs_upgrade_then_what_customers_moved_up_to() {
        // Ten customers went from a small cleanser to the big one in their next order; the
        // catalog says the deluxe lotion is the upgrade of the lotion.
        let mut h = Histories::default();
        for i in 0..10 {
            h.add(&format!("c{i}"), "cleanser-s", 10);
            h.add(&format!("c{i}"), "cleanser-l", 40);
            h.add(&format!("c{i}"), "towel", 40);
        }
        h.add("me", "cleanser-s", 50);
        h.add("me", "lotion", 50);
        h.add("x", "lotion-deluxe", 1);
        let h = h.finish();
        let id = |s: &str| h.find(s).unwrap();
        let mut facts = vec![None; h.skus.len()];
        let fact = |category: &str, price: i64, upgrade_of: Option<u32>| {
            Some(Facts {
                category: category.into(),
                price: Some(price),
                upgrade_of,
            })
        };
        facts[id("cleanser-s") as usize] = fact("cleanser", 1500, None);
        facts[id("cleanser-l") as usize] = fact("cleanser", 2800, None);
        facts[id("towel") as usize] = fact("bath", 3000, None);
        facts[id("lotion") as usize] = fact("lotion", 3000, None);
        facts[id("lotion-deluxe") as usize] = fact("lotion", 6000, Some(id("lotion")));
        let catalog = Catalog::new(facts);
        let m = Model::learn(&h, 60, Params::default());
        let picks = m.recommend_kind(Kind::Upsell, h.of("me").unwrap(), 5, &catalog, &|_| true);
        let got: Vec<(u32, Reason, Option<u32>)> =
            picks.iter().map(|p| (p.sku, p.reason, p.because)).collect();
        assert_eq!(
            got,
            [
                (id("lotion-deluxe"), Reason::UpgradeOf, Some(id("lotion"))),
                (
                    id("cleanser-l"),
                    Reason::MovedUpFrom,
                    Some(id("cleanser-s"))
                ),
            ],
            "the towel came next too, but is no upgrade"
        );
        let next = m.recommend_kind(Kind::Next, h.of("me").unwrap(), 5, &catalog, &|_| true);
        assert!(next.iter().any(|p| p.sku == id("towel")));
        let none = m.recommend_kind(Kind::Upsell, h.of("me").unwrap(), 5, &catalog, &|s| {
            s != id("lotion-deluxe") && s != id("cleanser-l")
        });
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn a_consumable_comes_back_on_the_next_list_when_its_interval_is_nearly_up() {
        // Shampoo is bought again every 30 days by most of its buyers; a towel once.
        let mut h = Histories::default();
        for i in 0..10 {
            let c = format!("c{i}");
            for k in 0..3 {
                h.add(&c, "shampoo", 100 + 30 * k);
            }
            h.add(&c, "towel", 100);
            h.add(&c, "conditioner", 130);
        }
        h.add("due", "shampoo", 150);
        h.add("due", "towel", 150);
        h.add("fresh", "shampoo", 170);
        let h = h.finish();
        let id = |s: &str| h.find(s).unwrap();
        let m = Model::learn(&h, 180, Params::default());
        let (share, days) = m.consumable(id("shampoo")).unwrap();
        assert!(share > 0.8 && (days - 30.0).abs() < 0.01, "{share} {days}");
        assert_eq!(
            m.consumable(id("towel")),
            None,
            "bought once by each: not a consumable"
        );
        let catalog = Catalog::default();
        let next = |who: &str, today: i64| {
            let history = h.of(who).unwrap();
            let picks = m.recommend_kind(Kind::Next, history, 5, &catalog, &|_| true);
            m.with_due_again(picks, history, today, 5, &|_| true)
        };
        // 30 days after: due (27 days do: 90% of the interval); the towel never comes back.
        let due = next("due", 180);
        assert_eq!(due[0].sku, id("shampoo"));
        assert_eq!(
            (due[0].reason, due[0].because),
            (Reason::DueAgain, Some(id("shampoo")))
        );
        assert!(due.iter().all(|p| p.sku != id("towel")));
        assert!(next("due", 177).iter().any(|p| p.sku == id("shampoo")));
        assert!(next("due", 176).iter().all(|p| p.sku != id("shampoo")));
        // Bought ten days ago: not due yet; and not if the catalog refuses it.
        assert!(next("fresh", 180).iter().all(|p| p.sku != id("shampoo")));
        let history = h.of("due").unwrap();
        assert!(m
            .due_again(history, 180, &|s| s != id("shampoo"))
            .is_empty());
    }

    #[test]
    fn the_same_history_gives_the_same_list() {
        let h = shop();
        let m = Model::learn(&h, 160, Params::default());
        let a = m.recommend(h.of("new").unwrap(), 4, &|_| true);
        let b =
            Model::learn(&h, 160, Params::default()).recommend(h.of("new").unwrap(), 4, &|_| true);
        assert_eq!(a, b);
    }
}
