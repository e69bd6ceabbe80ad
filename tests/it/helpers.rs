//! Test helpers: a real SMTP server on loopback (mailin-embedded, a maintained SMTP server
//! crate), a shop in a temporary folder, and the app built on them.

use chrono::{DateTime, Utc};
use mailin_embedded::{response, Handler, Response, Server, SslConfig};
use rebuy::cli::App;
use rebuy::config::{Config, TlsMode, TransportKind};
use rebuy::daemon::Daemon;
use rebuy::import::ImportOptions;
use rebuy::store::{NewCustomer, NewOrder, Store};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Who authenticated the session that sent it (AUTH PLAIN), if anyone did.
    pub user: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a parsable message")
    }
}

#[derive(Clone)]
struct Collect {
    inbox: Arc<Mutex<Vec<Received>>>,
    reject: Arc<Mutex<Vec<(String, u16)>>>,
    current: Option<Received>,
    /// The one login accepted, when the server asks for AUTH.
    login: Option<(String, String)>,
    user: Option<String>,
}

impl Handler for Collect {
    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        match &self.login {
            Some((u, p)) if u == user && p == password => {
                self.user = Some(user.to_string());
                response::AUTH_OK
            }
            _ => response::INVALID_CREDENTIALS,
        }
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let rules = self.reject.lock().unwrap();
        match rules
            .iter()
            .find(|(needle, _)| to.contains(needle.as_str()))
        {
            Some((_, 550)) => response::NO_MAILBOX,
            Some((_, code)) => Response::custom(*code, "4.7.1 try again later".into()),
            None => response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received {
            user: self.user.clone(),
            from: from.to_string(),
            to: to.to_vec(),
            data: Vec::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(c) = &mut self.current {
            c.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(c) = self.current.take() {
            self.inbox.lock().unwrap().push(c);
        }
        response::OK
    }
}

/// A real SMTP server on 127.0.0.1 and an ephemeral port, in a background thread.
pub struct SmtpServer {
    pub port: u16,
    inbox: Arc<Mutex<Vec<Received>>>,
    reject: Arc<Mutex<Vec<(String, u16)>>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::serve(SslConfig::None, None)
    }

    /// A server that offers STARTTLS with a self-signed certificate for `localhost` (written
    /// to `dir`, whose `cert.pem` a client must trust) and accepts mail only after AUTH PLAIN
    /// as `user`/`password`, which it allows only over TLS.
    pub fn start_secure(dir: &Path, user: &str, password: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, key.cert.pem()).unwrap();
        std::fs::write(&key_path, key.key_pair.serialize_pem()).unwrap();
        let ssl = SslConfig::SelfSigned {
            cert_path: cert_path.display().to_string(),
            key_path: key_path.display().to_string(),
        };
        Self::serve(ssl, Some((user.to_string(), password.to_string())))
    }

    /// A plain server behind a TLS front on `tls_port` (port 465 style: TLS from the first
    /// byte), as stunnel or a load balancer would put it; the certificate is for `localhost`
    /// and written to `dir/cert.pem`.
    pub async fn start_behind_tls(dir: &Path) -> (Self, u16) {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), key.cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = Self::start();
        let plain = server.port;
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = front.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = front.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let mut back = tokio::net::TcpStream::connect(("127.0.0.1", plain))
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                });
            }
        });
        (server, tls_port)
    }

    fn serve(ssl: SslConfig, login: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let reject = Arc::new(Mutex::new(Vec::new()));
        let auth = login.is_some();
        let handler = Collect {
            inbox: inbox.clone(),
            reject: reject.clone(),
            current: None,
            login,
            user: None,
        };
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server
                .with_name("sink.test")
                .with_ssl(ssl)
                .expect("TLS settings")
                .with_num_threads(8)
                .with_tcp_listener(listener);
            if auth {
                server.with_auth(mailin_embedded::AuthMechanism::Plain);
            }
            let _ = server.serve();
        });
        Self {
            port,
            inbox,
            reject,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }

    /// Answers `550` to RCPT for addresses containing `needle`.
    pub fn reject_recipient(&self, needle: &str) {
        self.reject.lock().unwrap().push((needle.to_string(), 550));
    }

    /// Answers `451` (try again later) to RCPT for addresses containing `needle`.
    pub fn defer_recipient(&self, needle: &str) {
        self.reject.lock().unwrap().push((needle.to_string(), 451));
    }

    /// Accepts everyone again.
    pub fn clear_rules(&self) {
        self.reject.lock().unwrap().clear();
    }
}

/// A shop in a temporary folder: config, scenarios, templates and a database file.
pub struct TestShop {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl TestShop {
    /// A shop with the given scenario files and templates, sending to `smtp` if given, else to
    /// `.eml` files.
    pub fn new(
        scenarios: &[(&str, &str)],
        templates: &[(&str, &str)],
        smtp: Option<&SmtpServer>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_all(&dir.path().join("scenarios"), scenarios);
        write_all(&dir.path().join("templates"), &with_footer(templates));
        let mut config = Config {
            database: if on_postgres() {
                fresh_postgres_database()
            } else {
                dir.path().join("rebuy.db").display().to_string()
            },
            scenarios_dir: dir.path().join("scenarios"),
            templates_dir: dir.path().join("templates"),
            ..Config::default()
        };
        config
            .shop
            .insert("name".into(), "はだまる Skincare".into());
        config
            .shop
            .insert("from".into(), "はだまる <hello@hadamaru.example>".into());
        config
            .shop
            .insert("address".into(), "東京都渋谷区神南1-2-3".into());
        config
            .shop
            .insert("contact".into(), "support@hadamaru.example".into());
        config.delivery.file_dir = dir.path().join("outbox");
        config.unsubscribe.base_url = "https://hadamaru.example/unsubscribe".into();
        // The built-in cap and quiet hours are on; a test must not depend on the hour it runs
        // at, so the tests of those limits set them themselves.
        config.marketing = rebuy::config::MarketingConfig::off();
        config.delivery.retry_base = None;
        if let Some(s) = smtp {
            config.delivery.transport = TransportKind::Smtp;
            config.delivery.smtp.host = "127.0.0.1".into();
            config.delivery.smtp.port = s.port;
            config.delivery.smtp.tls = TlsMode::None;
            config.delivery.smtp.pool_size = 2;
            config.delivery.smtp.timeout_secs = 5;
        }
        Self { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn app(&self) -> App {
        let mut app = App::from_config(self.config.clone())
            .unwrap_or_else(|d| panic!("bad test config: {d:?}"));
        app.resolved.trigger_lookback = chrono::Duration::days(365);
        app
    }

    pub async fn store(&self) -> Store {
        Store::open(&self.config.database).await.unwrap()
    }

    /// The daemon (engine + deliverer) of this shop, on `store`.
    pub async fn daemon(&self, store: &Store) -> Daemon {
        let app = self.app();
        let engine = match app.engine(store).await.unwrap() {
            Ok(e) => e,
            Err(d) => panic!(
                "invalid test scenarios: {}",
                d.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        let deliverer = app.deliverer(store).unwrap();
        let import = ImportOptions {
            format: None,
            default_timezone: app.resolved.default_timezone,
            progress: false,
            bulk: false,
            move_orders: false,
        };
        Daemon {
            engine,
            deliverer,
            jobs: Vec::new(),
            import,
            digest: app.digest_settings(),
        }
    }
}

/// The templates with the legal footer every marketing mail must carry (sender, address,
/// contact, unsubscribe link) appended, as a shop's templates would include it; templates
/// whose name starts with `nofooter` are left as they are (for tests of `rebuy check`).
fn with_footer(templates: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = templates
        .iter()
        .map(|(name, text)| {
            let footer = match name.rsplit('.').next() {
                // An MJML template includes the footer inside its body itself.
                _ if name.starts_with('_') || name.starts_with("nofooter") => "",
                Some("mjml") => "",
                Some("html") => "\n{% include \"_legal.html\" %}",
                _ => "\n{% include \"_legal.txt\" %}",
            };
            (name.to_string(), format!("{text}{footer}"))
        })
        .collect();
    let legal = "{{ shop.name }} / {{ shop.address }} / {{ shop.contact }} / {{ unsubscribe_url }}";
    out.push(("_legal.html".into(), format!("<p>{legal}</p>")));
    out.push(("_legal.txt".into(), legal.into()));
    out
}

fn write_all<S: AsRef<str>>(dir: &Path, files: &[(S, S)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name.as_ref()), text.as_ref()).unwrap();
    }
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn customer(id: &str, email: &str, name: &str, zone: &str, attributes: &str) -> NewCustomer {
    NewCustomer {
        id: id.into(),
        email: email.into(),
        name: name.into(),
        timezone: Some(zone.into()),
        locale: None,
        attributes: attributes.into(),
        marketing_consent: Some(true),
        consent_at: None,
    }
}

pub fn order(id: &str, customer: &str, at: &str, total: i64) -> NewOrder {
    NewOrder {
        id: id.into(),
        customer_id: customer.into(),
        placed_at: utc(at).timestamp_millis(),
        total,
        currency: "JPY".into(),
        items: format!(
            r#"[{{"sku":"LO-01","name":"しっとり化粧水","category":"lotion","quantity":1,"unit_price":{total}}}]"#
        ),
    }
}

/// Inserts plain customers (`ID@example.jp`, Tokyo, no attributes) with these ids.
pub async fn add_customers(store: &Store, ids: &[&str]) {
    let customers: Vec<NewCustomer> = ids
        .iter()
        .map(|id| customer(id, &format!("{id}@example.jp"), id, "Asia/Tokyo", "{}"))
        .collect();
    store.upsert_customers(&customers, 0).await.unwrap();
}

/// Inserts orders and refreshes their customers' aggregates, as an import does.
pub async fn add_orders(store: &Store, orders: &[NewOrder]) {
    let outcome = store.upsert_orders(orders).await.unwrap();
    store
        .refresh_order_aggregates(&outcome.touched)
        .await
        .unwrap();
}

/// The rows of a CSV file of the CDNOW reference (`tests/fixtures/cdnow/`), by column name.
pub fn cdnow_rows(file: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cdnow")
        .join(file);
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A JSON file of the CDNOW reference.
pub fn cdnow_json(file: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cdnow")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn day(date: &str) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
}

/// The `rebuy` binary, killed when the test that started it ends (passed or failed): a daemon
/// left behind by a failed test would keep the test run's output open, and the run waiting.
pub fn binary() -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rebuy"));
    // SAFETY: prctl is async-signal-safe and touches only the child being started. The signal
    // goes when the thread that spawned the child (the test's) ends.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// The `rebuy` binary run in `dir` (where its `rebuy.yaml` is), with an unsubscribe secret.
pub fn rebuy_in(dir: &Path) -> std::process::Command {
    let mut c = binary();
    c.current_dir(dir).env_remove("RUST_LOG").env(
        "REBUY_UNSUBSCRIBE_SECRET",
        "test-unsubscribe-secret-0123456789",
    );
    c
}

/// `rebuy user add NAME --role ROLE` with the password on standard input.
pub fn add_user(dir: &Path, name: &str, role: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = rebuy_in(dir)
        .args(["user", "add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

/// `rebuy run` or `rebuy serve` on the address of its config, killed when dropped.
pub struct Served {
    child: std::process::Child,
    /// Where it listens (from its JSON log: the config may say port 0).
    pub addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rebuy COMMAND` (run or serve) in `dir` and waits until it serves HTTP.
pub fn serve_http(dir: &Path, command: &str) -> Served {
    use std::io::{BufRead, BufReader};
    let mut child = rebuy_in(dir)
        .args([command, "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut served = Served {
        child,
        addr: String::new(),
    };
    // Read the log on a thread to the end, so that the server never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "serving HTTP" {
                let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    served.addr = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("rebuy {command} did not start serving"));
    served
}

/// Whether this run of the integration tests puts each shop on PostgreSQL rather than on a
/// SQLite file: `REBUY_TEST_BACKEND=postgres`, with the server in `REBUY_TEST_POSTGRES` (a URL
/// whose role may create databases; `scripts/postgres.sh` prints one). `scripts/test.sh` runs
/// the suite once on each backend.
pub fn on_postgres() -> bool {
    std::env::var("REBUY_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Returns early from a test that is about SQLite itself (its files, its journal, a back-test's
/// scratch copy) when the suite runs on PostgreSQL, saying so.
#[macro_export]
macro_rules! sqlite_only {
    ($why:expr) => {
        if $crate::helpers::on_postgres() {
            eprintln!("not run on PostgreSQL: {}", $why);
            return;
        }
    };
}

/// A new, empty PostgreSQL database on the test server, named after this process and a
/// counter; its URL.
pub fn fresh_postgres_database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = std::env::var("REBUY_TEST_POSTGRES")
        .expect("REBUY_TEST_BACKEND=postgres needs REBUY_TEST_POSTGRES (see scripts/postgres.sh)");
    assert!(
        server.starts_with("postgres://") || server.starts_with("postgresql://"),
        "REBUY_TEST_POSTGRES is not a postgres:// URL: {server:?}"
    );
    let name = format!(
        "rebuy_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // Tests call this from inside their own runtime, which cannot be blocked on: a thread.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(rebuy::store::create_postgres_database(&server, &name))
    })
    .join()
    .expect("the thread that creates a test database")
    .unwrap_or_else(|e| panic!("cannot create a test database on REBUY_TEST_POSTGRES: {e}"))
}

/// A duration or other spanned value as the config reads it from YAML (`"7d"`).
pub fn spanned(s: &str) -> serde_saphyr::Spanned<String> {
    #[derive(serde::Deserialize)]
    struct W {
        v: serde_saphyr::Spanned<String>,
    }
    serde_saphyr::from_str::<W>(&format!("v: \"{s}\"\n"))
        .unwrap()
        .v
}

/// A shop with five marketing scenarios that each mail a customer's first order, a cap of 2
/// marketing mails per 7 days, and `batch` messages claimed at a time; no customers yet.
pub fn five_scenarios_capped(smtp: &SmtpServer, batch: u32) -> TestShop {
    let scenarios: Vec<(String, String)> = (1..=5)
        .map(|i| {
            (
                format!("s{i}.yaml"),
                format!("id: s{i}\ntrigger: first_order\nsteps:\n  - {{ id: a, send: {{ template: t, subject: \"M {i}\" }} }}\n"),
            )
        })
        .collect();
    let scenarios: Vec<(&str, &str)> = scenarios
        .iter()
        .map(|(n, y)| (n.as_str(), y.as_str()))
        .collect();
    let mut shop = TestShop::new(
        &scenarios,
        &[
            ("t.html", "<p>{{ step.id }}</p>"),
            ("t.txt", "{{ step.id }}"),
        ],
        Some(smtp),
    );
    shop.config.delivery.batch_size = batch;
    shop.config.marketing.cap = Some(rebuy::config::CapConfig {
        max: 2,
        per: spanned("7d"),
    });
    shop
}
