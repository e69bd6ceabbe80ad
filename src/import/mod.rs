//! `rebuy import customers|orders|events FILE`: CSV or JSON Lines in, upserts by the shop's ids out.
//! A bad row is reported with its line and reason and the good rows are still imported;
//! importing the same file twice changes nothing.

mod customers;
mod events;
mod orders;
mod products;
mod record;
pub mod shopify;

pub use customers::{parse_customer, CUSTOMER_FIELDS};
pub use events::{conflicting_event, parse_event, EVENT_FIELDS};
pub use orders::{order_from_record, parse_order_row, OrderLine, ITEM_FIELDS, ORDER_FIELDS};
pub use products::{parse_product, PRODUCT_FIELDS};
pub use record::{Fields, Record};

use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Records parsed before they are written in one transaction. Large on purpose: SQLite writes
/// every index page a transaction touches to the WAL once per commit, and orders land on random
/// pages of the per-customer index, so fewer, larger commits are several times faster.
const CHUNK: usize = 125_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format named by a file's extension.
    pub fn detect(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            _ => Err(crate::diagnostic::UsageError(format!("cannot tell the format of {} from its extension; pass --format csv or --format jsonl", path.display())).into()),
        }
    }
}

/// What is wrong with one record, and in which field (`placed_at`, `items/2/sku`; empty when
/// the record as a whole is wrong). The import prints the message with the line; the API
/// turns the field into a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A missing required field.
    pub fn missing(field: &str) -> Self {
        Self::at(field, format!("missing '{field}'"))
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A rejected row: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub file: String,
    /// Records read (customers, or orders, not CSV lines).
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<RowError>,
    /// Orders written, by currency (orders only; empty for other records).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub currencies: BTreeMap<String, u64>,
    /// The orders went into an empty PostgreSQL shop as one bulk load (`store::OrderLoad`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bulk_load: bool,
    /// Orders that were stored for another customer and now belong to the one in the file.
    #[serde(skip_serializing_if = "is_zero")]
    pub moved_orders: u64,
    /// The first `MOVED_SHOWN` of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<crate::store::MovedOrder>,
}

/// How many moved orders a report names (it counts them all).
pub const MOVED_SHOWN: usize = 10;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ImportReport {
    fn add(&mut self, written: usize, (inserted, updated): (u64, u64)) {
        self.records += written as u64;
        self.inserted += inserted;
        self.updated += updated;
        self.unchanged += (written as u64).saturating_sub(inserted + updated);
    }

    fn finish(&mut self, unreadable: Vec<RowError>) {
        self.records += unreadable.len() as u64;
        self.rejected.extend(unreadable);
        self.rejected.sort_by_key(|e| e.line);
    }

    /// An order counted in `currencies` that the store then refused.
    fn unwrite_currency(&mut self, currency: &str) {
        if let Some(n) = self.currencies.get_mut(currency) {
            *n -= 1;
            if *n == 0 {
                self.currencies.remove(currency);
            }
        }
    }

    fn moved(&mut self, moved: Vec<crate::store::MovedOrder>) {
        self.moved_orders += moved.len() as u64;
        let room = MOVED_SHOWN.saturating_sub(self.moved.len());
        self.moved.extend(moved.into_iter().take(room));
    }

    fn reject(&mut self, line: u64, message: impl Into<String>) {
        self.records += 1;
        self.rejected.push(RowError {
            line,
            message: message.into(),
        });
    }
}

impl ImportReport {
    /// The orders written in currencies other than `shop` (the shop's), by currency: rebuy adds
    /// amounts as they are, so they would be summed with the shop's own.
    pub fn foreign_currencies(&self, shop: &str) -> Vec<(&str, u64)> {
        self.currencies
            .iter()
            .filter(|(c, _)| !c.eq_ignore_ascii_case(shop))
            .map(|(c, n)| (c.as_str(), *n))
            .collect()
    }
}

/// Options shared by both imports.
pub struct ImportOptions {
    pub format: Option<Format>,
    pub default_timezone: Tz,
    pub progress: bool,
    /// Orders into an empty PostgreSQL shop may be one bulk load (`store::OrderLoad`), which
    /// holds the store's write lock until it is done: for `rebuy import`, not the daemon.
    pub bulk: bool,
    /// An order id stored for another customer moves the order (`store::Moves::Allow`);
    /// otherwise that row is rejected.
    pub move_orders: bool,
}

pub async fn import_customers(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    customers::run(store, path, opts, now).await
}

pub async fn import_events(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    events::run(store, path, opts, now).await
}

pub async fn import_products(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    products::run(store, path, opts, now).await
}

/// Imports orders; `now` is the clock, for refusing orders dated in the future.
pub async fn import_orders(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    orders::run(store, path, opts, now).await
}

/// Opens a file for import: its format (from `--format` or the extension), a reader with a
/// progress bar, and an empty report. `required`: the columns a CSV header must name, each as
/// its accepted names (`["order_id", "id"]`); a header without one is the file's problem, said
/// once, not a rejected row per line.
fn open(
    path: &Path,
    opts: &ImportOptions,
    required: &[&[&str]],
    reads: &[&[&str]],
) -> Result<(ChunkReader, ImportReport)> {
    if path.is_dir() {
        let said = format!("{} is a folder; name the file to import", path.display());
        return Err(crate::diagnostic::UsageError(said).into());
    }
    let format = match opts.format {
        Some(f) => f,
        None => Format::detect(path)?,
    };
    let reader = ChunkReader::open(path, format, progress_bar(path, opts.progress)?)?;
    if let Source::Csv(_, headers, ..) = &reader.source {
        if let Some(why) =
            missing_column(headers, required).or_else(|| column_twice(headers, reads))
        {
            return Err(crate::engine::InputError(format!("{}: {why}", path.display())).into());
        }
    }
    let report = ImportReport {
        file: path.display().to_string(),
        ..Default::default()
    };
    Ok((reader, report))
}

fn progress_bar(path: &Path, show: bool) -> Result<ProgressBar> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if !show {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({per_sec}, {eta} left)",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("importing {}", path.display()));
    Ok(bar)
}

/// Reads records from CSV or JSON Lines a chunk at a time. A line that cannot be read at
/// all becomes a `RowError` in `unreadable`.
pub struct ChunkReader {
    source: Source,
    bar: ProgressBar,
    pub unreadable: Vec<RowError>,
}

enum Source {
    /// The reader, the header's names, the file, and how many lines the reader's count of a
    /// record's line is short (see `crlf_shift`).
    Csv(
        csv::Reader<std::fs::File>,
        Vec<std::sync::Arc<str>>,
        std::path::PathBuf,
        u64,
    ),
    Jsonl(std::io::Split<std::io::BufReader<std::fs::File>>, u64, u64),
}

impl ChunkReader {
    pub fn open(path: &Path, format: Format, bar: ProgressBar) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let source = match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .trim(csv::Trim::All)
                    .from_reader(file);
                let headers = reader
                    .headers()
                    .map_err(|e| {
                        // The file's fault, not the machine's: exit 1, like a rejected row.
                        crate::engine::InputError(format!(
                            "{}: cannot read the CSV header line: {}",
                            path.display(),
                            csv_reason(&e)
                        ))
                    })?
                    .iter()
                    .map(|h| h.to_ascii_lowercase().into())
                    .collect();
                Source::Csv(reader, headers, path.to_path_buf(), crlf_shift(path))
            }
            Format::Jsonl => {
                use std::io::BufRead;
                Source::Jsonl(std::io::BufReader::new(file).split(b'\n'), 0, 0)
            }
        };
        Ok(Self {
            source,
            bar,
            unreadable: Vec::new(),
        })
    }

    /// The next chunk of records, or `None` at the end of the file.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Record>>> {
        let mut chunk = Vec::with_capacity(CHUNK);
        match &mut self.source {
            Source::Csv(reader, headers, path, shift) => {
                let mut record = csv::StringRecord::new();
                let order = record::header_order(headers);
                // Where the last record began, if one of its fields spans lines.
                let mut spanning: Option<u64> = None;
                while chunk.len() < CHUNK {
                    match reader.read_record(&mut record) {
                        Ok(false) => {
                            // A quote never closed swallows the rest of the file into one
                            // field: that record is refused, not stored.
                            if spanning.is_some_and(|at| quote_left_open(path, at)) {
                                let swallowed: Record = chunk.pop().expect("the last record");
                                self.unreadable.push(RowError {
                                    line: swallowed.line,
                                    message: QUOTE_NEVER_CLOSED.into(),
                                });
                            }
                            break;
                        }
                        Ok(true) => {
                            let line = record.position().map_or(0, |p| p.line() + *shift);
                            spanning = record
                                .iter()
                                .any(|f| f.contains('\n'))
                                .then(|| record.position().map_or(0, |p| p.byte()));
                            let mut fields = Fields::with_capacity(headers.len());
                            for &i in &order {
                                match (headers.get(i), record.get(i)) {
                                    (Some(h), Some(v)) if !v.is_empty() => {
                                        fields.push(h.clone(), serde_json::Value::String(v.into()))
                                    }
                                    _ => {}
                                }
                            }
                            // A row of empty cells (`,,`: Excel's trailing rows) carries
                            // nothing: skipped, as a blank line is.
                            if !fields.is_empty() {
                                chunk.push(Record { line, fields });
                            }
                        }
                        Err(e) => {
                            let line = e.position().map_or(0, |p| p.line() + *shift);
                            // A quote never closed swallows the rest of the file into a row
                            // that then has too few fields: said as the quote, not the count.
                            let unclosed =
                                matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. })
                                    && e.position()
                                        .is_some_and(|p| quote_left_open(path, p.byte()));
                            let message = match unclosed {
                                true => QUOTE_NEVER_CLOSED.to_string(),
                                false => format!("unreadable CSV row: {}", csv_reason(&e)),
                            };
                            self.unreadable.push(RowError { line, message });
                        }
                    }
                }
                self.bar.set_position(reader.position().byte());
            }
            Source::Jsonl(lines, line_no, bytes) => {
                while chunk.len() < CHUNK {
                    let Some(line) = lines.next() else { break };
                    *line_no += 1;
                    let raw = line.with_context(|| format!("cannot read line {line_no}"))?;
                    *bytes += raw.len() as u64 + 1;
                    // A line that is not UTF-8 is one rejected row, as a bad CSV row is; a
                    // byte-order mark at the start of the file is skipped.
                    let text = match std::str::from_utf8(&raw) {
                        Ok(t) if *line_no == 1 => t.trim_start_matches('\u{feff}'),
                        Ok(t) => t,
                        Err(e) => {
                            self.unreadable.push(RowError {
                                line: *line_no,
                                message: format!(
                                    "not UTF-8 text (byte {} of the line); save the file as UTF-8",
                                    e.valid_up_to() + 1
                                ),
                            });
                            continue;
                        }
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    // Read strictly, as the API reads a body: a key given twice is refused,
                    // not read as its last value.
                    match crate::strict_json::parse(text.as_bytes()) {
                        Ok(serde_json::Value::Object(map)) => chunk.push(Record {
                            line: *line_no,
                            fields: map.into_iter().collect(),
                        }),
                        Ok(_) => self.unreadable.push(RowError {
                            line: *line_no,
                            message: "not a JSON object: each line holds one record, {…}".into(),
                        }),
                        Err(e) if e.is_data() => self.unreadable.push(RowError {
                            line: *line_no,
                            message: format!("a key is given twice: {}", in_line(&e)),
                        }),
                        Err(e) => self.unreadable.push(RowError {
                            line: *line_no,
                            message: format!("not a JSON object: {}", in_line(&e)),
                        }),
                    }
                }
                self.bar.set_position(*bytes);
            }
        }
        if chunk.is_empty() {
            self.bar.finish_and_clear();
            return Ok(None);
        }
        Ok(Some(chunk))
    }
}

/// A JSON parser's error within one line of a JSON Lines file, said by its column: the report
/// names the file's line already, and the parser's own "at line 1" would contradict it.
fn in_line(e: &serde_json::Error) -> String {
    let said = e.to_string();
    if e.column() == 0 {
        return said;
    }
    let what = said
        .rsplit_once(" at line ")
        .map_or(said.as_str(), |(what, _)| what);
    format!("{what} at column {}", e.column())
}

/// Why a row whose quote is never closed is refused (the rest of the file went into it).
const QUOTE_NEVER_CLOSED: &str = "a quoted field opened on this line is never closed, so the rest of the file was read into it; add the closing \" (or remove the opening one) and import again";

/// Whether the file, from byte `from` (the start of a record) to its end, holds an odd number
/// of `"`: a quote opened and never closed (a doubled `""` inside a field counts two).
fn quote_left_open(path: &Path, from: u64) -> bool {
    use std::io::{Read, Seek};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if file.seek(std::io::SeekFrom::Start(from)).is_err() {
        return false;
    }
    let (mut quotes, mut buf) = (0u64, vec![0u8; 64 * 1024]);
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => quotes += buf[..n].iter().filter(|b| **b == b'"').count() as u64,
        }
    }
    quotes % 2 == 1
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "field {} is not UTF-8: the file is in another encoding (Shift_JIS, as Excel saves \
             \"CSV\"?); save it as \"CSV UTF-8\" or convert it (iconv -f SHIFT_JIS -t UTF-8)",
            err.field() + 1
        ),
        _ => e.to_string(),
    }
}

/// The first of `required` that `headers` lacks, said with what the header has and, for a
/// near miss (`e-mail`), which of its columns is probably meant.
fn missing_column(headers: &[std::sync::Arc<str>], required: &[&[&str]]) -> Option<String> {
    let names: Vec<&str> = headers.iter().map(|h| &**h).collect();
    // An empty file (a nightly export with nothing new) has no header and no rows: nothing to
    // import, not a mistake.
    if names.iter().all(|n| n.is_empty()) {
        return None;
    }
    let lacking = required
        .iter()
        .find(|accepted| !accepted.iter().any(|a| names.contains(a)))?;
    let wanted = lacking
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" or ");
    let near = crate::diagnostic::did_you_mean(lacking[0], &names)
        .map(|n| format!("; is '{n}' that column? rename it '{}'", lacking[0]))
        .unwrap_or_default();
    Some(format!(
        "the CSV header has no {wanted} column (it has: {}){near}",
        names.join(", ")
    ))
}

/// A column rebuy reads that the header names twice (`email` in columns 2 and 4): which one
/// holds the value is not for rebuy to guess, so the file is refused before any row is read.
/// `reads`: the fields read (none given: every column is, as a customer's are attributes);
/// a column read by none may be repeated.
fn column_twice(headers: &[std::sync::Arc<str>], reads: &[&[&str]]) -> Option<String> {
    let name = |i: usize| headers[i].trim();
    let read = |n: &str| reads.is_empty() || reads.iter().any(|fields| fields.contains(&n));
    (0..headers.len()).find_map(|j| {
        let i = (0..j).find(|&i| !name(i).is_empty() && name(i) == name(j) && read(name(j)))?;
        Some(format!(
            "the CSV header names '{}' twice (columns {} and {}); keep one of them, or rename the other",
            name(j),
            i + 1,
            j + 1
        ))
    })
}

/// How many lines the CSV reader's count of a record's line is short: it counts a line when it
/// reads its `\n`, and of a `\r\n` it stops at the `\r`, so in a file whose lines end in
/// `\r\n` (Excel's, most shop exports) every record after the header would be placed on the
/// line before its own.
fn crlf_shift(path: &Path) -> u64 {
    use std::io::{BufRead, Read};
    let mut first = Vec::new();
    let read = std::fs::File::open(path)
        .map(|f| std::io::BufReader::new(f.take(1 << 20)))
        .and_then(|mut r| r.read_until(b'\n', &mut first));
    u64::from(read.is_ok() && first.ends_with(b"\r\n"))
}

/// Refuses a date (`field`: an order's `placed_at`, an event's `at`, a `consent_at`) more than
/// a day after `now`: a day covers a time zone mixed up and a clock a little behind; beyond it
/// the date is wrong, and the mail planned from it (a thank-you, a replenishment reminder)
/// would go out months late, while the customer's real orders in between started nothing.
pub(crate) fn not_ahead(
    field: &str,
    placed_at: i64,
    now: DateTime<Utc>,
    zone: Tz,
) -> std::result::Result<(), String> {
    if placed_at <= crate::clock::to_millis(now + chrono::Duration::days(1)) {
        return Ok(());
    }
    let shown = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .format("%Y-%m-%d %H:%M %:z")
            .to_string()
    };
    let what = match field {
        "placed_at" => "an order is dated when it was placed",
        "consent_at" => "consent is dated when the customer gave or withdrew it",
        _ => "an event is dated when it happened",
    };
    Err(format!(
        "'{field}' {} is in the future (now: {}); {what}: check the date and its time zone",
        shown(crate::clock::from_millis(placed_at)),
        shown(now)
    ))
}

/// An id that a record may give under either of two names (`order_id` or `id`): the one
/// given, or the problem of both given with different values (which one is meant?).
pub fn either_id(fields: &Fields, first: &str, second: &str) -> Result<Option<String>, Invalid> {
    match (id_text(fields, first)?, id_text(fields, second)?) {
        (Some(a), Some(b)) if a != b => Err(Invalid::at(
            second,
            format!(
                "'{first}' is '{a}' and '{second}' is '{b}': both name the same field; give one"
            ),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// An id field as text: a string, or a whole number written out. A number too long for one
/// (JSON `123456789012345678901234567890`, read as a float) is refused: stored, it would be
/// `1.2345678901234568e29`, another customer's id or nobody's.
pub fn id_text(fields: &Fields, key: &str) -> Result<Option<String>, Invalid> {
    match fields.get(key) {
        Some(serde_json::Value::Bool(b)) => Err(Invalid::at(
            key,
            format!("'{key}' must be text or a whole number, found {b}"),
        )),
        Some(serde_json::Value::Number(n)) if n.is_f64() => Err(Invalid::at(
            key,
            format!("'{key}' is the number {n}, not a whole number rebuy can keep exactly; write ids as strings (\"{key}\": \"…\")"),
        )),
        _ => match text(fields, key) {
            Some(id) if longer_than(&id, MAX_ID) => Err(Invalid::at(
                key,
                format!("'{key}' is longer than {MAX_ID} characters; is a whole row in this cell?"),
            )),
            id => Ok(id),
        },
    }
}

/// Whether `s` has more than `max` characters (counted only when its bytes could be).
pub fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// The fields that are yes or no, where JSON's `true` and `false` belong.
const YES_NO: [&str; 3] = ["marketing_consent", "in_stock", "active"];

/// The longest id rebuy keeps (a customer's, an order's, a SKU, an event's): a shop's ids are
/// tens of characters; a longer one is a mistake (a row pasted into one cell) that would
/// swell every index it is in.
pub const MAX_ID: usize = 255;

/// The longest text of one field (a name, an e-mail address, a category, a product's URL with
/// its signed query).
pub const MAX_TEXT: usize = 4_096;

/// Checks that each of a record's `known` fields but `structured` (an order's `items`, a
/// customer's `attributes`, an event's `properties`) holds one value (text, a number, true or
/// false only where a field is yes or no) of at most `MAX_TEXT` characters and without a NUL:
/// an object, a list or `true` where text belongs is refused, not stored as its JSON text.
pub fn scalars_only<'a>(
    get: impl Fn(&str) -> Option<&'a serde_json::Value>,
    known: &[&str],
    structured: &str,
) -> Result<(), Invalid> {
    for key in known.iter().filter(|k| **k != structured) {
        let found = match get(key) {
            Some(serde_json::Value::Object(_)) => "an object",
            Some(serde_json::Value::Array(_)) => "a list",
            Some(serde_json::Value::Bool(b)) if !YES_NO.contains(key) => {
                if *b {
                    "true"
                } else {
                    "false"
                }
            }
            Some(serde_json::Value::String(s)) if longer_than(s, MAX_TEXT) => {
                return Err(Invalid::at(
                    *key,
                    format!("'{key}' is longer than {MAX_TEXT} characters"),
                ))
            }
            // PostgreSQL's text cannot hold it, and no page or mail should carry it.
            Some(serde_json::Value::String(s)) if s.contains('\0') => {
                return Err(Invalid::at(
                    *key,
                    format!("'{key}' contains a NUL character (\\u0000)"),
                ))
            }
            _ => continue,
        };
        return Err(Invalid::at(
            *key,
            format!("'{key}' must be one value (text or a number), found {found}"),
        ));
    }
    Ok(())
}

/// Checks a structured field (a customer's `attributes`, an event's `properties`) as written
/// to be stored: no NUL anywhere in it (no page or mail should carry one) and at most `max`
/// bytes of JSON in all. Returns that JSON, to be stored.
pub fn structured_fits(
    key: &str,
    value: &serde_json::Value,
    max: usize,
) -> Result<String, Invalid> {
    fn has_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(has_nul),
            serde_json::Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(value) {
        return Err(Invalid::at(
            key,
            format!("'{key}' contains a NUL character (\\u0000)"),
        ));
    }
    let json = value.to_string();
    if json.len() > max {
        return Err(Invalid::at(
            key,
            format!("'{key}' holds {} bytes; at most {max}", json.len()),
        ));
    }
    Ok(json)
}

/// Parses a chunk with `parse`, reporting each bad record and each record whose `key` an
/// earlier one in the file already had (`seen`: key to its first line), as a repeated order is,
/// rather than letting the later silently overwrite the first. The good ones, in order.
fn unique_records<T>(
    chunk: &[Record],
    seen: &mut std::collections::HashMap<String, u64>,
    report: &mut ImportReport,
    noun: &str,
    parse: impl Fn(&Record) -> Result<T, Invalid>,
    key: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut good = Vec::with_capacity(chunk.len());
    for r in chunk {
        match parse(r) {
            Ok(v) => match seen.get(key(&v)) {
                Some(first) => report.reject(
                    r.line,
                    format!(
                        "{noun} '{}' appears again (first on line {first}); keep one row per {noun}",
                        key(&v)
                    ),
                ),
                None => {
                    seen.insert(key(&v).to_string(), r.line);
                    good.push(v);
                }
            },
            Err(e) => report.reject(r.line, e.message),
        }
    }
    good
}

/// A yes/no field: a JSON boolean, or true, false, 1, 0, yes, no, y, n (any case); None when
/// absent or empty.
pub fn yes_no(fields: &Fields, key: &str) -> Result<Option<bool>, Invalid> {
    if let Some(serde_json::Value::Bool(b)) = fields.get(key) {
        return Ok(Some(*b));
    }
    let Some(raw) = text(fields, key) else {
        return Ok(None);
    };
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" => Ok(Some(true)),
        "false" | "0" | "no" | "n" => Ok(Some(false)),
        _ => Err(Invalid::at(
            key,
            format!("'{key}' must be true or false (or 1/0, yes/no), found '{raw}'"),
        )),
    }
}

/// A field as text: strings as they are, numbers written out.
pub fn text(fields: &Fields, key: &str) -> Option<String> {
    match fields.get(key)? {
        serde_json::Value::String(s) if s.trim().is_empty() => None,
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Parses an instant: RFC 3339 (`2026-11-01T10:15:00+09:00`), or a local `YYYY-MM-DD HH:MM[:SS]`
/// or `YYYY-MM-DD` in the shop's default time zone.
pub fn parse_instant(raw: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let t = any_instant(raw, zone)?;
    // The year as written (every accepted form starts with it), so that 1970-01-01 in Tokyo,
    // which is still 1969 in UTC, is accepted.
    let written = raw.trim().get(..4).and_then(|y| y.parse::<i32>().ok());
    if !written.is_some_and(|y| (1970..2100).contains(&y)) || !(1969..=2100).contains(&t.year()) {
        return Err(format!(
            "'{raw}' is outside the years 1970 to 2099 that rebuy accepts; an export that \
             writes 0000 or 9999 for an unknown date should leave the row out"
        ));
    }
    Ok(t)
}

/// `parse_instant` without the bound on the year.
fn any_instant(raw: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let with_time = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok());
    if let Some(local) = with_time {
        if crate::clock::skipped(local, zone) {
            return Err(format!(
                "'{raw}' does not exist in {zone}: the clocks skipped that time (a change to \
                 daylight saving time); give the offset, such as {}",
                crate::clock::first_instant_from(local, zone)
                    .with_timezone(&zone)
                    .to_rfc3339()
            ));
        }
        return Ok(crate::clock::first_instant_from(local, zone));
    }
    // A bare date is the day's first instant, even on a day whose midnight was skipped.
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(day) => Ok(crate::clock::from_millis(crate::clock::start_of_day(day, zone))),
        Err(_) => Err(format!("'{raw}' is not a date; use RFC 3339 such as 2026-11-01T10:15:00+09:00, or 2026-11-01 10:15")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_instant;
    use chrono_tz::America::{New_York, Santiago};

    #[test]
    fn years_outside_1970_to_2099_are_refused() {
        for raw in [
            "0000-01-01",
            "9999-12-31",
            "1969-12-31T23:59:59Z",
            "2100-01-01T00:00:00Z",
        ] {
            let e = parse_instant(raw, New_York).unwrap_err();
            assert!(e.contains("outside the years 1970 to 2099"), "{raw}: {e}");
        }
        assert!(parse_instant("1970-01-01T00:00:00Z", New_York).is_ok());
        assert!(parse_instant("2099-12-31", New_York).is_ok());
        // The year as written: still 1969 in UTC, 1970 in Tokyo.
        assert!(parse_instant("1970-01-01", chrono_tz::Asia::Tokyo).is_ok());
        assert!(parse_instant("2099-12-31 23:00", New_York).is_ok());
        assert!(parse_instant("10000-01-01", New_York).is_err());
    }

    #[test]
    fn local_times_around_daylight_saving_changes() {
        // Santiago skips 00:00–01:00 on 2026-09-06: the bare date is the day's first instant,
        // and a time inside the gap is refused with the instant it would have meant.
        let day = parse_instant("2026-09-06", Santiago).unwrap();
        assert_eq!(day.to_rfc3339(), "2026-09-06T04:00:00+00:00");
        let e = parse_instant("2026-09-06 00:30", Santiago).unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("2026-09-06T01:00:00-03:00"),
            "{e}"
        );
        // New York repeats 01:00–02:00 on 2026-11-01: the earlier of the two.
        let twice = parse_instant("2026-11-01 01:30", New_York).unwrap();
        assert_eq!(twice.to_rfc3339(), "2026-11-01T05:30:00+00:00");
        assert!(parse_instant("2026-02-30", New_York).is_err());
    }
}
