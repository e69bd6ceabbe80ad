//! The back-tests page: `rebuy simulate` for a period, started from a page by a marketer, run
//! as a child process of the server (with a database of its own, so it cannot disturb the
//! shop's store or the daemon), its progress read from the child's progress lines, its result
//! shown as the CLI prints it. One runs at a time; the last few stay listed until the server
//! stops.

use super::{i18n, Said, Ui, UiError};
use crate::users::Role;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Back-tests listed (the oldest are forgotten).
const KEPT: usize = 10;
/// The most of a back-test's output kept, per stream.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// The longest period a page may back-test, in days.
const LONGEST_DAYS: i64 = 731;

/// How to start `rebuy simulate`: this very binary, with the server's configuration, into a
/// database beside the shop's that only the pages use.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub exe: PathBuf,
    pub config: Option<PathBuf>,
    pub out: PathBuf,
}

impl Launcher {
    /// The running binary with `config`, writing into `out` (`App::local_file("backtest.db")`:
    /// `<shop database>.backtest.db`).
    pub fn for_this_binary(config: Option<PathBuf>, out: PathBuf) -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        Some(Self { exe, config, out })
    }

    fn command(&self, req: &Request) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.exe);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["--log-level", "warn", "--log-format", "text", "simulate"])
            .args(["--from", &req.from.to_string(), "--to", &req.to.to_string()])
            .args(["--format", "table", "--no-progress", "--progress-lines"])
            .arg("--out")
            .arg(&self.out);
        if let Some(s) = &req.scenario {
            cmd.args(["--scenario", s]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// What a marketer asked to back-test.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub scenario: Option<String>,
}

/// One back-test, running or done.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: u64,
    pub by: String,
    pub from: String,
    pub to: String,
    pub scenario: Option<String>,
    pub started: i64,
    pub finished: Option<i64>,
    pub done: u64,
    pub total: u64,
    /// `running`, `finished` or `failed`.
    pub state: &'static str,
    /// What the command printed on standard output (its tables).
    pub output: String,
    /// What it printed on standard error, without the progress lines (its summary line, or
    /// what went wrong).
    pub messages: String,
}

impl Run {
    /// `req`, started by `by` at `started`, before its first line.
    fn new(id: u64, by: &str, req: &Request, started: i64) -> Self {
        Self {
            id,
            by: by.to_string(),
            from: req.from.to_string(),
            to: req.to.to_string(),
            scenario: req.scenario.clone(),
            started,
            finished: None,
            done: 0,
            total: 0,
            state: "running",
            output: String::new(),
            messages: String::new(),
        }
    }

    fn percent(&self) -> u64 {
        (self.done * 100).checked_div(self.total).unwrap_or(0)
    }
}

/// The back-tests of this server.
#[derive(Default)]
pub struct Backtests {
    launcher: Option<Launcher>,
    runs: Mutex<Vec<Run>>,
}

impl Backtests {
    pub fn new(launcher: Option<Launcher>) -> Self {
        Self {
            launcher,
            runs: Mutex::new(Vec::new()),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Vec<Run>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: u64) -> Option<Run> {
        self.runs().iter().find(|r| r.id == id).cloned()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Run)) {
        if let Some(r) = self.runs().iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }

    /// Starts `req` for `by` at `now`; refused while another runs.
    fn start(
        self: &Arc<Self>,
        req: &Request,
        by: &str,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<u64, UiError> {
        let now = crate::clock::to_millis(clock.now());
        let launcher = self
            .launcher
            .as_ref()
            .ok_or_else(|| UiError::from(Said::new("backtests.unavailable")))?;
        let mut runs = self.runs();
        if runs.iter().any(|r| r.state == "running") {
            return Err(Said::new("backtests.busy").into());
        }
        let mut child = launcher
            .command(req)
            .spawn()
            .map_err(|e| UiError::Internal(anyhow::anyhow!("cannot start rebuy simulate: {e}")))?;
        let id = runs.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        runs.push(Run::new(id, by, req, now));
        let excess = runs.len().saturating_sub(KEPT);
        runs.drain(..excess);
        drop(runs);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let this = self.clone();
        tokio::spawn(async move {
            let errs = this.clone();
            let read_out = async {
                if let Some(s) = stdout {
                    read_lines(s, |line| {
                        this.update(id, |r| push_bounded(&mut r.output, line))
                    })
                    .await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr {
                    read_lines(s, |line| errs.update(id, |r| take_stderr_line(r, line))).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            let finished = crate::clock::to_millis(clock.now());
            this.update(id, |r| {
                r.finished = Some(finished);
                match status {
                    Ok(s) if s.success() => r.state = "finished",
                    Ok(s) => {
                        r.state = "failed";
                        push_bounded(&mut r.messages, &format!("rebuy simulate ended: {s}"));
                    }
                    Err(e) => {
                        r.state = "failed";
                        push_bounded(&mut r.messages, &format!("rebuy simulate was lost: {e}"));
                    }
                }
            });
            tracing::info!(backtest = id, "back-test ended");
        });
        Ok(id)
    }
}

/// Calls `each` with every line of `stream` (lossily decoded) until it ends.
async fn read_lines(stream: impl AsyncRead + Unpin, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => each(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n'])),
        }
    }
}

/// Appends `line` to `text` unless `text` is already at the limit.
fn push_bounded(text: &mut String, line: &str) {
    if text.len() + line.len() < OUTPUT_LIMIT {
        text.push_str(line);
        text.push('\n');
    } else if !text.ends_with("…\n") {
        text.push_str("…\n");
    }
}

/// A line of the child's standard error: its progress, or a message to show.
fn take_stderr_line(run: &mut Run, line: &str) {
    match parse_progress(line) {
        Some((done, total)) => {
            run.done = done;
            run.total = total;
        }
        None => push_bounded(&mut run.messages, line),
    }
}

/// `progress DONE TOTAL`, as `rebuy simulate --progress-lines` prints it.
fn parse_progress(line: &str) -> Option<(u64, u64)> {
    let mut parts = line.strip_prefix("progress ")?.split(' ');
    let done = parts.next()?.parse().ok()?;
    let total = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((done, total))
}

/// The form's period and scenario, checked: real dates, in order, not after `today`, not
/// longer than two years, a known scenario or all.
pub fn request_of(
    form: &HashMap<String, String>,
    today: NaiveDate,
    scenarios: &[String],
) -> Result<Request, Said> {
    let date = |field: &str, refused: &'static str| {
        let v = form.get(field).map(|s| s.trim()).unwrap_or_default();
        NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| Said::new(refused).with("value", v))
    };
    let (from, to) = (
        date("from", "backtests.bad_from")?,
        date("to", "backtests.bad_to")?,
    );
    if to < from {
        return Err(Said::new("backtests.backwards")
            .with("from", from)
            .with("to", to));
    }
    if to > today {
        return Err(Said::new("backtests.future").with("today", today));
    }
    if (to - from).num_days() >= LONGEST_DAYS {
        return Err(Said::new("backtests.too_long").with("days", LONGEST_DAYS));
    }
    let scenario = match form.get("scenario").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) if scenarios.iter().any(|k| k == s) => Some(s.to_string()),
        Some(s) => return Err(Said::new("backtests.no_scenario").with("scenario", s)),
    };
    Ok(Request { from, to, scenario })
}

fn shop_today(ui: &Ui) -> NaiveDate {
    ui.api.clock.now().with_timezone(&ui.api.zone).date_naive()
}

fn scenario_ids(ui: &Ui) -> Vec<String> {
    let mut ids: Vec<String> = ui.scenario_names().into_keys().collect();
    ids.sort();
    ids
}

/// `GET /ui/backtests`: the form and the back-tests of this server.
pub async fn page(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    let u = ui.clone();
    ui.guard(&headers, &[Role::Marketer], "/ui/backtests", |v| async move {
        let today = shop_today(&u);
        let mut runs: Vec<Run> = u.backtests.runs().clone();
        runs.reverse();
        let runs: Vec<_> = runs.iter().map(|r| (r, r.percent())).collect();
        let title = i18n::text(v.lang, "backtests.title");
        u.page(
            Some(&v),
            v.lang,
            "backtests.html",
            "backtests",
            &title,
            minijinja::context! {
                from => (today - chrono::Duration::days(90)).to_string(),
                to => (today - chrono::Duration::days(1)).to_string(),
                scenarios => scenario_ids(&u),
                runs => runs.iter().map(|(r, p)| minijinja::context! { run => r, percent => p }).collect::<Vec<_>>(),
                available => u.backtests.launcher.is_some(),
            },
        )
    })
    .await
}

/// `POST /ui/backtests`: starts one and shows its page.
pub async fn start(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let u = ui.clone();
    ui.guard_form(&headers, &[Role::Marketer], &form.clone(), |v| async move {
        let req = request_of(&form, shop_today(&u), &scenario_ids(&u))?;
        let id = u.backtests.start(&req, &v.name, u.api.clock.clone())?;
        let period = format!("{} – {}", req.from, req.to);
        u.audit(
            &v.name,
            "backtest_started",
            &period,
            req.scenario.as_deref().unwrap_or(""),
        )
        .await;
        Ok(super::see_other(&format!("/ui/backtests/{id}"), None))
    })
    .await
}

/// `GET /ui/backtests/{id}`: its progress (the page reloads itself while it runs), then its
/// result.
pub async fn run(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let u = ui.clone();
    let back = format!("/ui/backtests/{id}");
    ui.guard(&headers, &[Role::Marketer], &back, |v| async move {
        let run = id
            .parse::<u64>()
            .ok()
            .and_then(|n| u.backtests.get(n))
            .ok_or_else(|| UiError::NotFound(Said::new("missing.backtest").with("id", &id)))?;
        let title = format!("{} #{}", i18n::text(v.lang, "backtests.one"), run.id);
        u.page(
            Some(&v),
            v.lang,
            "backtest.html",
            "backtests",
            &title,
            minijinja::context! { run => run, percent => run.percent(), heading => title },
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_period_is_two_dates_in_order_before_today_and_at_most_two_years() {
        let today = day("2026-12-06");
        let known = vec!["welcome".to_string()];
        let ok = request_of(
            &form(&[
                ("from", "2026-09-01"),
                ("to", "2026-11-30"),
                ("scenario", ""),
            ]),
            today,
            &known,
        )
        .unwrap();
        assert_eq!(ok.from, day("2026-09-01"));
        assert_eq!(ok.scenario, None);
        let one = request_of(
            &form(&[
                ("from", "2026-09-01"),
                ("to", "2026-09-01"),
                ("scenario", "welcome"),
            ]),
            today,
            &known,
        )
        .unwrap();
        assert_eq!(one.scenario.as_deref(), Some("welcome"));
        let err = |pairs: &[(&str, &str)]| {
            request_of(&form(pairs), today, &known)
                .unwrap_err()
                .text(super::super::Lang::En)
        };
        assert!(err(&[("from", "1 Sept"), ("to", "2026-09-02")]).starts_with("From: '1 Sept'"));
        assert!(err(&[("from", "2026-09-01")]).starts_with("To: '' is not a date"));
        assert!(err(&[("from", "2026-09-02"), ("to", "2026-09-01")]).contains("before it starts"));
        assert!(err(&[("from", "2026-12-01"), ("to", "2026-12-07")]).contains("after today"));
        assert!(err(&[("from", "2024-11-01"), ("to", "2026-12-01")]).contains("longer than"));
        assert!(err(&[
            ("from", "2026-09-01"),
            ("to", "2026-09-02"),
            ("scenario", "nope")
        ])
        .contains("No scenario 'nope'"));
        // Worded in the page's language.
        let ja = request_of(&form(&[("from", "1 Sept")]), today, &known).unwrap_err();
        assert_eq!(
            ja.text(super::super::Lang::Ja),
            "開始日「1 Sept」は日付ではありません。YYYY-MM-DD の形で入力してください。"
        );
    }

    /// A stand-in program (a shell script: the launcher runs whatever it is given) that
    /// prints progress, a table and a summary, then waits for the file `go` to exist.
    fn script(dir: &std::path::Path) -> Launcher {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("simulate.sh");
        let go = dir.join("go");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\necho 'progress 1 4' >&2\necho 'a table'\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho 'progress 4 4' >&2\necho 'simulated it' >&2\nexit 3\n",
                go.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Launcher {
            exe,
            config: None,
            out: dir.join("out.db"),
        }
    }

    #[tokio::test]
    async fn one_back_test_runs_at_a_time_and_its_output_and_end_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tests = Arc::new(Backtests::new(Some(script(dir.path()))));
        let clock: Arc<dyn crate::clock::Clock> =
            Arc::new(crate::clock::ManualClock::new(crate::clock::from_millis(0)));
        let req = Request {
            from: day("2026-01-01"),
            to: day("2026-01-31"),
            scenario: None,
        };
        let id = tests.start(&req, "mori", clock.clone()).unwrap();
        let wait_for = |ready: fn(&Run) -> bool| {
            let tests = tests.clone();
            async move {
                for _ in 0..400 {
                    if let Some(r) = tests.get(id).filter(ready) {
                        return r;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                panic!("back-test {id} never got there");
            }
        };
        let running = wait_for(|r| !r.output.is_empty() && r.total > 0).await;
        assert_eq!(running.state, "running");
        assert_eq!(running.percent(), 25);
        let second = tests.start(&req, "aki", clock.clone());
        assert!(
            matches!(&second, Err(UiError::Said(m)) if m.key == "backtests.busy"),
            "{second:?}"
        );
        std::fs::write(dir.path().join("go"), "").unwrap();
        let done = wait_for(|r| r.state == "failed").await;
        assert_eq!(done.output, "a table\n");
        assert!(
            done.messages
                .starts_with("simulated it\nrebuy simulate ended: exit status: 3"),
            "{}",
            done.messages
        );
        assert_eq!((done.done, done.total, done.finished), (4, 4, Some(0)));
        let next = tests.start(&req, "aki", clock).unwrap();
        assert_eq!(next, id + 1, "a new one starts once the last has ended");
    }

    #[test]
    fn progress_lines_are_read_and_anything_else_is_kept_as_a_message() {
        assert_eq!(parse_progress("progress 5 200"), Some((5, 200)));
        assert_eq!(parse_progress("progress 5"), None);
        assert_eq!(parse_progress("progress 5 200 x"), None);
        assert_eq!(parse_progress("simulated 2026-01-01 to …"), None);
        let req = Request {
            from: day("2026-01-01"),
            to: day("2026-01-31"),
            scenario: None,
        };
        let mut run = Run::new(1, "mori", &req, 0);
        take_stderr_line(&mut run, "progress 50 200");
        take_stderr_line(&mut run, "simulated 2026-01-01 to 2026-02-01");
        assert_eq!((run.done, run.total, run.percent()), (50, 200, 25));
        assert_eq!(run.messages, "simulated 2026-01-01 to 2026-02-01\n");
        let long = "x".repeat(OUTPUT_LIMIT / 2);
        for _ in 0..4 {
            push_bounded(&mut run.output, &long);
        }
        assert!(run.output.len() < OUTPUT_LIMIT + 4, "the output is bounded");
        assert!(run.output.ends_with("…\n"));
    }
}
