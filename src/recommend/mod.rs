//! Product recommendations learned from purchase histories: which products go together
//! (recency-weighted cosine co-occurrence), which come next, and what is popular, and the lists
//! they give each customer, with the reason for each product. Pure: histories in, lists out;
//! the store reads the orders and the CLI prints. See docs/recommendations.md.

pub mod evaluate;
pub mod model;

pub use evaluate::{evaluate_split, Metrics, SplitReport};
pub use model::{Model, Params, Pick};

/// A fast hash for product and customer ids: the shop's own, read by the million at each
/// learning (std's SipHash spent a third of it).
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// One product bought: which (an index into [`Histories::skus`]) and on which day (days since
/// the epoch, in the shop's zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bought {
    pub day: i64,
    pub sku: u32,
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
        self.add_id(customer, Bought { day, sku });
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
                let side = if b.day < day { &mut before } else { &mut after };
                side.add_id(c, *b);
            }
        }
        (before, after)
    }

    fn add_id(&mut self, customer: &str, b: Bought) {
        let at = self.customer_id(customer);
        self.push(at, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
