//! The pages' templates (minijinja, shipped in the binary) and the filters and functions
//! they use: `t(key)` for words in the viewer's language, `money(currency)`, `when` for
//! a time in the viewer's zone, and `reason` for why a message was not sent.

use super::i18n::{self, Lang};
use minijinja::{Environment, Error, ErrorKind, State, Value};

/// Every template: its name and text.
pub const ALL: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("search.html", include_str!("templates/search.html")),
    ("customer.html", include_str!("templates/customer.html")),
    ("followup.html", include_str!("templates/followup.html")),
    ("message.html", include_str!("templates/message.html")),
    ("scenarios.html", include_str!("templates/scenarios.html")),
    ("scenario.html", include_str!("templates/scenario.html")),
    ("segments.html", include_str!("templates/segments.html")),
    ("backtests.html", include_str!("templates/backtests.html")),
    ("backtest.html", include_str!("templates/backtest.html")),
    ("status.html", include_str!("templates/status.html")),
    ("targets.html", include_str!("templates/targets.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("digest.html", include_str!("templates/digest.html")),
    ("digest.txt", include_str!("templates/digest.txt")),
];

/// The environment with every template added (a template that does not parse is a bug,
/// caught by the tests).
pub fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    for (name, body) in ALL {
        env.add_template(name, body)?;
    }
    env.add_function("t", t);
    env.add_filter("money", money);
    env.add_filter("when", when);
    env.add_filter("segment", segment);
    env.add_filter("reason", reason);
    env.add_filter("trigger", trigger);
    Ok(env)
}

/// An id as one segment of a path: every character but letters and digits escaped, `/`
/// included (minijinja's `urlencode` keeps `/`, which made `a/b` two segments).
fn segment(value: String) -> String {
    super::encode(&value)
}

fn lang_of(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::parse))
        .unwrap_or(Lang::En)
}

fn t(state: &State, key: &str) -> String {
    i18n::text(lang_of(state), key)
}

/// A scenario's trigger as its YAML says it (`segment_entered: at-risk`) in the viewer's
/// words, the YAML after them for the marketer who wrote it.
fn trigger(state: &State, yaml: String) -> String {
    let (kind, value) = yaml.split_once(": ").unwrap_or((yaml.as_str(), ""));
    let key = format!("trigger.{kind}");
    let lang = lang_of(state);
    if !i18n::has(lang, &key) {
        return yaml;
    }
    let words = i18n::fill(lang, &key, &[("value", value)]);
    format!("{words} ({yaml})")
}

/// Why a message or an enrollment stopped, in the viewer's language (`i18n::reason`).
fn reason(state: &State, stored: Option<String>) -> String {
    stored.map_or_else(String::new, |s| i18n::reason(lang_of(state), &s))
}

/// An amount in minor units, in `currency` (the shop's when absent): `¥3,980`.
fn money(state: &State, value: Value, currency: Option<Value>) -> Result<String, Error> {
    let minor = i64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("money expects a whole amount in minor units, not {value}"),
        )
    })?;
    let currency = currency
        .and_then(|c| c.as_str().map(str::to_string))
        .or_else(|| {
            state
                .lookup("currency")
                .and_then(|c| c.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "USD".into());
    Ok(crate::domain::format_money(minor, &currency))
}

/// A time (RFC 3339 text, or milliseconds since the epoch) in the viewer's zone, to the
/// minute with the zone's abbreviation; `—` for none.
fn when(state: &State, value: Value) -> String {
    let zone: chrono_tz::Tz = state
        .lookup("zone")
        .and_then(|z| z.as_str().and_then(|z| z.parse().ok()))
        .unwrap_or(chrono_tz::UTC);
    let at = if let Some(s) = value.as_str() {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    } else {
        i64::try_from(value).ok().map(crate::clock::from_millis)
    };
    at.map_or_else(|| "—".to_string(), |d| local_minute(d, zone))
}

/// An instant in `zone`, to the minute with the zone's abbreviation: `2026-12-04 10:30 JST`.
pub fn local_minute(at: chrono::DateTime<chrono::Utc>, zone: chrono_tz::Tz) -> String {
    at.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn an_id_in_a_link_is_one_path_segment() {
        let env = environment().unwrap();
        let out = env
            .render_str(
                "/ui/customers/{{ id|segment }}",
                context! { id => "a/b?c#d 1" },
            )
            .unwrap();
        assert_eq!(out, "/ui/customers/a%2Fb%3Fc%23d%201");
    }

    #[test]
    fn every_template_parses() {
        environment().expect("the templates parse");
    }

    #[test]
    fn words_money_and_times_follow_the_viewer() {
        let env = environment().unwrap();
        let out = env
            .render_str(
                "{{ t('nav.customers') }} {{ 398000|money('JPY') }} {{ 1999|money }} {{ '2026-12-04T01:30:00Z'|when }} {{ none|when }}",
                context! { lang => "ja", zone => "Asia/Tokyo", currency => "USD" },
            )
            .unwrap();
        assert_eq!(out, "顧客 ¥398,000 $19.99 2026-12-04 10:30 JST —");
        let out = env
            .render_str("{{ t('nav.customers') }}", context! { lang => "en" })
            .unwrap();
        assert_eq!(out, "Customers");
    }

    #[test]
    fn a_trigger_is_in_words_with_its_yaml_beside_them() {
        let env = environment().unwrap();
        let render = |lang: &str, yaml: &str| {
            env.render_str("{{ y|trigger }}", context! { lang => lang, y => yaml })
                .unwrap()
        };
        assert_eq!(
            render("ja", "segment_entered: at-risk"),
            "セグメント「at-risk」に入ったとき (segment_entered: at-risk)"
        );
        assert_eq!(
            render("en", "first_order"),
            "a customer's first order (first_order)"
        );
        assert_eq!(render("ja", "someday: x"), "someday: x");
    }
}
