//! The `recommend()` template function: a customer's list from what the engine learnt (see
//! `recommend_view::Learned`), as catalog products a template can show, and the record of
//! which products one render recommended, so that each message keeps them.

use crate::recommend::model::Kind;
use crate::recommend_view::{Learned, Shown};
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use std::cell::RefCell;
use std::sync::{Arc, RwLock};

/// Where the learnt recommendations live: empty until the engine (or `rebuy check`, with a
/// sample) installs them; swapped whole when they are learnt again.
#[derive(Debug, Clone, Default)]
pub struct Recommendations(Arc<RwLock<Option<Arc<Learned>>>>);

impl Recommendations {
    pub fn install(&self, learned: Learned) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(learned));
    }

    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn current(&self) -> Option<Arc<Learned>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The most products one call may ask for: a mail shows a handful.
pub const MAX_N: i64 = 20;

thread_local! {
    /// The SKUs recommended by the render running on this thread, when one is recording.
    static PICKED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `render` recording the SKUs every `recommend()` call in it returned, in order, once each.
pub fn recording<T>(render: impl FnOnce() -> T) -> (T, Vec<String>) {
    let outer = PICKED.with(|p| p.replace(Some(Vec::new())));
    let out = render();
    let picked = PICKED.with(|p| p.replace(outer)).unwrap_or_default();
    (out, picked)
}

fn record(skus: &[Shown]) {
    PICKED.with(|p| {
        if let Some(v) = p.borrow_mut().as_mut() {
            for s in skus {
                if !v.contains(&s.sku) {
                    v.push(s.sku.clone());
                }
            }
        }
    });
}

pub fn register(env: &mut Environment<'static>, slot: &Recommendations) {
    let slot = slot.clone();
    env.add_function("recommend", move |customer: Value, kwargs: Kwargs| {
        call(&slot, &customer, &kwargs)
    });
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// `recommend(customer, n=3, kind='cross_sell', category=none)`.
fn call(slot: &Recommendations, customer: &Value, kwargs: &Kwargs) -> Result<Value, Error> {
    let id = match customer.as_str() {
        Some(id) => id.to_string(),
        None => customer
            .get_attr("id")
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| {
                invalid(
                    "recommend() takes the customer (or their id) first: recommend(customer)"
                        .into(),
                )
            })?,
    };
    let n: i64 = kwargs.get::<Option<i64>>("n")?.unwrap_or(3);
    if !(1..=MAX_N).contains(&n) {
        return Err(invalid(format!(
            "recommend(): n must be from 1 to {MAX_N}, found {n}"
        )));
    }
    let kind = match kwargs.get::<Option<&str>>("kind")?.unwrap_or("cross_sell") {
        "cross_sell" => Kind::CrossSell,
        "upsell" => Kind::Upsell,
        "next" => Kind::Next,
        other => {
            return Err(invalid(format!(
                "recommend(): kind must be 'cross_sell', 'upsell' or 'next', found '{other}'"
            )))
        }
    };
    let category: Option<String> = kwargs.get("category")?;
    kwargs.assert_all_used()?;
    let Some(learned) = slot.current() else {
        return Err(invalid(
            "recommend(): nothing learnt yet (the engine learns from the orders once a shop day)"
                .into(),
        ));
    };
    let list = learned.list(&id, kind, n as usize, category.as_deref());
    record(&list);
    Ok(Value::from_iter(list.iter().map(product_value)))
}

/// What a template sees of one product: the catalog's fields (none where it has no entry),
/// and why it is recommended.
fn product_value(s: &Shown) -> Value {
    let p = s.product.as_ref();
    minijinja::context! {
        sku => s.sku,
        name => s.name,
        category => p.map(|p| p.category.as_str()),
        price => p.and_then(|p| p.price),
        url => p.and_then(|p| p.url.as_deref()),
        image_url => p.and_then(|p| p.image_url.as_deref()),
        brand => p.and_then(|p| p.brand.as_deref()),
        size => p.and_then(|p| p.size.as_deref()),
        reason => s.reason,
        because => s.because,
        why => s.why,
        score => s.score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(slot: &Recommendations) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        crate::render::filters::register(&mut env);
        register(&mut env, slot);
        env
    }

    fn render(env: &Environment<'static>, source: &str) -> Result<String, Error> {
        let ctx = minijinja::context! { customer => minijinja::context! { id => "SAMPLE" } };
        env.render_str(source, ctx)
    }

    #[test]
    fn a_template_gets_catalog_products_and_each_render_records_them() {
        let slot = Recommendations::default();
        let env = env_with(&slot);
        let e = render(&env, "{{ recommend(customer) }}").unwrap_err();
        assert!(e.to_string().contains("nothing learnt yet"), "{e}");
        slot.install(Learned::sample());
        // The lotion it bought is never offered; the serum and the cream others bought with it
        // are, the serum first (two bought it, one the cream).
        let (out, picked) = recording(|| {
            render(
                &env,
                "{% for p in recommend(customer, n=3) %}{{ p.sku }} {{ p.name }} {{ p.price | money('JPY') }} {{ p.url }} {{ p.reason }};{% endfor %}",
            )
        });
        assert_eq!(
            out.unwrap(),
            "SKU-2 美容液 ¥5,980 https://shop.example.jp/p/SKU-2 bought_together;\
             SKU-3 保湿クリーム ¥4,580 https://shop.example.jp/p/SKU-3 bought_together;"
        );
        // The large lotion nobody bought yet is no cross-sell (it is the upsell, below).
        assert_eq!(picked, ["SKU-2", "SKU-3"]);
        let (out, picked) = recording(|| {
            render(
                &env,
                "{{ recommend('SAMPLE', kind='upsell')[0].sku }} {{ recommend(customer, category='cream') | map(attribute='sku') | join(',') }} {{ recommend(customer, n=1)[0].sku }}",
            )
        });
        assert_eq!(out.unwrap(), "SKU-1L SKU-3 SKU-2");
        assert_eq!(picked, ["SKU-1L", "SKU-3", "SKU-2"], "each once, in order");
        // Outside a recording nothing is kept, and a recording starts empty.
        render(&env, "{{ recommend(customer) }}").unwrap();
        assert!(recording(|| ()).1.is_empty());
    }

    #[test]
    fn a_wrong_call_says_what_is_wrong() {
        let slot = Recommendations::default();
        slot.install(Learned::sample());
        let env = env_with(&slot);
        for (call, says) in [
            (
                "recommend(customer, n=0)",
                "n must be from 1 to 20, found 0",
            ),
            ("recommend(customer, n=21)", "n must be from 1 to 20"),
            (
                "recommend(customer, kind='best')",
                "kind must be 'cross_sell', 'upsell' or 'next', found 'best'",
            ),
            ("recommend(customer, colour='red')", "colour"),
            ("recommend(3)", "takes the customer"),
        ] {
            let e = render(&env, &format!("{{{{ {call} }}}}")).unwrap_err();
            assert!(e.to_string().contains(says), "{call}: {e}");
        }
        slot.clear();
        assert!(slot.current().is_none());
    }
}
