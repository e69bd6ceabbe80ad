//! The offline evaluation: learn from the purchases before a day, recommend for every customer
//! who bought both before and after it, and score the lists against the new products they
//! really bought afterwards: hit rate, precision, recall and mean average precision at k,
//! for rebuy's lists, plain cosine co-occurrence and popularity, computed the same way, and
//! for rebuy's `next` and `upsell` lists.

use super::model::{Catalog, Kind, Model, Params};
use super::Histories;
use serde::Serialize;
use std::collections::HashSet;

/// The scores of one way of recommending, averaged over the customers evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Share of customers with at least one product of their list bought.
    pub hit_rate: f64,
    pub precision: f64,
    pub recall: f64,
    /// Mean average precision at k.
    pub map: f64,
}

/// The evaluation of one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitReport {
    pub k: usize,
    /// Customers who bought before the split and bought a product new to them after it.
    pub customers: usize,
    pub products: usize,
    pub rebuy: Metrics,
    pub cosine: Metrics,
    pub popularity: Metrics,
    /// rebuy's `next` list (what customers bought in the order after theirs), not filled up.
    pub next: Metrics,
    /// rebuy's `upsell` list (the catalog's upgrades, then what customers moved up to), not
    /// filled up: short or empty for most customers, so its scores are low by nature; compare
    /// its hit rate among those it offered something (`upsell_offered`).
    pub upsell: Metrics,
    /// Customers whose upsell list was not empty.
    pub upsell_offered: usize,
}

/// Evaluates at `k` on the split of `h` at `day`; `allowed` says which products may be
/// recommended (the catalog's: in stock and active), `catalog` what the upsell list knows of
/// them (category, price, upgrades).
pub fn evaluate_split(
    h: &Histories,
    day: i64,
    k: usize,
    allowed: &dyn Fn(u32) -> bool,
    catalog: &Catalog,
) -> SplitReport {
    evaluate_with(h, day, k, allowed, catalog, Params::default())
}

/// [`evaluate_split`] with rebuy's model learnt with `params` (for tuning).
pub fn evaluate_with(
    h: &Histories,
    day: i64,
    k: usize,
    allowed: &dyn Fn(u32) -> bool,
    catalog: &Catalog,
    params: Params,
) -> SplitReport {
    let (before, after) = h.split_at(day);
    let as_of = day - 1;
    let rebuy = Model::learn(&before, as_of, params);
    let cosine = Model::learn(&before, as_of, Params::plain());
    let mut sums = [Sums::default(); 5];
    let (mut customers, mut upsell_offered) = (0, 0);
    for (c, later) in &after.customers {
        let Some(history) = before.of(c) else {
            continue;
        };
        let owned: HashSet<u32> = history.iter().map(|b| b.sku).collect();
        let truth: HashSet<u32> = later
            .iter()
            .map(|b| b.sku)
            .filter(|s| !owned.contains(s) && allowed(*s))
            .collect();
        if truth.is_empty() {
            continue;
        }
        customers += 1;
        let lists = [
            rebuy.recommend(history, k, allowed),
            cosine.recommend(history, k, allowed),
            // Popularity alone: the same model with an empty history, less what they own.
            rebuy
                .recommend(&[], k + owned.len(), allowed)
                .into_iter()
                .filter(|p| !owned.contains(&p.sku))
                .take(k)
                .collect(),
            rebuy.recommend_kind(Kind::Next, history, k, catalog, allowed),
            rebuy.recommend_kind(Kind::Upsell, history, k, catalog, allowed),
        ];
        upsell_offered += usize::from(!lists[4].is_empty());
        for (s, list) in sums.iter_mut().zip(lists) {
            let skus: Vec<u32> = list.iter().map(|p| p.sku).collect();
            s.add(&skus, &truth, k);
        }
    }
    let [r, c, p, next, upsell] = sums.map(|s| s.mean(customers));
    SplitReport {
        k,
        customers,
        products: h.skus.len(),
        rebuy: r,
        cosine: c,
        popularity: p,
        next,
        upsell,
        upsell_offered,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    hits: f64,
    precision: f64,
    recall: f64,
    ap: f64,
}

impl Sums {
    /// Adds one customer's list against what they bought.
    fn add(&mut self, list: &[u32], truth: &HashSet<u32>, k: usize) {
        let (found, ap) = average_precision(list, truth, k);
        self.hits += f64::from(u8::from(found > 0));
        self.precision += found as f64 / k as f64;
        self.recall += found as f64 / truth.len() as f64;
        self.ap += ap;
    }

    fn mean(self, n: usize) -> Metrics {
        let n = n.max(1) as f64;
        Metrics {
            hit_rate: self.hits / n,
            precision: self.precision / n,
            recall: self.recall / n,
            map: self.ap / n,
        }
    }
}

/// How many of the first `k` of `list` are in `truth`, and the average precision at k: the
/// mean of the precision at each rank that is a hit, over min(|truth|, k).
pub fn average_precision(list: &[u32], truth: &HashSet<u32>, k: usize) -> (usize, f64) {
    let mut found = 0;
    let mut sum = 0.0;
    for (i, s) in list.iter().take(k).enumerate() {
        if truth.contains(s) {
            found += 1;
            sum += found as f64 / (i + 1) as f64;
        }
    }
    (found, sum / truth.len().min(k).max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn average_precision_rewards_hits_early_in_the_list() {
        let truth: HashSet<u32> = [1, 2].into();
        assert_eq!(average_precision(&[1, 2, 3], &truth, 3), (2, 1.0));
        let (found, ap) = average_precision(&[3, 1, 2], &truth, 3);
        assert_eq!(found, 2);
        assert!((ap - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(average_precision(&[3, 4], &truth, 2), (0, 0.0));
    }

    /// A shop with planted structure: 20 pairs of products that go together (whoever buys one
    /// of a pair buys the other within two months), a few best-sellers everyone buys, and 10
    /// small sizes whose large size (its catalog upgrade, dearer) most buyers move up to.
    fn planted(customers: usize, seed: u64) -> Histories {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Histories::default();
        for i in 0..customers {
            let c = format!("c{i}");
            // Best-sellers are bought early; what is new after the split is a pair's partner.
            let day = rng.random_range(0..150);
            h.add(&c, &format!("best{}", rng.random_range(0..3)), day);
            for _ in 0..rng.random_range(1..3) {
                let pair = rng.random_range(0..20);
                let first = rng.random_bool(0.5);
                let (a, b) = if first { ("a", "b") } else { ("b", "a") };
                let d = rng.random_range(0..300);
                h.add(&c, &format!("p{pair}{a}"), d);
                if rng.random_bool(0.8) {
                    h.add(&c, &format!("p{pair}{b}"), d + rng.random_range(0..60));
                }
            }
            if rng.random_bool(0.3) {
                let size = rng.random_range(0..10);
                let d = rng.random_range(0..300);
                h.add(&c, &format!("small{size}"), d);
                if rng.random_bool(0.7) {
                    h.add(&c, &format!("large{size}"), d + rng.random_range(20..60));
                }
            }
        }
        h.finish()
    }

    /// The planted shop's catalog: each large size the upgrade of its small one.
    fn planted_catalog(h: &Histories) -> Catalog {
        let mut facts = vec![None; h.skus.len()];
        for size in 0..10 {
            let (small, large) = (format!("small{size}"), format!("large{size}"));
            let (Some(s), Some(l)) = (h.find(&small), h.find(&large)) else {
                continue;
            };
            let fact = |price: i64, upgrade_of: Option<u32>| super::super::model::Facts {
                category: format!("size{size}"),
                price: Some(price),
                upgrade_of,
            };
            facts[s as usize] = Some(fact(1000, None));
            facts[l as usize] = Some(fact(2000, Some(s)));
        }
        Catalog::new(facts)
    }

    #[test]
    fn on_a_shop_with_planted_pairs_rebuy_finds_them_and_beats_popularity() {
        let h = planted(3000, 7);
        let r = evaluate_split(&h, 200, 5, &|_| true, &planted_catalog(&h));
        assert!(r.customers > 300, "{r:?}");
        assert!(r.rebuy.hit_rate > 2.5 * r.popularity.hit_rate, "{r:?}");
        assert!(r.rebuy.map > 5.0 * r.popularity.map, "{r:?}");
        assert!(r.rebuy.map >= r.cosine.map * 0.95, "{r:?}");
        // What comes next: the partner bought within two months is the next order's.
        assert!(r.next.map > 3.0 * r.popularity.map, "{r:?}");
        // Upgrades: offered to the small sizes' buyers, and bought by most of them.
        assert!(r.upsell_offered > 50, "{r:?}");
        let upsell_hits = r.upsell.hit_rate * r.customers as f64 / r.upsell_offered as f64;
        assert!(upsell_hits > 0.4, "{upsell_hits} {r:?}");
        assert!(
            upsell_hits > 2.0 * r.popularity.hit_rate,
            "{upsell_hits} {r:?}"
        );
        // The structure itself: each product's closest product is its partner.
        let m = Model::learn(&h, 300, Params::default());
        for pair in 0..20 {
            for (a, b) in [("a", "b"), ("b", "a")] {
                let a = h.find(&format!("p{pair}{a}")).unwrap();
                let b = h.find(&format!("p{pair}{b}")).unwrap();
                assert_eq!(m.similar(a)[0].0, b, "pair {pair}");
            }
        }
    }
}
