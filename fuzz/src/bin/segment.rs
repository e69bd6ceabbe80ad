//! Fuzzes the segment condition language: a `where:` text parsed into a condition, which,
//! when it parses, is compiled to bound SQL and evaluated in Rust (the reference the SQL is
//! tested against) over one customer with metrics, orders, events and attributes. Input: the
//! condition's text (UTF-8; other bytes are skipped, as YAML cannot carry them).

use chrono::NaiveDate;
use rebuy::segment::eval::{matches, FactEvent, FactOrder, Facts};
use rebuy::segment::{compile, lang, Window};
use rebuy::store::{CustomerRow, MetricsRow};

/// 2026-10-31 00:00 in Tokyo, in unix milliseconds: the day before the window's as-of date.
const DAY_BEFORE: i64 = 1_793_372_400_000;
const DAY: i64 = 86_400_000;

fn customer(metrics: MetricsRow) -> CustomerRow {
    CustomerRow {
        id: "C1".into(),
        email: "hanako@example.jp".into(),
        name: "山田 花子".into(),
        timezone: Some("Asia/Tokyo".into()),
        locale: Some("ja".into()),
        attributes: r#"{"plan":"gold","skin_type":"dry","visits":12,"vip":true,"tags":["a"]}"#
            .into(),
        orders_count: 3,
        total_spent: 11_940,
        currency: Some("JPY".into()),
        first_order_at: Some(DAY_BEFORE - 200 * DAY),
        last_order_at: Some(DAY_BEFORE - 40 * DAY),
        marketing_consent: Some(1),
        consent_at: None,
        metrics: Some(Box::new(metrics)),
        segments: vec!["champions".into()],
    }
}

fn metrics() -> MetricsRow {
    MetricsRow {
        customer_id: "C1".into(),
        as_of: "2026-11-01".into(),
        orders: 3,
        first_order: "2026-04-15".into(),
        last_order: "2026-09-22".into(),
        days_since_last: 40,
        tenure_days: 200,
        total_spent: 11_940,
        average_order_value: 3980.0,
        frequency: 2,
        recency: 160,
        t: 200,
        monetary: 3980.0,
        r_score: 3,
        f_score: 4,
        m_score: 2,
        rfm_segment: "loyal".into(),
        p_alive: Some(0.42),
        expected_purchases_30d: Some(0.3),
        expected_purchases_90d: Some(0.8),
        predicted_clv: None,
        expected_next_order: Some("2026-11-20".into()),
    }
}

fn main() {
    let window = Window::new(
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default(),
        chrono_tz::Asia::Tokyo,
    );
    let metrics = metrics();
    let customer = customer(metrics.clone());
    let orders = [
        FactOrder {
            placed_at: DAY_BEFORE - 200 * DAY,
            skus: vec!["CL-01".into()],
            categories: vec!["cleansing".into()],
        },
        FactOrder {
            placed_at: DAY_BEFORE - 40 * DAY,
            skus: vec!["LO-01".into(), "CL-01".into()],
            categories: vec!["lotion".into(), "cleansing".into()],
        },
        // After the as-of date: never counted.
        FactOrder {
            placed_at: DAY_BEFORE + 2 * DAY,
            skus: vec!["SE-01".into()],
            categories: vec!["serum".into()],
        },
    ];
    let events = [
        FactEvent {
            name: "product_viewed".into(),
            at: DAY_BEFORE - DAY,
        },
        FactEvent {
            name: "product_viewed".into(),
            at: DAY_BEFORE,
        },
        FactEvent {
            name: "cart_added".into(),
            at: DAY_BEFORE - 10 * DAY,
        },
    ];
    let with_metrics = Facts {
        customer: &customer,
        metrics: Some(&metrics),
        orders: &orders,
        events: &events,
    };
    let without_metrics = Facts {
        customer: &customer,
        metrics: None,
        orders: &[],
        events: &[],
    };

    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match lang::parse(text) {
            Ok(cond) => {
                let sql = compile(&cond, &window);
                std::hint::black_box(&sql);
                std::hint::black_box(matches(&cond, &with_metrics, &window));
                std::hint::black_box(matches(&cond, &without_metrics, &window));
            }
            Err(e) => {
                std::hint::black_box(e);
            }
        }
    });
}
