//! Product recommendations learned from purchase histories: which products go together
//! (recency-weighted cosine co-occurrence), which come next, and what is popular, and the lists
//! they give each customer, with the reason for each product. Pure: histories in, lists out;
//! the store reads the orders and the CLI prints. See docs/recommendations.md.

pub mod evaluate;
pub mod model;
pub mod sums;

pub use evaluate::{evaluate_split, Metrics, SplitReport};
pub use model::{Model, Params, Pick};

/// A fast hash for product and customer ids: the shop's own, read by the million at each
/// learning (std's SipHash spent a third of it).
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// One product bought: which (an index into [`Histories::skus`]) and on which day (days since
/// the epoch, in the shop's zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bought {
    /// Days since 1970-01-01 (32 bits: a million customers' histories are most of the memory
    /// of learning).
    pub day: i32,
    pub sku: u32,
}

impl Bought {
    pub fn new(sku: u32, day: i64) -> Self {
        let day = day.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        Self { day, sku }
    }

    /// The day as a day number.
    pub fn day(&self) -> i64 {
        i64::from(self.day)
    }
}

/// Every customer's purchases, products numbered once. Customers and their purchases are kept
/// in the order they were added; [`Histories::finish`] sorts each customer's by day.
#[derive(Debug, Clone, Default)]
pub struct Histories {
    pub skus: Vec<String>,
    index: HashMap<String, u32>,
    pub customers: Vec<(String, Vec<Bought>)>,
    by_customer: HashMap<String, usize>,
}

impl Histories {
    /// The number of a product, given it if new.
    pub fn sku_id(&mut self, sku: &str) -> u32 {
        if let Some(&i) = self.index.get(sku) {
            return i;
        }
        let i = self.skus.len() as u32;
        self.skus.push(sku.to_string());
        self.index.insert(sku.to_string(), i);
        i
    }

    /// The number of a product already seen.
    pub fn find(&self, sku: &str) -> Option<u32> {
        self.index.get(sku).copied()
    }

    /// Records that `customer` bought `sku` on `day`.
    pub fn add(&mut self, customer: &str, sku: &str, day: i64) {
        let sku = self.sku_id(sku);
        self.add_id(customer, Bought::new(sku, day));
    }

    /// The number of a customer, given one if new (purchases then go in with
    /// [`Histories::push`]: one lookup per order, not per item).
    pub fn customer_id(&mut self, customer: &str) -> usize {
        if let Some(&i) = self.by_customer.get(customer) {
            return i;
        }
        self.customers.push((customer.to_string(), Vec::new()));
        self.by_customer
            .insert(customer.to_string(), self.customers.len() - 1);
        self.customers.len() - 1
    }

    /// Records a purchase of the customer numbered `customer` ([`Histories::customer_id`]).
    pub fn push(&mut self, customer: usize, b: Bought) {
        self.customers[customer].1.push(b);
    }

    /// Sorts each customer's purchases by day (then product) and drops exact repeats.
    pub fn finish(mut self) -> Self {
        for (_, b) in &mut self.customers {
            b.sort_unstable();
            b.dedup();
        }
        self
    }

    /// A customer's purchases, oldest first.
    pub fn of(&self, customer: &str) -> Option<&[Bought]> {
        self.by_customer
            .get(customer)
            .map(|&i| self.customers[i].1.as_slice())
    }

    /// The purchases before `day` and those on or after it, with the same product numbers:
    /// what an offline evaluation learns from and what it checks against.
    pub fn split_at(&self, day: i64) -> (Histories, Histories) {
        let mut before = Histories {
            skus: self.skus.clone(),
            index: self.index.clone(),
            ..Histories::default()
        };
        let mut after = before.clone();
        for (c, bought) in &self.customers {
            for b in bought {
                let side = if b.day() < day {
                    &mut before
                } else {
                    &mut after
                };
                side.add_id(c, *b);
            }
        }
        (before, after)
    }

    /// Adds new purchases (customer, SKU, day) to histories and the sums learnt from them as of
    /// `as_of`, and moves the sums on to `to` (a later day of the same period, or `as_of`):
    /// every customer with a new purchase, or with one after `as_of` up to `to`, has their part
    /// replaced, and only they. Returns how many customers' parts were replaced.
    pub fn update<'a>(
        &mut self,
        sums: &mut sums::Sums,
        as_of: i64,
        to: i64,
        new: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    ) -> usize {
        debug_assert!(to >= as_of && sums.covers(to));
        // Customers with a new purchase up to `to`, as they were: their part changes. One whose
        // new purchases are all later keeps it (parts count purchases up to their day).
        let new: Vec<(usize, Bought)> = new
            .into_iter()
            .map(|(customer, sku, day)| {
                let sku = self.sku_id(sku);
                (self.customer_id(customer), Bought::new(sku, day))
            })
            .collect();
        let mut before: HashMap<usize, Vec<Bought>> = HashMap::default();
        for &(c, b) in &new {
            if b.day() <= to {
                before
                    .entry(c)
                    .or_insert_with(|| self.customers[c].1.clone());
            }
        }
        let mut added: Vec<usize> = Vec::with_capacity(new.len());
        for (c, b) in new {
            self.push(c, b);
            added.push(c);
        }
        added.sort_unstable();
        added.dedup();
        for &c in &added {
            let bought = &mut self.customers[c].1;
            bought.sort_unstable();
            bought.dedup();
        }
        sums.grow(self.skus.len());
        let mut delta = sums::Delta::default();
        for (&c, old) in &before {
            sums.replace(&mut delta, (old, as_of), (&self.customers[c].1, to));
        }
        let mut moved = 0;
        if to > as_of {
            for (c, (_, bought)) in self.customers.iter().enumerate() {
                // Sorted: any purchase after `as_of` up to `to`?
                let after = bought.partition_point(|b| b.day() <= as_of);
                let between = bought.get(after).is_some_and(|b| b.day() <= to);
                if between && !before.contains_key(&c) {
                    sums.replace(&mut delta, (bought, as_of), (bought, to));
                    moved += 1;
                }
            }
        }
        sums.apply(delta);
        before.len() + moved
    }

    fn add_id(&mut self, customer: &str, b: Bought) {
        let at = self.customer_id(customer);
        self.push(at, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Purchases of a random shop: customer, product, day.
    fn purchases(seed: u64, n: usize, days: std::ops::Range<i64>) -> Vec<(String, String, i64)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                (
                    format!("c{}", rng.random_range(0..120)),
                    format!("p{}", rng.random_range(0..30)),
                    rng.random_range(days.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn a_model_updated_day_by_day_equals_one_learnt_afresh() {
        // Known at the first learning (as of day 140, purchases up to 145 already read), then
        // new orders: back-dated ones, ones of the days after, new customers and products.
        let first = purchases(1, 900, 60..146);
        let mut new = purchases(2, 300, 100..175);
        new.push(("newcomer".into(), "p-new".into(), 150));
        new.push(("c1".into(), "p-new".into(), 30));
        let mut h = Histories::default();
        for (c, p, d) in &first {
            h.add(c, p, *d);
        }
        let h = h.finish();
        for params in [model::Params::default(), model::Params::plain()] {
            let mut h = h.clone();
            let mut sums = sums::Sums::learn(&h, 140, params);
            let changed = h.update(
                &mut sums,
                140,
                140,
                new[..150]
                    .iter()
                    .map(|(c, p, d)| (c.as_str(), p.as_str(), *d)),
            );
            assert!(changed > 50, "{changed}");
            h.update(
                &mut sums,
                140,
                170,
                new[150..]
                    .iter()
                    .map(|(c, p, d)| (c.as_str(), p.as_str(), *d)),
            );
            let mut fresh = Histories::default();
            for (c, p, d) in first.iter().chain(&new) {
                fresh.add(c, p, *d);
            }
            let fresh = fresh.finish();
            assert_eq!(h.skus, fresh.skus);
            assert_eq!(h.customers, fresh.customers);
            assert!(
                Model::from_sums(&sums, 170) == Model::learn(&fresh, 170, params),
                "the updated model differs from the one learnt afresh ({params:?})"
            );
            assert!(Model::from_sums(&sums, 170) != Model::learn(&fresh, 169, params));
        }
    }

    #[test]
    fn histories_number_products_once_and_split_by_day() {
        let mut h = Histories::default();
        h.add("c1", "A", 10);
        h.add("c1", "B", 5);
        h.add("c2", "A", 20);
        h.add("c1", "B", 5);
        let h = h.finish();
        assert_eq!(h.skus, ["A", "B"]);
        assert_eq!(
            h.of("c1").unwrap(),
            [Bought { day: 5, sku: 1 }, Bought { day: 10, sku: 0 }]
        );
        let (before, after) = h.split_at(10);
        assert_eq!(before.of("c1").unwrap().len(), 1);
        assert_eq!(after.of("c1").unwrap(), [Bought { day: 10, sku: 0 }]);
        assert!(before.of("c2").is_none());
        assert_eq!(after.find("B"), Some(1));
    }
}
