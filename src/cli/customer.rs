//! `rebuy customer show`: one customer as support staff see them, in the terminal.

use super::output::OutputFormat;
use super::{exit, App};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde_json::Value;

#[derive(Debug, clap::Subcommand)]
pub enum CustomerCommand {
    /// Profile, consent, RFM segment, segments, latest orders and events, follow-ups, and every
    /// message with the scenario that sent it ("why did I get this e-mail?"). Times are in the
    /// customer's zone.
    Show {
        /// The shop's id or the e-mail address.
        customer: String,
        /// `table` (default) or `json` (the same as GET /v1/customers/{id}).
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

pub async fn run(app: &App, cmd: CustomerCommand) -> anyhow::Result<u8> {
    let CustomerCommand::Show { customer, format } = cmd;
    let store = app.store().await?;
    let scenarios = app.check().scenarios;
    let view = crate::customer_view::customer_view(
        &store,
        &scenarios,
        app.resolved.default_timezone,
        &customer,
    )
    .await?;
    store.close().await;
    if format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", text(&view, &app.currency()));
    }
    Ok(exit::OK)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `YYYY-MM-DDTHH:MM:SS+09:00` time as `YYYY-MM-DD HH:MM`.
fn short(v: &Value) -> String {
    match v.as_str() {
        Some(t) if t.len() >= 16 => t[..16].replace('T', " "),
        _ => s(v),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    format!("{t}\n")
}

/// The view for people: a header, then one table per part. Amounts without a currency of
/// their own (a customer without orders) are in the shop's.
pub fn text(v: &Value, shop_currency: &str) -> String {
    let money = |amount: &Value, currency: &Value| match amount.as_i64() {
        Some(a) => crate::domain::format_money(a, currency.as_str().unwrap_or(shop_currency)),
        None => s(amount),
    };
    let consent = match v["consent"]["marketing"].as_bool() {
        Some(true) => "marketing mail: yes",
        Some(false) => "marketing mail: refused",
        None => "marketing mail: never asked (none sent)",
    };
    let suppressed = match v["consent"]["suppressed"].as_str() {
        Some(kind) => format!("; suppressed ({kind})"),
        None => String::new(),
    };
    let mut out = format!(
        "{} <{}> (id {})\n{consent}{suppressed}\norders: {}, spent {}; RFM: {}; segments: {}\n\n",
        s(&v["name"]),
        s(&v["email"]),
        s(&v["id"]),
        s(&v["orders_count"]),
        money(&v["total_spent"], &v["currency"]),
        s(&v["rfm_segment"]),
        v["segments"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "-".into()),
    );
    let list = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let messages: Vec<Vec<String>> = list("messages")
        .iter()
        .map(|m| {
            vec![
                s(&m["id"]),
                short(&m["sent_at"]),
                s(&m["status"]),
                format!("{} / {}", s(&m["scenario"]), s(&m["step"])),
                s(&m["subject"]),
                m["last_error"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    out.push_str("messages (newest first)\n");
    out.push_str(&table(
        &[
            "id",
            "sent",
            "status",
            "scenario / step",
            "subject",
            "last error",
        ],
        messages,
    ));
    let follow: Vec<Vec<String>> = list("enrollments")
        .iter()
        .map(|e| {
            vec![
                s(&e["id"]),
                s(&e["scenario"]),
                s(&e["state"]),
                short(&e["triggered_at"]),
                format!("{} {}", s(&e["next_step"]), short(&e["next_due_at"])),
                s(&e["end_reason"]),
            ]
        })
        .collect();
    out.push_str("\nscenarios (newest first)\n");
    out.push_str(&table(
        &[
            "id",
            "scenario",
            "state",
            "started",
            "next step",
            "end reason",
        ],
        follow,
    ));
    let orders: Vec<Vec<String>> = list("orders")
        .iter()
        .take(10)
        .map(|o| {
            vec![
                s(&o["id"]),
                short(&o["placed_at"]),
                money(&o["total"], &o["currency"]),
                o["items"]
                    .as_array()
                    .map(|i| {
                        i.iter()
                            .map(|x| s(&x["name"]))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str("\nlatest orders\n");
    out.push_str(&table(&["order", "placed", "total", "items"], orders));
    let events: Vec<Vec<String>> = list("events")
        .iter()
        .take(10)
        .map(|e| vec![s(&e["name"]), short(&e["at"]), e["properties"].to_string()])
        .collect();
    if !events.is_empty() {
        out.push_str("\nlatest events\n");
        out.push_str(&table(&["event", "at", "properties"], events));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_customer_without_orders_has_spent_nothing_in_the_shops_currency() {
        let v = json!({"id": "C1", "name": "Aya", "email": "aya@example.jp",
            "orders_count": 0, "total_spent": 0, "currency": null});
        assert!(text(&v, "JPY").contains("spent ¥0;"), "{}", text(&v, "JPY"));
        let v = json!({"total_spent": 1250, "currency": "USD"});
        assert!(
            text(&v, "JPY").contains("spent $12.50;"),
            "{}",
            text(&v, "JPY")
        );
    }
}
