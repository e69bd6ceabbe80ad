//! The fields a segment condition can read: every stored metric (`customer_metrics`), a few
//! columns of the customer, and the customer's own attributes (`customer.attributes.NAME`),
//! each with its kind, which decides what it may be compared with.

/// What values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    /// `YYYY-MM-DD` text, compared as text (which orders dates correctly).
    Date,
    Text,
    Bool,
    /// A customer attribute: whatever the import stored (text, number or boolean).
    Any,
}

impl Kind {
    pub fn article(self) -> &'static str {
        match self {
            Kind::Int | Kind::Float => "a number",
            Kind::Date => "a date",
            Kind::Text => "text",
            Kind::Bool => "true or false",
            Kind::Any => "a value",
        }
    }

    pub fn example(self) -> &'static str {
        match self {
            Kind::Int | Kind::Float => "compare it with a number, e.g. >= 3 or < 0.3",
            Kind::Date => "compare it with a quoted date, e.g. >= '2024-01-01'",
            Kind::Text => "compare it with quoted text, e.g. == 'ja'",
            Kind::Bool => "compare it with true or false",
            Kind::Any => "compare it with quoted text, a number, true or false",
        }
    }
}

/// A field a condition reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A `customer_metrics` column (NULL, so never matching, before the first refresh or for a
    /// customer without orders; the predictive ones also when the models could not be fitted).
    Metric(&'static str),
    /// A `customers` column, written `customer.NAME`.
    Customer(&'static str),
    /// `customer.attributes.NAME`: a key of the customer's imported attributes.
    Attribute(String),
}

/// The metrics, with their kinds, in `METRICS_COLUMNS` order (less the id and the date).
pub const METRICS: &[(&str, Kind)] = &[
    ("orders", Kind::Int),
    ("first_order", Kind::Date),
    ("last_order", Kind::Date),
    ("days_since_last", Kind::Int),
    ("tenure_days", Kind::Int),
    ("total_spent", Kind::Int),
    ("average_order_value", Kind::Float),
    ("frequency", Kind::Int),
    ("recency", Kind::Int),
    ("t", Kind::Int),
    ("monetary", Kind::Float),
    ("r_score", Kind::Int),
    ("f_score", Kind::Int),
    ("m_score", Kind::Int),
    ("rfm_segment", Kind::Text),
    ("p_alive", Kind::Float),
    ("expected_purchases_30d", Kind::Float),
    ("expected_purchases_90d", Kind::Float),
    ("predicted_clv", Kind::Float),
    ("expected_next_order", Kind::Date),
];

/// The customer columns a condition may read.
pub const CUSTOMER: &[(&str, Kind)] = &[
    ("orders_count", Kind::Int),
    ("total_spent", Kind::Int),
    ("locale", Kind::Text),
    ("timezone", Kind::Text),
    ("currency", Kind::Text),
    ("marketing_consent", Kind::Bool),
];

impl Field {
    pub fn kind(&self) -> Kind {
        match self {
            Field::Metric(n) => kind_of(METRICS, n),
            Field::Customer(n) => kind_of(CUSTOMER, n),
            Field::Attribute(_) => Kind::Any,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Field::Metric(n) => n.to_string(),
            Field::Customer(n) => format!("customer.{n}"),
            Field::Attribute(k) => format!("customer.attributes.{k}"),
        }
    }
}

fn kind_of(table: &[(&str, Kind)], name: &str) -> Kind {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or(Kind::Any)
}

/// The field a name refers to, if any.
pub fn lookup(name: &str) -> Option<Field> {
    if let Some((n, _)) = METRICS.iter().find(|(n, _)| *n == name) {
        return Some(Field::Metric(n));
    }
    let rest = name.strip_prefix("customer.")?;
    if let Some(key) = rest.strip_prefix("attributes.") {
        let ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        return ok.then(|| Field::Attribute(key.to_string()));
    }
    CUSTOMER
        .iter()
        .find(|(n, _)| *n == rest)
        .map(|(n, _)| Field::Customer(n))
}

/// Every fixed field name, for "did you mean".
pub fn names() -> Vec<&'static str> {
    static CUSTOMER_NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        CUSTOMER
            .iter()
            .map(|(n, _)| format!("customer.{n}"))
            .collect()
    });
    METRICS
        .iter()
        .map(|(n, _)| *n)
        .chain(CUSTOMER_NAMES.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_a_stored_column() {
        let stored = crate::store::METRICS_COLUMNS;
        for (name, _) in METRICS {
            assert!(stored.contains(name), "{name}");
        }
        assert_eq!(METRICS.len(), stored.len() - 2);
    }

    #[test]
    fn attribute_names_are_plain_keys() {
        assert_eq!(
            lookup("customer.attributes.plan"),
            Some(Field::Attribute("plan".into()))
        );
        assert_eq!(lookup("customer.attributes.a'b"), None);
        assert_eq!(lookup("customer.email"), None);
    }
}
