//! The kill loop: `rebuy run` workers are killed with SIGKILL at random moments while they send
//! MESSAGES mails to a real SMTP server on loopback, and restarted each time; then every
//! message is accounted for from what the server received and what the database recorded.
//!
//! `cargo build --release && cargo run --release --example kill_loop -- MESSAGES KILLS`
//! (`scripts/kill-loop.sh` does both). Exits non-zero on any duplicate or unaccounted message.
//!
//! With `KILL_LOOP_POSTGRES` set to a PostgreSQL server's URL (`scripts/postgres.sh` prints
//! one), the shop lives in a fresh database there and `KILL_LOOP_WORKERS` workers (default 3)
//! share it: one of them is killed each time, every third time the leader, which runs a
//! refresh job every minute.

use mailin_embedded::{response, Handler, Response, Server, SslConfig};
use rand::Rng;
use rebuy::store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Long on purpose: a dead sender's messages must not wait for their lease.
const LEASE_SECS: u64 = 600;
const POOL_SIZE: usize = 2;

/// Where the shop lives: a SQLite file in the run's folder, or a fresh PostgreSQL database.
struct Shop {
    database: String,
    postgres: Option<(String, String)>,
}

impl Shop {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let Ok(server) = std::env::var("KILL_LOOP_POSTGRES") else {
            return Ok(Self {
                database: dir.join("rebuy.db").display().to_string(),
                postgres: None,
            });
        };
        let name = format!("rebuy_killloop_{}", std::process::id());
        let database = tokio::runtime::Runtime::new()?
            .block_on(rebuy::store::create_postgres_database(&server, &name))?;
        Ok(Self {
            database,
            postgres: Some((server, name)),
        })
    }

    fn drop_database(&self) {
        if let Some((server, name)) = &self.postgres {
            let _ = admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement on the PostgreSQL server at `url`.
fn admin(url: &str, statement: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(statement).execute(&mut conn).await?;
        anyhow::Ok(())
    })
}

/// The sink: counts every accepted message by its Message-ID.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<HashMap<String, u32>>>,
    data: Vec<u8>,
}

impl Handler for Sink {
    fn data_start(&mut self, _: &str, _: &str, _: bool, _: &[String]) -> Response {
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        // A relay that takes a few milliseconds per message, so that the run spans the kills.
        std::thread::sleep(Duration::from_millis(4));
        let text = String::from_utf8_lossy(&self.data);
        let id = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        *self.received.lock().unwrap().entry(id).or_default() += 1;
        response::OK
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = *args.first().unwrap_or(&10_000);
    let kills = *args.get(1).unwrap_or(&50);
    let bin = PathBuf::from(std::env::var("REBUY_BIN").unwrap_or("target/release/rebuy".into()));
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `cargo build --release` first",
        bin.display()
    );
    let bin = bin.canonicalize()?;

    let sink = Sink::default();
    let received = sink.received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        let mut server = Server::new(sink);
        server
            .with_name("sink.test")
            .with_ssl(SslConfig::None)
            .expect("no TLS")
            .with_num_threads(16)
            .with_tcp_listener(listener);
        let _ = server.serve();
    });

    let dir = tempfile::tempdir()?;
    let shop = Shop::new(dir.path())?;
    let workers: usize = match std::env::var("KILL_LOOP_WORKERS") {
        Ok(n) => n.parse()?,
        Err(_) if shop.postgres.is_some() => 3,
        Err(_) => 1,
    };
    setup(dir.path(), port, messages, &shop)?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(&bin)
            .args(args)
            .current_dir(dir.path())
            .env("REBUY_UNSUBSCRIBE_SECRET", "kill-loop-secret-0123456789")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "rebuy {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run(&["import", "customers", "customers.csv", "--no-progress"])?;
    run(&["import", "orders", "orders.csv", "--no-progress"])?;

    let backend = if shop.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("kill loop: {messages} messages, {kills} SIGKILLs, {workers} worker(s) on {backend}, sink on 127.0.0.1:{port}");
    let started = Instant::now();
    let mut rng = rand::rng();
    let spawn = || -> anyhow::Result<Child> {
        Ok(Command::new(&bin)
            .arg("run")
            .current_dir(dir.path())
            .env("REBUY_UNSUBSCRIBE_SECRET", "kill-loop-secret-0123456789")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut running: Vec<Child> = (0..workers)
        .map(|_| spawn())
        .collect::<anyhow::Result<_>>()?;
    let mut leader_kills = 0;
    for k in 1..=kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(150..1200)));
        // Every third kill on several workers is the leader's, when one is known.
        let leader = if workers > 1 && k % 3 == 0 {
            let pid = tokio::runtime::Runtime::new()?.block_on(leader_pid(&shop.database))?;
            running.iter().position(|c| Some(i64::from(c.id())) == pid)
        } else {
            None
        };
        leader_kills += usize::from(leader.is_some());
        let victim = leader.unwrap_or_else(|| rng.random_range(0..running.len()));
        running[victim].kill()?; // SIGKILL
        running[victim].wait()?;
        running[victim] = spawn()?;
        if k % 10 == 0 {
            let got: u32 = received.lock().unwrap().values().sum();
            println!("  {k} kills, {got} messages received so far");
        }
    }
    for mut child in running {
        child.kill()?;
        child.wait()?;
    }
    if workers > 1 {
        println!("  {leader_kills} of the kills were the leader's");
    }
    if shop.postgres.is_some() {
        // The server frees a killed worker's session lock once it sees the connection close.
        std::thread::sleep(Duration::from_millis(500));
    }
    // Finish the run without kills, at once: the next process knows the victims are dead (their
    // locks are free) and needs no lease to run out.
    run(&["run", "--once"])?;
    let left = tokio::runtime::Runtime::new()?.block_on(pending(&shop.database))?;
    let waited = left > 0;
    if waited {
        println!(
            "  {left} messages still waiting for a dead sender's lease after the first restart"
        );
    }
    // The workers share one machine, so each dead one's journal is read, on PostgreSQL too.
    let bound = kills * 4 * POOL_SIZE;
    let verdict = tokio::runtime::Runtime::new()?.block_on(account(
        &shop.database,
        &received.lock().unwrap(),
        messages,
        bound,
    ))? && !waited;
    println!("  took {:.0} s", started.elapsed().as_secs_f64());
    shop.drop_database();
    anyhow::ensure!(verdict, "duplicates or unaccounted messages (see above)");
    Ok(())
}

/// The process id of the worker that leads now, if one does.
async fn leader_pid(database: &str) -> anyhow::Result<Option<i64>> {
    let store = Store::open(database).await?;
    let workers = rebuy::delivery::workers(&store).await?;
    store.close().await;
    Ok(workers
        .iter()
        .find(|w| w.row.leader && w.alive == Some(true))
        .map(|w| w.row.pid))
}

/// A shop of `n` customers, each with a first order an hour ago, a one-step scenario, and the
/// daemon's config: SMTP to the sink, a long lease, a one-second tick, and small claimed
/// batches.
fn setup(dir: &Path, port: u16, n: usize, shop: &Shop) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("scenarios"))?;
    std::fs::create_dir_all(dir.join("templates"))?;
    std::fs::write(
        dir.join("scenarios/thanks.yaml"),
        "id: thanks\ntrigger: first_order\nsteps:\n  - id: thanks\n    send: { template: t, subject: \"ありがとうございました\" }\n",
    )?;
    // Marketing mail: the sender's identity and the unsubscribe link, as `rebuy check` requires.
    let footer =
        "{{ shop.name }} / {{ shop.address }} / {{ shop.contact }} / {{ unsubscribe_url }}";
    std::fs::write(
        dir.join("templates/t.html"),
        format!("<p>{{{{ customer.name }}}}様</p><p>{footer}</p>"),
    )?;
    std::fs::write(
        dir.join("templates/t.txt"),
        format!("{{{{ customer.name }}}}様\n{footer}"),
    )?;
    std::fs::write(
        dir.join("rebuy.yaml"),
        format!(
            "tick_interval: 1s\nunsubscribe: {{ base_url: https://hadamaru.example/unsubscribe }}\ndelivery:\n  transport: smtp\n  lease_secs: {LEASE_SECS}\n  batch_size: 40\n  \
             smtp: {{ host: 127.0.0.1, port: {port}, tls: none, pool_size: {POOL_SIZE}, timeout_secs: 5 }}\n\
             marketing: {{ cap: null, quiet_hours: null }}\n\
             database: \"{}\"\n\
             jobs:\n  - {{ name: refresh, cron: \"* * * * *\", refresh_metrics: true }}\n",
            shop.database
        ),
    )?;
    let at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let mut customers = String::from("id,email,name,marketing_consent\n");
    let mut orders = String::from("order_id,customer_id,placed_at,currency,total\n");
    for i in 0..n {
        customers.push_str(&format!("C{i},c{i}@example.jp,顧客{i},yes\n"));
        orders.push_str(&format!("O{i},C{i},{at},JPY,3980\n"));
    }
    std::fs::write(dir.join("customers.csv"), customers)?;
    std::fs::write(dir.join("orders.csv"), orders)?;
    Ok(())
}

async fn pending(database: &str) -> anyhow::Result<usize> {
    let store = Store::open(database).await?;
    let rows = store.outbox_rows().await?;
    store.close().await;
    Ok(rows
        .iter()
        .filter(|r| r.status == "queued" || r.status == "sending")
        .count())
}

/// Compares the database with the sink. True when there is no duplicate and no message
/// unaccounted for, and most messages were sent (a run that sends nothing proves nothing).
async fn account(
    database: &str,
    received: &HashMap<String, u32>,
    messages: usize,
    bound: usize,
) -> anyhow::Result<bool> {
    let store = Store::open(database).await?;
    let rows = store.outbox_rows().await?;
    store.close().await;
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    let (mut unaccounted, mut sent_not_received) = (0, 0);
    let mut unknown_received = 0;
    for r in &rows {
        *by_status.entry(r.status.as_str()).or_default() += 1;
        let got = received.get(&r.message_id).copied().unwrap_or(0);
        match r.status.as_str() {
            "sent" if got == 0 => sent_not_received += 1,
            "unknown" if got > 0 => unknown_received += 1,
            "failed" if got > 0 => unaccounted += 1,
            "sent" | "unknown" | "failed" => {}
            _ => unaccounted += 1,
        }
    }
    let known: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.message_id.as_str()).collect();
    let duplicates: u32 = received.values().map(|n| n.saturating_sub(1)).sum();
    let strays = received
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .count();
    let total: u32 = received.values().sum();
    println!(
        "  outbox rows: {} (expected {messages}); by status: {by_status:?}",
        rows.len()
    );
    println!(
        "  received by the server: {total} ({} distinct)",
        received.len()
    );
    println!("  duplicates: {duplicates}");
    println!(
        "  unaccounted: {} (rows neither sent, failed nor unknown: {unaccounted}; sent but never received: {sent_not_received}; received but not in the outbox: {strays})",
        unaccounted + sent_not_received + strays
    );
    println!("  unknown and in fact received: {unknown_received} (flagged, not re-sent)");
    // Only what a process had handed to its connections may be in doubt after it died: about
    // two messages per connection, and outcomes not yet recorded.
    let unknown = by_status.get("unknown").copied().unwrap_or(0);
    println!("  unknown: {unknown} (at most {bound}: 4 per connection per kill)");
    let sent = by_status.get("sent").copied().unwrap_or(0);
    Ok(sent > messages / 2
        && unknown <= bound
        && duplicates == 0
        && unaccounted == 0
        && sent_not_received == 0
        && strays == 0
        && rows.len() == messages)
}
