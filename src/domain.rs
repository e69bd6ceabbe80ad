//! Value types that reject bad data at the edge: e-mail addresses, money in integer minor
//! units with a currency, time zones, durations (`3d`, `12h`) and local times (`10:00`).

use chrono::{Duration, NaiveTime};
use chrono_tz::Tz;
use std::str::FromStr;

/// A syntactically valid e-mail address (lettre's RFC 5321 parser decides) that rebuy can
/// send to: the domain lower-cased and in its ASCII form (IDNA: `例え.jp` is stored as
/// `xn--r8jz45g.jp`, which every server understands), no quoted local part and no IP address
/// for a domain. A local part beyond ASCII is kept; it needs a server that offers SMTPUTF8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("e-mail address is empty".into());
        }
        let addr = lettre::Address::from_str(trimmed)
            .map_err(|e| format!("'{trimmed}' is not a valid e-mail address ({e})"))?;
        if addr.user().starts_with('"') {
            return Err(format!(
                "'{trimmed}' has a quoted local part; rebuy does not send to such addresses (ask the customer for another)"
            ));
        }
        if addr.domain().starts_with('[') {
            return Err(format!(
                "'{trimmed}' has an IP address for a domain; rebuy sends only to domain names"
            ));
        }
        let domain = idna::domain_to_ascii(addr.domain()).map_err(|_| {
            format!("'{trimmed}' has a domain that is not a valid international domain name")
        })?;
        Ok(Self(format!("{}@{domain}", addr.user())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shortens an address for logs at info level: `a***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((user, domain)) => {
            let first: String = user.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// A server's reply or an error with every address in it masked as `mask_email` does, for
/// logs: a 550 reply often quotes the recipient (`<ken@example.com>: user unknown`).
pub fn mask_emails_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.contains('@') {
            out.push_str(&mask_email(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_whitespace()
            || matches!(
                c,
                '<' | '>' | '"' | '\'' | '(' | ')' | ',' | ';' | ':' | '[' | ']'
            )
        {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The ways a name typed without a space may be stored with one: an ASCII or a full-width space
/// (U+3000, what a Japanese keyboard types) between any two of its characters, so that `佐藤彩`
/// finds `佐藤 彩` and `佐藤　彩花`. Only for a query of 2 to 10 characters, without a space,
/// that is not plain ASCII (a Latin name is typed with its space); none otherwise.
pub fn spaced_name_variants(q: &str) -> Vec<String> {
    let chars: Vec<char> = q.chars().collect();
    if !(2..=10).contains(&chars.len()) || q.is_ascii() || chars.iter().any(|c| c.is_whitespace()) {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2 * (chars.len() - 1));
    for i in 1..chars.len() {
        let (head, tail): (String, String) =
            (chars[..i].iter().collect(), chars[i..].iter().collect());
        for space in [' ', '\u{3000}'] {
            out.push(format!("{head}{space}{tail}"));
        }
    }
    out
}

/// An address as the store keeps it, for looking one up: the domain in its ASCII form
/// (`例え.jp` is stored as `xn--r8jz45g.jp`, as `Email::parse` writes it) and ASCII letters in
/// lower case; anything that is not an address, as typed, lower-cased the same way.
pub fn email_lookup_key(q: &str) -> String {
    let ascii = q
        .rsplit_once('@')
        .filter(|(_, domain)| !domain.is_ascii())
        .and_then(|(local, domain)| {
            let domain = idna::domain_to_ascii(domain).ok()?;
            Some(format!("{local}@{domain}"))
        });
    ascii.as_deref().unwrap_or(q).to_ascii_lowercase()
}

/// An ISO 4217 currency code (`iso_currency`'s list), upper case. A code that is not one
/// (`YEN`) is refused: amounts are read in its minor units, so a wrong code misstates every one.
pub fn parse_currency(raw: &str) -> Result<String, String> {
    let code = raw.trim().to_ascii_uppercase();
    if NOT_MONEY.contains(&code.as_str()) {
        return Err(format!(
            "'{raw}' is an ISO 4217 code for no currency, a test, a precious metal or a unit of \
             account, not money an order is paid in; use the currency it was paid in, such as JPY"
        ));
    }
    if iso_currency::Currency::from_code(&code).is_some() {
        return Ok(code);
    }
    let hint = match code.as_str() {
        "YEN" | "円" | "¥" => " (the yen is JPY)",
        "RMB" | "元" => " (the renminbi is CNY)",
        "WON" | "원" => " (the won is KRW)",
        "EURO" | "€" => " (the euro is EUR)",
        "$" => " (the US dollar is USD)",
        _ => "",
    };
    Err(format!(
        "'{raw}' is not an ISO 4217 currency code{hint}; use three letters such as JPY or USD"
    ))
}

/// ISO 4217 codes that are not money a shop is paid in: "no currency" (XXX, an export's
/// placeholder), testing (XTS), precious metals and units of account. Stored, XXX would be
/// summed as a currency of its own and shown with no symbol or decimals.
const NOT_MONEY: [&str; 13] = [
    "XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD",
];

/// How many decimal places a currency's minor unit has (ISO 4217; 2 for a code without one).
pub fn minor_digits(currency: &str) -> u32 {
    iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from)
}

fn currency_symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "JPY" => "¥",
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "KRW" => "₩",
        "CNY" => "CN¥",
        "TWD" => "NT$",
        "HKD" => "HK$",
        "AUD" => "A$",
        "CAD" => "CA$",
        _ => return None,
    })
}

/// Formats an amount in minor units for people: `¥3,980`, `$39.80`, `12.50 CHF`.
pub fn format_money(minor: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let scale = 10_i64.pow(digits);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let whole = group_thousands(abs / scale as u64);
    let number = if digits == 0 {
        whole
    } else {
        let frac = abs % scale as u64;
        format!("{whole}.{frac:0width$}", width = digits as usize)
    };
    match currency_symbol(currency) {
        Some(sym) => format!("{sign}{sym}{number}"),
        None => format!("{sign}{number} {currency}"),
    }
}

pub(crate) fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Parses an amount written in major units ("39.80", "3980") into minor units.
pub fn parse_major_amount(raw: &str, currency: &str) -> Result<i64, String> {
    let digits = minor_digits(currency) as usize;
    let text = raw.trim().replace(',', "");
    let (neg, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let bad = || format!("'{raw}' is not an amount in {currency}");
    if whole.is_empty() || !whole.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if frac.len() > digits || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "'{raw}' has more decimals than {currency} allows ({digits})"
        ));
    }
    let padded = format!("{frac:0<digits$}");
    let value: i64 = format!("{whole}{padded}").parse().map_err(|_| bad())?;
    Ok(if neg { -value } else { value })
}

/// Whether `name` can name a custom event: 1 to 64 ASCII letters, digits, `_`, `-` or `.`
/// (`cart_added`, `subscription.paused`).
pub fn valid_event_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// An IANA time zone name such as `Asia/Tokyo`.
pub fn parse_timezone(raw: &str) -> Result<Tz, String> {
    raw.trim().parse::<Tz>().map_err(|_| {
        format!(
            "unknown time zone '{raw}'; use an IANA name such as Asia/Tokyo or America/New_York"
        )
    })
}

/// The longest duration rebuy accepts anywhere (a wait, a window, an interval): ten years.
/// Longer ones are typing mistakes, and would overflow the calendar arithmetic.
pub const MAX_DURATION_DAYS: i64 = 3650;

/// Parses a duration such as `3d`, `12h`, `30m`, `2w` or `1d12h`, of at most
/// `MAX_DURATION_DAYS`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let hint = "write a number and a unit, such as 3d, 12h, 30m, 2w or 1d12h";
    if text.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    if text == "0" {
        return Ok(Duration::zero());
    }
    if text.contains(char::is_whitespace) {
        return Err(format!("bad duration '{raw}': no spaces; {hint}"));
    }
    let too_long = || {
        format!("bad duration '{raw}': longer than {MAX_DURATION_DAYS}d (ten years), the most rebuy accepts")
    };
    let max = Duration::days(MAX_DURATION_DAYS);
    let mut total = Duration::zero();
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        if number.is_empty() {
            return Err(format!("bad duration '{raw}'; {hint}"));
        }
        // Any number too big for u32 is far beyond ten years in every unit.
        let n: i64 = number.parse::<u32>().map_err(|_| too_long())?.into();
        number.clear();
        let part = match ch {
            'w' => Duration::try_weeks(n),
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            'm' => Duration::try_minutes(n),
            's' => Duration::try_seconds(n),
            _ => return Err(format!("bad duration '{raw}': unknown unit '{ch}'; {hint}")),
        };
        total = part
            .and_then(|p| total.checked_add(&p))
            .filter(|t| *t <= max)
            .ok_or_else(too_long)?;
    }
    if !number.is_empty() {
        return Err(format!(
            "bad duration '{raw}': '{number}' has no unit; {hint}"
        ));
    }
    Ok(total)
}

/// A duration as people read it, to the minute: `36d 4h`, `5h 30m`, `45m`, `0m`.
pub fn format_duration(d: Duration) -> String {
    let mins = d.num_minutes().max(0);
    let (days, hours, minutes) = (mins / 1440, mins / 60 % 24, mins % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    if parts.is_empty() {
        "0m".into()
    } else {
        parts.join(" ")
    }
}

/// Parses a share written as a percentage, `10%` or `2.5%`, into 0..1. Shares of 0% or of
/// 100% and more are refused: a holdout or control group of everyone measures nothing.
pub fn parse_share(raw: &str) -> Result<f64, String> {
    let hint = "write a percentage between 0% and 100%, such as 10% or 2.5%";
    let number = raw
        .trim()
        .strip_suffix('%')
        .ok_or_else(|| format!("bad share '{raw}': no '%'; {hint}"))?;
    match number.trim().parse::<f64>() {
        Ok(p) if p > 0.0 && p < 100.0 => Ok(p / 100.0),
        Ok(p) if p.is_finite() => Err(format!(
            "bad share '{raw}': it must be more than 0% and less than 100% (a share of none or \
             of everyone compares nothing), such as 10% or 2.5%"
        )),
        _ => Err(format!("bad share '{raw}'; {hint}")),
    }
}

/// Parses a local time of day, `HH:MM` in 24-hour form.
pub fn parse_local_time(raw: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(raw.trim(), "%H:%M").map_err(|_| {
        format!("bad time '{raw}'; write a 24-hour time such as \"10:00\" or \"18:30\"")
    })
}

/// The path of an absolute URL, without query or fragment ("" when it has none):
/// `https://shop.example/mail/u?x=1` → `/mail/u`. Where the server answers a link it signs.
pub fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_japanese_name_typed_without_a_space_is_looked_up_with_one_between_any_two_characters() {
        use super::spaced_name_variants;
        let v = spaced_name_variants("佐藤彩");
        assert_eq!(
            v,
            ["佐 藤彩", "佐\u{3000}藤彩", "佐藤 彩", "佐藤\u{3000}彩"]
        );
        assert!(spaced_name_variants("Aya").is_empty());
        assert!(spaced_name_variants("佐藤 彩").is_empty());
        assert!(spaced_name_variants("彩").is_empty());
        assert!(spaced_name_variants("寿限無寿限無五劫の擦り切れ").is_empty());
    }

    #[test]
    fn an_address_is_looked_up_as_it_is_stored() {
        use super::{email_lookup_key, Email};
        let stored = Email::parse("ユーザー@例え.jp").unwrap();
        assert_eq!(email_lookup_key("ユーザー@例え.jp"), stored.as_str());
        assert_eq!(email_lookup_key("Aya@Example.JP"), "aya@example.jp");
        assert_eq!(email_lookup_key("山田 花子"), "山田 花子");
    }

    #[test]
    fn addresses_rebuy_cannot_send_to_are_refused_and_international_domains_become_ascii() {
        use super::Email;
        let refused = |raw: &str, why: &str| {
            let e = Email::parse(raw).unwrap_err();
            assert!(e.contains(why), "{raw}: {e}");
        };
        refused("\"a b\"@example.com", "quoted local part");
        refused("x@[127.0.0.1]", "IP address");
        refused("no-at-sign", "not a valid e-mail address");
        let ok = |raw: &str| Email::parse(raw).unwrap().as_str().to_string();
        assert_eq!(ok("Aya@例え.JP"), "Aya@xn--r8jz45g.jp");
        assert_eq!(ok(" ken@Example.COM "), "ken@example.com");
        assert_eq!(ok("山田@example.jp"), "山田@example.jp");
    }

    use super::*;

    #[test]
    fn currencies_are_iso_4217_codes_with_their_minor_digits() {
        assert_eq!(parse_currency(" jpy ").unwrap(), "JPY");
        let e = parse_currency("YEN").unwrap_err();
        assert!(
            e.contains("not an ISO 4217 currency code (the yen is JPY)"),
            "{e}"
        );
        assert!(parse_currency("ABC").is_err());
        // ISO codes that are no money an order is paid in; the real X-currencies pass.
        assert!(parse_currency("xxx").unwrap_err().contains("no currency"));
        assert!(parse_currency("XAU").is_err());
        assert_eq!(parse_currency("XOF").unwrap(), "XOF");
        assert_eq!(parse_currency("XCD").unwrap(), "XCD");
        let digits: Vec<u32> = ["JPY", "USD", "KWD", "CLF", "ISK", "ZZZ"]
            .iter()
            .map(|c| minor_digits(c))
            .collect();
        assert_eq!(digits, [0, 2, 3, 4, 0, 2]);
    }

    #[test]
    fn addresses_in_a_server_reply_are_masked_for_logs() {
        assert_eq!(
            mask_emails_in("550 5.1.1 <ken@example.com>: Recipient address rejected: user ken@example.com unknown"),
            "550 5.1.1 <k***@example.com>: Recipient address rejected: user k***@example.com unknown"
        );
        assert_eq!(mask_emails_in("421 try later"), "421 try later");
    }

    #[test]
    fn yen_has_no_decimals_and_dollars_have_two() {
        assert_eq!(format_money(3980, "JPY"), "¥3,980");
        assert_eq!(format_money(1234567, "JPY"), "¥1,234,567");
        assert_eq!(format_money(3980, "USD"), "$39.80");
        assert_eq!(format_money(5, "USD"), "$0.05");
        assert_eq!(format_money(-1250, "CHF"), "-12.50 CHF");
    }

    #[test]
    fn major_amounts_parse_into_minor_units() {
        assert_eq!(parse_major_amount("39.8", "USD"), Ok(3980));
        assert_eq!(parse_major_amount("3980", "JPY"), Ok(3980));
        assert_eq!(parse_major_amount("1,234.56", "USD"), Ok(123456));
        assert!(parse_major_amount("39.80", "JPY").is_err());
        assert!(parse_major_amount("abc", "USD").is_err());
    }

    #[test]
    fn durations_are_shown_to_the_minute() {
        assert_eq!(format_duration(Duration::hours(36 * 24 + 4)), "36d 4h");
        assert_eq!(format_duration(Duration::minutes(330)), "5h 30m");
        assert_eq!(format_duration(Duration::seconds(59)), "0m");
        assert_eq!(format_duration(Duration::days(3)), "3d");
    }

    #[test]
    fn durations_accept_units_and_combinations() {
        assert_eq!(parse_duration("3d"), Ok(Duration::days(3)));
        assert_eq!(parse_duration("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::hours(36)));
        assert_eq!(parse_duration("2w"), Ok(Duration::days(14)));
        assert_eq!(parse_duration("0"), Ok(Duration::zero()));
        assert!(parse_duration("3").unwrap_err().contains("no unit"));
        assert!(parse_duration("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("d").is_err());
        assert_eq!(parse_duration("3650d"), Ok(Duration::days(3650)));
        for long in [
            "3651d",
            "106751991167301d",
            "9223372036854775807s",
            "106751991166d106751991166d",
            "100000000d",
            "99999999999999999999999w",
            "1825d1826d",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("longer than 3650d"), "{long}: {e}");
        }
    }

    #[test]
    fn local_times_are_24_hour() {
        assert_eq!(parse_local_time("10:00").unwrap().to_string(), "10:00:00");
        assert!(parse_local_time("25:00").is_err());
        assert!(parse_local_time("10am").is_err());
    }

    #[test]
    fn emails_are_validated_and_masked() {
        assert_eq!(
            Email::parse(" Aya@Example.COM ").unwrap().as_str(),
            "Aya@example.com"
        );
        assert!(Email::parse("not an address").is_err());
        assert!(Email::parse("a@b.c\r\nBcc: x@y.z").is_err());
        assert_eq!(mask_email("aya@example.com"), "a***@example.com");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_duration_in_range_or_a_clear_error(text in "\\PC{0,24}") {
            match parse_duration(&text) {
                Ok(d) => proptest::prop_assert!(d >= Duration::zero() && d <= Duration::days(MAX_DURATION_DAYS)),
                Err(e) => proptest::prop_assert!(e.contains("duration"), "{}", e),
            }
        }

        #[test]
        fn a_number_and_unit_parse_exactly_when_they_fit(n in proptest::prop_oneof![0u64..10_000_000, proptest::num::u64::ANY], unit in 0usize..5) {
            let (ch, secs) = [('w', 604_800u128), ('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)][unit];
            let fits = u128::from(n) * secs <= 3650 * 86_400;
            let got = parse_duration(&format!("{n}{ch}"));
            proptest::prop_assert_eq!(got.is_ok(), fits, "{:?}", got);
            if fits {
                proptest::prop_assert_eq!(got.unwrap().num_seconds() as u128, u128::from(n) * secs);
            }
        }
    }
}
