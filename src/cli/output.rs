//! Output for people and for tools: a table in the terminal, or `--format json|csv`.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Csv,
}

/// A stored instant for a table: minutes in the shop's zone (`2026-11-02 21:00`).
pub fn local_minutes(ms: i64, zone: chrono_tz::Tz) -> String {
    crate::clock::from_millis(ms)
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// A stored instant for JSON: RFC 3339 with the shop's offset.
pub fn local_rfc3339(ms: i64, zone: chrono_tz::Tz) -> String {
    crate::clock::from_millis(ms)
        .with_timezone(&zone)
        .to_rfc3339()
}

/// Prints rows with the given headers in the chosen format. `json` is the rows as objects.
pub fn print_rows(
    format: OutputFormat,
    headers: &[&str],
    rows: &[Vec<String>],
    json: &serde_json::Value,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_header(headers.to_vec());
            for r in rows {
                table.add_row(r.clone());
            }
            println!("{table}");
        }
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(json)?),
        OutputFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            w.write_record(headers)?;
            for r in rows {
                w.write_record(r)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}
