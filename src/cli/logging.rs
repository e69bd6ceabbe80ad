//! Where the logs go: text or JSON on stderr, colour only at a terminal.

use super::LogFormatArg;
use crate::config::LogFormat;

/// Sets up `tracing`: text or JSON, to stderr. `quiet` commands log warnings only unless asked.
pub fn init_logging(arg: Option<LogFormatArg>, level: &str, configured: LogFormat, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if quiet && level == "info" {
        "warn"
    } else {
        level
    };
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // PostgreSQL's notices ("relation … already exists, skipping" from the migrations at every
    // start) are the database's small talk, not the operator's news; its warnings still show.
    // A level that names sqlx itself decides for sqlx.
    if !level.contains("sqlx") {
        if let Ok(directive) = "sqlx::postgres::notice=warn".parse() {
            filter = filter.add_directive(directive);
        }
    }
    let json = match arg {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Text) => false,
        None => configured == LogFormat::Json,
    };
    // Colours only for a person at a terminal, never into a file or a journal.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
