//! rebuy's metrics and models against the reference library's output on the CDNOW sample
//! (`tests/fixtures/cdnow/`, from lifetimes 0.11.3): the summary columns, RFM scores and repeat
//! rates exactly; model parameters within 1e-4 relative (and the log-likelihood); per-customer
//! predictions within 1e-6 relative plus 1e-12 absolute.

use crate::helpers::{cdnow_json, cdnow_rows, day};
use rebuy::metrics::{
    self, quintiles, repeat_within, BgNbd, Direction, GammaGamma, Purchase, Summary,
};
use std::collections::BTreeMap;

fn end() -> i64 {
    day("1998-06-30")
}

fn num(row: &BTreeMap<String, String>, key: &str) -> f64 {
    row[key].parse().unwrap()
}

/// Orders by customer id, in id order.
fn orders() -> BTreeMap<u32, Vec<Purchase>> {
    let mut out: BTreeMap<u32, Vec<Purchase>> = BTreeMap::new();
    for r in cdnow_rows("cdnow_sample_orders.csv") {
        out.entry(r["customer_id"].parse().unwrap())
            .or_default()
            .push(Purchase {
                day: day(&r["ordered_at"]),
                amount: num(&r, "amount"),
            });
    }
    out
}

fn summaries() -> BTreeMap<u32, Summary> {
    orders()
        .into_iter()
        .map(|(id, o)| (id, Summary::of(&o, end()).unwrap()))
        .collect()
}

fn close(got: f64, want: f64, rel: f64, abs: f64) -> bool {
    (got - want).abs() <= rel * want.abs() + abs
}

#[test]
fn the_summary_matches_the_reference_for_every_customer() {
    let ours = summaries();
    let oracle = cdnow_rows("cdnow_sample_summary_oracle.csv");
    assert_eq!(ours.len(), oracle.len());
    for r in &oracle {
        let s = &ours[&r["customer_id"].parse::<u32>().unwrap()];
        assert_eq!(
            (s.frequency, s.recency, s.t),
            (num(r, "frequency"), num(r, "recency"), num(r, "T")),
            "customer {}",
            r["customer_id"]
        );
        assert!(
            close(s.monetary, num(r, "monetary_value"), 0.0, 1e-9),
            "customer {}: {} vs {}",
            r["customer_id"],
            s.monetary,
            r["monetary_value"]
        );
    }
}

#[test]
fn rfm_scores_and_raw_values_match_the_reference() {
    let ours = summaries();
    let ids: Vec<u32> = ours.keys().copied().collect();
    let recency: Vec<f64> = ids.iter().map(|i| ours[i].days_since_last()).collect();
    let count: Vec<f64> = ids.iter().map(|i| f64::from(ours[i].orders)).collect();
    // Totals to the cent, as the reference rounds them.
    let money: Vec<f64> = ids
        .iter()
        .map(|i| (ours[i].total * 100.0).round() / 100.0)
        .collect();
    let r = quintiles(&recency, Direction::LowerIsBetter);
    let f = quintiles(&count, Direction::HigherIsBetter);
    let m = quintiles(&money, Direction::HigherIsBetter);
    let oracle = cdnow_rows("cdnow_sample_rfm_oracle.csv");
    assert_eq!(oracle.len(), ids.len());
    for (k, row) in oracle.iter().enumerate() {
        assert_eq!(row["customer_id"].parse::<u32>().unwrap(), ids[k]);
        assert_eq!(recency[k], num(row, "recency_days"));
        assert_eq!(count[k], num(row, "orders"));
        assert!(close(money[k], num(row, "monetary_total"), 0.0, 1e-9));
        let want: (u8, u8, u8) = (
            row["R"].parse().unwrap(),
            row["F"].parse().unwrap(),
            row["M"].parse().unwrap(),
        );
        assert_eq!((r[k], f[k], m[k]), want, "customer {}", ids[k]);
    }
}

#[test]
fn repeat_rates_match_the_reference() {
    let orders = orders();
    let want: serde_json::Value = cdnow_json("cdnow_sample_repeat_metrics.json");
    let n = orders.len() as f64;
    for days in [30, 60, 90, 180, 365] {
        let share = orders.values().filter(|o| repeat_within(o, days)).count() as f64 / n;
        let expected = want[format!("repeat_within_{days}d")].as_f64().unwrap();
        // The reference rounds to 6 decimals.
        assert!(
            (share - expected).abs() < 5e-7,
            "{days} days: {share} vs {expected}"
        );
    }
    // The cohort report adds up to the same shares over all cohorts.
    let cohorts = metrics::cohorts(
        orders.values().map(|o| o.iter().map(|p| p.day).collect()),
        end(),
    );
    assert_eq!(cohorts.iter().map(|c| c.customers).sum::<u64>(), 2357);
    assert_eq!(
        cohorts.iter().map(|c| c.month.as_str()).collect::<Vec<_>>(),
        ["1997-01", "1997-02", "1997-03"]
    );
    for (k, days) in metrics::WINDOWS.iter().enumerate() {
        let back: u64 = cohorts.iter().map(|c| c.repeat_within[k]).sum();
        let expected = want[format!("repeat_within_{days}d")].as_f64().unwrap();
        assert!((back as f64 / n - expected).abs() < 5e-7, "{days} days");
        assert!(
            cohorts.iter().all(|c| c.complete[k]),
            "all windows have run out by mid-1998"
        );
    }
    assert!(cohorts.iter().all(|c| c.active[0] == c.customers));
    let two_plus = orders.values().filter(|o| o.len() >= 2).count() as f64 / n;
    assert!((two_plus - want["share_2plus_orders"].as_f64().unwrap()).abs() < 5e-7);
}

fn params() -> serde_json::Value {
    cdnow_json("cdnow_sample_model_params.json")
}

#[test]
fn the_models_and_every_prediction_match_the_reference() {
    let ours = summaries();
    let all: Vec<Summary> = ours.values().copied().collect();
    let want = params();
    let bg = BgNbd::fit(&all).unwrap();
    let w = &want["bgnbd"];
    for (name, got) in [("r", bg.r), ("alpha", bg.alpha), ("a", bg.a), ("b", bg.b)] {
        let expected = w[name].as_f64().unwrap();
        assert!(
            close(got, expected, 1e-4, 0.0),
            "BG/NBD {name}: {got} vs {expected}"
        );
    }
    let ll = w["log_likelihood_day_units"].as_f64().unwrap();
    assert!(
        bg.log_likelihood >= ll - 1e-6 * ll.abs(),
        "log-likelihood {} below the reference's {ll}",
        bg.log_likelihood
    );
    let gg = GammaGamma::fit(&all).unwrap();
    assert_eq!(
        gg.customers as u64,
        want["gamma_gamma_customers"].as_u64().unwrap()
    );
    let w = &want["gamma_gamma"];
    for (name, got) in [("p", gg.p), ("q", gg.q), ("v", gg.v)] {
        let expected = w[name].as_f64().unwrap();
        assert!(
            close(got, expected, 1e-4, 0.0),
            "Gamma-Gamma {name}: {got} vs {expected}"
        );
    }

    // Per customer, with the reference's own parameters, so that the formulas are compared
    // exactly and not the optimisers' last digits.
    let w = &want["bgnbd"];
    let reference = BgNbd {
        r: w["r"].as_f64().unwrap(),
        alpha: w["alpha"].as_f64().unwrap(),
        a: w["a"].as_f64().unwrap(),
        b: w["b"].as_f64().unwrap(),
        log_likelihood: 0.0,
    };
    for row in cdnow_rows("cdnow_sample_bgnbd_oracle.csv") {
        let s = &ours[&row["customer_id"].parse::<u32>().unwrap()];
        for (got, key) in [
            (reference.p_alive(s), "p_alive"),
            (
                reference.expected_purchases(30.0, s),
                "expected_purchases_30d",
            ),
            (
                reference.expected_purchases(90.0, s),
                "expected_purchases_90d",
            ),
        ] {
            let expected = num(&row, key);
            assert!(
                close(got, expected, 1e-6, 1e-12),
                "customer {} {key}: {got} vs {expected}",
                row["customer_id"]
            );
        }
    }
    let w = &want["gamma_gamma"];
    let spend = GammaGamma {
        p: w["p"].as_f64().unwrap(),
        q: w["q"].as_f64().unwrap(),
        v: w["v"].as_f64().unwrap(),
        customers: 0,
    };
    let mut total = 0.0;
    for row in cdnow_rows("cdnow_sample_clv_oracle.csv") {
        let s = &ours[&row["customer_id"].parse::<u32>().unwrap()];
        let value = spend.expected_average_value(s.frequency, s.monetary);
        let clv = metrics::clv(&reference, &spend, s, 12, 0.01);
        total += clv;
        for (got, key) in [(value, "expected_avg_order_value"), (clv, "clv_12m")] {
            let expected = num(&row, key);
            assert!(
                close(got, expected, 1e-6, 1e-12),
                "customer {} {key}: {got} vs {expected}",
                row["customer_id"]
            );
        }
    }
    let sum = want["clv"]["sum"].as_f64().unwrap();
    assert!(close(total, sum, 1e-6, 0.0), "{total} vs {sum}");

    // And with our own fit, the predictions stay within the parameters' tolerance.
    for s in all.iter().take(200) {
        let (ours, theirs) = (
            bg.expected_purchases(90.0, s),
            reference.expected_purchases(90.0, s),
        );
        assert!(close(ours, theirs, 1e-3, 1e-9), "{ours} vs {theirs}");
    }
}
