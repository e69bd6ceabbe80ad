//! Group commit for the API's orders and events: concurrent requests hand their records to one
//! writer task, which stores what has gathered in one transaction per kind (one write lock,
//! one commit) and answers each request with its own outcome once that commit is done. One
//! record per request then costs a share of a commit, not a whole one, and requests never wait
//! on SQLite's busy handler for each other.

use crate::store::{EventsStored, NewEvent, NewOrder, Store, UpsertOutcome};
use tokio::sync::{mpsc, oneshot};

/// Records gathered into one transaction at most; more wait for the next.
const MAX_GATHERED: usize = 20_000;

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Job {
    Orders(Vec<NewOrder>, Reply<UpsertOutcome>),
    /// Answered with how many of the events were new, or the conflicts that kept them all
    /// out; received at the time given (ms).
    Events(Vec<NewEvent>, i64, Reply<EventsStored>),
}

impl Job {
    fn len(&self) -> usize {
        match self {
            Job::Orders(o, _) => o.len(),
            Job::Events(e, _, _) => e.len(),
        }
    }
}

/// A handle on the writer task; cheap to clone.
#[derive(Clone)]
pub struct IngestWriter {
    jobs: mpsc::Sender<Job>,
}

impl IngestWriter {
    /// Starts the writer on `store`. It stops when every handle is dropped.
    pub fn start(store: Store) -> Self {
        let (jobs, rx) = mpsc::channel(4096);
        tokio::spawn(run(store, rx));
        Self { jobs }
    }

    /// Stores `orders` (with `Store::upsert_orders`' rules); returns once they are committed.
    pub async fn write_orders(&self, orders: Vec<NewOrder>) -> anyhow::Result<UpsertOutcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Orders(orders, reply), answer).await
    }

    /// Stores `events` (one already stored by id is left alone): how many were new, or, when an
    /// id names another stored event, those conflicts and nothing stored.
    pub async fn write_events(
        &self,
        events: Vec<NewEvent>,
        now: i64,
    ) -> anyhow::Result<EventsStored> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Events(events, now, reply), answer).await
    }

    async fn send<T>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<T, String>>,
    ) -> anyhow::Result<T> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| anyhow::anyhow!("the ingest writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the ingest writer stopped before answering"))?
            .map_err(|e| anyhow::anyhow!("cannot store the records: {e}"))
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut gathered = first.len();
        let mut jobs = vec![first];
        while gathered < MAX_GATHERED {
            match rx.try_recv() {
                Ok(job) => {
                    gathered += job.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (mut orders, mut events, mut received) = (Vec::new(), Vec::new(), 0);
        for job in jobs {
            match job {
                Job::Orders(o, r) => orders.push((o, r)),
                Job::Events(e, at, r) => {
                    received = received.max(at);
                    events.push((e, r));
                }
            }
        }
        if !orders.is_empty() {
            let groups: Vec<&[NewOrder]> = orders.iter().map(|(o, _)| o.as_slice()).collect();
            let outcome = store.upsert_order_groups(&groups).await;
            answer(orders.into_iter().map(|(_, r)| r), outcome);
        }
        if !events.is_empty() {
            let groups: Vec<&[NewEvent]> = events.iter().map(|(e, _)| e.as_slice()).collect();
            let outcome = store.insert_event_groups(&groups, received).await;
            answer(events.into_iter().map(|(_, r)| r), outcome);
        }
    }
}

/// Sends each request its own outcome, or every request the error.
fn answer<T>(replies: impl Iterator<Item = Reply<T>>, outcome: crate::store::Result<Vec<T>>) {
    match outcome {
        Ok(outcomes) => {
            for (reply, o) in replies.zip(outcomes) {
                let _ = reply.send(Ok(o));
            }
        }
        Err(e) => {
            let e = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
