//! What learning adds up over the customers' histories, kept so that new orders change only
//! their own customers' part: per product its buyers and reorders, per pair of products how
//! much they were bought together and one in the order after the other (with the days
//! between). Fixed-point integers, so that taking a customer's part away and adding it again
//! is exact and the sums do not depend on the order customers come in: a model updated day by
//! day equals one learnt afresh from the same orders, to the bit.

use super::model::{latest_per_product, Params};
use super::{Bought, Histories};
use rustc_hash::FxHashMap as HashMap;

/// A weight of 1 in fixed point.
pub const UNIT: f64 = (1u64 << 20) as f64;

/// Weights are relative to the first day of a period of this many days (the sums' base): a
/// model of a day in the same period is updated in place, one of a later period learnt afresh.
/// Within a period a weight stays under 2^(63 / half-life) (1.28 at 180 days).
pub const PERIOD_DAYS: i64 = 64;

/// The base of the sums learnt as of `as_of`.
pub fn base_of(as_of: i64) -> i64 {
    as_of - as_of.rem_euclid(PERIOD_DAYS)
}

/// Into how many rounds the first learning divides the products' rows.
const LEARNING_ROUNDS: usize = 3;

/// `parts` consecutive ranges covering products `0..n`. A pair is kept in the row of its
/// smaller product, so the first rows hold more: the ranges widen to hold about the same
/// number of pairs each (row `a` of `n` holds about `n - a`).
fn product_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<u32>> {
    let parts = parts.max(1);
    let mut bounds = vec![0u32];
    for k in 1..parts {
        // The triangle left of the bound holds k / parts of all pairs.
        let left = 1.0 - (1.0 - k as f64 / parts as f64).sqrt();
        bounds.push(((n as f64 * left).round() as u32).max(*bounds.last().unwrap_or(&0)));
    }
    bounds.push(n as u32);
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// One product's row: the other products, ascending, and a sum beside each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row<T> {
    pub to: Vec<u32>,
    pub sum: Vec<T>,
}

impl<T: Copy + Default> Row<T> {
    fn from_map(map: HashMap<u32, T>) -> Self {
        let mut v: Vec<(u32, T)> = map.into_iter().collect();
        v.sort_unstable_by_key(|x| x.0);
        Self {
            to: v.iter().map(|x| x.0).collect(),
            sum: v.iter().map(|x| x.1).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.to.iter().copied().zip(self.sum.iter().copied())
    }
}

/// The sums, in units of [`UNIT`], every weight relative to `base`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sums {
    pub base: i64,
    pub params: Params,
    /// Per product, its (weighted) buyers.
    pub buyers: Vec<i64>,
    /// Per product `a`, the products `b > a` bought by the same customers, with the sum of
    /// their pair weights (the smaller product only: a pair is kept once).
    pub pairs: Vec<Row<i64>>,
    /// Per product, how much it was followed by another order.
    pub reordered: Vec<i64>,
    /// Per product, the products of the order after it: (weight, weight × days between).
    pub next: Vec<Row<[i64; 2]>>,
    /// Per product, how it was bought again by the same customer: the customers who did
    /// (weighted by their last purchase of it), and every gap between two purchases of it
    /// (weight, weight × days).
    pub again: Vec<[i64; 3]>,
}

/// Where one customer's part goes.
trait Sink {
    fn buyer(&mut self, a: u32, w: i64);
    fn pair(&mut self, a: u32, b: u32, w: i64);
    fn reorder(&mut self, a: u32, w: i64);
    fn next(&mut self, a: u32, b: u32, w: i64, days: i64);
    /// `a` bought again: `buyer` is the weight of a customer who did (once per customer), else
    /// 0; and one gap of `days` weighted `w`.
    fn again(&mut self, a: u32, buyer: i64, w: i64, days: i64);
}

/// One customer's part of the sums as of `as_of` (what they bought by its end).
fn part(bought: &[Bought], as_of: i64, base: i64, params: &Params, sink: &mut impl Sink) {
    debug_assert!(bought.is_sorted(), "Histories::finish sorts each history");
    let bought = &bought[..bought.partition_point(|b| b.day() <= as_of)];
    let weight = |day: i64| match params.half_life_days {
        Some(half) => 2f64.powf((day - base) as f64 / half),
        None => 1.0,
    };
    let fixed = |w: f64| (w * UNIT).round() as i64;
    let items = latest_per_product(bought, params.max_items);
    let damp = if params.damp_heavy_buyers {
        1.0 / (2.0 + items.len() as f64).ln()
    } else {
        1.0
    };
    let weights: Vec<f64> = items.iter().map(|&(_, day)| weight(day)).collect();
    for (&(sku, _), &w) in items.iter().zip(&weights) {
        sink.buyer(sku, fixed(w));
    }
    for (i, &(a, _)) in items.iter().enumerate() {
        for (j, &(b, _)) in items.iter().enumerate().skip(i + 1) {
            sink.pair(a.min(b), a.max(b), fixed(damp * weights[i].min(weights[j])));
        }
    }
    // Each product bought on more than one day: the gaps between its purchases.
    let mut by_product: Vec<(u32, i64)> = bought.iter().map(|b| (b.sku, b.day())).collect();
    by_product.sort_unstable();
    for same in by_product.chunk_by(|x, y| x.0 == y.0) {
        for (k, pair) in same.windows(2).enumerate() {
            let last = k + 2 == same.len();
            let w = fixed(weight(pair[1].1));
            sink.again(
                pair[0].0,
                if last { w } else { 0 },
                w,
                pair[1].1 - pair[0].1,
            );
        }
    }
    let mut days = bought.chunk_by(|x, y| x.day == y.day);
    let Some(mut before) = days.next() else {
        return;
    };
    for after in days {
        let w = fixed(weight(after[0].day()));
        let gap = after[0].day() - before[0].day();
        for a in before {
            sink.reorder(a.sku, w);
            for b in after.iter().filter(|b| b.sku != a.sku) {
                sink.next(a.sku, b.sku, w, gap);
            }
        }
        before = after;
    }
}

/// The sums of the rows of a range of products while they are first added up: a hash map per
/// row (fast to add to), made rows when done. Parts of other rows are passed over.
struct Gather {
    rows: std::ops::Range<u32>,
    buyers: Vec<i64>,
    pairs: Vec<HashMap<u32, i64>>,
    reordered: Vec<i64>,
    next: Vec<HashMap<u32, [i64; 2]>>,
    again: Vec<[i64; 3]>,
}

impl Gather {
    fn new(rows: std::ops::Range<u32>) -> Self {
        let n = rows.len();
        Self {
            rows,
            buyers: vec![0; n],
            pairs: vec![HashMap::default(); n],
            reordered: vec![0; n],
            next: vec![HashMap::default(); n],
            again: vec![[0; 3]; n],
        }
    }

    /// Where row `a` is, if it is one of these.
    fn at(&self, a: u32) -> Option<usize> {
        self.rows
            .contains(&a)
            .then(|| (a - self.rows.start) as usize)
    }
}

impl Sink for Gather {
    fn buyer(&mut self, a: u32, w: i64) {
        if let Some(i) = self.at(a) {
            self.buyers[i] += w;
        }
    }
    fn pair(&mut self, a: u32, b: u32, w: i64) {
        if let Some(i) = self.at(a) {
            *self.pairs[i].entry(b).or_default() += w;
        }
    }
    fn reorder(&mut self, a: u32, w: i64) {
        if let Some(i) = self.at(a) {
            self.reordered[i] += w;
        }
    }
    fn next(&mut self, a: u32, b: u32, w: i64, days: i64) {
        if let Some(i) = self.at(a) {
            let e = self.next[i].entry(b).or_default();
            e[0] += w;
            e[1] += w * days;
        }
    }
    fn again(&mut self, a: u32, buyer: i64, w: i64, days: i64) {
        if let Some(i) = self.at(a) {
            let e = &mut self.again[i];
            e[0] += buyer;
            e[1] += w;
            e[2] += w * days;
        }
    }
}

/// Changes to kept sums, gathered from many customers' parts and then applied at once
/// ([`Sums::apply`]): a pair new to a row is merged in with the others, not inserted one by one.
#[derive(Debug, Default)]
pub struct Delta {
    buyers: HashMap<u32, i64>,
    pairs: HashMap<(u32, u32), i64>,
    reordered: HashMap<u32, i64>,
    next: HashMap<(u32, u32), [i64; 2]>,
    again: HashMap<u32, [i64; 3]>,
}

/// Adds (`sign` 1) or takes away (-1) a customer's part.
struct Signed<'a> {
    delta: &'a mut Delta,
    sign: i64,
}

impl Sink for Signed<'_> {
    fn buyer(&mut self, a: u32, w: i64) {
        *self.delta.buyers.entry(a).or_default() += self.sign * w;
    }
    fn pair(&mut self, a: u32, b: u32, w: i64) {
        *self.delta.pairs.entry((a, b)).or_default() += self.sign * w;
    }
    fn reorder(&mut self, a: u32, w: i64) {
        *self.delta.reordered.entry(a).or_default() += self.sign * w;
    }
    fn next(&mut self, a: u32, b: u32, w: i64, days: i64) {
        let e = self.delta.next.entry((a, b)).or_default();
        e[0] += self.sign * w;
        e[1] += self.sign * w * days;
    }
    fn again(&mut self, a: u32, buyer: i64, w: i64, days: i64) {
        let e = self.delta.again.entry(a).or_default();
        e[0] += self.sign * buyer;
        e[1] += self.sign * w;
        e[2] += self.sign * w * days;
    }
}

/// Adds changes to rows: each row's changes in one go, those to pairs it lacks merged in.
fn apply_rows<T: Copy + Default + PartialEq>(
    rows: &mut [Row<T>],
    changes: HashMap<(u32, u32), T>,
    add: impl Fn(&mut T, T),
) {
    let mut changes: Vec<((u32, u32), T)> = changes
        .into_iter()
        .filter(|(_, v)| *v != T::default())
        .collect();
    changes.sort_unstable_by_key(|x| x.0);
    for group in changes.chunk_by(|x, y| x.0 .0 == y.0 .0) {
        let row = &mut rows[group[0].0 .0 as usize];
        let mut lacking: Vec<(u32, T)> = Vec::new();
        for &((_, b), v) in group {
            match row.to.binary_search(&b) {
                Ok(i) => add(&mut row.sum[i], v),
                Err(_) => lacking.push((b, v)),
            }
        }
        if !lacking.is_empty() {
            merge_in(row, &lacking);
        }
    }
}

/// Merges pairs a row lacks (sorted) into it, in place: the row grows once and its entries
/// move back from the end, each at most once.
fn merge_in<T: Copy + Default>(row: &mut Row<T>, lacking: &[(u32, T)]) {
    let old = row.to.len();
    row.to.resize(old + lacking.len(), 0);
    row.sum.resize(old + lacking.len(), T::default());
    let (mut i, mut j, mut at) = (old, lacking.len(), old + lacking.len());
    while j > 0 {
        at -= 1;
        if i > 0 && row.to[i - 1] > lacking[j - 1].0 {
            i -= 1;
            row.to[at] = row.to[i];
            row.sum[at] = row.sum[i];
        } else {
            j -= 1;
            row.to[at] = lacking[j].0;
            row.sum[at] = lacking[j].1;
        }
    }
}

impl Sums {
    /// Adds up every customer's part as of `as_of`.
    pub fn learn(h: &Histories, as_of: i64, params: Params) -> Self {
        let base = base_of(as_of);
        let mut sums = Self {
            base,
            params,
            buyers: Vec::new(),
            pairs: Vec::new(),
            reordered: Vec::new(),
            next: Vec::new(),
            again: Vec::new(),
        };
        // The rows are shared out among the cores in ranges of products, every core reading
        // every history and keeping its own rows; in rounds, so that the hash maps of only some
        // of the rows are held at once (they take twice the memory of the rows they make).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let ranges = product_ranges(h.skus.len(), workers * LEARNING_ROUNDS);
        for round in ranges.chunks(workers) {
            let gathered: Vec<Gather> = std::thread::scope(|scope| {
                let running: Vec<_> = round
                    .iter()
                    .map(|rows| {
                        scope.spawn(move || {
                            let mut g = Gather::new(rows.clone());
                            for (_, bought) in &h.customers {
                                part(bought, as_of, base, &params, &mut g);
                            }
                            g
                        })
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            for g in gathered {
                sums.buyers.extend(g.buyers);
                sums.reordered.extend(g.reordered);
                sums.again.extend(g.again);
                sums.pairs.extend(g.pairs.into_iter().map(Row::from_map));
                sums.next.extend(g.next.into_iter().map(Row::from_map));
            }
        }
        sums
    }

    /// Whether sums of `as_of` can be had by updating these (same period).
    pub fn covers(&self, as_of: i64) -> bool {
        base_of(as_of) == self.base
    }

    /// Room for products numbered up to `n - 1`.
    pub fn grow(&mut self, n: usize) {
        if self.buyers.len() < n {
            self.buyers.resize(n, 0);
            self.pairs.resize_with(n, Row::default);
            self.reordered.resize(n, 0);
            self.next.resize_with(n, Row::default);
            self.again.resize(n, [0; 3]);
        }
    }

    /// Replaces one customer's part: `old` as of `old_as_of` out, `new` as of `new_as_of` in,
    /// gathered in `delta` for [`Sums::apply`]. Both days must be [`Sums::covers`]ed.
    pub fn replace(
        &self,
        delta: &mut Delta,
        (old, old_as_of): (&[Bought], i64),
        (new, new_as_of): (&[Bought], i64),
    ) {
        let mut out = Signed { delta, sign: -1 };
        part(old, old_as_of, self.base, &self.params, &mut out);
        let mut into = Signed { delta, sign: 1 };
        part(new, new_as_of, self.base, &self.params, &mut into);
    }

    /// Applies gathered changes; products must have room ([`Sums::grow`]).
    pub fn apply(&mut self, delta: Delta) {
        for (a, w) in delta.buyers {
            self.buyers[a as usize] += w;
        }
        for (a, w) in delta.reordered {
            self.reordered[a as usize] += w;
        }
        for (a, w) in delta.again {
            let e = &mut self.again[a as usize];
            e.iter_mut().zip(w).for_each(|(s, v)| *s += v);
        }
        apply_rows(&mut self.pairs, delta.pairs, |s, v| *s += v);
        apply_rows(&mut self.next, delta.next, |s, v| {
            s[0] += v[0];
            s[1] += v[1];
        });
    }

    /// What one unit of the sums weighs as of `as_of`: weights are relative to the base, the
    /// model's to `as_of`.
    pub fn scale(&self, as_of: i64) -> f64 {
        let shift = match self.params.half_life_days {
            Some(half) => 0.5f64.powf((as_of - self.base) as f64 / half),
            None => 1.0,
        };
        shift / UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop(seed: u64, customers: usize) -> Histories {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Histories::default();
        for c in 0..customers {
            for _ in 0..rng.random_range(1..8) {
                let p = rng.random_range(0..25);
                h.add(
                    &format!("c{c}"),
                    &format!("p{p}"),
                    rng.random_range(100..230),
                );
            }
        }
        h.finish()
    }

    #[test]
    fn taking_a_customer_away_and_adding_them_back_changes_nothing() {
        let h = shop(3, 200);
        let sums = Sums::learn(&h, 190, Params::default());
        let mut updated = sums.clone();
        let mut delta = Delta::default();
        for (_, bought) in h.customers.iter().take(50) {
            updated.replace(&mut delta, (bought, 190), (&[], 190));
        }
        updated.apply(delta);
        assert_ne!(updated, sums);
        let mut delta = Delta::default();
        for (_, bought) in h.customers.iter().take(50) {
            updated.replace(&mut delta, (&[], 190), (bought, 190));
        }
        updated.apply(delta);
        // Entries emptied on the way stay, at zero.
        for (a, b) in updated.pairs.iter().zip(&sums.pairs) {
            let kept: Vec<_> = a.iter().filter(|x| x.1 != 0).collect();
            assert_eq!(kept, b.iter().collect::<Vec<_>>());
        }
        assert_eq!(updated.buyers, sums.buyers);
        assert_eq!(updated.reordered, sums.reordered);
        assert_eq!(updated.again, sums.again);
    }

    #[test]
    fn pairs_a_row_lacks_are_merged_in_order() {
        let mut row = Row {
            to: vec![2, 5, 9],
            sum: vec![20, 50, 90],
        };
        merge_in(&mut row, &[(1, 10), (6, 60), (12, 120)]);
        assert_eq!(row.to, [1, 2, 5, 6, 9, 12]);
        assert_eq!(row.sum, [10, 20, 50, 60, 90, 120]);
        let mut empty: Row<i64> = Row::default();
        merge_in(&mut empty, &[(3, 1)]);
        assert_eq!((empty.to, empty.sum), (vec![3], vec![1]));
    }

    #[test]
    fn the_product_ranges_cover_every_product_once() {
        for (n, parts) in [(0, 4), (1, 4), (7, 3), (20_000, 4), (5, 1)] {
            let r = product_ranges(n, parts);
            assert_eq!(r.len(), parts);
            assert_eq!(r[0].start, 0);
            assert_eq!(r[parts - 1].end, n as u32);
            assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        }
        // The first rows hold more pairs: the first range is the narrowest.
        let r = product_ranges(20_000, 4);
        assert!(r[0].len() < r[3].len(), "{r:?}");
    }

    #[test]
    fn the_base_is_the_first_day_of_its_period() {
        assert_eq!(base_of(128), 128);
        assert_eq!(base_of(191), 128);
        assert_eq!(base_of(-1), -64);
        let s = Sums::learn(&shop(1, 10), 191, Params::default());
        assert!(s.covers(130) && !s.covers(192));
        assert!((s.scale(128) * UNIT - 1.0).abs() < 1e-12);
    }
}
