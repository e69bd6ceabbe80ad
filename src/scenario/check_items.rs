//! Fields of an order's line item that a template reads and no item has (`item.nmae`), for
//! `rebuy check`: such a read fails every message whose order has items, whatever the data.

use minijinja::value::{Enumerator, Object};
use minijinja::{ErrorKind, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// What a check's sample items noted: the fields asked of them that they lack.
pub type Noted = Arc<Mutex<BTreeSet<String>>>;

/// A sample line item that notes each field a template asks of it and it does not have.
#[derive(Debug)]
struct NotingItem {
    item: Value,
    noted: Noted,
    /// Fields given a made-up value, to see whether a failure goes away with them.
    supplied: Arc<BTreeSet<String>>,
}

impl Object for NotingItem {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let name = key.as_str()?;
        let found = self.item.get_attr(name).ok().filter(|v| !v.is_undefined());
        if found.is_none() && self.supplied.contains(name) {
            return Some(Value::from("sample"));
        }
        if found.is_none() {
            if let Ok(mut noted) = self.noted.lock() {
                noted.insert(name.to_string());
            }
        }
        found
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.item.try_iter() {
            Ok(keys) => Enumerator::Values(keys.collect()),
            Err(_) => Enumerator::Empty,
        }
    }
}

/// `ctx` with the order's line items replaced by items that note what is asked of them (and
/// answer the `supplied` fields with a made-up value), and the fields an item has.
pub fn with_noting_items(
    ctx: &Value,
    noted: &Noted,
    supplied: &BTreeSet<String>,
) -> (Value, Vec<String>) {
    let Ok(order) = ctx.get_attr("order") else {
        return (ctx.clone(), Vec::new());
    };
    let Ok(items) = order.get_attr("items").and_then(|i| i.try_iter()) else {
        return (ctx.clone(), Vec::new());
    };
    let items: Vec<Value> = items.collect();
    let fields = items
        .first()
        .and_then(|i| i.try_iter().ok())
        .map(|keys| keys.map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let supplied = Arc::new(supplied.clone());
    let noting: Vec<Value> = items
        .into_iter()
        .map(|item| {
            Value::from_object(NotingItem {
                item,
                noted: noted.clone(),
                supplied: supplied.clone(),
            })
        })
        .collect();
    let order = replaced(&order, "items", Value::from(noting));
    (replaced(ctx, "order", order), fields)
}

/// A copy of the map `value` with `key` set to `with`.
fn replaced(value: &Value, key: &str, with: Value) -> Value {
    let Ok(keys) = value.try_iter() else {
        return value.clone();
    };
    Value::from_iter(keys.map(|k| {
        let name = k.to_string();
        let v = if name == key {
            with.clone()
        } else {
            value.get_attr(&name).unwrap_or_default()
        };
        (name, v)
    }))
}

/// The fields no line item has that make `render` fail: those it asked for when it failed,
/// if the failure goes away once they are supplied (a field only tested with `is defined`
/// beside another failure is not blamed). `render` renders with the items of
/// `with_noting_items` given the fields it is handed.
pub fn unknown_item_fields(
    render: impl Fn(&BTreeSet<String>) -> Result<String, minijinja::Error>,
    noted: &Noted,
) -> Option<BTreeSet<String>> {
    let take = || noted.lock().map(|mut n| std::mem::take(&mut *n)).ok();
    take();
    let e = render(&BTreeSet::new()).err()?;
    if e.kind() != ErrorKind::UndefinedError {
        return None;
    }
    let asked = take()?;
    if asked.is_empty() || render(&asked).is_err() {
        return None;
    }
    Some(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_item_field_is_named_and_a_guarded_one_is_not() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let ctx = minijinja::context! {
            order => minijinja::context! { id => "O1", items => vec![minijinja::context! { sku => "S", name => "lotion" }] },
            shop => "x",
        };
        let noted = Noted::default();
        assert_eq!(
            with_noting_items(&ctx, &noted, &BTreeSet::new()).1,
            ["sku", "name"],
            "the item's fields, in its order"
        );
        let render = |src: &str| {
            let t = env.template_from_str(src).unwrap();
            let fields = unknown_item_fields(
                |supplied| t.render(with_noting_items(&ctx, &noted, supplied).0),
                &noted,
            )?;
            Some(fields.into_iter().collect::<Vec<_>>().join(","))
        };
        assert_eq!(render("{{ order.items[0].nmae }}").as_deref(), Some("nmae"));
        assert_eq!(
            render("{% for i in order.items %}{{ i.skuu }}{% endfor %}").as_deref(),
            Some("skuu")
        );
        assert_eq!(
            render("{{ order.items[0].name }} {{ order.id }} {{ shop }}"),
            None
        );
        assert_eq!(
            render("{% if order.items[0].gift is defined %}x{% endif %}"),
            None
        );
        assert_eq!(render("{{ nothing }}"), None, "not an item's field");
        assert_eq!(
            render("{% if order.items[0].gift is defined %}{% endif %}{{ nothing }}"),
            None,
            "a tested field is not blamed for another failure"
        );
    }
}
