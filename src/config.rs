//! Configuration: built-in defaults < the YAML file (`rebuy.yaml`, or `--config`) < `REBUY_*`
//! environment variables. Secrets (SMTP password, unsubscribe secret) come only from the
//! environment or from files; the YAML never has to hold them.

use crate::diagnostic::Diagnostic;
use crate::domain::{parse_duration, parse_timezone};
use chrono::Duration;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The whole configuration, as written (see `config.example.yaml` for every key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SQLite file path (`rebuy.db`) or URL (`sqlite://…`).
    pub database: String,
    pub scenarios_dir: PathBuf,
    pub templates_dir: PathBuf,
    /// Time zone for customers who have none.
    pub default_timezone: Option<Spanned<String>>,
    /// How often the daemon ticks.
    pub tick_interval: Option<Spanned<String>>,
    /// Orders older than this when first seen start no enrollment (a history import must not
    /// mail every past customer).
    pub trigger_lookback: Option<Spanned<String>>,
    /// How late a step may still be sent when neither it nor its scenario sets `expires`;
    /// later, it is recorded as `expired` instead (default 3d).
    pub expires: Option<Spanned<String>>,
    pub log_format: LogFormat,
    /// Free settings for templates (`shop.name`, `shop.url`, …); `name` and `from` are required.
    pub shop: BTreeMap<String, String>,
    pub unsubscribe: UnsubscribeConfig,
    /// The HTTP server of `rebuy run` and `rebuy serve`: the API, webhooks, the unsubscribe page.
    pub http: HttpConfig,
    /// Shopify's order webhooks: where the secret that signs them comes from.
    pub shopify: ShopifyConfig,
    /// Click and open tracking of HTML mail; off unless `base_url` is set.
    pub tracking: TrackingConfig,
    pub delivery: DeliveryConfig,
    /// Limits on marketing mail (not transactional), enforced at send time.
    pub marketing: MarketingConfig,
    /// Periodic jobs with 5-field cron schedules.
    pub jobs: Vec<JobConfig>,
    /// The shop-wide control group and attribution.
    pub experiments: ExperimentsConfig,
    /// Where this configuration came from, for messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The line and column of every key of the file (`delivery.lease_secs`), for messages
    /// about values that serde accepted but rebuy does not.
    #[serde(skip)]
    pub places: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnsubscribeConfig {
    /// The page that unsubscribes; the signed token is appended as `?c=<customer>&t=<token>`.
    pub base_url: String,
    /// Environment variable that holds the HMAC secret.
    pub secret_env: String,
    /// A file that holds the HMAC secret, if the environment variable is unset.
    pub secret_file: Option<PathBuf>,
    /// The older name of `http.listen`, still read when that is unset.
    pub listen: Option<String>,
}

impl Config {
    /// Where the HTTP server listens, if anywhere.
    pub fn http_listen(&self) -> Option<&str> {
        self.http
            .listen
            .as_deref()
            .or(self.unsubscribe.listen.as_deref())
    }
}

impl Default for UnsubscribeConfig {
    fn default() -> Self {
        Self {
            base_url: "https://shop.example/unsubscribe".into(),
            secret_env: "REBUY_UNSUBSCRIBE_SECRET".into(),
            secret_file: None,
            listen: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShopifyConfig {
    /// Environment variable that holds the Shopify app's client secret (it signs webhooks).
    pub secret_env: String,
    /// A file that holds it, if the environment variable is unset. Neither: webhooks refused.
    pub secret_file: Option<PathBuf>,
}

impl Default for ShopifyConfig {
    fn default() -> Self {
        Self {
            secret_env: "REBUY_SHOPIFY_SECRET".into(),
            secret_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Where customers reach rebuy's HTTP server (`https://mail.shop.example`): links become
    /// `<base_url>/t/c/…` redirects. Unset: no tracking, links stay as written.
    pub base_url: Option<String>,
    /// Also add a 1×1 image that records opens (`<base_url>/t/o/….gif`).
    pub open_pixel: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `rebuy run` and `rebuy serve` listen (e.g. `127.0.0.1:8025`, behind the shop's
    /// reverse proxy); unset: `unsubscribe.listen`, and if that is unset too, no server.
    pub listen: Option<String>,
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: u64,
    /// Connections served at once; more wait in the kernel's queue until one closes.
    pub max_connections: u64,
    /// How long a client may take to send a request's headers (idle keep-alive included).
    pub header_timeout_secs: u64,
    /// How long one request may take from its headers to its reply; longer ones get 503.
    pub request_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_connections: 256,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// `.eml` files in a folder: the embedded default, no server needed.
    #[default]
    File,
    Smtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub transport: TransportKind,
    /// Folder for the file transport.
    pub file_dir: PathBuf,
    pub smtp: SmtpConfig,
    /// Attempts before a transiently failing message is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `retry_max`.
    pub retry_base: Option<Spanned<String>>,
    pub retry_max: Option<Spanned<String>>,
    /// Messages claimed per delivery round.
    pub batch_size: u32,
    /// How long a claimed message belongs to its sender; a message still `sending` after
    /// that (its sender died) becomes `unknown`. Longer than any one SMTP conversation.
    pub lease_secs: u64,
    /// At most this many messages per second over all connections; unset: no limit.
    pub rate_per_second: Option<u32>,
    /// After a throttling reply (421, 454), the rest of the queue waits this many seconds.
    pub throttle_pause_secs: u64,
    /// A delivery round that claims, sends and records nothing for this many seconds is
    /// abandoned, logged as an error and shown in `rebuy status` (the watchdog).
    pub stall_secs: u64,
    /// DKIM signing of every message, when set.
    pub dkim: Option<DkimSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    /// The selector published in DNS (`<selector>._domainkey.<domain>`).
    pub selector: String,
    /// The signing domain (`d=`), normally the domain of `shop.from`.
    pub domain: String,
    /// The private key: PKCS#1 PEM for `rsa`, base64 of the 32-byte seed for `ed25519`.
    /// Read from this file only, never from the YAML.
    pub key_file: PathBuf,
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    #[default]
    Rsa,
    Ed25519,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            transport: TransportKind::File,
            file_dir: PathBuf::from("outbox"),
            smtp: SmtpConfig::default(),
            max_attempts: 8,
            retry_base: None,
            retry_max: None,
            batch_size: 500,
            lease_secs: 600,
            rate_per_second: None,
            throttle_pause_secs: 60,
            stall_secs: 600,
            dkim: None,
        }
    }
}

/// Both limits are on by default (at most 2 marketing mails a week, none between 21:00 and
/// 08:00 local): a shop that forgets them must not mail its customers at night. `cap: null`
/// or `quiet_hours: null` turns one off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketingConfig {
    /// At most `max` marketing messages per customer in any window of `per`, over all
    /// scenarios.
    pub cap: Option<CapConfig>,
    /// No marketing mail between `from` and `to` in the customer's time zone.
    pub quiet_hours: Option<QuietHoursConfig>,
}

impl Default for MarketingConfig {
    fn default() -> Self {
        Self {
            cap: Some(CapConfig {
                max: 2,
                per: unplaced("7d"),
            }),
            quiet_hours: Some(QuietHoursConfig {
                from: unplaced("21:00"),
                to: unplaced("08:00"),
            }),
        }
    }
}

impl MarketingConfig {
    /// No cap and no quiet hours (`cap: null`, `quiet_hours: null`).
    pub fn off() -> Self {
        Self {
            cap: None,
            quiet_hours: None,
        }
    }
}

/// A built-in value, written nowhere.
fn unplaced(value: &str) -> Spanned<String> {
    use serde_saphyr::Location;
    Spanned::new(value.to_string(), Location::UNKNOWN, Location::UNKNOWN)
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentsConfig {
    /// A stable share of customers (`5%`) sent no marketing scenario at all (transactional
    /// mail still goes), reported against everyone else.
    pub control_group: Option<Spanned<String>>,
    /// Last-touch attribution: an order this long after a sent message is credited to it
    /// (default 7d).
    pub attribution_window: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapConfig {
    pub max: u32,
    pub per: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text: only for a relay on loopback or a trusted network.
    None,
    /// Upgrade with STARTTLS (port 587); refuse to send if the server cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    /// Environment variable with the password.
    pub password_env: String,
    /// File with the password, if the environment variable is unset.
    pub password_file: Option<PathBuf>,
    /// Connections kept open to the relay.
    pub pool_size: u32,
    /// Seconds to wait for the server before giving up on an attempt.
    pub timeout_secs: u64,
    /// PEM file with CA certificates to trust besides the public ones (a relay with a
    /// private CA).
    pub ca_file: Option<PathBuf>,
    /// Allow AUTH over a connection without TLS to a host that is not loopback (the password
    /// then crosses the network in clear). Off: such a config is refused.
    pub allow_plaintext_auth: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            tls: TlsMode::Starttls,
            username: None,
            password_env: "REBUY_SMTP_PASSWORD".into(),
            password_file: None,
            pool_size: 4,
            timeout_secs: 30,
            ca_file: None,
            allow_plaintext_auth: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub name: String,
    /// Standard 5-field cron: minute hour day-of-month month day-of-week.
    pub cron: Spanned<String>,
    /// Import this customers file when the job runs.
    pub import_customers: Option<PathBuf>,
    /// Import this orders file when the job runs.
    pub import_orders: Option<PathBuf>,
    /// Refresh every customer's metrics, RFM scores and predictions at the end of the job
    /// (after its imports). On by default; a job with nothing else is a scheduled refresh.
    #[serde(default = "yes")]
    pub refresh_metrics: bool,
    /// Mail the LTV targets' figures to the team when the job runs (after its refresh).
    pub digest: Option<DigestConfig>,
}

/// The targets digest: who gets it and in which language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// The team's addresses (each gets its own mail).
    pub to: Vec<Spanned<String>>,
    /// `en` (default) or `ja`.
    pub lang: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        let mut shop = BTreeMap::new();
        shop.insert("name".into(), "Example Shop".into());
        shop.insert("from".into(), "Example Shop <hello@shop.example>".into());
        shop.insert("url".into(), "https://shop.example".into());
        // Every marketing mail must show the sender's postal address and a contact address.
        shop.insert(
            "address".into(),
            "1-2-3 Example-cho, Shibuya-ku, Tokyo".into(),
        );
        shop.insert("contact".into(), "support@shop.example".into());
        Self {
            database: "rebuy.db".into(),
            scenarios_dir: "scenarios".into(),
            templates_dir: "templates".into(),
            default_timezone: None,
            tick_interval: None,
            trigger_lookback: None,
            expires: None,
            log_format: LogFormat::Text,
            shop,
            unsubscribe: UnsubscribeConfig::default(),
            http: HttpConfig::default(),
            shopify: ShopifyConfig::default(),
            tracking: TrackingConfig::default(),
            delivery: DeliveryConfig::default(),
            marketing: MarketingConfig::default(),
            jobs: Vec::new(),
            experiments: ExperimentsConfig::default(),
            source: None,
            places: BTreeMap::new(),
        }
    }
}

/// The marketing limits from config; both optional. Defined here (config is read by delivery,
/// not the other way round) and applied by `delivery::limits`.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// At most `.0` marketing messages per customer in any window of `.1`.
    pub cap: Option<(u32, Duration)>,
    /// No marketing mail from `.0` to `.1`, local time (the window may span midnight).
    pub quiet: Option<(chrono::NaiveTime, chrono::NaiveTime)>,
}

/// Settings derived from `Config` once it is valid.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub default_timezone: Tz,
    pub tick_interval: Duration,
    pub trigger_lookback: Duration,
    /// The default lateness limit of a step (`expires`).
    pub step_expiry: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub jobs: Vec<(JobConfig, cron::Schedule)>,
    pub limits: Limits,
    /// The shop-wide control group's share (0 without one).
    pub control_group: f64,
    pub attribution_window: Duration,
}

impl Config {
    /// Reads `path`; a missing file is an error only when `required` (it was named explicitly).
    pub fn load(path: &Path, required: bool) -> Result<Self, Vec<Diagnostic>> {
        let shown = path.display().to_string();
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => match Self::parse_or_rest(&shown, &text) {
                Ok(config) => config,
                Err((mut diags, rest)) => {
                    if let Some((rest, left_out)) = rest {
                        diags.extend(rest.value_problems(path, &left_out));
                    }
                    diags.sort_by_key(|d| (d.line, d.col));
                    return Err(diags);
                }
            },
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => {
                let said = match path.is_dir() {
                    true => "is a folder, not a config file".to_string(),
                    false => format!("cannot read config: {e}"),
                };
                return Err(vec![Diagnostic::new(&shown, 0, 0, said).with_hint(
                    "name the config file with --config (config.example.yaml shows every key), \
                     or leave --config out to use ./rebuy.yaml when there is one",
                )]);
            }
        };
        config.loaded_from(path);
        Ok(config)
    }

    /// Where the file came from: relative paths are anchored at its folder, and the
    /// environment's settings applied.
    fn loaded_from(&mut self, path: &Path) {
        self.source = Some(path.to_path_buf());
        if let Some(base) = path.parent().filter(|b| !b.as_os_str().is_empty()) {
            self.anchor_paths(base);
        }
        self.apply_env();
    }

    /// The problems `resolve` finds in the rest of a file whose other keys did not parse (the
    /// config read with those left out), so that one round of fixes is enough: `quiet_hours:
    /// "25:00"` is reported beside a misspelt key, not after it is fixed. Only problems placed
    /// at a key still written, in a section (`delivery`, `marketing` …) with nothing left out,
    /// are kept: a default standing in for a left-out key could cause the others (a block
    /// found missing, a limit checked against a default).
    fn value_problems(
        mut self: Box<Self>,
        path: &Path,
        left_out: &BTreeSet<String>,
    ) -> Vec<Diagnostic> {
        self.loaded_from(path);
        let sections: BTreeMap<u64, &str> = self
            .places
            .iter()
            .map(|(key, (line, _))| (*line, section(key)))
            .collect();
        let kept = |d: &Diagnostic| {
            (d.line, d.col) != (1, 1)
                && sections
                    .get(&d.line)
                    .is_some_and(|s| !left_out.contains(*s))
        };
        match self.resolve() {
            Ok(_) => Vec::new(),
            Err(diags) => diags.into_iter().filter(|d| kept(d)).collect(),
        }
    }

    pub fn parse(path: &str, text: &str) -> Result<Self, Vec<Diagnostic>> {
        Self::parse_or_rest(path, text).map_err(|(diags, _)| diags)
    }

    /// `parse`; on failure also the config read without the keys that failed, when the rest
    /// parses (its values are then checked in the same round: `value_problems`).
    #[allow(clippy::type_complexity)]
    fn parse_or_rest(
        path: &str,
        text: &str,
    ) -> Result<Self, (Vec<Diagnostic>, Option<(Box<Self>, BTreeSet<String>)>)> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let mut places = BTreeMap::new();
        if let Ok(root) = crate::yaml::parse(path, text) {
            record_places(&root, "", &mut places);
        }
        match serde_saphyr::from_str::<Config>(text) {
            Ok(mut config) => {
                config.places = places;
                Ok(config)
            }
            Err(e) => {
                let (diags, rest) = every_type_error(path, text, &places, &e);
                // The sections with a line left out, by the keys first written on those lines.
                let changed: BTreeSet<u64> = (1u64..)
                    .zip(text.lines().zip(rest.lines()))
                    .filter(|(_, (was, is))| was != is)
                    .map(|(line, _)| line)
                    .collect();
                let left_out: BTreeSet<String> = places
                    .iter()
                    .filter(|(_, (line, _))| changed.contains(line))
                    .map(|(key, _)| section(key).to_string())
                    .collect();
                let rest = serde_saphyr::from_str::<Config>(&rest).ok().map(|mut c| {
                    if let Ok(root) = crate::yaml::parse(path, &rest) {
                        record_places(&root, "", &mut c.places);
                    }
                    (Box::new(c), left_out)
                });
                Err((diags, rest))
            }
        }
    }

    /// Where `key` (dotted: `delivery.smtp.timeout_secs`) is written, or the file's start.
    fn place(&self, key: &str) -> (u64, u64) {
        self.places.get(key).copied().unwrap_or((1, 1))
    }

    /// Refuses settings that would give a secret away: a password sent in clear over the
    /// network, an unsubscribe secret short enough to guess.
    fn check_secrets(&self, path: &str, diags: &mut Vec<Diagnostic>) {
        let smtp = &self.delivery.smtp;
        let host = smtp.host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if self.delivery.transport == TransportKind::Smtp
            && smtp.tls == TlsMode::None
            && smtp.username.is_some()
            && !loopback
            && !smtp.allow_plaintext_auth
        {
            let (line, col) = self.place("delivery.smtp.tls");
            diags.push(
                Diagnostic::new(
                    path,
                    line,
                    col,
                    format!("delivery.smtp.tls is none with a username: the password would cross the network to {} in clear", smtp.host),
                )
                .with_hint("use tls: starttls (port 587) or tls (port 465); or, on a network you trust, set allow_plaintext_auth: true"),
            );
        }
        // The environment wins over the file, as `read_secret` reads them.
        let from_env = std::env::var(&self.unsubscribe.secret_env).is_ok_and(|v| !v.is_empty());
        if let Some(file) = self.unsubscribe.secret_file.as_ref().filter(|_| !from_env) {
            if let Ok(text) = std::fs::read_to_string(file) {
                if let Err(e) = check_secret(text.trim_end_matches(['\n', '\r'])) {
                    let (line, col) = self.place("unsubscribe.secret_file");
                    diags.push(Diagnostic::new(
                        path,
                        line,
                        col,
                        format!("{}: {e}", file.display()),
                    ));
                }
            }
        }
    }

    /// The addresses customers follow must be absolute http(s) ones: the tracking base (links
    /// are built on it, so without a query), the unsubscribe page (its token is added to its
    /// query) and the shop's `url` when templates are given one.
    fn check_urls(&self, path: &str, diags: &mut Vec<Diagnostic>) {
        let urls = [
            (
                "tracking.base_url",
                self.tracking.base_url.as_deref(),
                false,
                "give where customers reach rebuy's HTTP server, e.g. https://mail.shop.example",
            ),
            (
                "unsubscribe.base_url",
                Some(self.unsubscribe.base_url.as_str()),
                true,
                "give the public address of rebuy's unsubscribe page, e.g. https://mail.shop.example/unsubscribe",
            ),
            (
                "shop.url",
                self.shop.get("url").map(String::as_str),
                true,
                "give the shop's address as customers open it, e.g. https://shop.example",
            ),
        ];
        for (key, url, query, hint) in urls {
            let Some(url) = url else { continue };
            if let Err(why) = absolute_url(url, query) {
                let (line, col) = self.place(key);
                diags.push(
                    Diagnostic::new(path, line, col, format!("{key} '{url}' {why}"))
                        .with_hint(hint),
                );
            }
        }
    }

    /// Retries start at `retry_base` and double up to `retry_max`: a base above the most is
    /// refused.
    fn check_retries(
        &self,
        path: &str,
        base: Duration,
        max: Duration,
        diags: &mut Vec<Diagnostic>,
    ) {
        let d = &self.delivery;
        let said = |v: &Option<Spanned<String>>, default: &str| {
            v.as_ref()
                .map_or(format!("{default} (the default)"), |s| s.value.clone())
        };
        // A base of 0 (immediate retries: a staging relay) is allowed; a base above the most
        // is a contradiction (the doubling would never happen).
        let (key, problem) = if base > max {
            let key = match d.retry_max.is_some() {
                true => "delivery.retry_max",
                false => "delivery.retry_base",
            };
            (
                key,
                format!(
                    "delivery.retry_base ({}) is longer than delivery.retry_max ({}): retries start at retry_base and double up to retry_max",
                    said(&d.retry_base, "1m"),
                    said(&d.retry_max, "2h")
                ),
            )
        } else {
            return;
        };
        let (line, col) = self.place(key);
        diags.push(Diagnostic::new(path, line, col, problem));
    }

    /// Every job needs a name of its own: its schedule and its runs are kept by name, so two
    /// jobs of one name would take each other's runs.
    fn check_job_names(&self, path: &str, diags: &mut Vec<Diagnostic>) {
        for (i, job) in self.jobs.iter().enumerate() {
            let key = format!("jobs[{i}].name");
            let (line, col) = self
                .places
                .get(&key)
                .copied()
                .unwrap_or((job.cron.referenced.line(), job.cron.referenced.column()));
            let first = self.jobs[..i].iter().position(|j| j.name == job.name);
            let problem = match first {
                _ if job.name.trim().is_empty() => format!("{key} is empty: name the job (it appears in logs and in rebuy status)"),
                Some(first) => format!("{key} '{}' is also the name of jobs[{first}]: each job needs its own name (its schedule is kept by name)", job.name),
                None => continue,
            };
            diags.push(Diagnostic::new(path, line, col, problem));
        }
    }

    /// Checks the numbers serde accepted against the range rebuy can work with.
    /// What `run` would refuse or get wrong at start: an address it cannot listen on, and the
    /// example's unsubscribe URL left in place while real mail goes out.
    fn check_addresses(&self, path: &str, diags: &mut Vec<Diagnostic>) {
        if let Some(listen) = self.http_listen() {
            if let Err(why) = listen_address(listen) {
                let key = if self.http.listen.is_some() {
                    "http.listen"
                } else {
                    "unsubscribe.listen"
                };
                let (line, col) = self.place(key);
                diags.push(Diagnostic::new(
                    path,
                    line,
                    col,
                    format!("{key} is '{listen}': {why} (e.g. 127.0.0.1:8025)"),
                ));
            }
        }
        let placeholder = UnsubscribeConfig::default().base_url;
        if self.delivery.transport == TransportKind::Smtp
            && self.unsubscribe.base_url == placeholder
        {
            let (line, col) = self.place("unsubscribe.base_url");
            diags.push(Diagnostic::new(
                path,
                line,
                col,
                format!(
                    "unsubscribe.base_url is still the example's {placeholder}: every marketing mail carries this link; set the shop's public address of rebuy's unsubscribe page"
                ),
            ));
        }
    }

    fn check_ranges(&self, path: &str, diags: &mut Vec<Diagnostic>) {
        let d = &self.delivery;
        let day = 86_400;
        let h = &self.http;
        let checks: [(&str, u64, u64, u64, &str); 13] = [
            (
                "http.max_body_bytes",
                h.max_body_bytes,
                1024,
                256 * 1024 * 1024,
                "bytes, from 1 KiB to 256 MiB",
            ),
            (
                "http.max_connections",
                h.max_connections,
                1,
                65_536,
                "connections",
            ),
            (
                "http.header_timeout_secs",
                h.header_timeout_secs,
                1,
                3600,
                "seconds, at most an hour",
            ),
            (
                "http.request_timeout_secs",
                h.request_timeout_secs,
                1,
                3600,
                "seconds, at most an hour",
            ),
            (
                "delivery.lease_secs",
                d.lease_secs,
                1,
                day,
                "seconds; longer than any one SMTP conversation, at most a day",
            ),
            (
                "delivery.throttle_pause_secs",
                d.throttle_pause_secs,
                0,
                day,
                "seconds, at most a day",
            ),
            (
                "delivery.stall_secs",
                d.stall_secs,
                60,
                day,
                "seconds, from a minute to a day",
            ),
            (
                "delivery.smtp.timeout_secs",
                d.smtp.timeout_secs,
                1,
                3600,
                "seconds, at most an hour",
            ),
            (
                "delivery.smtp.port",
                d.smtp.port.into(),
                1,
                65_535,
                "a TCP port: 587 for STARTTLS, 465 for TLS, 25 for a relay",
            ),
            (
                "delivery.smtp.pool_size",
                d.smtp.pool_size.into(),
                1,
                256,
                "connections",
            ),
            (
                "delivery.batch_size",
                d.batch_size.into(),
                1,
                100_000,
                "messages",
            ),
            (
                "delivery.max_attempts",
                d.max_attempts.into(),
                1,
                100,
                "attempts",
            ),
            (
                "delivery.rate_per_second",
                d.rate_per_second.map_or(1, u64::from),
                1,
                100_000,
                "messages a second; leave it out for no limit",
            ),
        ];
        for (key, value, lo, hi, unit) in checks {
            if !(lo..=hi).contains(&value) {
                let (line, col) = self.place(key);
                diags.push(Diagnostic::new(
                    path,
                    line,
                    col,
                    format!("{key} is {value}; it must be between {lo} and {hi} ({unit})"),
                ));
            }
        }
        // One message's SMTP conversation takes a few of its steps: the watchdog must not
        // take a slow server for a stall.
        if d.transport == TransportKind::Smtp && self.stall_secs() < 4 * d.smtp.timeout_secs {
            let (line, col) = self.place("delivery.stall_secs");
            diags.push(Diagnostic::new(
                path,
                line,
                col,
                format!(
                    "delivery.stall_secs is {}; it must be at least 4 × delivery.smtp.timeout_secs ({} s): raise it or lower the timeout",
                    d.stall_secs,
                    4 * d.smtp.timeout_secs
                ),
            ));
        }
        if d.transport == TransportKind::Smtp && d.smtp.host.trim().is_empty() {
            let (line, col) = self.place("delivery.smtp.host");
            diags.push(Diagnostic::new(
                path,
                line,
                col,
                "delivery.smtp.host is empty: name the mail server (e.g. smtp.example.jp or 127.0.0.1)",
            ));
        }
    }

    /// Makes every relative path of the file (and the defaults it left) relative to `base`,
    /// the config file's folder, not to wherever the command was started. Environment
    /// overrides, given at a shell, stay relative to the working directory.
    fn anchor_paths(&mut self, base: &Path) {
        let at = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let url = self.database.starts_with("sqlite:") || self.database.contains("://");
        if !url && Path::new(&self.database).is_relative() {
            self.database = base.join(&self.database).display().to_string();
        }
        at(&mut self.scenarios_dir);
        at(&mut self.templates_dir);
        at(&mut self.delivery.file_dir);
        let optional = [
            &mut self.unsubscribe.secret_file,
            &mut self.shopify.secret_file,
            &mut self.delivery.smtp.password_file,
            &mut self.delivery.smtp.ca_file,
        ];
        for p in optional.into_iter().flatten() {
            at(p);
        }
        if let Some(d) = &mut self.delivery.dkim {
            at(&mut d.key_file);
        }
        for j in &mut self.jobs {
            for p in [&mut j.import_customers, &mut j.import_orders]
                .into_iter()
                .flatten()
            {
                at(p);
            }
        }
    }

    fn apply_env(&mut self) {
        if let Ok(db) = std::env::var("REBUY_DATABASE") {
            self.database = db;
        }
        if let Ok(dir) = std::env::var("REBUY_SCENARIOS_DIR") {
            self.scenarios_dir = dir.into();
        }
        if let Ok(dir) = std::env::var("REBUY_TEMPLATES_DIR") {
            self.templates_dir = dir.into();
        }
    }

    fn path(&self) -> String {
        self.source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".into())
    }

    /// Checks every value that serde cannot: durations, zones, cron lines, required shop keys.
    pub fn resolve(&self) -> Result<Resolved, Vec<Diagnostic>> {
        let path = self.path();
        let mut diags = Vec::new();
        self.check_ranges(&path, &mut diags);
        self.check_secrets(&path, &mut diags);
        self.check_addresses(&path, &mut diags);
        self.check_urls(&path, &mut diags);
        let mut duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| match v {
            None => default,
            Some(s) => parse_duration(&s.value).unwrap_or_else(|e| {
                diags.push(Diagnostic::new(
                    &path,
                    s.referenced.line(),
                    s.referenced.column(),
                    format!("{key}: {e}"),
                ));
                default
            }),
        };
        let tick_interval = duration("tick_interval", &self.tick_interval, Duration::seconds(60));
        let no_pause = self
            .tick_interval
            .as_ref()
            .filter(|_| tick_interval < Duration::seconds(1));
        let trigger_lookback = duration(
            "trigger_lookback",
            &self.trigger_lookback,
            Duration::days(3),
        );
        let step_expiry = duration("expires", &self.expires, Duration::days(3));
        let d = &self.delivery;
        let retry_base = duration("delivery.retry_base", &d.retry_base, Duration::minutes(1));
        let retry_max = duration("delivery.retry_max", &d.retry_max, Duration::hours(2));
        let attribution_window = duration(
            "experiments.attribution_window",
            &self.experiments.attribution_window,
            Duration::days(7),
        );
        let cap = self.marketing.cap.as_ref().map(|c| {
            let per = Some(c.per.clone());
            (
                c.max,
                duration("marketing.cap.per", &per, Duration::days(7)),
            )
        });
        self.check_retries(&path, retry_base, retry_max, &mut diags);
        if let Some(c) = self
            .marketing
            .cap
            .as_ref()
            .filter(|_| cap.is_some_and(|(_, per)| per <= Duration::zero()))
        {
            diags.push(Diagnostic::new(
                &path,
                c.per.referenced.line(),
                c.per.referenced.column(),
                format!("marketing.cap.per is {}: the window must be longer than 0, such as 7d (to turn the cap off, write cap: null)", c.per.value),
            ));
        }
        if let Some(e) = self
            .expires
            .as_ref()
            .filter(|_| step_expiry <= Duration::zero())
        {
            diags.push(Diagnostic::new(
                &path,
                e.referenced.line(),
                e.referenced.column(),
                "expires must be longer than 0 (how late a step may still be sent, such as 3d)",
            ));
        }
        if let Some(t) = no_pause {
            diags.push(Diagnostic::new(
                &path,
                t.referenced.line(),
                t.referenced.column(),
                format!("tick_interval is {}: the daemon would tick without a pause; give at least 1s (the default is 1m)", t.value),
            ));
        }
        let default_timezone = match &self.default_timezone {
            None => chrono_tz::Asia::Tokyo,
            Some(s) => parse_timezone(&s.value).unwrap_or_else(|e| {
                diags.push(Diagnostic::new(
                    &path,
                    s.referenced.line(),
                    s.referenced.column(),
                    format!("default_timezone: {e}"),
                ));
                chrono_tz::UTC
            }),
        };
        for key in ["name", "from"] {
            if !self.shop.contains_key(key) {
                // At `shop:` (the file's start without one), naming a key that looks like it.
                let (line, col) = self.place("shop");
                let written: Vec<&str> = self.shop.keys().map(String::as_str).collect();
                let d = Diagnostic::new(&path, line, col, format!("shop.{key} is required"));
                diags.push(match crate::diagnostic::did_you_mean(key, &written) {
                    Some(near) => {
                        d.with_hint(format!("'{near}' is written: did you mean '{key}'?"))
                    }
                    None => d,
                });
            }
        }
        if let Some(from) = self.shop.get("from") {
            if from.parse::<lettre::message::Mailbox>().is_err() {
                let (line, col) = self.place("shop.from");
                diags.push(
                    Diagnostic::new(
                        &path,
                        line,
                        col,
                        format!("shop.from '{from}' is not a mailbox"),
                    )
                    .with_hint("write it as \"Shop Name <hello@shop.example>\""),
                );
            }
        }
        if let Some(Err(e)) = self
            .shop
            .get("currency")
            .map(|c| crate::domain::parse_currency(c))
        {
            let (line, col) = self.place("shop.currency");
            diags.push(
                Diagnostic::new(&path, line, col, format!("shop.currency: {e}"))
                    .with_hint("reports read every amount in the currency's minor units"),
            );
        }
        if let Some(c) = self.marketing.cap.as_ref().filter(|c| c.max == 0) {
            diags.push(Diagnostic::new(
                &path,
                c.per.referenced.line(),
                c.per.referenced.column(),
                "marketing.cap.max must be 1 or more (to stop marketing mail, disable the scenarios)",
            ));
        }
        let mut time = |key: &str, v: &Spanned<String>| {
            crate::domain::parse_local_time(&v.value).map_err(|e| {
                diags.push(Diagnostic::new(
                    &path,
                    v.referenced.line(),
                    v.referenced.column(),
                    format!("marketing.quiet_hours.{key}: {e}"),
                ));
            })
        };
        let quiet_hours = self.marketing.quiet_hours.as_ref();
        let times = quiet_hours.map(|q| (time("from", &q.from), time("to", &q.to)));
        let quiet = quiet_hours.zip(times).map(|(q, (from, to))| {
            if from.is_ok() && from == to {
                diags.push(
                    Diagnostic::new(
                        &path,
                        q.to.referenced.line(),
                        q.to.referenced.column(),
                        format!("marketing.quiet_hours: from and to are both {}, which leaves no quiet hours", q.from.value),
                    )
                    .with_hint("give the hours to keep quiet, such as from: \"21:00\" and to: \"08:00\"; to send at any hour write quiet_hours: null"),
                );
            }
            let at = |t: Result<chrono::NaiveTime, ()>| t.unwrap_or(chrono::NaiveTime::MIN);
            (at(from), at(to))
        });
        let control_group = match &self.experiments.control_group {
            None => 0.0,
            Some(s) => crate::domain::parse_share(&s.value).unwrap_or_else(|e| {
                diags.push(Diagnostic::new(
                    &path,
                    s.referenced.line(),
                    s.referenced.column(),
                    format!("experiments.control_group: {e}"),
                ));
                0.0
            }),
        };
        let mut jobs = Vec::new();
        for digest in self.jobs.iter().filter_map(|j| j.digest.as_ref()) {
            check_digest(&path, digest, &mut diags);
        }
        self.check_job_names(&path, &mut diags);
        for (i, job) in self.jobs.iter().enumerate() {
            match parse_cron(&job.cron.value) {
                Ok(s) => jobs.push((job.clone(), s)),
                Err(e) => diags.push(
                    Diagnostic::new(&path, job.cron.referenced.line(), job.cron.referenced.column(), format!("jobs[{i}].cron: {e}"))
                        .with_hint("use the 5-field form: minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\""),
                ),
            }
        }
        if diags.is_empty() {
            Ok(Resolved {
                default_timezone,
                tick_interval,
                trigger_lookback,
                step_expiry,
                retry_base,
                retry_max,
                jobs,
                limits: Limits { cap, quiet },
                control_group,
                attribution_window,
            })
        } else {
            // In the file's order, as a person fixes them (the checks run key family by family).
            diags.sort_by_key(|d| (d.line, d.col));
            Err(diags)
        }
    }

    /// The delivery watchdog's limit in seconds: as written, or when left out at least four
    /// SMTP conversations (`delivery.smtp.timeout_secs`), so that a slow server allowed by its
    /// timeout is never taken for a stall.
    pub fn stall_secs(&self) -> u64 {
        let d = &self.delivery;
        match self.places.contains_key("delivery.stall_secs") {
            true => d.stall_secs,
            false => d.stall_secs.max(4 * d.smtp.timeout_secs),
        }
    }
}

/// Records the line and column of every mapping key under `prefix`, dotted, and of every
/// item of a list, indexed (`jobs[1].cron`).
fn record_places(node: &crate::yaml::Node, prefix: &str, out: &mut BTreeMap<String, (u64, u64)>) {
    let entries = match &node.value {
        crate::yaml::Value::Map(entries) => entries,
        crate::yaml::Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let key = format!("{prefix}[{i}]");
                out.insert(key.clone(), (item.line, item.col));
                record_places(item, &key, out);
            }
            return;
        }
        _ => return,
    };
    for (k, v) in entries {
        let Some(name) = k.as_str() else { continue };
        let key = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        out.insert(key.clone(), (v.line, v.col));
        record_places(v, &key, out);
    }
}

/// Whether `listen` is an address a server can bind: `host:port` with a port from 1 to 65535.
fn listen_address(listen: &str) -> Result<(), String> {
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err("it needs a port: host:port".into());
    };
    if host.is_empty() {
        return Err("it needs a host before the port".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{port}' is not a port (1 to 65535)")),
    }
}

/// Whether `url` is an absolute http(s) address with a host (and no query unless `query`).
fn absolute_url(url: &str, query: bool) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or("is not an absolute address: it must start with https:// (or http://)")?;
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err("has no host after the scheme");
    }
    if url.contains(char::is_whitespace) {
        return Err("has a space in it");
    }
    if url.contains('#') || (!query && url.contains('?')) {
        return Err(match query {
            true => "has a fragment (#…), which links cannot carry on",
            false => "has a query or a fragment; links are built on it, so give it without",
        });
    }
    Ok(())
}

/// The top-level section of a dotted key (`delivery` of `delivery.smtp.port`, `jobs` of
/// `jobs[0].cron`).
fn section(key: &str) -> &str {
    key.split(['.', '[']).next().unwrap_or(key)
}

/// Every key of the file that does not fit, not only the first: after an error its line (and
/// the lines indented under it) is left out and the file read again, up to 50 times. Each
/// problem names its key and says what is wrong once, at its place. Returns them with the text
/// as last read (those lines commented out).
fn every_type_error(
    path: &str,
    text: &str,
    places: &BTreeMap<String, (u64, u64)>,
    first: &serde_saphyr::Error,
) -> (Vec<Diagnostic>, String) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut diags = Vec::new();
    let mut error = Some(first.to_string());
    let mut at = first.location().map(|l| (l.line(), l.column()));
    while let (Some(message), Some((line, col))) = (error.take(), at) {
        diags.push(type_error(path, places, &lines, line, col, &message));
        if diags.len() >= 50 || !leave_out(&mut lines, line) {
            break;
        }
        if let Err(e) = serde_saphyr::from_str::<Config>(&lines.join("\n")) {
            at = e.location().map(|l| (l.line(), l.column()));
            error = Some(e.to_string());
        }
    }
    if diags.is_empty() {
        diags.push(type_error(path, places, &lines, 1, 1, &first.to_string()));
    }
    (diags, lines.join("\n"))
}

/// One problem of the config file: its key (found by its line) and the parser's words without
/// the place it already printed.
fn type_error(
    path: &str,
    places: &BTreeMap<String, (u64, u64)>,
    lines: &[String],
    line: u64,
    col: u64,
    message: &str,
) -> Diagnostic {
    let said = crate::yaml::bare_message(message);
    let value = usize::try_from(line)
        .ok()
        .and_then(|l| lines.get(l.checked_sub(1)?))
        .map(|l| value_at(l, col))
        .unwrap_or_default();
    let said = parser_words(said, &value);
    let key = places
        .iter()
        .filter(|(_, (l, _))| *l == line)
        .map(|(k, _)| k.as_str())
        .max_by_key(|k| k.len());
    let hint =
        unknown_key_hint(&said).unwrap_or_else(|| "see config.example.yaml for every key".into());
    let said = match key {
        Some(k) => format!("{k}: {said}"),
        None => said.to_string(),
    };
    Diagnostic::new(path, line, col, said).with_hint(hint)
}

/// The scalar written at column `col` (1-based) of `line`: up to a comment or, in a flow
/// mapping or list, the next `,`, `}` or `]` (`port: 70000 # TLS` → `70000`).
fn value_at(line: &str, col: u64) -> String {
    let start = usize::try_from(col.saturating_sub(1)).unwrap_or(usize::MAX);
    let rest: String = line.chars().skip(start).collect();
    let rest = rest.split(" #").next().unwrap_or_default();
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    rest[..end].trim().trim_matches(['"', '\'']).to_string()
}

/// The parser's words about a value, said for a person: `invalid u16` for `70000` is a number
/// too large, a duplicate key is written twice.
fn parser_words(said: &str, value: &str) -> String {
    let most = match said {
        "invalid u8" => Some(u64::from(u8::MAX)),
        "invalid u16" => Some(u64::from(u16::MAX)),
        "invalid u32" => Some(u64::from(u32::MAX)),
        "invalid u64" | "invalid i64" => Some(i64::MAX as u64),
        _ => None,
    };
    if let Some(most) = most {
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        return match digits {
            true => format!("{value} is too large: at most {most}"),
            false => format!("'{value}' is not a whole number (0 to {most})"),
        };
    }
    if said == "invalid boolean" {
        return format!("'{value}' is not true or false");
    }
    if let Some(rest) = said.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("'{key}' is written twice here; keep one");
    }
    said.to_string()
}

/// For a key the config does not have there (the parser's "unknown field `x`, expected one of
/// …"): the key likely meant: the same name elsewhere in `config.example.yaml` (written at the
/// wrong level: `smtp` for `delivery.smtp`), else a near name at the same level (a typo), else
/// a near name elsewhere.
fn unknown_key_hint(said: &str) -> Option<String> {
    let (name, rest) = said.strip_prefix("unknown field `")?.split_once('`')?;
    let expected: Vec<&str> = match rest.split_once("expected one of ") {
        Some((_, list)) => list.split(", ").map(|k| k.trim_matches('`')).collect(),
        None => rest
            .split_once("expected ")
            .map(|(_, k)| vec![k.trim_matches('`')])
            .unwrap_or_default(),
    };
    let example = example_keys();
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let lasts: Vec<String> = example.iter().map(|k| last(k)).collect();
    let names: Vec<&str> = lasts.iter().map(String::as_str).collect();
    let near = match crate::diagnostic::did_you_mean(name, &expected) {
        _ if names.contains(&name) => name,
        Some(near) => return Some(format!("did you mean '{near}'?")),
        None => crate::diagnostic::did_you_mean(name, &names)?,
    };
    let whole = example.iter().find(|k| last(k) == near)?;
    let (parent, _) = whole.rsplit_once('.')?;
    Some(format!(
        "'{near}' goes under '{parent}:' ({whole}); see config.example.yaml for every key"
    ))
}

/// Every key `config.example.yaml` writes, dotted (`marketing.quiet_hours`), in its order.
fn example_keys() -> Vec<String> {
    let text = include_str!("../config.example.yaml");
    let mut places = BTreeMap::new();
    if let Ok(root) = crate::yaml::parse("config.example.yaml", text) {
        record_places(&root, "", &mut places);
    }
    let mut keys: Vec<(String, (u64, u64))> = places
        .into_iter()
        .filter(|(k, _)| !k.contains('['))
        .collect();
    keys.sort_by_key(|(_, at)| *at);
    keys.into_iter().map(|(k, _)| k).collect()
}

/// Comments out line `line` (1-based) and the lines indented under it, and a parent key left
/// with nothing under it; false when there is nothing left to take out there.
fn leave_out(lines: &mut [String], line: u64) -> bool {
    let Some(i) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return false;
    };
    if !comment_block(lines, i) {
        return false;
    }
    // Up the tree: a `key:` whose block is now all comments would be read as an empty value.
    let mut child = i;
    while let Some(parent) = parent_of(lines, child) {
        if has_children(lines, parent) || !lines[parent].trim_end().ends_with(':') {
            break;
        }
        comment_block(lines, parent);
        child = parent;
    }
    true
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start().len()
}

fn live(l: &str) -> bool {
    !l.trim().is_empty() && !l.trim_start().starts_with('#')
}

/// The nearest live line above `i` indented less than it.
fn parent_of(lines: &[String], i: usize) -> Option<usize> {
    let own = indent(&lines[i]);
    (0..i)
        .rev()
        .find(|&j| live(&lines[j]) && indent(&lines[j]) < own)
}

/// Whether a live line indented more than `i` follows it before its block ends.
fn has_children(lines: &[String], i: usize) -> bool {
    let own = indent(&lines[i]);
    lines[i + 1..]
        .iter()
        .filter(|l| live(l))
        .take_while(|l| indent(l) > own)
        .next()
        .is_some()
}

/// The line as a comment, at its own indentation.
fn commented(l: &str) -> String {
    let (ws, rest) = l.split_at(indent(l));
    format!("{ws}#{rest}")
}

/// Comments out line `i` and the lines indented under it.
fn comment_block(lines: &mut [String], i: usize) -> bool {
    let Some(first) = lines.get(i) else {
        return false;
    };
    if first.trim_start().starts_with('#') || first.trim().is_empty() {
        return false;
    }
    let indent = first.len() - first.trim_start().len();
    lines[i] = commented(&lines[i]);
    for l in lines.iter_mut().skip(i + 1) {
        let inner = l.len() - l.trim_start().len();
        if l.trim().is_empty() || inner > indent {
            *l = commented(l);
        } else {
            break;
        }
    }
    true
}

/// A digest's addresses must be mailboxes, at least one, and its language one the pages have.
fn check_digest(path: &str, digest: &DigestConfig, diags: &mut Vec<Diagnostic>) {
    let at = |s: &Spanned<String>| (s.referenced.line(), s.referenced.column());
    for to in &digest.to {
        if let Err(e) = to.value.parse::<lettre::message::Mailbox>() {
            let (line, col) = at(to);
            diags.push(
                Diagnostic::new(
                    path,
                    line,
                    col,
                    format!("digest.to '{}' is not a mail address: {e}", to.value),
                )
                .with_hint(
                    "write an address like team@shop.example or \"Team <team@shop.example>\"",
                ),
            );
        }
    }
    if digest.to.is_empty() {
        diags.push(
            Diagnostic::new(path, 0, 0, "a job's digest has no address in `to`")
                .with_hint("list the team's addresses: to: [team@shop.example]"),
        );
    }
    if let Some(lang) = &digest.lang {
        if !["en", "ja"].contains(&lang.value.as_str()) {
            let (line, col) = at(lang);
            diags.push(
                Diagnostic::new(
                    path,
                    line,
                    col,
                    format!(
                        "digest.lang '{}' is not a language of the digest",
                        lang.value
                    ),
                )
                .with_hint("use en or ja"),
            );
        }
    }
}

/// Parses a standard 5-field cron line (the form operators know); the `cron` crate wants a
/// seconds field first, so one is added. 6- and 7-field lines are passed through.
pub fn parse_cron(line: &str) -> Result<cron::Schedule, String> {
    let fields = line.split_whitespace().count();
    let full = match fields {
        5 => {
            let mut parts: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            parts[4] = standard_days_of_week(&parts[4]);
            format!("0 {}", parts.join(" "))
        }
        6 | 7 => line.to_string(),
        n => return Err(format!("cron line '{line}' has {n} fields; expected 5")),
    };
    if fields == 5 {
        if let Some(problem) = line
            .split_whitespace()
            .zip(CRON_FIELDS)
            .find_map(field_problem)
        {
            return Err(format!("bad cron line '{line}': {problem}"));
        }
    }
    full.parse::<cron::Schedule>().map_err(|e| {
        // The crate's last line says what is wrong; the ones before repeat the line.
        let said = e.to_string();
        let last = said.lines().rev().find(|l| !l.trim().is_empty());
        format!("bad cron line '{line}': {}", last.unwrap_or(&said).trim())
    })
}

/// The five fields of standard cron with the numbers each accepts.
const CRON_FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of the month", 1, 31),
    ("month", 1, 12),
    ("day of the week", 0, 7),
];

/// A number of one cron field outside what the field accepts (`60` as a minute), in words;
/// names (`MON`, `JAN`) and the rest of the syntax are left to the cron crate.
fn field_problem((text, (name, lo, hi)): (&str, (&str, u32, u32))) -> Option<String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step.and_then(|s| s.parse::<u32>().ok()) {
            if step == 0 {
                return Some(format!("the {name} field's step /0 must be 1 or more"));
            }
        }
        for part in range.split('-') {
            match part.parse::<u64>() {
                Ok(n) if n < u64::from(lo) || n > u64::from(hi) => {
                    return Some(format!("the {name} field takes {lo} to {hi}, not {n}"))
                }
                _ => {}
            }
        }
    }
    None
}

/// Standard cron numbers the days of the week from Sunday = 0 (7 is Sunday too); the `cron`
/// crate from Sunday = 1. Numbered days, ranges and steps become a list of day names, which
/// both read alike ("1-5" → MON,TUE,WED,THU,FRI); names and `*` are left as they are.
fn standard_days_of_week(field: &str) -> String {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    if field == "*" {
        return field.to_string();
    }
    let expand = |part: &str| -> Option<Vec<usize>> {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<usize>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let day = |s: &str| s.parse::<usize>().ok().filter(|d| *d <= 7);
        let (from, to) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (day(a)?, day(b)?),
            None if step > 1 => (day(range)?, 6),
            None => (day(range)?, day(range)?),
        };
        Some((from..=to).step_by(step).map(|d| d % 7).collect())
    };
    let mut days = Vec::new();
    for part in field.split(',') {
        match expand(part) {
            Some(d) => days.extend(d),
            None => return field.to_string(),
        }
    }
    days.sort_unstable();
    days.dedup();
    days.iter().map(|d| NAMES[*d]).collect::<Vec<_>>().join(",")
}

/// The shortest unsubscribe secret accepted: shorter ones make every link forgeable by guessing.
pub const MIN_SECRET_LEN: usize = 16;

/// Whether a secret is long enough to sign unsubscribe links with.
pub fn check_secret(secret: &str) -> Result<(), String> {
    long_enough(
        secret,
        "the unsubscribe secret",
        "(e.g. `openssl rand -hex 32`), or leave it unset for a generated one",
    )
}

fn long_enough(secret: &str, what: &str, fix: &str) -> Result<(), String> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{what} has {} characters; it needs at least {MIN_SECRET_LEN} {fix}",
            secret.len()
        ));
    }
    Ok(())
}

/// The Shopify app's client secret, checked like the unsubscribe secret: a short one is a
/// mistake (a truncated copy), and it is what stands between the webhook and forged orders.
pub fn check_shopify_secret(secret: &str) -> Result<(), String> {
    long_enough(
        secret,
        "the Shopify secret",
        "characters: copy the app's whole client secret (Shopify admin → Apps → your app → API credentials)",
    )
}

/// Reads a secret from an environment variable, or else from a file (trailing newline cut).
pub fn read_secret(env: &str, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    if let Ok(v) = std::env::var(env) {
        if !v.is_empty() {
            return Ok(Some(v));
        }
    }
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("cannot read secret file {}: {e}", f.display()))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `resolve` says of a config text, each diagnostic as shown (none when it is fine).
    fn said(text: &str) -> Vec<String> {
        match Config::parse("c.yaml", text).unwrap().resolve() {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn check_refuses_what_run_would_refuse_at_start() {
        let bad = said("unsubscribe:\n  listen: localhost:80800\n");
        assert!(
            bad[0].starts_with(
                "config:2:11: unsubscribe.listen is 'localhost:80800': '80800' is not a port"
            ),
            "{bad:?}"
        );
        let bad = said("http:\n  listen: nowhere\n");
        assert!(
            bad[0].contains("http.listen is 'nowhere': it needs a port"),
            "{bad:?}"
        );
        assert!(said("http:\n  listen: localhost:8025\n").is_empty());
        let smtp = "delivery:\n  transport: smtp\n  smtp: { host: 127.0.0.1 }\n";
        let bad = said(smtp);
        assert!(
            bad.iter()
                .any(|d| d.contains("unsubscribe.base_url is still the example's")),
            "{bad:?}"
        );
        let fine = format!("{smtp}unsubscribe:\n  base_url: https://hadamaru.jp/u\n");
        assert!(said(&fine).is_empty(), "{:?}", said(&fine));
    }

    #[test]
    fn values_that_would_misdirect_mail_or_jobs_are_refused_at_their_key() {
        let one = |text: &str| -> String {
            let bad = said(text);
            assert_eq!(bad.len(), 1, "{text}: {bad:?}");
            bad[0].clone()
        };
        let url = one("unsubscribe:\n  base_url: shop.example/unsub\n");
        assert!(
            url.starts_with(
                "config:2:13: unsubscribe.base_url 'shop.example/unsub' is not an absolute address"
            ),
            "{url}"
        );
        assert!(
            one("shop:\n  name: A\n  from: a@b.example\n  url: https://\n")
                .contains("shop.url 'https://' has no host")
        );
        assert!(one("tracking:\n  base_url: https://m.example/?x=1\n").contains("has a query"));
        assert!(said("unsubscribe:\n  base_url: https://m.example/u?shop=1\n").is_empty());
        assert!(one("delivery:\n  smtp:\n    port: 0\n")
            .starts_with("config:3:11: delivery.smtp.port is 0; it must be between 1 and 65535"));
        assert!(one("marketing:\n  cap: { max: 2, per: 0s }\n")
            .contains("marketing.cap.per is 0s: the window must be longer than 0"));
        let quiet = one("marketing:\n  quiet_hours: { from: '21:00', to: '21:00' }\n");
        assert!(
            quiet.contains("from and to are both 21:00, which leaves no quiet hours"),
            "{quiet}"
        );
        let retry = one("delivery:\n  retry_base: 3h\n  retry_max: 1h\n");
        assert!(
            retry.starts_with(
                "config:3:14: delivery.retry_base (3h) is longer than delivery.retry_max (1h)"
            ),
            "{retry}"
        );
        assert!(one("delivery:\n  retry_base: 3h\n").contains("retry_max (2h (the default))"));
        assert!(said("delivery:\n  retry_base: 0s\n").is_empty());
        let jobs = "jobs:\n  - name: nightly\n    cron: '0 3 * * *'\n  - name: nightly\n    cron: '0 4 * * *'\n  - name: ' '\n    cron: '60 4 * * *'\n";
        let bad = said(jobs);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(
            bad[0].starts_with("config:4:11: jobs[1].name 'nightly' is also the name of jobs[0]"),
            "{bad:?}"
        );
        assert!(
            bad[1].starts_with("config:6:11: jobs[2].name is empty"),
            "{bad:?}"
        );
        assert!(
            bad[2].contains(
                "jobs[2].cron: bad cron line '60 4 * * *': the minute field takes 0 to 59, not 60"
            ),
            "{bad:?}"
        );
        // Each duration and time names its key.
        assert!(one("experiments:\n  attribution_window: 7 days\n")
            .contains("experiments.attribution_window: bad duration '7 days'"));
        assert!(
            one("marketing:\n  quiet_hours: { from: '25:00', to: '08:00' }\n")
                .contains("marketing.quiet_hours.from: bad time '25:00'")
        );
    }

    #[test]
    fn cron_fields_out_of_range_and_the_crates_words_are_said_plainly() {
        let e = parse_cron("0 24 * * *").unwrap_err();
        assert_eq!(
            e,
            "bad cron line '0 24 * * *': the hour field takes 0 to 23, not 24"
        );
        assert!(parse_cron("0 3 * 13 *")
            .unwrap_err()
            .contains("the month field takes 1 to 12, not 13"));
        assert!(parse_cron("0 3 1-32 * *")
            .unwrap_err()
            .contains("the day of the month field takes 1 to 31, not 32"));
        assert!(parse_cron("0 3 * * 0-7").is_ok());
        assert!(parse_cron("*/15 9-17 * JAN MON-FRI").is_ok());
        // What only the crate finds keeps its last line, without the caret drawing.
        let e = parse_cron("0 3 * FOO *").unwrap_err();
        assert!(
            e.starts_with("bad cron line '0 3 * FOO *': ") && !e.contains('\n') && !e.contains('^'),
            "{e}"
        );
    }

    #[test]
    fn the_parsers_words_about_a_value_are_said_for_a_person() {
        let said = |text: &str| Config::parse("c.yaml", text).unwrap_err()[0].to_string();
        assert!(said("delivery:\n  smtp:\n    port: 70000\n")
            .starts_with("c.yaml:3:11: delivery.smtp.port: 70000 is too large: at most 65535"));
        assert!(said("delivery:\n  batch_size: lots\n")
            .contains("delivery.batch_size: 'lots' is not a whole number (0 to 4294967295)"));
        assert!(said("delivery:\n  smtp:\n    port: 70000 # TLS\n")
            .contains("port: 70000 is too large: at most 65535"));
        assert!(said("delivery:\n  smtp: { host: x, port: 70000 }\n")
            .contains("70000 is too large: at most 65535"));
        assert!(
            said("jobs:\n  - name: x\n    cron: '0 3 * * *'\n    refresh_metrics: maybe\n")
                .contains("jobs[0].refresh_metrics: 'maybe' is not true or false")
        );
        let twice = said("shop:\n  name: A\n  name: B\n");
        assert!(
            twice.contains("'name' is written twice here; keep one") && !twice.contains("Policy"),
            "{twice}"
        );
    }

    #[test]
    fn the_watchdog_left_out_follows_a_long_smtp_timeout_and_problems_come_in_line_order() {
        let smtp = "delivery:\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    timeout_secs: 300\nunsubscribe:\n  base_url: https://shop.example/u\n";
        assert!(said(smtp).is_empty(), "{:?}", said(smtp));
        assert_eq!(Config::parse("c.yaml", smtp).unwrap().stall_secs(), 1200);
        let written = smtp.replace(
            "  transport: smtp\n",
            "  transport: smtp\n  stall_secs: 700\n",
        );
        let bad = said(&written);
        assert!(
            bad.len() == 1 && bad[0].starts_with("config:3:15: delivery.stall_secs is 700"),
            "{bad:?}"
        );
        // Problems of different checks, in the file's order.
        let two = format!("tick_interval: 5 minutes\n{written}");
        let lines: Vec<String> = said(&two)
            .iter()
            .map(|d| d.split(':').nth(1).unwrap().to_string())
            .collect();
        assert_eq!(lines, ["1", "4"], "{:?}", said(&two));
    }

    #[test]
    fn a_misspelt_key_and_a_bad_value_are_reported_in_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rebuy.yaml");
        std::fs::write(
            &file,
            "tick_intervall: 1m\nmarketing:\n  quiet_hours: { from: \"25:00\", to: \"08:00\" }\n",
        )
        .unwrap();
        let said: Vec<(u64, String)> = Config::load(&file, true)
            .unwrap_err()
            .into_iter()
            .map(|d| (d.line, d.message))
            .collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0].0, 1);
        assert!(said[0].1.contains("tick_intervall"), "{said:?}");
        assert_eq!(said[1].0, 3);
        assert!(said[1].1.contains("25:00"), "{said:?}");
        // A problem the left-out key could explain is not guessed at: `transport: smtp`
        // without its `smtp:` block (left out for a bad port) is not reported as missing.
        std::fs::write(
            &file,
            "delivery:\n  transport: smtp\n  smtp:\n    port: many\n",
        )
        .unwrap();
        let said = Config::load(&file, true).unwrap_err();
        assert!(said.iter().all(|d| d.line == 4), "{said:?}");
        // Nor one a default standing in for a left-out key could cause: the stall limit checked
        // against the default SMTP timeout, the example's unsubscribe URL for a misspelt key.
        std::fs::write(
            &file,
            "database: rebuy.db\nunsubscribe:\n  base_ulr: https://shop.example/u\ndelivery:\n  transport: smtp\n  stall_secs: 100\n  smtp:\n    host: 127.0.0.1\n    timeout_secs: 20s\n",
        )
        .unwrap();
        let said: Vec<u64> = Config::load(&file, true)
            .unwrap_err()
            .iter()
            .map(|d| d.line)
            .collect();
        assert_eq!(said, [3, 9]);
    }

    #[test]
    fn every_key_that_does_not_fit_is_reported_once_with_its_name_and_place() {
        let text = "http:\n  max_connections: many\ndelivery:\n  batch_size: abc\n  smtp:\n    port: 25\n  colour: blue\ntick_interval: 1m\n";
        let said: Vec<String> = Config::parse("c.yaml", text)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(
            said[0].starts_with("c.yaml:2:20: http.max_connections: 'many' is not a whole number"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("c.yaml:4:15: delivery.batch_size: 'abc' is not a whole number"),
            "{said:?}"
        );
        assert!(
            said[2].starts_with("c.yaml:7:3: delivery.colour: unknown field"),
            "{said:?}"
        );
        assert!(said[2].contains("colour"), "{said:?}");
        assert!(said.iter().all(|s| !s.contains("column ")), "{said:?}");
    }

    #[test]
    fn numbers_out_of_range_are_refused_with_their_place() {
        let text = "delivery:\n  lease_secs: 99999999999999999\n  smtp:\n    timeout_secs: 0\n";
        let c = Config::parse("c.yaml", text).unwrap();
        let said: Vec<String> = c
            .resolve()
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert!(
            said[0].starts_with("config:2:15: delivery.lease_secs is 99999999999999999; it must be between 1 and 86400"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("config:4:19: delivery.smtp.timeout_secs is 0"),
            "{said:?}"
        );
    }

    #[test]
    fn shop_settings_are_placed_at_their_line_and_a_misspelt_key_is_named() {
        let got = said("tick_interval: 1m\nshop:\n  name: Shop\n  fromm: \"Shop <s@shop.example>\"\n  currency: YEN\n");
        assert!(
            got.iter().any(|d| d.starts_with("config:3:")
                && d.contains("shop.from is required")
                && d.contains("'fromm' is written: did you mean 'from'?")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|d| d.starts_with("config:5:13: shop.currency")),
            "{got:?}"
        );
        let got = said("shop:\n  name: Shop\n  from: not a mailbox\n");
        assert!(
            got.iter()
                .any(|d| d.starts_with("config:3:9: shop.from 'not a mailbox'")),
            "{got:?}"
        );
    }

    #[test]
    fn a_tick_without_pause_and_an_smtp_server_without_a_name_are_refused() {
        let got = said("shop: {}\ntick_interval: 0s\n");
        assert!(
            got.iter()
                .any(|d| d.starts_with("config:2:16: tick_interval is 0s")
                    && d.contains("at least 1s")),
            "{got:?}"
        );
        let got = said("delivery:\n  transport: smtp\n  smtp:\n    host: \"\"\n");
        assert!(
            got.iter()
                .any(|d| d.starts_with("config:4:") && d.contains("delivery.smtp.host is empty")),
            "{got:?}"
        );
    }

    #[test]
    fn durations_beyond_ten_years_are_refused_in_config() {
        for key in ["tick_interval", "trigger_lookback"] {
            let c = Config::parse("c.yaml", &format!("{key}: 106751991167301d\n")).unwrap();
            let said = c.resolve().unwrap_err()[0].to_string();
            assert!(said.starts_with("config:1:"), "{said}");
            assert!(said.contains("longer than 3650d"), "{said}");
        }
        let c = Config::parse(
            "c.yaml",
            "marketing:\n  cap: { max: 2, per: 9223372036854775807s }\n",
        )
        .unwrap();
        assert!(c.resolve().unwrap_err()[0]
            .to_string()
            .contains("longer than 3650d"));
    }

    #[test]
    fn a_password_in_clear_to_another_host_and_a_short_secret_are_refused() {
        let c = Config::parse(
            "c.yaml",
            "delivery:\n  transport: smtp\n  smtp: { host: relay.example, tls: none, username: shop }\n",
        )
        .unwrap();
        let said = c.resolve().unwrap_err();
        assert!(
            said.iter().any(|d| d.message.contains("in clear")),
            "{said:?}"
        );
        for ok in [
            "delivery:\n  smtp: { host: 127.0.0.1, tls: none, username: shop }\n",
            "delivery:\n  smtp: { host: relay.example, tls: none, username: shop, allow_plaintext_auth: true }\n",
            "delivery:\n  smtp: { host: relay.example, tls: starttls, username: shop }\n",
        ] {
            Config::parse("c.yaml", ok).unwrap().resolve().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "\n").unwrap();
        let c = Config::parse(
            "c.yaml",
            &format!("unsubscribe: {{ secret_file: {} }}\n", file.display()),
        )
        .unwrap();
        let said = c.resolve().unwrap_err()[0].to_string();
        assert!(
            said.contains("has 0 characters; it needs at least 16"),
            "{said}"
        );
        assert!(check_secret("0123456789abcdef").is_ok());
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = Config::parse("c.yaml", "").unwrap();
        let r = c.resolve().unwrap();
        assert_eq!(r.tick_interval, Duration::seconds(60));
        assert_eq!(r.default_timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(c.delivery.transport, TransportKind::File);
    }

    #[test]
    fn an_unknown_key_is_answered_with_the_key_likely_meant() {
        let hint = |text: &str| {
            let errs = Config::parse("c.yaml", text).unwrap_err();
            errs[0].hint.clone().unwrap_or_default()
        };
        assert_eq!(
            hint("delivery:\n  transprot: smtp\n"),
            "did you mean 'transport'?"
        );
        // Written at the wrong level, with or without a typo.
        let wrong = hint("quiet_hours: { from: \"21:00\", to: \"08:00\" }\n");
        assert!(
            wrong.starts_with("'quiet_hours' goes under 'marketing:' (marketing.quiet_hours)"),
            "{wrong}"
        );
        let typo = hint("quiet_hour: { from: \"21:00\", to: \"08:00\" }\n");
        assert!(typo.contains("marketing.quiet_hours"), "{typo}");
        assert_eq!(
            hint("zzzzzzzzzz: 1\n"),
            "see config.example.yaml for every key"
        );
        // Near a key of this level ('shop'), but the name of one of another.
        assert!(hint("smtp:\n  host: x\n").contains("(delivery.smtp)"));
    }

    #[test]
    fn unknown_keys_are_located() {
        let errs =
            Config::parse("c.yaml", "database: x.db\ndelivery:\n  transprot: smtp\n").unwrap_err();
        assert_eq!((errs[0].line, errs[0].col), (3, 3), "{}", errs[0]);
        assert!(errs[0].message.contains("transprot"), "{}", errs[0]);
    }

    #[test]
    fn bad_values_are_located() {
        let mut c = Config::parse("c.yaml", "tick_interval: 5x\ndefault_timezone: Asia/Tokio\njobs:\n  - name: n\n    cron: \"* * *\"\n").unwrap();
        c.source = Some("c.yaml".into());
        let errs = c.resolve().unwrap_err();
        let all: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            all[0].starts_with("c.yaml:1:16: tick_interval: bad duration '5x'"),
            "{all:?}"
        );
        assert!(
            all[1].starts_with("c.yaml:2:19: default_timezone: unknown time zone 'Asia/Tokio'"),
            "{all:?}"
        );
        assert!(
            all[2].starts_with("c.yaml:5:11: jobs[0].cron: cron line '* * *' has 3 fields"),
            "{all:?}"
        );
    }

    #[test]
    fn the_control_group_is_a_share_and_a_bad_one_is_located() {
        let c = Config::parse(
            "c.yaml",
            "experiments:\n  control_group: 5%\n  attribution_window: 3d\n",
        )
        .unwrap();
        let r = c.resolve().unwrap();
        assert!((r.control_group - 0.05).abs() < 1e-12);
        assert_eq!(r.attribution_window, Duration::days(3));
        let mut c = Config::parse(
            "c.yaml",
            "shop:\n  name: S\n  from: S <a@s.example>\n  currency: YEN\n",
        )
        .unwrap();
        c.source = Some("c.yaml".into());
        let errs = c.resolve().unwrap_err();
        assert!(
            errs.iter().any(|e| e.to_string().contains(
                "shop.currency: 'YEN' is not an ISO 4217 currency code (the yen is JPY)"
            )),
            "{errs:?}"
        );
        let mut c = Config::parse("c.yaml", "experiments:\n  control_group: 100%\n").unwrap();
        c.source = Some("c.yaml".into());
        let errs = c.resolve().unwrap_err();
        assert!(
            errs[0].to_string().starts_with(
                "c.yaml:2:18: experiments.control_group: bad share '100%': it must be more than 0% and less than 100%"
            ),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn a_digest_needs_real_addresses_and_a_known_language() {
        let c = Config::parse(
            "c.yaml",
            "jobs:\n  - name: d\n    cron: \"0 9 * * 1\"\n    digest:\n      lang: fr\n      to: [team@shop.example, not an address]\n",
        )
        .unwrap();
        let all: Vec<String> = c
            .resolve()
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all.iter()
                .any(|d| d.contains(":6:31: ")
                    && d.contains("'not an address' is not a mail address")),
            "{all:?}"
        );
        assert!(
            all.iter().any(|d| d.contains(":5:13: digest.lang 'fr'")),
            "{all:?}"
        );
        let ok = Config::parse(
            "c.yaml",
            "jobs:\n  - name: d\n    cron: \"0 9 * * 1\"\n    digest: { to: [\"Team <team@shop.example>\"] }\n",
        )
        .unwrap();
        assert!(ok.resolve().is_ok());
    }

    #[test]
    fn days_of_the_week_count_from_sunday_0_as_in_standard_cron() {
        use chrono::Datelike;
        let days = |line: &str| {
            let s = parse_cron(line).unwrap();
            let from = chrono::DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc);
            let mut d: Vec<String> = s
                .after(&from)
                .take(7)
                .map(|t| t.weekday().to_string())
                .collect();
            d.sort();
            d.dedup();
            d.join(" ")
        };
        assert_eq!(days("0 9 * * 1"), "Mon");
        assert_eq!(days("0 9 * * 0"), "Sun");
        assert_eq!(days("0 9 * * 7"), "Sun");
        assert_eq!(days("0 9 * * 1-5"), "Fri Mon Thu Tue Wed");
        assert_eq!(days("0 9 * * 5-7"), "Fri Sat Sun");
        assert_eq!(days("0 9 * * */3"), "Sat Sun Wed");
        assert_eq!(days("0 9 * * 1,3"), "Mon Wed");
        assert_eq!(days("0 9 * * MON"), "Mon");
        assert_eq!(days("0 9 * * *").split(' ').count(), 7);
        assert!(parse_cron("0 9 * * 8").is_err());
    }

    #[test]
    fn five_field_cron_lines_are_accepted() {
        let s = parse_cron("30 2 * * *").unwrap();
        let next = s
            .after(&chrono::DateTime::<chrono::Utc>::from_timestamp(0, 0).unwrap())
            .next()
            .unwrap();
        assert_eq!(next.to_rfc3339(), "1970-01-01T02:30:00+00:00");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../config.example.yaml");
        let c = Config::parse("config.example.yaml", text).unwrap();
        c.resolve().unwrap();
        assert_eq!(c.shop["address"], "東京都渋谷区神南1-2-3");
    }

    /// Every value of a config that is not marked "example", spans left out.
    fn effective(c: &Config) -> String {
        let r = c.resolve().unwrap();
        let d = &c.delivery;
        let mut u = c.unsubscribe.clone();
        u.base_url.clear();
        format!(
            "{:?}",
            (
                (
                    &c.database,
                    &c.scenarios_dir,
                    &c.templates_dir,
                    c.log_format,
                    &c.jobs.len()
                ),
                (
                    r.default_timezone,
                    r.tick_interval,
                    r.trigger_lookback,
                    r.step_expiry,
                    r.retry_base,
                    r.retry_max
                ),
                (
                    &r.limits,
                    r.control_group,
                    r.attribution_window,
                    format!("{u:?}")
                ),
                (
                    d.transport,
                    &d.file_dir,
                    d.max_attempts,
                    d.batch_size,
                    d.lease_secs
                ),
                (d.rate_per_second, d.throttle_pause_secs, d.dkim.is_some(),),
                format!("{:?}", d.smtp),
            ),
        )
    }

    #[test]
    fn the_example_config_is_exactly_the_built_in_defaults() {
        let text = include_str!("../config.example.yaml");
        let example = Config::parse("config.example.yaml", text).unwrap();
        assert_eq!(effective(&example), effective(&Config::default()));
        let limits = Config::default().resolve().unwrap().limits;
        assert!(
            limits.cap.is_some() && limits.quiet.is_some(),
            "safe by default"
        );
    }

    #[test]
    fn null_turns_a_marketing_limit_off() {
        let c = Config::parse("c.yaml", "marketing: { cap: null, quiet_hours: null }\n").unwrap();
        let limits = c.resolve().unwrap().limits;
        assert!(limits.cap.is_none() && limits.quiet.is_none());
        let c = Config::parse("c.yaml", "marketing: { cap: null }\n").unwrap();
        assert!(
            c.resolve().unwrap().limits.quiet.is_some(),
            "the other stays on"
        );
    }
}
