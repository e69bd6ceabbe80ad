//! The segment condition language: a `where:` text such as
//! `p_alive < 0.3 and predicted_clv >= 20000 and bought(category: 'lotion', within: 90d)`
//! parsed into a typed [`Cond`]. Every problem is reported at its byte offset in the text, so
//! that the caller can turn it into `path:line:col`.

use super::fields::{self, Field, Kind};
use crate::diagnostic::did_you_mean;

/// A parsed, type-checked segment condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    /// `field op value`; false when the field has no value (no metrics, no model).
    Compare {
        field: Field,
        op: Op,
        value: Lit,
    },
    /// `field in [a, b]`; false when the field has no value.
    In {
        field: Field,
        values: Vec<Lit>,
    },
    /// Bought an item with this SKU or category, ever or within the last `within` days.
    Bought {
        by: ItemKey,
        value: String,
        within: Option<i64>,
    },
    /// Placed at least one order within the last N days.
    OrderedWithin(i64),
    /// The number of orders placed within the last `days` days, compared with `n`.
    OrdersWithin {
        days: i64,
        op: Op,
        n: i64,
    },
    /// The share of the customer's orders with line items (within the last `within` days, ever
    /// when None) that hold an item of `category`, compared with `share`; false without such
    /// orders.
    Affinity {
        category: String,
        within: Option<i64>,
        op: Op,
        share: f64,
    },
    /// The number of custom events named `event` within the last `within` days (ever when
    /// None), compared with `n`.
    Did {
        event: String,
        within: Option<i64>,
        op: Op,
        n: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKey {
    Sku,
    Category,
}

impl ItemKey {
    pub fn json_key(self) -> &'static str {
        match self {
            ItemKey::Sku => "sku",
            ItemKey::Category => "category",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "=",
            Op::Ne => "<>",
        }
    }

    /// Whether `ordering` (left compared with right) satisfies the operator.
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => ordering == Less,
            Op::Le => ordering != Greater,
            Op::Gt => ordering == Greater,
            Op::Ge => ordering != Less,
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
        }
    }
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

/// A problem at byte `offset` of the condition text.
#[derive(Debug, Clone, PartialEq)]
pub struct LangError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl LangError {
    fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// A number with a unit: `30d`.
    Duration(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Duration(d) => d.clone(),
        Tok::Op(o) => format!("'{}'", o.sql()),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Colon => "':'".into(),
        Tok::End => "the end".into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, LangError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b':' => Tok::Colon,
            b'<' | b'>' | b'=' | b'!' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                i += if two { 1 } else { 0 };
                match (c, two) {
                    (b'<', false) => Tok::Op(Op::Lt),
                    (b'<', true) => Tok::Op(Op::Le),
                    (b'>', false) => Tok::Op(Op::Gt),
                    (b'>', true) => Tok::Op(Op::Ge),
                    (b'=', true) => Tok::Op(Op::Eq),
                    (b'!', true) => Tok::Op(Op::Ne),
                    _ => {
                        return Err(LangError::new(start, "unexpected character")
                            .hint("compare with ==, !=, <, <=, > or >="))
                    }
                }
            }
            b'\'' | b'"' => {
                let end = text[i + 1..]
                    .find(c as char)
                    .ok_or_else(|| LangError::new(start, "this string is not closed"))?;
                let s = text[i + 1..i + 1 + end].to_string();
                i += end + 1;
                Tok::Str(s)
            }
            b'0'..=b'9' | b'-' => {
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'.') {
                    j += 1;
                }
                let word = &text[i..j];
                i = j - 1;
                number(start, word)?
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.')
                {
                    j += 1;
                }
                let word = text[i..j].to_string();
                i = j - 1;
                Tok::Ident(word)
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(LangError::new(
                    start,
                    format!("unexpected character '{ch}'"),
                ));
            }
        };
        out.push((start, tok));
        i += 1;
    }
    out.push((text.len(), Tok::End));
    Ok(out)
}

fn number(at: usize, word: &str) -> Result<Tok, LangError> {
    if let Ok(i) = word.parse::<i64>() {
        return Ok(Tok::Int(i));
    }
    if let Ok(f) = word.parse::<f64>() {
        if f.is_finite() {
            return Ok(Tok::Float(f));
        }
    }
    if word.ends_with(|c: char| c.is_ascii_alphabetic()) && !word.starts_with('-') {
        return Ok(Tok::Duration(word.to_string()));
    }
    Err(LangError::new(at, format!("'{word}' is not a number")))
}

/// Parses and type-checks a condition against the fields of [`fields`].
pub fn parse(text: &str) -> Result<Cond, LangError> {
    let toks = tokenize(text)?;
    let mut p = Parser { toks, pos: 0 };
    let cond = p.or()?;
    match p.peek() {
        (_, Tok::End) => Ok(cond),
        (at, t) => Err(LangError::new(*at, format!("unexpected {}", describe(t)))
            .hint("join conditions with 'and' or 'or'")),
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &(usize, Tok) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (usize, Tok) {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(&self.peek().1, Tok::Ident(w) if w == word) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, LangError> {
        let (at, t) = self.next();
        if t == want {
            Ok(at)
        } else {
            Err(LangError::new(
                at,
                format!("expected {what}, found {}", describe(&t)),
            ))
        }
    }

    fn or(&mut self) -> Result<Cond, LangError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Cond, LangError> {
        let mut parts = vec![self.unary()?];
        while self.keyword("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Cond::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Cond, LangError> {
        if self.keyword("not") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.peek().1 == Tok::LParen {
            self.pos += 1;
            let inner = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(inner);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond, LangError> {
        let (at, t) = self.next();
        let Tok::Ident(name) = t else {
            return Err(LangError::new(
                at,
                format!("expected a field or a function, found {}", describe(&t)),
            )
            .hint("a condition looks like `p_alive < 0.3` or `bought(sku: 'A-100')`"));
        };
        if self.peek().1 == Tok::LParen {
            return self.call(at, &name);
        }
        let field = fields::lookup(&name).ok_or_else(|| unknown_field(at, &name))?;
        if self.keyword("in") {
            return self.in_list(field);
        }
        let (op_at, op) = self.next();
        let Tok::Op(op) = op else {
            return Err(LangError::new(
                op_at,
                format!(
                    "expected a comparison after '{name}', found {}",
                    describe(&op)
                ),
            )
            .hint("compare with ==, !=, <, <=, > or >=, or write `in [..]`"));
        };
        let value = self.literal(&field)?;
        if matches!(field.kind(), Kind::Text | Kind::Bool) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(LangError::new(
                op_at,
                format!("'{name}' can only be compared with == or !="),
            ));
        }
        Ok(Cond::Compare { field, op, value })
    }

    fn in_list(&mut self, field: Field) -> Result<Cond, LangError> {
        self.expect(Tok::LBracket, "'[' to start the list")?;
        let mut values = vec![self.literal(&field)?];
        while self.peek().1 == Tok::Comma {
            self.pos += 1;
            values.push(self.literal(&field)?);
        }
        self.expect(Tok::RBracket, "']' to close the list")?;
        Ok(Cond::In { field, values })
    }

    /// A literal of the field's kind.
    fn literal(&mut self, field: &Field) -> Result<Lit, LangError> {
        let (at, t) = self.next();
        let kind = field.kind();
        let lit = match (&kind, t) {
            (Kind::Int | Kind::Float | Kind::Any, Tok::Int(i)) => Lit::Int(i),
            (Kind::Int | Kind::Float | Kind::Any, Tok::Float(f)) => Lit::Float(f),
            (Kind::Text | Kind::Any, Tok::Str(s)) => Lit::Text(s),
            (Kind::Date, Tok::Str(s)) => {
                if chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").is_err() {
                    return Err(LangError::new(at, format!("'{s}' is not a date"))
                        .hint("write dates as 'YYYY-MM-DD'"));
                }
                Lit::Text(s)
            }
            (Kind::Bool, Tok::Ident(w)) if w == "true" || w == "false" => Lit::Bool(w == "true"),
            (Kind::Any, Tok::Ident(w)) if w == "true" || w == "false" => Lit::Bool(w == "true"),
            (_, t) => {
                return Err(LangError::new(
                    at,
                    format!(
                        "'{}' is {}, found {}",
                        field.name(),
                        kind.article(),
                        describe(&t)
                    ),
                )
                .hint(kind.example()))
            }
        };
        if let (Field::Metric("rfm_segment"), Lit::Text(s)) = (field, &lit) {
            if !crate::metrics::SEGMENTS.contains(&s.as_str()) {
                let hint = match did_you_mean(s, &crate::metrics::SEGMENTS) {
                    Some(m) => format!("did you mean '{m}'?"),
                    None => format!("RFM segments: {}", crate::metrics::SEGMENTS.join(", ")),
                };
                return Err(LangError::new(at, format!("no RFM segment '{s}'")).hint(hint));
            }
        }
        Ok(lit)
    }

    fn call(&mut self, at: usize, name: &str) -> Result<Cond, LangError> {
        self.pos += 1; // (
        match name {
            "bought" => self.bought(at),
            "did" => self.did(at),
            "affinity" => self.affinity(at),
            "ordered_within" | "no_order_within" => {
                let days = self.days()?;
                self.expect(Tok::RParen, "')'")?;
                let c = Cond::OrderedWithin(days);
                Ok(if name == "ordered_within" {
                    c
                } else {
                    Cond::Not(Box::new(c))
                })
            }
            "orders_within" => {
                let days = self.days()?;
                self.expect(Tok::RParen, "')'")?;
                let (op_at, op) = self.next();
                let Tok::Op(op) = op else {
                    return Err(LangError::new(
                        op_at,
                        "orders_within(..) must be compared with a number",
                    )
                    .hint("e.g. orders_within(365d) >= 3"));
                };
                match self.next() {
                    (_, Tok::Int(n)) => Ok(Cond::OrdersWithin { days, op, n }),
                    (at, t) => Err(LangError::new(
                        at,
                        format!("expected a whole number, found {}", describe(&t)),
                    )),
                }
            }
            other => Err(
                LangError::new(at, format!("unknown function '{other}'")).hint(match did_you_mean(
                    other, FUNCTIONS,
                ) {
                    Some(m) => format!("did you mean '{m}'?"),
                    None => format!("functions: {}", FUNCTIONS.join(", ")),
                }),
            ),
        }
    }

    /// `name(key: value, …)` after the `(`: reads each key and its colon, lets `arg` read
    /// the value, until `)`. An unknown key is refused naming the ones `func` takes.
    fn named_args(
        &mut self,
        func: &str,
        keys: &[&str],
        mut arg: impl FnMut(&mut Self, usize, &str) -> Result<(), LangError>,
    ) -> Result<(), LangError> {
        loop {
            let (key_at, key) = self.next();
            let Tok::Ident(key) = key else {
                return Err(LangError::new(
                    key_at,
                    format!("expected {}:, found {}", keys.join(":, "), describe(&key)),
                ));
            };
            self.expect(Tok::Colon, "':'")?;
            if !keys.contains(&key.as_str()) {
                return Err(
                    LangError::new(key_at, format!("{func}() has no argument '{key}'"))
                        .hint(format!("arguments: {}", keys.join(", "))),
                );
            }
            arg(self, key_at, &key)?;
            match self.next() {
                (_, Tok::Comma) => continue,
                (_, Tok::RParen) => return Ok(()),
                (at, t) => {
                    return Err(LangError::new(
                        at,
                        format!("expected ',' or ')', found {}", describe(&t)),
                    ))
                }
            }
        }
    }

    /// A quoted text argument.
    fn text_arg(&mut self, key: &str, example: &str) -> Result<(usize, String), LangError> {
        match self.next() {
            (at, Tok::Str(v)) => Ok((at, v)),
            (at, v) => Err(LangError::new(
                at,
                format!("'{key}' must be a string, found {}", describe(&v)),
            )
            .hint(format!("quote it: {key}: '{example}'"))),
        }
    }

    /// `bought(sku: 'X')`, `bought(category: 'X', within: 30d)`.
    fn bought(&mut self, at: usize) -> Result<Cond, LangError> {
        let mut by = None;
        let mut within = None;
        self.named_args(
            "bought",
            &["sku", "category", "within"],
            |p, key_at, key| {
                if key == "within" {
                    within = Some(p.days()?);
                    return Ok(());
                }
                let (_, v) = p.text_arg(key, "A-100")?;
                let k = if key == "sku" {
                    ItemKey::Sku
                } else {
                    ItemKey::Category
                };
                if by.replace((k, v)).is_some() {
                    return Err(LangError::new(key_at, "give either sku or category, once"));
                }
                Ok(())
            },
        )?;
        let (by, value) = by.ok_or_else(|| {
            LangError::new(at, "bought() needs a sku or a category")
                .hint("e.g. bought(category: 'lotion', within: 90d)")
        })?;
        Ok(Cond::Bought { by, value, within })
    }

    /// `affinity(category: 'lotion', within: 365d) > 0.2`: the share of their orders with a
    /// lotion, compared with a number from 0 to 1.
    fn affinity(&mut self, at: usize) -> Result<Cond, LangError> {
        let (mut category, mut within) = (None, None);
        self.named_args("affinity", &["category", "within"], |p, _, key| {
            match key {
                "within" => within = Some(p.days()?),
                _ => category = Some(p.text_arg(key, "lotion")?.1),
            }
            Ok(())
        })?;
        let example = "e.g. affinity(category: 'lotion') > 0.2";
        let category = category
            .ok_or_else(|| LangError::new(at, "affinity() needs a category").hint(example))?;
        let (op_at, op) = self.next();
        let Tok::Op(op) = op else {
            return Err(LangError::new(
                op_at,
                "affinity(..) must be compared with a share from 0 to 1",
            )
            .hint(example));
        };
        let share = match self.next() {
            (_, Tok::Int(n)) if (0..=1).contains(&n) => n as f64,
            (_, Tok::Float(f)) if (0.0..=1.0).contains(&f) => f,
            (at, t) => {
                return Err(LangError::new(
                    at,
                    format!("expected a share from 0 to 1, found {}", describe(&t)),
                )
                .hint("0.2 is one order in five"))
            }
        };
        Ok(Cond::Affinity {
            category,
            within,
            op,
            share,
        })
    }

    /// `did(event: 'product_viewed', within: 7d, count: '>= 3')`: without `count`, at least
    /// once; without `within`, ever.
    fn did(&mut self, at: usize) -> Result<Cond, LangError> {
        let (mut event, mut within, mut count) = (None, None, (Op::Ge, 1));
        self.named_args("did", &["event", "within", "count"], |p, _, key| {
            match key {
                "within" => within = Some(p.days()?),
                "count" => count = p.count_arg()?,
                _ => {
                    let (v_at, v) = p.text_arg(key, "product_viewed")?;
                    if !crate::domain::valid_event_name(&v) {
                        return Err(LangError::new(v_at, format!("'{v}' is not an event name"))
                            .hint(
                                "1 to 64 letters, digits, '_', '-' or '.', as posted to /v1/events",
                            ));
                    }
                    event = Some(v);
                }
            }
            Ok(())
        })?;
        let event = event.ok_or_else(|| {
            LangError::new(at, "did() needs an event")
                .hint("e.g. did(event: 'product_viewed', within: 7d, count: '>= 3')")
        })?;
        let (op, n) = count;
        Ok(Cond::Did {
            event,
            within,
            op,
            n,
        })
    }

    /// `count: '>= 3'` (any comparison), or `count: 3` for at least 3.
    fn count_arg(&mut self) -> Result<(Op, i64), LangError> {
        let (at, t) = self.next();
        let bad = |what: &str| {
            LangError::new(at, format!("count {what}"))
                .hint("write a comparison and a whole number: count: '>= 3'")
        };
        let (op, n) = match t {
            Tok::Int(n) => (Op::Ge, n),
            Tok::Str(s) => {
                let s = s.trim();
                let (op, rest) = [
                    (">=", Op::Ge),
                    ("<=", Op::Le),
                    ("==", Op::Eq),
                    ("!=", Op::Ne),
                    (">", Op::Gt),
                    ("<", Op::Lt),
                ]
                .into_iter()
                .find_map(|(sym, op)| s.strip_prefix(sym).map(|r| (op, r)))
                .ok_or_else(|| bad(&format!("'{s}' does not start with a comparison")))?;
                let n = rest
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad(&format!("'{s}' does not end with a whole number")))?;
                (op, n)
            }
            other => {
                return Err(bad(&format!(
                    "must be text such as '>= 3', found {}",
                    describe(&other)
                )))
            }
        };
        if n < 0 {
            return Err(bad("cannot be negative"));
        }
        Ok((op, n))
    }

    /// A window of whole days: `90d`, `12w`.
    fn days(&mut self) -> Result<i64, LangError> {
        let (at, t) = self.next();
        let text = match t {
            Tok::Duration(d) => d,
            other => {
                return Err(LangError::new(
                    at,
                    format!(
                        "expected a number of days such as 90d, found {}",
                        describe(&other)
                    ),
                ))
            }
        };
        let d = crate::domain::parse_duration(&text).map_err(|e| LangError::new(at, e))?;
        if d.num_days() < 1 || d != chrono::Duration::days(d.num_days()) {
            return Err(LangError::new(
                at,
                format!("'{text}' must be a whole number of days, at least 1d"),
            ));
        }
        Ok(d.num_days())
    }
}

/// The functions a condition may call.
pub const FUNCTIONS: &[&str] = &[
    "affinity",
    "bought",
    "did",
    "ordered_within",
    "no_order_within",
    "orders_within",
];

fn unknown_field(at: usize, name: &str) -> LangError {
    let names = fields::names();
    let hint = match did_you_mean(name, &names) {
        Some(m) => format!("did you mean '{m}'?"),
        None if name.starts_with("customer.") => {
            "customer fields: customer.orders_count, customer.total_spent, customer.locale, customer.timezone, customer.currency, customer.marketing_consent, customer.attributes.NAME".into()
        }
        None => "fields are the metrics (docs/metrics.md), customer.* and customer.attributes.*".into(),
    };
    LangError::new(at, format!("unknown field '{name}'")).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        // Any text, or any run of the language's own words, is a condition or an error at a
        // place inside the text: never a panic.
        #[test]
        fn any_text_is_a_condition_or_an_error_at_a_place_in_it(text in proptest::prop_oneof![
            "\\PC{0,80}",
            proptest::collection::vec(proptest::prop_oneof![
                "(and|or|not|\\(|\\)|==|>=|<|,|in|\\[|\\])".prop_map(String::from),
                "(orders|monetary|recency_days|rfm|bought|did|within|count|event)".prop_map(String::from),
                "[0-9]{1,4}(d|w)?".prop_map(String::from),
                "'[a-z]{0,4}'".prop_map(String::from),
            ], 0..14).prop_map(|w| w.join(" ")),
        ]) {
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.offset <= text.len(), "{} past {}", e.offset, text.len());
                proptest::prop_assert!(!e.message.is_empty());
            }
        }
    }

    fn err(text: &str) -> LangError {
        parse(text).expect_err(text)
    }

    #[test]
    fn affinity_takes_a_category_and_a_share_from_0_to_1() {
        assert_eq!(
            parse("affinity(category: 'lotion', within: 365d) > 0.2").unwrap(),
            Cond::Affinity {
                category: "lotion".into(),
                within: Some(365),
                op: Op::Gt,
                share: 0.2
            }
        );
        assert!(err("affinity(within: 30d) > 0.2")
            .message
            .contains("needs a category"));
        let e = err("affinity(category: 'lotion') > 20");
        assert_eq!(e.offset, 31);
        assert!(e.message.contains("a share from 0 to 1"), "{}", e.message);
        let e = err("affinity(category: 'lotion')");
        assert!(e.message.contains("must be compared"), "{}", e.message);
        assert!(err("affinity(category: lotion) > 0.1")
            .message
            .contains("must be a string"));
    }

    #[test]
    fn precedence_binds_and_tighter_than_or() {
        let c = parse("orders >= 2 or r_score == 5 and not f_score < 3").unwrap();
        let Cond::Or(parts) = c else { panic!() };
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[1], Cond::And(a) if matches!(a[1], Cond::Not(_))));
    }

    #[test]
    fn calls_parse_with_their_arguments() {
        assert_eq!(
            parse("bought(category: 'lotion', within: 2w)").unwrap(),
            Cond::Bought {
                by: ItemKey::Category,
                value: "lotion".into(),
                within: Some(14)
            }
        );
        assert_eq!(
            parse("orders_within(365d) >= 3").unwrap(),
            Cond::OrdersWithin {
                days: 365,
                op: Op::Ge,
                n: 3
            }
        );
        assert_eq!(
            parse("no_order_within(90d)").unwrap(),
            Cond::Not(Box::new(Cond::OrderedWithin(90)))
        );
        assert_eq!(
            parse("did(event: 'product_viewed', within: 7d, count: '>= 3')").unwrap(),
            Cond::Did {
                event: "product_viewed".into(),
                within: Some(7),
                op: Op::Ge,
                n: 3
            }
        );
        assert_eq!(
            parse("did(event: \"cart_added\")").unwrap(),
            Cond::Did {
                event: "cart_added".into(),
                within: None,
                op: Op::Ge,
                n: 1
            }
        );
        assert_eq!(
            parse("did(count: '<2', event: 'x')").unwrap(),
            Cond::Did {
                event: "x".into(),
                within: None,
                op: Op::Lt,
                n: 2
            }
        );
    }

    #[test]
    fn did_arguments_are_checked_where_they_are_written() {
        let e = err("did(event: 'product viewed')");
        assert_eq!(e.offset, 11);
        assert!(e.message.contains("not an event name"), "{}", e.message);
        let e = err("did(event: 'v', count: 'about 3')");
        assert_eq!(e.offset, 23);
        assert!(e.hint.unwrap().contains("'>= 3'"));
        assert_eq!(err("did(event: 'v', count: '>= x')").offset, 23);
        assert_eq!(err("did(event: 'v', count: -1)").offset, 23);
        assert_eq!(err("did(within: 7d)").offset, 0);
        let e = err("did(event: 'v', times: 3)");
        assert_eq!(e.offset, 16);
        assert_eq!(e.hint.as_deref(), Some("arguments: event, within, count"));
        assert_eq!(err("did(event: v)").offset, 11);
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = err("p_alive < 0.3 and predicted_cvl >= 20000");
        assert_eq!(e.offset, 18);
        assert_eq!(e.hint.as_deref(), Some("did you mean 'predicted_clv'?"));
        let e = err("p_alive < 'high'");
        assert_eq!(e.offset, 10);
        assert!(e.message.contains("is a number"), "{}", e.message);
        let e = err("rfm_segment == 'at_risk'");
        assert_eq!(e.hint.as_deref(), Some("did you mean 'at risk'?"));
        assert_eq!(err("rfm_segment < 'lost'").offset, 12);
        assert_eq!(err("bought(sku: 'A', within: 36h)").offset, 25);
        assert_eq!(err("last_order > '2024-13-01'").offset, 13);
        assert_eq!(err("orders >= 2 r_score").offset, 12);
        assert_eq!(
            err("boughtt(sku: 'A')").hint.as_deref(),
            Some("did you mean 'bought'?")
        );
        assert_eq!(err("(orders > 1").offset, 11);
    }
}
