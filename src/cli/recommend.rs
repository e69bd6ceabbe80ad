//! `rebuy recommend CUSTOMER`: the products rebuy would recommend to one customer, and why;
//! `rebuy recommend evaluate --split-at DATE`: how well the lists predict what customers
//! really bought next, beside plain cosine co-occurrence and popularity.

use super::metrics::parse_date;
use super::output::{print_rows, OutputFormat};
use super::{exit, App};
use crate::clock::{Clock as _, SystemClock};
use crate::metrics::day_number;
use crate::recommend::model::Kind;
use crate::recommend::{evaluate_split, Metrics};
use crate::recommend_view::{allowed_by, facts_of, histories};
use crate::store::Store;
use chrono::NaiveDate;

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
    let as_of = args
        .as_of
        .unwrap_or_else(|| SystemClock.now().with_timezone(&zone).date_naive());
    let view =
        crate::recommend_view::recommendations(store, zone, customer, args.kind, args.n, as_of)
            .await?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let rows: Vec<Vec<String>> = view["products"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                (i + 1).to_string(),
                text(&p["sku"]),
                text(&p["name"]),
                format!("{:.2}", p["score"].as_f64().unwrap_or_default()),
                text(&p["why"]),
            ]
        })
        .collect();
    if args.format == OutputFormat::Table {
        println!(
            "{} bought {} products by {as_of}; learnt from {} customers' orders",
            view["customer"].as_str().unwrap_or_default(),
            view["bought"],
            view["learnt_from"]
        );
    }
    print_rows(
        args.format,
        &["rank", "sku", "name", "score", "why"],
        &rows,
        &view,
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
    let catalog = store.products().await?;
    let allowed = allowed_by(&catalog, &h);
    let facts = crate::recommend::model::Catalog::new(facts_of(&catalog, &h));
    let r = evaluate_split(
        &h,
        day_number(split_at),
        k,
        &|s| allowed.as_ref().is_none_or(|a| a[s as usize]),
        &facts,
    );
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
        row("rebuy, next list", &r.next),
        row("rebuy, upsell list", &r.upsell),
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
