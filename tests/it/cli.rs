//! The `rebuy` binary: exit codes, located messages, `--help`, and the commands support staff
//! and operators use, run in a temporary folder with the built-in defaults.

use std::path::Path;
use std::process::{Command, Output};

fn rebuy(dir: &Path, args: &[&str]) -> Output {
    crate::helpers::binary()
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("REBUY_UNSUBSCRIBE_SECRET", "test-secret-for-the-cli-tests")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A folder with the shipped samples (written by the demo module) and the test fixtures.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    rebuy::demo::write_samples(dir.path()).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for f in ["customers.csv", "orders.csv", "bad_customers.csv"] {
        std::fs::copy(fixtures.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// Writes a `rebuy.yaml` that sends over SMTP to a loopback port nobody listens on, with
/// `delivery` lines `extra` added.
fn relay_down(dir: &Path, extra: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("rebuy.yaml"),
        format!("unsubscribe: {{ base_url: https://hadamaru.example/unsubscribe }}\ndelivery:\n  transport: smtp\n{extra}  smtp: {{ host: 127.0.0.1, port: {port}, tls: none, timeout_secs: 1 }}\n"),
    )
    .unwrap();
}

/// Imports the fixture customers and starts the shipped support follow-up for each
/// (customer, key).
fn follow_ups(dir: &Path, who: &[(&str, &str)]) {
    assert!(rebuy(dir, &["import", "customers", "customers.csv"])
        .status
        .success());
    for (c, key) in who {
        let o = rebuy(
            dir,
            &[
                "trigger",
                "support-follow-up",
                "--customer",
                c,
                "--var",
                "case_id=X",
                "--key",
                key,
            ],
        );
        assert!(o.status.success(), "{:?}", text(&o));
    }
}

/// `folder()` with the fixture customers and orders imported.
fn imported_folder() -> tempfile::TempDir {
    let dir = folder();
    for (what, file) in [("customers", "customers.csv"), ("orders", "orders.csv")] {
        let o = rebuy(dir.path(), &["import", what, file]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    dir
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["--help"][..],
        &["demo", "--help"],
        &["check", "--help"],
        &["run", "--help"],
        &["import", "--help"],
        &["import", "customers", "--help"],
        &["import", "orders", "--help"],
        &["trigger", "--help"],
        &["preview", "--help"],
        &["status", "--help"],
        &["suppress", "--help"],
        &["suppress", "add", "--help"],
        &["suppress", "remove", "--help"],
        &["suppress", "list", "--help"],
        &["suppress", "import", "--help"],
        &["outbox", "--help"],
        &["outbox", "list", "--help"],
        &["outbox", "retry", "--help"],
        &["outbox", "cancel", "--help"],
        &["refresh", "--help"],
        &["metrics", "--help"],
        &["metrics", "export", "--help"],
        &["report", "--help"],
        &["report", "rfm", "--help"],
        &["report", "cohorts", "--help"],
        &["report", "ltv", "--help"],
        &["report", "scenarios", "--help"],
        &["simulate", "--help"],
    ] {
        let o = rebuy(dir.path(), cmd);
        let (out, _) = text(&o);
        assert!(o.status.success(), "{cmd:?}");
        assert!(
            out.contains("Usage:") && out.contains("--config"),
            "{cmd:?}: {out}"
        );
    }
    let (help, _) = text(&rebuy(dir.path(), &["--help"]));
    assert!(
        help.contains("Exit codes: 0 it worked; 1 the input has problems"),
        "{help}"
    );
    let o = rebuy(dir.path(), &["trigger"]);
    assert_eq!(o.status.code(), Some(2), "a usage error exits 2");
}

#[test]
fn check_passes_on_the_shipped_scenarios_and_fails_with_located_problems() {
    let dir = folder();
    let o = rebuy(dir.path(), &["check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        err.contains("ok: 5 scenario(s), 13 segment(s) and 3 target(s)"),
        "{err}"
    );

    std::fs::write(dir.path().join("scenarios/broken.yaml"), "id: broken\ntrigger: first_order\nsteps:\n  - id: a\n    wiat: 3d\n    send: { template: thanks, subject: s }\n").unwrap();
    let o = rebuy(dir.path(), &["check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("scenarios/broken.yaml:5:5: unknown key 'wiat'\n  hint: did you mean 'wait'?"),
        "{out}"
    );
    assert!(err.contains("1 problem(s) found"), "{err}");

    let o = rebuy(dir.path(), &["run", "--once"]);
    let (_, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "run refuses an invalid scenario set"
    );
    assert!(
        err.contains("refusing to start") && err.contains("unknown key 'wiat'"),
        "{err}"
    );
}

#[test]
fn a_bad_config_is_located_and_nothing_runs() {
    let dir = folder();
    std::fs::write(
        dir.path().join("rebuy.yaml"),
        "database: x.db\ntick_interval: 5 minutes\n",
    )
    .unwrap();
    let o = rebuy(dir.path(), &["status"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("rebuy.yaml:2:16: tick_interval: bad duration '5 minutes'"),
        "{err}"
    );
    assert!(!dir.path().join("x.db").exists());
    // A tool that asked for JSON gets the config's problems as JSON too.
    let o = rebuy(dir.path(), &["check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(problems[0]["line"], 2, "{problems}");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("tick_interval: bad duration"),
        "{problems}"
    );
}

#[test]
fn an_order_id_given_for_another_customer_is_refused_unless_asked_to_move_it() {
    let dir = folder();
    for (what, file) in [("customers", "customers.csv"), ("orders", "orders.csv")] {
        let o = rebuy(dir.path(), &["import", what, file]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    // Another source numbers its orders the same way: order O3, stored for C1, arrives for
    // C3. Refused, with its line and what to do; exit 1 as for any rejected row.
    std::fs::write(
        dir.path().join("other_shop.csv"),
        "order_id,customer_id,placed_at,currency,total\nO3,C3,2026-10-21T09:00:00+09:00,JPY,1200\n",
    )
    .unwrap();
    let o = rebuy(dir.path(), &["import", "orders", "other_shop.csv"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let (_, err) = text(&o);
    assert!(
        err.contains("other_shop.csv:2: order 'O3' is stored for customer 'C1', not 'C3'")
            && err.contains("give each source's ids a prefix"),
        "{err}"
    );
    // A file that corrects whose order it is moves it when asked, and says so.
    let o = rebuy(
        dir.path(),
        &[
            "import",
            "orders",
            "other_shop.csv",
            "--move-orders",
            "--json",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let (out, err) = text(&o);
    assert!(
        err.contains("note: 1 order(s) moved to another customer (--move-orders)")
            && err.contains("order 'O3' from customer 'C1' to 'C3'"),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["moved_orders"], 1, "{report}");
    assert_eq!(
        report["moved"][0],
        serde_json::json!({"order": "O3", "from": "C1", "to": "C3"})
    );
}

#[test]
fn import_trigger_preview_and_status_work_from_the_command_line() {
    let dir = folder();
    let o = rebuy(dir.path(), &["import", "customers", "customers.csv"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o)
        .0
        .contains("3 record(s): 3 inserted, 0 updated, 0 unchanged, 0 rejected"));
    let o = rebuy(dir.path(), &["import", "orders", "orders.csv"]);
    assert!(o.status.success(), "{:?}", text(&o));
    // Ken's order in USD is kept, and the import says it would be summed with the yen.
    assert!(
        text(&o)
            .1
            .contains("warning: 1 order(s) in USD, not the shop's JPY (shop.currency)"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["import", "customers", "bad_customers.csv"]);
    let (_, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "rejected rows make the exit status non-zero"
    );
    assert!(
        err.contains("bad_customers.csv:3: 'not-an-address' is not a valid e-mail address"),
        "{err}"
    );

    let args = [
        "trigger",
        "support-follow-up",
        "--customer",
        "ken@example.com",
        "--var",
        "case_id=CASE-7",
        "--key",
        "CASE-7",
    ];
    let first = rebuy(dir.path(), &args);
    assert!(
        text(&first).0.contains("started 'support-follow-up'"),
        "{:?}",
        text(&first)
    );
    // When it is due, to the second in the shop's zone (no nanoseconds).
    let due = text(&first).0;
    let due = due
        .split("is due ")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(due).is_ok()
            && due.len() == 25
            && due.ends_with("+09:00"),
        "{due}"
    );
    let again = rebuy(dir.path(), &args);
    assert!(
        text(&again).0.contains("already started with key 'CASE-7'"),
        "{:?}",
        text(&again)
    );

    let o = rebuy(
        dir.path(),
        &[
            "preview",
            "support-follow-up",
            "apology",
            "--customer",
            "C2",
            "--var",
            "case_id=CASE-7",
            "--part",
            "subject",
        ],
    );
    assert_eq!(text(&o).0.trim(), "CASE-7: our apologies", "{:?}", text(&o));
    let o = rebuy(
        dir.path(),
        &[
            "preview",
            "first-purchase",
            "thanks",
            "--customer",
            "hanako@example.jp",
            "--part",
            "text",
        ],
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("山田 花子様") && out.contains("合計: ¥3,980"),
        "{out}"
    );

    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = rebuy(dir.path(), &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    // The same object as GET /v1/status: the counts, the flow and the workers.
    assert!(status["flow"]["queued"].is_number(), "{status}");
    assert!(status["workers"].is_array(), "{status}");
    let support = status["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scenario"] == "support-follow-up")
        .unwrap();
    assert_eq!(
        (support["enrolled"].as_i64(), support["sent"].as_i64()),
        (Some(1), Some(1))
    );
    let emls = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(emls, 1, "one .eml in ./outbox");
    let o = rebuy(dir.path(), &["status"]);
    assert!(
        text(&o)
            .0
            .contains("mail: last sent just now; nothing waiting"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["status", "--format", "csv"]);
    assert!(text(&o).0.starts_with(
        "scenario,enrolled,active,completed,reached goal,queued,sent,failed,skipped,suppressed,cancelled,unknown,expired,held out\n"
    ));
    // The scenario report: no holdout here, and it says how to get one.
    let o = rebuy(dir.path(), &["report", "scenarios", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    let first = &report[0];
    assert_eq!(first["scenario"], "support-follow-up", "{report}");
    assert_eq!(
        (first["treatment"].as_i64(), first["messages_sent"].as_i64()),
        (Some(1), Some(1)),
        "{report}"
    );
    // A manual scenario cannot have a holdout; the report says so instead of suggesting one.
    assert!(
        first["verdict"]
            .as_str()
            .unwrap()
            .starts_with("a manual scenario"),
        "{report}"
    );
    let html = dir.path().join("report.html");
    let o = rebuy(
        dir.path(),
        &["report", "scenarios", "--html", html.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("support-follow-up") && page.contains("</html>"),
        "{page}"
    );
    // Dated even without --as-of: today in the shop's zone.
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .date_naive();
    assert!(
        page.contains(&format!("repeat rate? as of {today}")),
        "{page}"
    );
    // For people, scenarios by their names with the id beside.
    let o = rebuy(dir.path(), &["report", "scenarios"]);
    let table = text(&o).0;
    assert!(
        table.contains("Follow-up after a support case (support-follow-up): "),
        "{table}"
    );
    // A misspelt scenario is an error that names the one meant, not an empty report.
    let o = rebuy(
        dir.path(),
        &["report", "scenarios", "--scenario", "support-followup"],
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("did you mean 'support-follow-up'?"),
        "{:?}",
        text(&o)
    );
    // For people, amounts in the shop's currency; CSV keeps plain numbers (below).
    let o = rebuy(dir.path(), &["report", "scenarios", "--view", "steps"]);
    let table = text(&o).0;
    assert!(table.contains("¥0"), "{table}");
    let o = rebuy(
        dir.path(),
        &["report", "scenarios", "--view", "steps", "--format", "csv"],
    );
    assert!(
        text(&o).0.starts_with(
            "scenario,step,variant,queued,sent,failed,held out,converted after,last-touch orders,last-touch revenue,opened,clicked,click rate\nsupport-follow-up,apology,-,0,1,0,0,0,0,0,0,0,0.0%\n"
        ),
        "{:?}",
        text(&o)
    );

    let o = rebuy(
        dir.path(),
        &["trigger", "first-purchase", "--customer", "C1"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o)
        .1
        .contains("only scenarios with `trigger: manual` can be started by hand"));
    let o = rebuy(
        dir.path(),
        &[
            "trigger",
            "support-follow-up",
            "--customer",
            "nobody@example.jp",
            "--var",
            "case_id=X",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "an unknown customer is a problem with the input"
    );
    assert!(text(&o)
        .1
        .contains("no customer with id or e-mail 'nobody@example.jp'"));
}

#[test]
fn the_demo_writes_mail_and_prints_the_status_table() {
    let dir = tempfile::tempdir().unwrap();
    // Started as a binary, not by `cargo run` (which is what says so).
    let o = crate::helpers::binary()
        .args(["demo", "--customers", "150", "--days", "45"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("first-purchase") && out.contains("enrolled"),
        "{out}"
    );
    let files: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let team = files.iter().filter(|f| f.starts_with("team-")).count();
    let emls = files.len() - team;
    assert!(emls > 20, "{emls} mails");
    assert!(err.contains(&format!("{emls} mails written")), "{err}");
    // 45 days hold six or seven Mondays: a digest each, to the team.
    assert!((6..=7).contains(&team), "{files:?}");
    assert!(
        err.contains(&format!("{team} weekly LTV-target digests")),
        "{err}"
    );
    // As the README says: a verdict per scenario against its holdout, and report.html.
    assert!(out.contains("(first-purchase): "), "{out}");
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        page.contains("first-purchase") && page.contains("<svg"),
        "{page}"
    );
    // It says what to try next, and the command it gives reads the demo's database.
    assert!(
        err.contains(&format!(
            "REBUY_DATABASE=./rebuy-demo.db {} status",
            env!("CARGO_BIN_EXE_rebuy")
        )),
        "{err}"
    );
    let o = crate::helpers::binary()
        .args(["status", "--format", "json"])
        .current_dir(dir.path())
        .env("REBUY_DATABASE", "./rebuy-demo.db")
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert!(
        status["scenarios"][0]["enrolled"].as_i64().unwrap() > 0,
        "{status}"
    );
    assert!(!dir.path().join("rebuy.db").exists(), "no stray database");

    // The report counts closed goal windows: all of them by now (the demo ran in August), few
    // as of the demo's 20th day, and all enrolled by then with `--include-open`.
    let report = |extra: &[&str]| {
        let o = crate::helpers::binary()
            .args(["report", "scenarios", "--format", "json"])
            .args(extra)
            .current_dir(dir.path())
            .env("REBUY_DATABASE", "./rebuy-demo.db")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text(&o).0).unwrap();
        let sum = |key: &str| rows.iter().map(|r| r[key].as_i64().unwrap()).sum::<i64>();
        (sum("enrolled"), sum("still_open"))
    };
    let (now_enrolled, now_open) = report(&[]);
    assert!(
        now_enrolled > 0 && now_open == 0,
        "{now_enrolled} {now_open}"
    );
    let (early_enrolled, early_open) = report(&["--as-of", "2026-08-20"]);
    assert!(early_open > 0 && early_enrolled < now_enrolled);
    let (with_open, none_left) = report(&["--as-of", "2026-08-20", "--include-open"]);
    assert_eq!((with_open, none_left), (early_enrolled + early_open, 0));
}

#[test]
fn the_daemon_stops_cleanly_on_sigterm_and_logs_json_when_asked() {
    let dir = folder();
    let child = crate::helpers::binary()
        .args(["run", "--log-format", "json"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first cycle's log line, then ask it to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.path().join("rebuy.db").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"rebuy daemon started"), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("SIGTERM")),
        "{messages:?}"
    );
    assert_eq!(messages.last(), Some(&"stopped cleanly"), "{messages:?}");
    // Status says that no daemon runs now, and since when, rather than "none has run".
    let o = rebuy(dir.path(), &["status"]);
    assert!(
        text(&o).0.contains("workers: none running; the last, "),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert!(
        status["last_stopped"]["heartbeat_at"].is_string(),
        "{status}"
    );
}

#[test]
fn the_daemon_stops_and_says_so_when_its_database_file_is_deleted_under_it() {
    let dir = folder();
    std::fs::write(dir.path().join("rebuy.yaml"), "tick_interval: 1s\n").unwrap();
    let child = crate::helpers::binary()
        .args(["run"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.path().join("rebuy.db").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::remove_file(dir.path().join("rebuy.db")).unwrap();
    // It stops by itself within a tick or two; the test kills it if it does not.
    let mut child = child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("deleted or replaced"), "{err}");
    assert!(
        !dir.path().join("rebuy.db").exists(),
        "nothing made a new one"
    );
}

/// First signal: nothing more is claimed, the send in flight may finish (here it would take the
/// whole SMTP timeout: the relay never greets); a second signal exits at once with 130.
#[test]
fn a_second_signal_exits_at_once() {
    let dir = folder();
    // A relay that takes the connection and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("rebuy.yaml"),
        format!("tick_interval: 1s\nunsubscribe: {{ base_url: https://hadamaru.example/unsubscribe }}\ndelivery:\n  transport: smtp\n  stall_secs: 600\n  smtp: {{ host: 127.0.0.1, port: {port}, tls: none, timeout_secs: 60 }}\n"),
    )
    .unwrap();
    follow_ups(dir.path(), &[("C1", "K1")]);
    let mut child = crate::helpers::binary()
        .args(["run"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBUY_UNSUBSCRIBE_SECRET", "test-secret-for-the-cli-tests")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let term = |pid: u32| {
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    term(child.id());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the send in flight"
    );
    let asked = std::time::Instant::now();
    term(child.id());
    let deadline = asked + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(3), "{err}");
    assert!(err.contains("SIGTERM again: exiting now"), "{err}");
    drop(silent);
}

/// `check --against-db` says what a scenario edit does to the customers mid-way through it.
#[test]
fn check_against_the_database_says_who_waits_on_a_step_an_edit_removes() {
    let dir = folder();
    follow_ups(dir.path(), &[("C1", "K1"), ("C2", "K2")]);
    // The apology goes out; both then wait on "check-in".
    assert!(rebuy(dir.path(), &["run", "--once"]).status.success());
    let o = rebuy(dir.path(), &["check", "--against-db"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o)
        .1
        .contains("every active enrollment waits on a step that is still there"));
    let file = dir.path().join("scenarios/support-follow-up.yaml");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("id: check-in", "id: follow-up");
    std::fs::write(&file, edited).unwrap();
    let o = rebuy(dir.path(), &["check", "--against-db"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("against the database: 2 enrollments of 'support-follow-up' wait on step 'check-in', which this version removes"),
        "{out}"
    );
    let o = rebuy(dir.path(), &["check", "--against-db", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(json["enrollments"][0]["enrollments"], 2);
    assert_eq!(json["enrollments"][0]["stops_mail"], true);
}

/// SIGHUP reloads the scenarios after checking them; a set with a problem is refused and the
/// running one stays.
#[test]
fn sighup_reloads_valid_scenarios_and_keeps_the_running_ones_when_the_new_set_is_invalid() {
    use std::io::BufRead;
    let dir = folder();
    std::fs::write(dir.path().join("rebuy.yaml"), "tick_interval: 1s\n").unwrap();
    let mut child = crate::helpers::binary()
        .args(["run", "--log-format", "json"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBUY_UNSUBSCRIBE_SECRET", "test-secret-for-the-cli-tests")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |message: &str| -> serde_json::Value {
        loop {
            let v = lines
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line '{message}'"));
            if v["fields"]["message"].as_str() == Some(message) {
                return v;
            }
        }
    };
    let started = wait_for("rebuy daemon started");
    let before = started["fields"]["scenarios"].as_u64().unwrap();
    let targets_before = started["fields"]["targets"].as_u64().unwrap();
    let hup = |pid: u32| {
        let sent = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let scenarios = dir.path().join("scenarios");
    let copy = std::fs::read_to_string(scenarios.join("support-follow-up.yaml"))
        .unwrap()
        .replace("id: support-follow-up", "id: support-follow-up-2");
    std::fs::write(scenarios.join("support-2.yaml"), copy).unwrap();
    std::fs::write(
        scenarios.join("more-targets.yaml"),
        "targets:\n  - id: aov-2027\n    metric: aov\n    baseline: { from: 2026-01-01, to: 2026-06-30 }\n    goal: +5%\n    deadline: 2027-12-31\n",
    )
    .unwrap();
    hup(child.id());
    let reloaded = wait_for("SIGHUP: scenarios reloaded");
    assert_eq!(reloaded["fields"]["scenarios"].as_u64(), Some(before + 1));
    assert_eq!(
        reloaded["fields"]["targets"].as_u64(),
        Some(targets_before + 1),
        "the targets are reloaded with the scenarios"
    );
    std::fs::write(
        scenarios.join("broken.yaml"),
        "id: broken\ntrigger: nonsense\n",
    )
    .unwrap();
    hup(child.id());
    let refused = wait_for(
        "SIGHUP: the scenarios on disk have problems (see `rebuy check`); the running ones stay",
    );
    assert!(refused["fields"]["problems"].as_u64().unwrap() >= 1);
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for("stopped cleanly");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The shipped systemd unit waits long enough for the sends in flight at the default SMTP
/// timeout, and starts the daemon with a command line rebuy accepts.
#[test]
fn the_systemd_unit_gives_a_stop_the_time_the_sends_in_flight_need() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/rebuy.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}"))
            .to_string()
    };
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    let timeout = rebuy::config::Config::default().delivery.smtp.timeout_secs;
    assert!(stop >= 4 * timeout, "{stop} < 4 × {timeout}");
    let exec = value("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    let mut help = args.clone();
    help.push("--help");
    let o = rebuy(Path::new("."), &help);
    assert!(o.status.success(), "{exec}: {}", text(&o).1);
}

#[test]
fn the_suppression_list_is_managed_from_the_command_line() {
    let dir = folder();
    // A suppression never goes into a database that `suppress` made up by itself.
    let o = rebuy(dir.path(), &["suppress", "add", "x@example.jp"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(rebuy(dir.path(), &["init"]).status.success());
    let o = rebuy(
        dir.path(),
        &[
            "suppress",
            "add",
            "Hanako@Example.jp",
            "--reason",
            "asked by phone",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("suppressed hanako@example.jp (manual)"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["suppress", "add", "not an address"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("not a valid e-mail address"),
        "{:?}",
        text(&o)
    );

    std::fs::write(
        dir.path().join("list.csv"),
        "email,kind,reason\nken@example.com,bounce,550 no such user\nbroken,manual,\naya@example.jp,sometimes,\n",
    )
    .unwrap();
    let o = rebuy(dir.path(), &["suppress", "import", "list.csv"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let (out, err) = text(&o);
    assert!(
        out.contains("1 addresses suppressed, 2 lines rejected"),
        "{out}"
    );
    assert!(
        err.contains("list.csv:3: 'broken' is not a valid e-mail address"),
        "{err}"
    );
    assert!(
        err.contains("list.csv:4: unknown kind 'sometimes'"),
        "{err}"
    );

    let o = rebuy(dir.path(), &["suppress", "list", "--format", "csv"]);
    let (out, _) = text(&o);
    assert!(
        out.starts_with("email,kind,reason,customer,since\n"),
        "{out}"
    );
    assert!(
        out.contains("hanako@example.jp,manual,asked by phone,"),
        "{out}"
    );
    assert!(
        out.contains("ken@example.com,bounce,550 no such user,"),
        "{out}"
    );

    let o = rebuy(dir.path(), &["suppress", "remove", "ken@example.com"]);
    assert!(o.status.success());
    let o = rebuy(dir.path(), &["suppress", "remove", "ken@example.com"]);
    assert_eq!(o.status.code(), Some(1));
    let o = rebuy(dir.path(), &["suppress", "list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn failed_messages_are_listed_retried_and_queued_ones_cancelled_from_the_command_line() {
    let dir = folder();
    // A relay nobody listens on, and one attempt: a send fails for good at once.
    relay_down(dir.path(), "  max_attempts: 1\n");
    follow_ups(dir.path(), &[("C1", "K1"), ("C2", "K2")]);
    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(o.status.success(), "{:?}", text(&o));

    let o = rebuy(
        dir.path(),
        &["outbox", "list", "--status", "failed", "--format", "json"],
    );
    let failed: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("cannot connect"));
    // One customer's messages, named by id or by address; an unknown one is refused.
    let customer = failed[0]["customer"].as_str().unwrap().to_string();
    let to = failed[0]["to"].as_str().unwrap().to_string();
    for who in [&customer, &to] {
        let o = rebuy(
            dir.path(),
            &["outbox", "list", "--customer", who, "--format", "json"],
        );
        let mine: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
        let mine = mine.as_array().unwrap();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0]["customer"], customer.as_str());
    }
    let o = rebuy(dir.path(), &["outbox", "list", "--customer", "nobody"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    // Times in the shop's zone (Asia/Tokyo by default), not UTC.
    assert!(
        failed[0]["due_at"].as_str().unwrap().ends_with("+09:00"),
        "{failed:?}"
    );
    let first = failed[1]["id"].as_i64().unwrap().to_string();

    let o = rebuy(dir.path(), &["outbox", "retry", &first]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o)
        .0
        .contains(&format!("re-queued 1 message(s): {first}")));
    let o = rebuy(dir.path(), &["outbox", "retry", &first]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a queued message is not retried again"
    );
    let o = rebuy(dir.path(), &["outbox", "retry", "--all-failed"]);
    assert!(
        text(&o).0.contains("re-queued 1 message(s)"),
        "{:?}",
        text(&o)
    );

    let o = rebuy(
        dir.path(),
        &["outbox", "list", "--status", "queued", "--format", "csv"],
    );
    let (out, _) = text(&o);
    assert!(
        out.starts_with("id,scenario,step,to,status,attempts,due,last error\n"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");

    let o = rebuy(
        dir.path(),
        &["outbox", "cancel", "--scenario", "support-follow-up"],
    );
    assert!(
        text(&o).0.contains("cancelled 2 queued message(s)"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["outbox", "cancel", &first]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("is not queued"));
    let o = rebuy(
        dir.path(),
        &[
            "outbox",
            "list",
            "--status",
            "cancelled",
            "--format",
            "json",
        ],
    );
    let cancelled: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(cancelled.as_array().unwrap().len(), 2);
    let o = rebuy(dir.path(), &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(status["scenarios"][0]["cancelled"], 2, "{status}");
    // Nothing is sent for a cancelled message.
    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(text(&o).0.contains("\"claimed\": 0"), "{:?}", text(&o));
}

#[test]
fn simulate_back_tests_october_in_its_own_database_and_leaves_the_shop_alone() {
    let dir = imported_folder();
    let o = rebuy(
        dir.path(),
        &[
            "simulate",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-31",
            "--format",
            "json",
            "--no-progress",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // What it cannot show is said, not left out silently.
    assert!(
        text(&o).1.contains(
            "note: scenario 'abandoned-cart' starts on the event 'cart_added': a back-test \
             replays orders, not events, so it enrolls nobody here"
        ) && text(&o)
            .1
            .contains("note: scenario 'support-follow-up' is started by hand"),
        "{:?}",
        text(&o).1
    );
    let out: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(
        out["run"]["ticks"],
        31 * 24,
        "hourly from Oct 1 00:00 to Oct 31 23:00 (JST)"
    );
    assert!(
        out["run"]["source"]["period_orders"].as_i64().unwrap() >= 3,
        "{out}"
    );
    assert_eq!(
        out["run"]["refreshes"], 31,
        "win-back needs the nightly segment refresh"
    );
    let sends = out["sends"].as_array().unwrap();
    assert!(
        sends
            .iter()
            .any(|s| s["scenario"] == "first-purchase" && s["messages"].as_i64() > Some(0)),
        "{out}"
    );
    // Times in the shop's zone (Asia/Tokyo by default), as everywhere in the CLI.
    assert!(
        sends[0]["first"].as_str().unwrap().ends_with("+09:00"),
        "{out}"
    );
    assert!(dir.path().join("rebuy.simulation.db").exists());
    // The shop's own database got nothing.
    let o = rebuy(dir.path(), &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(status["scenarios"], serde_json::json!([]), "{status}");
    // A period that ends before it starts is a usage error.
    let o = rebuy(
        dir.path(),
        &["simulate", "--from", "2026-10-31", "--to", "2026-10-01"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("is before --from"), "{:?}", text(&o));

    // A mistake in the arguments leaves the last back-test as it was: an unknown scenario, a
    // folder for --html that does not exist, an --out that is not a back-test's database.
    let last = std::fs::read(dir.path().join("rebuy.simulation.db")).unwrap();
    let october = ["simulate", "--from", "2026-10-01", "--to", "2026-10-31"];
    let o = rebuy(
        dir.path(),
        &[&october[..], &["--scenario", "first-purchse"]].concat(),
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("did you mean 'first-purchase'?"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(
        dir.path(),
        &[&october[..], &["--html", "no-such-folder/r.html"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("no-such-folder"), "{:?}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join("rebuy.simulation.db")).unwrap(),
        last,
        "the last back-test is untouched"
    );
    std::fs::write(dir.path().join("notes.txt"), "the plan for December").unwrap();
    let o = rebuy(
        dir.path(),
        &[&october[..], &["--out", "notes.txt"]].concat(),
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("is not a back-test's database"),
        "{:?}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "the plan for December"
    );
}

#[test]
fn refresh_and_metrics_export_give_one_row_per_customer_in_csv_and_json() {
    let dir = imported_folder();
    let o = rebuy(
        dir.path(),
        &["refresh", "--as-of", "2026-11-01", "--format", "json"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["as_of"], "2026-11-01");
    // Three customers: too little history for the models, and the report says so.
    assert!(report["bgnbd"].is_null());
    assert!(report["bgnbd_error"]
        .as_str()
        .unwrap()
        .contains("too little history"));
    // The shipped segments are evaluated; the first evaluation is a baseline.
    let named = report["named_segments"].as_array().unwrap();
    assert_eq!(named.len(), 13);
    assert!(named.iter().all(|s| s["baseline"] == true));
    let members: u64 = named[..10]
        .iter()
        .map(|s| s["members"].as_u64().unwrap())
        .sum();
    assert_eq!(
        members, 2,
        "two customers with orders, one RFM segment each"
    );

    let o = rebuy(dir.path(), &["metrics", "export"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("customer_id,as_of,orders,first_order,last_order,days_since_last"));
    assert!(
        header.ends_with(",expected_next_order,segments"),
        "{header}"
    );
    let c1: Vec<&str> = lines
        .find(|l| l.starts_with("C1,"))
        .unwrap()
        .split(',')
        .collect();
    // C1: two orders (Oct 1 and Oct 20, Tokyo), 3980 + 2980×2 and 3980.
    assert_eq!(
        &c1[..5],
        ["C1", "2026-11-01", "2", "2026-10-01", "2026-10-20"]
    );

    let o = rebuy(
        dir.path(),
        &[
            "metrics",
            "export",
            "--format",
            "json",
            "--as-of",
            "2026-10-10",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(rows.iter().all(|r| r["as_of"] == "2026-10-10"));
    let c1 = rows.iter().find(|r| r["customer_id"] == "C1").unwrap();
    assert_eq!(c1["orders"], 1, "the October 20 order is after the date");
    // Each row carries its own customer's segments: exactly one RFM segment each.
    for r in &rows {
        let names: Vec<&str> = r["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let rfm = names
            .iter()
            .filter(|n| {
                rebuy::metrics::SEGMENTS
                    .iter()
                    .any(|s| s.replace(' ', "-").replace("can't", "cant") == **n)
            })
            .count();
        assert_eq!(rfm, 1, "{r}");
    }

    let o = rebuy(dir.path(), &["refresh", "--as-of", "2026-13-01"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("is not a date like"), "{err}");
}

#[test]
fn the_rfm_and_cohort_reports_come_as_tables_csv_and_json() {
    let dir = imported_folder();
    let o = rebuy(
        dir.path(),
        &["report", "rfm", "--as-of", "2026-11-01", "--format", "json"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let groups = r["groups"].as_array().unwrap();
    // All ten segments, best first, the empty ones too; every customer in one.
    assert_eq!(groups.len(), 10);
    assert_eq!(groups[0]["group"], "champions");
    let customers: i64 = groups
        .iter()
        .map(|g| g["customers"].as_i64().unwrap())
        .sum();
    assert_eq!(customers, 2, "C3 has no order");
    let o = rebuy(
        dir.path(),
        &["report", "rfm", "--view", "cells", "--format", "csv"],
    );
    let (out, _) = text(&o);
    assert!(
        out.starts_with("group,customers,revenue,orders,average order value\nR"),
        "{out}"
    );
    // CSV keeps the minor units for spreadsheets; the table shows money in the shop's currency.
    let champions = groups
        .iter()
        .filter_map(|g| g["revenue"].as_i64())
        .find(|r| *r > 0)
        .unwrap();
    assert!(!out.contains('¥'), "{out}");
    let o = rebuy(dir.path(), &["report", "rfm"]);
    let (out, _) = text(&o);
    assert!(
        out.contains(&rebuy::domain::format_money(champions, "JPY")),
        "{champions} as yen in {out}"
    );

    let o = rebuy(
        dir.path(),
        &[
            "report",
            "cohorts",
            "--as-of",
            "2026-11-30",
            "--format",
            "json",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let october = &r["cohorts"][0];
    assert_eq!(october["month"], "2026-10");
    assert_eq!(october["customers"], 2);
    // C1 came back on October 20, 19 days after October 1.
    assert_eq!(october["repeat_within"][0], 1);
    assert_eq!(october["active"], serde_json::json!([2, 0]));
    let o = rebuy(dir.path(), &["report", "cohorts", "--as-of", "2026-11-30"]);
    let (out, _) = text(&o);
    assert!(out.contains("2026-10") && out.contains("50.0%"), "{out}");
    let o = rebuy(
        dir.path(),
        &[
            "report",
            "cohorts",
            "--view",
            "retention",
            "--format",
            "csv",
            "--as-of",
            "2026-11-30",
        ],
    );
    let (out, _) = text(&o);
    assert!(
        out.starts_with("cohort,customers,M0,M1\n2026-10,2,100.0%,0.0%"),
        "{out}"
    );

    let o = rebuy(
        dir.path(),
        &[
            "report",
            "ltv",
            "--as-of",
            "2026-11-30",
            "--view",
            "cohorts",
            "--format",
            "json",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let october = &r["groups"][0];
    assert_eq!(
        (october["group"].as_str(), october["customers"].as_u64()),
        (Some("2026-10"), Some(2))
    );
    // C1 (3980 + 2×2980, then 3980) and C2 (4500): 18420 over 3 orders; nobody a year old yet.
    assert_eq!(october["revenue"], 18420.0);
    assert_eq!(october["average_order_value"], 6140.0);
    assert!(october["ltv"].is_null() && october["annual_retention"].is_null());
    // Two months of history: no 3-month window has run out yet, so no observed value.
    assert!(october["revenue_within"][0].is_null());
    assert_eq!(october["observed_customers"], serde_json::json!([0, 0, 0]));
}

#[test]
fn refresh_warns_of_a_broken_segment_and_evaluates_the_others() {
    let dir = imported_folder();
    std::fs::write(
        dir.path().join("scenarios/broken-segments.yaml"),
        "segments:\n  - name: bad\n    where: nope > 1\n",
    )
    .unwrap();
    let o = rebuy(
        dir.path(),
        &["refresh", "--as-of", "2026-11-01", "--format", "json"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: scenarios/broken-segments.yaml:3:12: segment condition: unknown field 'nope'"
        ),
        "{err}"
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = report["named_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["segment"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 13, "the shipped ones, not the broken one");
    assert!(!names.contains(&"bad"));
}

#[test]
fn a_retried_message_is_rendered_again_and_is_never_sent_empty() {
    let dir = folder();
    // A support mail that needs a customer attribute the shop has not imported yet.
    std::fs::write(
        dir.path().join("scenarios/gift.yaml"),
        "id: gift\nname: Gift wrap note\ntrigger: manual\ntransactional: true\nsteps:\n  - id: note\n    send: { template: gift, subject: \"A note for {{ customer.attributes.gift_name }}\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("templates/gift.txt"),
        "Your gift for {{ customer.attributes.gift_name }} is wrapped.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("templates/gift.html"),
        "<p>Your gift for {{ customer.attributes.gift_name }} is wrapped.</p>\n",
    )
    .unwrap();
    assert!(rebuy(dir.path(), &["import", "customers", "customers.csv"])
        .status
        .success());
    let o = rebuy(dir.path(), &["trigger", "gift", "--customer", "C1"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let list = |status: &str| -> Vec<serde_json::Value> {
        let o = rebuy(
            dir.path(),
            &["outbox", "list", "--status", status, "--format", "json"],
        );
        let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
        v.as_array().unwrap().clone()
    };
    let failed = list("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("gift_name"),
        "the reason names what is missing: {failed:?}"
    );
    let id = failed[0]["id"].as_i64().unwrap().to_string();
    let eml = dir.path().join("outbox").join(format!("{id}.eml"));

    // Still no attribute: the retry renders again, fails again, and says why.
    let o = rebuy(dir.path(), &["outbox", "retry", &id]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("cannot render it again"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["outbox", "retry", "--all-failed"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("re-queued 0 message(s)"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!eml.exists(), "nothing was sent");
    let failed = list("failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("not re-queued: cannot render it again"),
        "{failed:?}"
    );

    // With today's data it renders, and goes out whole.
    std::fs::write(
        dir.path().join("gift.csv"),
        "id,email,gift_name\nC1,hanako.new@example.jp,お母さん\n",
    )
    .unwrap();
    assert!(rebuy(dir.path(), &["import", "customers", "gift.csv"])
        .status
        .success());
    let o = rebuy(dir.path(), &["outbox", "retry", &id]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = rebuy(dir.path(), &["run", "--once"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(list("sent").len(), 1);
    let raw = std::fs::read(&eml).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.subject(), Some("A note for お母さん"));
    let to = parsed
        .to()
        .unwrap()
        .first()
        .unwrap()
        .address()
        .unwrap()
        .to_string();
    assert_eq!(
        to, "hanako.new@example.jp",
        "today's address, not the stored one"
    );
    assert!(parsed
        .body_text(0)
        .unwrap()
        .contains("Your gift for お母さん"));
}

#[test]
fn a_short_unsubscribe_secret_is_refused_before_anything_is_signed() {
    let dir = imported_folder();
    let o = crate::helpers::binary()
        .args(["run", "--once"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBUY_UNSUBSCRIBE_SECRET", "short")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains("has 5 characters; it needs at least 16"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn paths_in_a_config_follow_the_config_file_and_no_command_but_import_run_or_init_creates_a_database(
) {
    let dir = tempfile::tempdir().unwrap();
    let shop = dir.path().join("shop");
    rebuy::demo::write_samples(&shop).unwrap();
    std::fs::write(shop.join("rebuy.yaml"), "database: shop.db\n").unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(fixtures.join("customers.csv"), shop.join("customers.csv")).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", "shop/rebuy.yaml"];
        all.extend_from_slice(args);
        rebuy(dir.path(), &all)
    };

    for args in [&["status"][..], &["outbox", "list"], &["report", "rfm"]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {:?}", text(&o));
        assert!(text(&o).1.contains("no database at"), "{:?}", text(&o));
    }
    assert!(!shop.join("shop.db").exists(), "nothing created");
    assert!(!dir.path().join("shop.db").exists() && !dir.path().join("rebuy.db").exists());

    // `check` reads scenarios from shop/scenarios, not ./scenarios (which does not exist).
    let o = run(&["check"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run(&["import", "customers", "shop/customers.csv"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(shop.join("shop.db").exists());
    assert!(!dir.path().join("shop.db").exists());
    let o = run(&["status", "--format", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));

    let other = tempfile::tempdir().unwrap();
    let o = rebuy(other.path(), &["init"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("rebuy.db was created"),
        "{:?}",
        text(&o)
    );
    assert!(other.path().join("rebuy.db").exists());
}

#[test]
fn a_follow_up_is_stopped_by_ending_its_enrollment_or_with_its_cancelled_message() {
    let dir = folder();
    // A relay that is down: the first step goes back to the queue, waiting for a retry.
    relay_down(dir.path(), "");
    assert!(rebuy(dir.path(), &["import", "customers", "customers.csv"])
        .status
        .success());
    for c in ["C1", "C2"] {
        let args = [
            "trigger",
            "support-follow-up",
            "--customer",
            c,
            "--var",
            "case_id=X",
        ];
        assert!(rebuy(dir.path(), &args).status.success());
    }
    assert!(rebuy(dir.path(), &["run", "--once"]).status.success());
    let active = || -> i64 {
        let o = rebuy(dir.path(), &["status", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
        v["scenarios"][0]["active"].as_i64().unwrap()
    };
    assert_eq!(active(), 2);

    // By customer and scenario, with a reason.
    let end = [
        "enrollment",
        "end",
        "--customer",
        "hanako@example.jp",
        "--scenario",
        "support-follow-up",
        "--reason",
        "asked by phone",
    ];
    let o = rebuy(dir.path(), &end);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("ended 1 enrollment(s)")
            && text(&o).0.contains(" in support-follow-up)"),
        "names the scenario it ended: {:?}",
        text(&o)
    );
    assert_eq!(active(), 1);
    let o = rebuy(dir.path(), &end);
    assert_eq!(o.status.code(), Some(1), "nothing left to end");

    // Cancelling a message says that its enrollment goes on, unless asked to end it.
    let o = rebuy(
        dir.path(),
        &["outbox", "list", "--status", "queued", "--format", "json"],
    );
    let queued: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(
        queued.as_array().unwrap().len(),
        1,
        "C1's was cancelled with its enrollment"
    );
    let id = queued[0]["id"].as_i64().unwrap().to_string();
    let o = rebuy(dir.path(), &["outbox", "cancel", &id, "--end-enrollment"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("ended 1 enrollment(s)"),
        "{:?}",
        text(&o)
    );
    assert_eq!(active(), 0);
}

#[test]
fn a_misspelt_or_missing_variable_is_refused_by_name_before_anything_starts() {
    let dir = imported_folder();
    for (vars, said) in [
        (
            &["--var", "caseid=CASE-7"][..],
            "unknown variable 'caseid' (did you mean 'case_id'?); missing variable 'case_id' (--var case_id=CASE-7); it takes: case_id",
        ),
        (&[][..], "missing variable 'case_id' (--var case_id=CASE-7)"),
        (
            &["--var", "case_id=  "][..],
            "variable 'case_id' is empty; it is required (--var case_id=CASE-7)",
        ),
    ] {
        for cmd in [
            &["trigger", "support-follow-up", "--customer", "C1"][..],
            &["preview", "support-follow-up", "apology", "--customer", "C1"],
        ] {
            let args: Vec<&str> = cmd.iter().chain(vars).copied().collect();
            let o = rebuy(dir.path(), &args);
            assert_eq!(o.status.code(), Some(1), "{args:?}: {:?}", text(&o));
            assert!(text(&o).1.contains(said), "{args:?}: {:?}", text(&o));
        }
    }
    // Two values for one variable, or one without '=': the command line's mistake (exit 2).
    for (vars, said) in [
        (
            &["--var", "case_id=A", "--var", "case_id=B"][..],
            "--var 'case_id' is given twice; give it once",
        ),
        (
            &["--var", "case_id"][..],
            "--var 'case_id' needs the form KEY=VALUE",
        ),
    ] {
        let args: Vec<&str> = ["trigger", "support-follow-up", "--customer", "C1"]
            .iter()
            .chain(vars)
            .copied()
            .collect();
        let o = rebuy(dir.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
        assert!(text(&o).1.contains(said), "{args:?}: {:?}", text(&o));
    }
    let o = rebuy(dir.path(), &["status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(
        status["scenarios"],
        serde_json::json!([]),
        "nothing was started"
    );
    // A step that reads an order, previewed for a customer without one: the input's problem
    // (exit 1), said as such, not a failure of rebuy's (exit 3).
    std::fs::write(dir.path().join("new.csv"), "id,email\nC9,c9@example.jp\n").unwrap();
    assert!(rebuy(dir.path(), &["import", "customers", "new.csv"])
        .status
        .success());
    let o = rebuy(
        dir.path(),
        &["preview", "first-purchase", "thanks", "--customer", "C9"],
    );
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("does not render for customer 'C9'")
            && text(&o).1.contains("the customer has no order yet"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn a_customer_is_shown_with_orders_and_follow_ups_as_a_table_or_json() {
    let dir = imported_folder();
    let o = rebuy(
        dir.path(),
        &[
            "trigger",
            "support-follow-up",
            "--customer",
            "hanako@example.jp",
            "--var",
            "case_id=CASE-7",
            "--key",
            "CASE-7",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = rebuy(dir.path(), &["customer", "show", "hanako@example.jp"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.starts_with("山田 花子 <hanako@example.jp> (id C1)\nmarketing mail: yes"),
        "{out}"
    );
    assert!(
        out.contains("¥13,920") && out.contains("ミルククレンジング"),
        "{out}"
    );
    assert!(out.contains("support-follow-up"), "{out}");
    let o = rebuy(dir.path(), &["customer", "show", "C1", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["enrollments"][0]["scenario"], "support-follow-up");
    assert_eq!(v["enrollments"][0]["vars"]["case_id"], "CASE-7");
    assert_eq!(
        v["orders"][0]["placed_at"], "2026-10-20T21:00:00+09:00",
        "the customer's zone"
    );
    let o = rebuy(dir.path(), &["customer", "show", "nobody"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o)
        .1
        .contains("no customer with id or e-mail 'nobody'"));
}

#[test]
fn text_logs_into_a_pipe_carry_no_colour_codes() {
    let dir = folder();
    assert!(rebuy(dir.path(), &["import", "customers", "customers.csv"])
        .status
        .success());
    let o = rebuy(dir.path(), &["run", "--once", "--log-level", "debug"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("tick done"),
        "the debug lines are there: {err}"
    );
    assert!(!err.contains('\u{1b}'), "no ANSI escapes: {err:?}");
}

#[test]
fn a_postgres_server_that_is_not_there_is_named_at_once_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://rebuy:hunter2@127.0.0.1:{port}/shop");
    let o = crate::helpers::binary()
        .args(["status"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBUY_DATABASE", &url)
        .output()
        .expect("the binary runs");
    let (out, err) = text(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("rebuy:***@127.0.0.1:{port}/shop")),
        "{err}"
    );
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{err}"
    );
    // The refusal itself, not a pool's timeout after 30 s.
    assert!(!err.contains("timed out"), "{err}");
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // `rebuy status | head -1`: the reader is gone before rebuy prints.
    let dir = imported_folder();
    for args in [&["status"][..], &["customer", "show", "C1"][..]] {
        let mut child = crate::helpers::binary()
            .args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: ended by the closed pipe, as Unix tools are: {:?} {err}",
            out.status
        );
    }
}

#[test]
fn a_database_setting_that_names_no_database_is_said_at_once() {
    let dir = imported_folder();
    let csv = std::fs::read(dir.path().join("customers.csv")).unwrap();
    for (database, said) in [
        ("customers.csv", "customers.csv is not a SQLite database"),
        (
            "postgres//localhost/rebuy",
            "looks like a PostgreSQL URL but is not one",
        ),
    ] {
        let started = std::time::Instant::now();
        let o = crate::helpers::binary()
            .args(["status"])
            .current_dir(dir.path())
            .env("REBUY_DATABASE", database)
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{database}: {err}");
        assert!(err.contains(said), "{database}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not after the pool's 30 s of retries: {err}"
        );
    }
    assert_eq!(
        std::fs::read(dir.path().join("customers.csv")).unwrap(),
        csv,
        "the file is left as it was"
    );
}

#[test]
fn an_import_of_a_file_without_records_says_so_and_succeeds() {
    let dir = folder();
    std::fs::write(
        dir.path().join("empty.csv"),
        "order_id,customer_id,placed_at,currency,total\n",
    )
    .unwrap();
    let o = rebuy(dir.path(), &["import", "orders", "empty.csv"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(err.contains("empty.csv holds no records"), "{err}");
    // A file with records says nothing of the kind.
    let o = rebuy(dir.path(), &["import", "customers", "customers.csv"]);
    assert!(!text(&o).1.contains("holds no records"), "{:?}", text(&o));
}

/// A command line that names something unusable as asked exits 2, as clap's usage errors do:
/// a folder to import, a file whose format its name does not tell. A config file that cannot be
/// read is said with its name alone (no line and column: the file as a whole).
#[test]
fn an_import_of_a_folder_or_of_a_file_of_unknown_format_is_a_usage_error() {
    let dir = folder();
    std::fs::create_dir(dir.path().join("exports")).unwrap();
    let o = rebuy(dir.path(), &["import", "orders", "exports"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("exports is a folder"), "{:?}", text(&o));
    std::fs::write(dir.path().join("orders.txt"), "order_id\n").unwrap();
    let o = rebuy(dir.path(), &["import", "orders", "orders.txt"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("pass --format csv"), "{:?}", text(&o));
    // --move-orders belongs to orders: on customers it is a mistake of the command line.
    let o = rebuy(
        dir.path(),
        &["import", "customers", "customers.csv", "--move-orders"],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains("it goes with `rebuy import orders` only"),
        "{:?}",
        text(&o)
    );
    let o = rebuy(dir.path(), &["--config", "nope.yaml", "check"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("nope.yaml: cannot read config"), "{err}");
    let o = rebuy(dir.path(), &["--config", "exports", "check"]);
    assert!(
        text(&o).1.starts_with("exports: is a folder"),
        "{:?}",
        text(&o)
    );
}
