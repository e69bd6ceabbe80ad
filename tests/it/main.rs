//! Integration tests: the engine against a real SMTP server on loopback and a real SQLite
//! file, and the `rebuy` binary itself.

mod api;
mod bad_input;
mod cdnow;
mod cli;
mod db_copy;
mod digest;
mod e2e;
mod experiments;
mod fault_server;
mod faults;
mod helpers;
mod http_e2e;
mod import;
mod limits;
mod mjml;
mod predicted;
mod recommend;
mod recommend_mail;
mod refresh;
mod rounds;
mod scan;
mod scenario_edits;
mod segments;
mod simulate;
mod suppression;
mod time_travel;
mod tls;
mod tracking;
mod ui_browser;
mod ui_http;
mod unsubscribe;
mod workers;
