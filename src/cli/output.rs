//! Output for people and for tools: a table in the terminal, or `--format json|csv`.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Csv,
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
