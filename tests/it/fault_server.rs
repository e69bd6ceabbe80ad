//! A fault-injecting SMTP server for tests: it speaks the protocol on loopback (greeting,
//! EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and answers from a script.
//! For each recipient, every transaction takes the next fault of its list (none: accept):
//! a reply code at RCPT, DATA or the end of the data, a dropped connection there, or a
//! delay before answering. Messages it accepted are recorded. It offers PIPELINING (RFC 2920)
//! when started with `pipelining()`, and then reads commands as they come, in groups.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Rcpt,
    Data,
    EndOfData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this code instead of accepting.
    Reply(Stage, u16),
    /// Close the connection instead of answering.
    Drop(Stage),
    /// Wait this long, then answer normally.
    Delay(Stage, Duration),
    /// Answer with one reply line that never ends (a hostile server), until the client hangs up.
    Endless(Stage),
}

#[derive(Default)]
struct State {
    script: HashMap<String, VecDeque<Fault>>,
    accepted: Vec<(String, String)>,
    transactions: HashMap<String, u32>,
    /// MAIL commands that arrived with more commands behind them in the same read.
    grouped: u32,
    /// SMTPUTF8 left out of the EHLO reply.
    no_smtputf8: bool,
}

pub struct FaultServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, false)
    }

    /// Like `start`, offering PIPELINING in its EHLO reply.
    pub async fn pipelining() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, true)
    }

    /// Starts listening on `port` (for a server that comes up late).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Self::serve(listener, false)
    }

    fn serve(listener: TcpListener, pipelining: bool) -> Self {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, shared.clone(), pipelining));
            }
        });
        Self { port, state, task }
    }

    /// From now on the EHLO reply does not offer SMTPUTF8.
    pub fn without_smtputf8(&self) {
        self.state.lock().unwrap().no_smtputf8 = true;
    }

    /// Faults for the transactions to `recipient`, in order.
    pub fn script(&self, recipient: &str, faults: &[Fault]) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(recipient.to_string(), faults.iter().copied().collect());
    }

    /// Recipients of the messages accepted, in order.
    pub fn accepted(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.accepted.iter().map(|(to, _)| to.clone()).collect()
    }

    /// How many transactions the client sent as one group (MAIL with RCPT and DATA behind it).
    pub fn grouped(&self) -> u32 {
        self.state.lock().unwrap().grouped
    }

    /// How many transactions reached RCPT for `recipient`.
    pub fn transactions(&self, recipient: &str) -> u32 {
        let s = self.state.lock().unwrap();
        s.transactions.get(recipient).copied().unwrap_or(0)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the script says for this stage of the current transaction.
enum Act {
    Go,
    Reply(u16),
    Drop,
    Endless,
}

async fn act(fault: Option<Fault>, stage: Stage) -> Act {
    match fault {
        Some(Fault::Reply(s, code)) if s == stage => Act::Reply(code),
        Some(Fault::Drop(s)) if s == stage => Act::Drop,
        Some(Fault::Endless(s)) if s == stage => Act::Endless,
        Some(Fault::Delay(s, d)) if s == stage => {
            tokio::time::sleep(d).await;
            Act::Go
        }
        _ => Act::Go,
    }
}

async fn session(socket: TcpStream, state: Arc<Mutex<State>>, pipelining: bool) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    macro_rules! say {
        ($($t:tt)*) => {
            if write.write_all(format!($($t)*).as_bytes()).await.is_err() { return; }
        };
    }
    say!("220 fault.test ESMTP\r\n");
    let utf8 = !state.lock().unwrap().no_smtputf8;
    let ehlo = format!(
        "250-fault.test\r\n{}250-8BITMIME\r\n250 {}\r\n",
        if pipelining { "250-PIPELINING\r\n" } else { "" },
        if utf8 { "SMTPUTF8" } else { "HELP" }
    );
    // The recipient accepted in this transaction, if any.
    let mut rcpt: Option<String> = None;
    let mut fault: Option<Fault> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            say!("{ehlo}");
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            say!("250 ok\r\n");
        } else if upper.starts_with("MAIL") && !lines.buffer().is_empty() {
            state.lock().unwrap().grouped += 1;
            rcpt = None;
            fault = None;
            say!("250 ok\r\n");
        } else if upper.starts_with("MAIL") || upper.starts_with("RSET") {
            rcpt = None;
            fault = None;
            say!("250 ok\r\n");
        } else if upper.starts_with("RCPT") {
            let to = line
                .split(['<', '>'])
                .nth(1)
                .unwrap_or_default()
                .to_string();
            {
                let mut s = state.lock().unwrap();
                *s.transactions.entry(to.clone()).or_default() += 1;
                fault = s.script.get_mut(&to).and_then(|q| q.pop_front());
            }
            match act(fault, Stage::Rcpt).await {
                Act::Go => {
                    rcpt = Some(to);
                    say!("250 ok\r\n")
                }
                Act::Reply(code) => say!("{code} scripted reply at RCPT\r\n"),
                Act::Drop => return,
                Act::Endless => {
                    let chunk = format!("250-{}", "x".repeat(64 * 1024));
                    say!("{chunk}");
                    let chunk = "x".repeat(64 * 1024);
                    // Up to 1 GiB, or until the client gives up.
                    for _ in 0..16 * 1024 {
                        say!("{chunk}");
                    }
                    return;
                }
            }
        } else if upper == "DATA" && rcpt.is_none() {
            // As a real server does: no accepted recipient, no data.
            say!("554 no valid recipients\r\n");
        } else if upper == "DATA" {
            match act(fault, Stage::Data).await {
                Act::Go => say!("354 go ahead\r\n"),
                Act::Reply(code) => {
                    say!("{code} scripted reply at DATA\r\n");
                    continue;
                }
                Act::Drop | Act::Endless => return,
            }
            let mut body = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                body.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            // The message arrived in full: unless the script refuses it, the server has it,
            // even if its answer is delayed or lost (a real server may well have queued it).
            let to = rcpt.clone().unwrap_or_default();
            if !matches!(fault, Some(Fault::Reply(Stage::EndOfData, _))) {
                state.lock().unwrap().accepted.push((to, body));
            }
            match act(fault, Stage::EndOfData).await {
                Act::Go => say!("250 queued\r\n"),
                Act::Reply(code) => say!("{code} scripted reply at end of data\r\n"),
                Act::Drop | Act::Endless => return,
            }
        } else if upper.starts_with("QUIT") {
            say!("221 bye\r\n");
            return;
        } else {
            say!("500 unknown command\r\n");
        }
    }
}
