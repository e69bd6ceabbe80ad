//! `rebuy recommend CUSTOMER`: the products rebuy would recommend to one customer, and why;
//! `rebuy recommend evaluate --split-at DATE`: how well the lists predict what customers
//! really bought next, beside plain cosine co-occurrence and popularity.

use super::metrics::parse_date;
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{from_millis, Clock as _, SystemClock};
use crate::metrics::day_number;
use crate::recommend::model::{Facts, Kind, Reason};
use crate::recommend::{evaluate_split, Histories, Metrics, Model, Params};
use crate::store::{Product, Store};
use chrono::NaiveDate;
use std::collections::HashMap;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RecommendArgs {
    /// The customer: the shop's id or an e-mail address.
    pub customer: Option<String>,
    /// How many products.
    #[arg(long, default_value_t = 5)]
    pub n: usize,
    /// cross-sell: what goes with what they bought; next: what customers buy in the order
    /// after; upsell: the catalog's upgrades of what they bought, and what customers moved up
    /// to within a category (needs a catalog with categories and prices).
    #[arg(long, value_enum, default_value = "cross-sell")]
    pub kind: Kind,
    /// Learn from the orders up to the end of this day (YYYY-MM-DD, the shop's zone); default today.
    #[arg(long, value_parser = parse_date)]
    pub as_of: Option<NaiveDate>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    #[command(subcommand)]
    pub command: Option<RecommendCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RecommendCommand {
    /// Learn from the orders before a day and score the lists against what each customer
    /// bought from that day on: hit rate, precision, recall and MAP at k.
    Evaluate {
        /// The first day of the "after" half (YYYY-MM-DD, the shop's zone).
        #[arg(long, value_parser = parse_date)]
        split_at: NaiveDate,
        /// The length of each list.
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

/// The item fields recommendations read.
#[derive(serde::Deserialize)]
struct Item {
    sku: String,
    #[serde(default)]
    name: String,
}

/// Which products may be recommended: with a catalog, those in it, in stock and active (a
/// SKU only old orders name is learnt from, never recommended); without one, every product.
fn allowed_by(catalog: &[Product], h: &Histories) -> Option<Vec<bool>> {
    if catalog.is_empty() {
        return None;
    }
    let mut ok = vec![false; h.skus.len()];
    for p in catalog.iter().filter(|p| p.in_stock && p.active) {
        if let Some(i) = h.find(&p.sku) {
            ok[i as usize] = true;
        }
    }
    Some(ok)
}

/// The catalog's category, price and upgrade of each product, by product number.
fn facts_of(catalog: &[Product], h: &Histories) -> Vec<Option<Facts>> {
    let mut facts = vec![None; h.skus.len()];
    for p in catalog {
        if let Some(i) = h.find(&p.sku) {
            facts[i as usize] = Some(Facts {
                category: p.category.clone(),
                price: p.price,
                upgrade_of: p.upgrade_of.as_deref().and_then(|u| h.find(u)),
            });
        }
    }
    facts
}

/// Every purchase in the store, by day in `zone`, and each product's latest name.
async fn histories(
    store: &Store,
    zone: chrono_tz::Tz,
) -> anyhow::Result<(Histories, HashMap<String, String>)> {
    let mut h = Histories::default();
    let mut names = HashMap::new();
    let mut unreadable = 0u64;
    store
        .for_each_order_items(|customer, placed_at, items| {
            let day = day_number(from_millis(placed_at).with_timezone(&zone).date_naive());
            match serde_json::from_str::<Vec<Item>>(items) {
                Ok(items) => {
                    for i in items {
                        h.add(customer, &i.sku, day);
                        if !i.name.is_empty() {
                            names.insert(i.sku, i.name);
                        }
                    }
                }
                Err(_) => unreadable += 1,
            }
        })
        .await?;
    if unreadable > 0 {
        tracing::warn!(
            orders = unreadable,
            "orders whose items could not be read were left out"
        );
    }
    Ok((h.finish(), names))
}

pub async fn run(app: &App, args: &RecommendArgs) -> anyhow::Result<u8> {
    let store = app.store().await?;
    let zone = app.resolved.default_timezone;
    let code = match (&args.command, &args.customer) {
        (
            Some(RecommendCommand::Evaluate {
                split_at,
                k,
                format,
            }),
            _,
        ) => evaluate(&store, zone, *split_at, *k, *format).await?,
        (None, Some(customer)) => show(&store, zone, customer, args).await?,
        (None, None) => {
            eprintln!("name a customer (`rebuy recommend C0001`), or `rebuy recommend evaluate --split-at DATE`");
            exit::USAGE
        }
    };
    store.close().await;
    Ok(code)
}

async fn show(
    store: &Store,
    zone: chrono_tz::Tz,
    customer: &str,
    args: &RecommendArgs,
) -> anyhow::Result<u8> {
    let c = store.find_customer(customer).await?;
    let as_of = args
        .as_of
        .unwrap_or_else(|| SystemClock.now().with_timezone(&zone).date_naive());
    let (mut h, mut names) = histories(store, zone).await?;
    let catalog = store.products().await?;
    // Products no order names yet (a new upgrade) still get a number, so they can be offered.
    for p in &catalog {
        h.sku_id(&p.sku);
    }
    let allowed = allowed_by(&catalog, &h);
    let by_sku: HashMap<&str, &Product> = catalog.iter().map(|p| (p.sku.as_str(), p)).collect();
    for p in &catalog {
        names.insert(p.sku.clone(), p.name.clone());
    }
    let model = Model::learn(&h, day_number(as_of), Params::default());
    let history: Vec<_> = h
        .of(&c.id)
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|b| b.day <= day_number(as_of))
        .collect();
    let facts = facts_of(&catalog, &h);
    let picks = model.recommend_kind(args.kind, &history, args.n, &facts, &|s| {
        allowed.as_ref().is_none_or(|a| a[s as usize])
    });
    // Scores relative to the first: their scale depends on how old the purchases are.
    let top = picks
        .first()
        .map_or(1.0, |p| p.score.max(f32::MIN_POSITIVE));
    let sku = |i: u32| h.skus[i as usize].clone();
    let name = |i: u32| names.get(&h.skus[i as usize]).cloned().unwrap_or_default();
    let why = |p: &crate::recommend::Pick| match (p.reason, p.because) {
        (Reason::BoughtTogether, Some(b)) => format!("bought together with {}", sku(b)),
        (Reason::BoughtNext, Some(b)) => format!("bought in the order after {}", sku(b)),
        (Reason::UpgradeOf, Some(b)) => format!("the upgrade of {}", sku(b)),
        (Reason::MovedUpFrom, Some(b)) => format!("customers moved up to it from {}", sku(b)),
        _ => "among the most bought lately".to_string(),
    };
    let rows: Vec<Vec<String>> = picks
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                (i + 1).to_string(),
                sku(p.sku),
                name(p.sku),
                format!("{:.2}", p.score / top),
                why(p),
            ]
        })
        .collect();
    let json = serde_json::json!({
        "customer": c.id,
        "as_of": as_of.to_string(),
        "products": picks.iter().map(|p| serde_json::json!({
            "sku": sku(p.sku), "name": name(p.sku), "score": p.score / top, "reason": p.reason,
            "because": p.because.map(sku),
            "product": by_sku.get(h.skus[p.sku as usize].as_str()),
        })).collect::<Vec<_>>(),
    });
    if args.format == OutputFormat::Table {
        println!(
            "{} bought {} products by {as_of}; learnt from {} customers' orders",
            c.id,
            history.len(),
            h.customers.len()
        );
    }
    print_rows(
        args.format,
        &["rank", "sku", "name", "score", "why"],
        &rows,
        &json,
    )?;
    Ok(exit::OK)
}

async fn evaluate(
    store: &Store,
    zone: chrono_tz::Tz,
    split_at: NaiveDate,
    k: usize,
    format: OutputFormat,
) -> anyhow::Result<u8> {
    let (h, _) = histories(store, zone).await?;
    let allowed = allowed_by(&store.products().await?, &h);
    let r = evaluate_split(&h, day_number(split_at), k, &|s| {
        allowed.as_ref().is_none_or(|a| a[s as usize])
    });
    if r.customers == 0 {
        eprintln!(
            "no customer bought both before {split_at} and something new from it on: pick a day inside the orders' span"
        );
        return Ok(exit::INVALID);
    }
    let row = |label: &str, m: &Metrics| {
        vec![
            label.to_string(),
            format!("{:.3}", m.hit_rate),
            format!("{:.4}", m.precision),
            format!("{:.4}", m.recall),
            format!("{:.4}", m.map),
        ]
    };
    let rows = vec![
        row("rebuy", &r.rebuy),
        row("plain cosine co-occurrence", &r.cosine),
        row("popularity", &r.popularity),
    ];
    if format == OutputFormat::Table {
        println!(
            "learnt from the orders before {split_at}; {} customers bought something new from then on; lists of {k}",
            r.customers
        );
    }
    let headers = [
        "recommender",
        &format!("hit rate@{k}"),
        &format!("precision@{k}"),
        &format!("recall@{k}"),
        &format!("MAP@{k}"),
    ]
    .map(String::from);
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    print_rows(format, &headers, &rows, &serde_json::to_value(&r)?)?;
    Ok(exit::OK)
}
