//! Group commit for the API's orders: concurrent requests hand their orders to one writer
//! task, which stores what has gathered in one transaction (one write lock, one commit) and
//! answers each request with its own outcome once that commit is done. One order per request
//! then costs a share of a commit, not a whole one, and requests never wait on SQLite's busy
//! handler for each other.

use crate::store::{NewOrder, Store, UpsertOutcome};
use tokio::sync::{mpsc, oneshot};

/// Orders gathered into one transaction at most; more wait for the next.
const MAX_GATHERED: usize = 20_000;

struct Job {
    orders: Vec<NewOrder>,
    reply: oneshot::Sender<Result<UpsertOutcome, String>>,
}

/// A handle on the writer task; cheap to clone.
#[derive(Clone)]
pub struct OrderWriter {
    jobs: mpsc::Sender<Job>,
}

impl OrderWriter {
    /// Starts the writer on `store`. It stops when every handle is dropped.
    pub fn start(store: Store) -> Self {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(run(store, rx));
        Self { jobs }
    }

    /// Stores `orders` (with `Store::upsert_orders`' rules) and returns once they are committed.
    pub async fn write(&self, orders: Vec<NewOrder>) -> anyhow::Result<UpsertOutcome> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { orders, reply })
            .await
            .map_err(|_| anyhow::anyhow!("the order writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the order writer stopped before answering"))?
            .map_err(|e| anyhow::anyhow!("cannot store the orders: {e}"))
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut gathered = first.orders.len();
        let mut jobs = vec![first];
        while gathered < MAX_GATHERED {
            match rx.try_recv() {
                Ok(job) => {
                    gathered += job.orders.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let groups: Vec<&[NewOrder]> = jobs.iter().map(|j| j.orders.as_slice()).collect();
        match store.upsert_order_groups(&groups).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
