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
    env.add_filter("join", join);
    env.add_filter("indent", indent);
    env.add_filter("format", format);
}

/// The error of a filter asked to build more than one part may hold (`MAX_OUTPUT`), in one
/// step the fuel cannot stop: marked as the output bound is, so `rebuy check` reports it.
fn too_big(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "{what} would build more than {} KiB, {}",
            super::MAX_OUTPUT / 1024,
            super::OUTPUT_BOUND
        ),
    )
}

/// The length of a value as text, for the bounds below.
fn text_len(v: &Value) -> usize {
    v.as_str().map_or_else(|| v.to_string().len(), str::len)
}

/// The built-in `join`, bounded: `range(99999) | join("x" * 100000)` would build 10 GB.
fn join(state: &State, value: &Value, joiner: Option<StringInput<'_>>) -> Result<Value, Error> {
    let sep = joiner.as_ref().map_or(0, |j| j.as_str().len());
    if let Ok(items) = value.try_iter() {
        let mut total = 0usize;
        for (i, item) in items.enumerate() {
            total = total
                .saturating_add(text_len(&item))
                .saturating_add(if i > 0 { sep } else { 0 });
            if total > super::MAX_OUTPUT {
                return Err(too_big("join"));
            }
        }
    }
    minijinja::filters::join(state, value, joiner)
}

/// The widths and precisions of a printf-style format's directives (`%-10.3f` → 10, 3), not
/// the digits of its text (`Order 1234567: %s`); a number too long to read counts as the
/// largest.
fn directive_numbers(spec: &str) -> impl Iterator<Item = u64> + '_ {
    spec.split('%').skip(1).flat_map(|directive| {
        let rest = directive.trim_start_matches(['-', '+', ' ', '#', '0']);
        let width: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let after = &rest[width.len()..];
        let precision: String = after
            .strip_prefix('.')
            .map(|p| p.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        [width, precision]
            .into_iter()
            .filter(|n| !n.is_empty())
            .map(|n| n.parse::<u64>().unwrap_or(u64::MAX))
    })
}

/// Whether a directive takes its width or precision from the arguments (`%*s`, `%.*f`); a
/// `*` in the format's text (`**%s**`) does not.
fn directive_stars(spec: &str) -> bool {
    spec.split('%').skip(1).any(|directive| {
        let rest = directive.trim_start_matches(['-', '+', ' ', '#', '0']);
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        directive
            .trim_start_matches(['-', '+', ' ', '#', '0'])
            .starts_with('*')
            || rest.starts_with(".*")
    })
}

/// The built-in `indent`, bounded: `"x" | indent(1000000000)` would build 1 GB.
fn indent(
    value: StringInput<'_>,
    width: Option<usize>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: minijinja::value::Kwargs,
) -> Result<Value, Error> {
    let w = match width {
        Some(w) => w,
        None => kwargs.peek::<Option<usize>>("width")?.unwrap_or(4),
    };
    let lines = value.as_str().matches('\n').count() + 1;
    if value.as_str().len().saturating_add(w.saturating_mul(lines)) > super::MAX_OUTPUT {
        return Err(too_big("indent"));
    }
    minijinja::filters::indent(value, width, first, blank, kwargs)
}

/// The built-in `format`, bounded: a width or precision (`%99999999s`, or `%*s` with a large
/// argument) beyond what one part may hold is refused before anything is built.
fn format(
    state: &State,
    format_str: &Value,
    args: minijinja::value::Rest<Value>,
) -> Result<Value, Error> {
    let spec = format_str.as_str().unwrap_or_default();
    let widest = directive_numbers(spec).max().unwrap_or(0);
    let starred = directive_stars(spec)
        && args.iter().any(|a| {
            i64::try_from(a.clone()).is_ok_and(|n| n.unsigned_abs() > super::MAX_OUTPUT as u64)
        });
    if widest > super::MAX_OUTPUT as u64 || starred {
        return Err(too_big("format"));
    }
    minijinja::filters::format(state, format_str, args)
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
    let items = date_format(&format)?;
    let mut out = String::new();
    // A directive chrono accepts but cannot fill for this value is an error here, not a panic.
    std::fmt::Write::write_fmt(
        &mut out,
        format_args!(
            "{}",
            instant.with_timezone(&zone).format_with_items(items.iter())
        ),
    )
    .map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("date: the format '{format}' cannot be applied to {text}"),
        )
    })?;
    Ok(out)
}

/// What a `date` format chrono cannot read is said to be: the same for every customer.
pub(crate) const NOT_A_DATE_FORMAT: &str = "is not a date format";

/// A `date` format parsed once: a `%` directive chrono does not know (`%Q`, a lone `%`) is the
/// template's error, said with the format, never a panic while the mail is written.
fn date_format(format: &str) -> Result<Vec<chrono::format::Item<'_>>, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("date: '{format}' {NOT_A_DATE_FORMAT} (use %Y %m %d %H %M and the like, e.g. \"%Y年%m月%d日\")"),
        ));
    }
    Ok(items)
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
    fn a_date_format_chrono_does_not_know_is_an_error_not_a_panic() {
        let env = env();
        for bad in ["%Q", "%", "%-", "%Y-%"] {
            let e = env
                .render_str(
                    &format!("{{{{ '2026-11-02T10:00:00Z' | date('{bad}') }}}}"),
                    context! {},
                )
                .unwrap_err();
            assert!(e.to_string().contains("is not a date format"), "{bad}: {e}");
        }
        let ok = env.render_str(
            "{{ '2026-11-02T10:00:00Z' | date('%Y年%m月%d日 %%') }}",
            context! {},
        );
        assert_eq!(ok.unwrap(), "2026年11月02日 %");
    }

    #[test]
    fn filters_that_would_build_gigabytes_in_one_step_fail_with_the_output_bound() {
        let env = env();
        for bad in [
            r#"{{ range(99999) | join("x" * 100000) }}"#,
            r#"{{ "%99999999999999s" | format("x") }}"#,
            r#"{{ "%*s" | format(999999999, "x") }}"#,
            r#"{{ "%.*f" | format(999999999, 1.5) }}"#,
            r#"{{ "x" | indent(1000000000) }}"#,
            r#"{{ "x" | indent(width=1000000000) }}"#,
        ] {
            let e = env.render_str(bad, context! {}).unwrap_err();
            assert!(
                e.to_string().contains(crate::render::OUTPUT_BOUND),
                "{bad}: {e}"
            );
        }
        let ok = env
            .render_str(
                r#"{{ ["a", "b"] | join(", ") }} {{ "%05d" | format(42) }} {{ "a
b" | indent(2) }}"#,
                context! {},
            )
            .unwrap();
        assert_eq!(
            ok,
            "a, b 00042 a
  b"
        );
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
