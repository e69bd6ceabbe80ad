//! Template filters: `money` (currency-aware: ¥3,980, $39.80) and `date` (in the customer's
//! time zone).

use crate::domain::{format_money, parse_timezone};
use chrono::{DateTime, Utc};
use minijinja::value::StringInput;
use minijinja::{Environment, Error, ErrorKind, State, Value};

pub fn register(env: &mut Environment<'static>) {
    env.add_filter("money", money);
    env.add_filter("date", date);
    env.add_filter("replace", replace);
}

/// The built-in `replace`, bounded: replacing `""` in a long value would otherwise build a
/// string of its length squared in one step, which the fuel cannot stop.
fn replace(
    state: &State,
    value: StringInput<'_>,
    from: StringInput<'_>,
    to: StringInput<'_>,
) -> Result<Value, Error> {
    let (text, pattern) = (value.as_str(), from.as_str());
    let grows = to.as_str().len().saturating_sub(pattern.len());
    let count = if pattern.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(pattern).count()
    };
    if text.len().saturating_add(grows.saturating_mul(count)) > super::MAX_OUTPUT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "replace would build more than {} KiB",
                super::MAX_OUTPUT / 1024
            ),
        ));
    }
    minijinja::filters::replace(state, value, from, to)
}

fn lookup_str(state: &State, path: &[&str]) -> Option<String> {
    let mut v = state.lookup(path[0])?;
    for key in &path[1..] {
        v = v.get_attr(key).ok()?;
    }
    if v.is_undefined() || v.is_none() {
        None
    } else {
        v.as_str().map(str::to_string)
    }
}

/// `{{ order.total | money }}` or `{{ x | money("USD") }}`. Without a currency it uses the
/// order's, then the customer's, then `shop.currency`, then JPY.
fn money(state: &State, value: Value, currency: Option<String>) -> Result<String, Error> {
    let minor = i64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("money expects an integer amount in minor units, got {value}"),
        )
    })?;
    let currency = currency
        .or_else(|| lookup_str(state, &["order", "currency"]))
        .or_else(|| lookup_str(state, &["customer", "currency"]))
        .or_else(|| lookup_str(state, &["shop", "currency"]))
        .unwrap_or_else(|| "JPY".into());
    Ok(format_money(minor, &currency.to_ascii_uppercase()))
}

/// `{{ order.placed_at | date }}` or `{{ now | date("%Y年%m月%d日 %H:%M") }}`: an RFC 3339
/// instant shown in the customer's time zone.
fn date(state: &State, value: Value, format: Option<String>) -> Result<String, Error> {
    let text = value.as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("date expects an RFC 3339 instant, got {value}"),
        )
    })?;
    let instant: DateTime<Utc> = DateTime::parse_from_rfc3339(text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("date: '{text}': {e}")))?
        .with_timezone(&Utc);
    let zone = lookup_str(state, &["customer", "timezone"])
        .and_then(|z| parse_timezone(&z).ok())
        .unwrap_or(chrono_tz::UTC);
    let format = format.unwrap_or_else(|| "%Y-%m-%d".into());
    Ok(instant.with_timezone(&zone).format(&format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        register(&mut env);
        env
    }

    #[test]
    fn money_follows_the_orders_currency() {
        let env = env();
        let out = env
            .render_str(
                "{{ order.total | money }} / {{ 3980 | money('USD') }}",
                context! { order => context! { total => 3980, currency => "JPY" } },
            )
            .unwrap();
        assert_eq!(out, "¥3,980 / $39.80");
    }

    #[test]
    fn dates_show_in_the_customers_zone() {
        let env = env();
        let ctx = context! { customer => context! { timezone => "Asia/Tokyo" }, t => "2026-11-01T20:30:00Z" };
        assert_eq!(
            env.render_str("{{ t | date('%Y-%m-%d %H:%M') }}", ctx)
                .unwrap(),
            "2026-11-02 05:30"
        );
    }
}
