//! `rebuy import customers|orders|events FILE`.

use super::{exit, App};
use crate::clock::{Clock, SystemClock};
use crate::import::{
    import_customers, import_events, import_orders, import_products, Format, ImportOptions,
    ImportReport,
};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Customers: id, email, name, timezone, locale; other columns become attributes.
    Customers(ImportArgs),
    /// Orders: order_id, customer_id, placed_at, currency, total, and per row one item
    /// (sku, name, category, quantity, unit_price); amounts in minor units.
    Orders(ImportArgs),
    /// Custom events: customer (or customer_id), name, at, properties (a JSON object; in CSV
    /// a column of JSON text), optional id. Scenarios start on them with `trigger: { event: NAME }`.
    Events(ImportArgs),
    /// The product catalog: sku, name, category, price (minor units), url, image_url, in_stock,
    /// active, and optionally brand, size, upgrade_of. Only products in stock and active are
    /// recommended.
    Products(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file to import (.csv, .jsonl).
    pub file: PathBuf,
    /// The file's format, when its extension does not tell.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Orders: let an order id stored for one customer move to the customer the file gives
    /// (a file that corrects whose order it is). Without it such rows are rejected.
    #[arg(long)]
    pub move_orders: bool,
}

pub async fn run(app: &App, cmd: ImportCommand) -> anyhow::Result<u8> {
    // Chunk after chunk of the same size is read, parsed and freed: giving the freed memory
    // back at once (the binary's default) made the reader fault the same pages in again for
    // every chunk (a tenth of its time); a second outlasts the time one chunk takes (about
    // half a second), so its freed pages are reused rather than given back and faulted in.
    super::purge_freed_memory_after(1000);
    let args = match &cmd {
        ImportCommand::Customers(a)
        | ImportCommand::Orders(a)
        | ImportCommand::Events(a)
        | ImportCommand::Products(a) => a,
    };
    if args.move_orders && !matches!(cmd, ImportCommand::Orders(_)) {
        let said =
            "--move-orders moves orders between customers: it goes with `rebuy import orders` only";
        return Err(crate::diagnostic::UsageError(said.into()).into());
    }
    let store = app.store_or_create().await?;
    let opts = ImportOptions {
        format: args.format,
        default_timezone: app.resolved.default_timezone,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        bulk: true,
        move_orders: args.move_orders,
    };
    let report = match cmd {
        ImportCommand::Orders(_) => {
            import_orders(&store, &args.file, &opts, SystemClock.now()).await?
        }
        ImportCommand::Customers(_) => {
            import_customers(&store, &args.file, &opts, SystemClock.now()).await?
        }
        ImportCommand::Events(_) => {
            import_events(&store, &args.file, &opts, SystemClock.now()).await?
        }
        ImportCommand::Products(_) => {
            import_products(&store, &args.file, &opts, SystemClock.now()).await?
        }
    };
    print_report(&report, args.json)?;
    warn_foreign_currencies(&report, &app.currency());
    warn_moved_orders(&report);
    warn_empty(&report);
    store.close().await;
    Ok(if report.rejected.is_empty() {
        exit::OK
    } else {
        exit::INVALID
    })
}

/// Orders in another currency than the shop's are kept (each is a purchase), but rebuy adds
/// amounts without converting them: said once per currency, with what to do.
fn warn_foreign_currencies(report: &ImportReport, shop: &str) {
    for (currency, n) in report.foreign_currencies(shop) {
        eprintln!(
            "warning: {n} order(s) in {currency}, not the shop's {shop} (shop.currency): rebuy adds \
             amounts as they are, so spend, LTV and reports would mix {currency} with {shop}; \
             convert them to {shop} before importing, or set shop.currency if {currency} is the shop's"
        );
    }
}

/// A file without a single record (a header alone, or nothing): not an error, a quiet day's
/// export can be empty, but a nightly job whose export failed must not pass unnoticed.
fn warn_empty(report: &ImportReport) {
    if report.records == 0 && report.rejected.is_empty() {
        eprintln!(
            "warning: {} holds no records (a header alone, or nothing): nothing was imported; \
             if the export should have rows, check what writes it",
            report.file
        );
    }
}

/// Orders moved to another customer with `--move-orders`: said with an example.
fn warn_moved_orders(report: &ImportReport) {
    let Some(first) = report.moved.first() else {
        return;
    };
    eprintln!(
        "note: {n} order(s) moved to another customer (--move-orders), e.g. order '{order}' \
         from customer '{from}' to '{to}'; both customers' totals were recomputed, and a \
         follow-up planned from a moved order for its former customer ends without mail. The \
         JSON report (--json) lists the first {shown}",
        n = report.moved_orders,
        order = first.order,
        from = first.from,
        to = first.to,
        shown = crate::import::MOVED_SHOWN,
    );
}

pub fn print_report(report: &ImportReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for e in &report.rejected {
        eprintln!("{}:{}: {}", report.file, e.line, e.message);
    }
    println!(
        "{}: {} record(s): {} inserted, {} updated, {} unchanged, {} rejected",
        report.file,
        report.records,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    if !report.rejected.is_empty() {
        eprintln!("fix the rejected rows and import the file again; rows already imported are not changed twice");
    }
    Ok(())
}
