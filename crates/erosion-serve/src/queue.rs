//! The bounded queue between the HTTP handlers and the engine: handlers submit jobs (a full
//! queue answers 429 at once, a closed one 503), the engine takes batches of jobs that share
//! one steering, oldest first, and lets more of that steering join a batch as it runs.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::error::{ApiError, ApiResult};
use crate::plan::Plan;
use crate::text::TokenLogprob;

/// What the engine tells a request's handler, per choice.
#[derive(Debug, Clone)]
pub enum Event {
    /// New text (possibly empty) and the log-probs of the tokens that made it.
    Delta {
        choice: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The choice is done: `stop` (a stop token or string) or `length` (max_tokens).
    Finish {
        choice: usize,
        reason: &'static str,
        completion_tokens: usize,
    },
    /// The request failed; no more events follow.
    Error(ApiError),
}

/// One request waiting for, or in, the engine.
pub struct Job {
    pub plan: Arc<Plan>,
    pub events: UnboundedSender<Event>,
    pub deadline: Instant,
}

impl Job {
    /// Sends an event; false when the handler has gone (client disconnected).
    pub fn send(&self, e: Event) -> bool {
        self.events.send(e).is_ok()
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    rows: usize,
    closed: bool,
    counts: Counts,
}

/// What the engine has taken so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Batches started ([`Queue::next_batch`]).
    pub runs: usize,
    /// Jobs that joined a running batch ([`Queue::join`]).
    pub joined: usize,
}

/// Jobs waiting, bounded by their rows.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity_rows: usize,
}

impl Queue {
    pub fn new(capacity_rows: usize) -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity_rows,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a consistent queue: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job, or refuses at once: 429 when full, 503 when closed.
    pub fn submit(&self, job: Job) -> ApiResult<()> {
        let mut s = self.lock();
        if s.closed {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        let rows = job.plan.rows.len();
        if s.rows + rows > self.capacity_rows {
            return Err(ApiError::queue_full(self.capacity_rows));
        }
        s.rows += rows;
        s.jobs.push_back(job);
        self.ready.notify_one();
        Ok(())
    }

    /// Refuses new jobs; the engine finishes those queued, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Rows waiting.
    pub fn waiting_rows(&self) -> usize {
        self.lock().rows
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// The next batch: waits for a job (None once closed and empty), then `gather` for more,
    /// and takes the oldest job with every later one of the same steering, up to `max_rows`.
    pub fn next_batch(&self, max_rows: usize, gather: Duration) -> Option<Vec<Job>> {
        let mut s = self.lock();
        while s.jobs.is_empty() {
            if s.closed {
                return None;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if !gather.is_zero() && s.rows < max_rows && !s.closed {
            s = self
                .ready
                .wait_timeout(s, gather)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let key = s.jobs[0].plan.steering.key.clone();
        let (mut batch, mut rest, mut rows) = (Vec::new(), VecDeque::new(), 0);
        while let Some(job) = s.jobs.pop_front() {
            let n = job.plan.rows.len();
            if job.plan.steering.key == key && (batch.is_empty() || rows + n <= max_rows) {
                rows += n;
                batch.push(job);
            } else {
                rest.push_back(job);
            }
        }
        s.jobs = rest;
        s.rows -= rows;
        s.counts.runs += 1;
        Some(batch)
    }

    /// Jobs that may join a running batch of steering `key` without waiting: the oldest ones,
    /// while they have that steering and fit in `room` rows. A job of another steering at the
    /// head stops it, so that steering goes next once the running batch drains.
    pub fn join(&self, key: &str, room: usize) -> Vec<Job> {
        let mut s = self.lock();
        let mut joined = Vec::new();
        let mut rows = 0;
        while let Some(job) = s.jobs.front() {
            let n = job.plan.rows.len();
            if job.plan.steering.key != key || rows + n > room {
                break;
            }
            rows += n;
            joined.extend(s.jobs.pop_front());
        }
        s.rows -= rows;
        s.counts.joined += joined.len();
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Row;
    use crate::steer::RequestSteering;
    use erosion_model::generate::SamplingOptions;

    fn job(rows: usize, key: &str) -> (Job, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let row = Row {
            prompt: Arc::new(vec![1]),
            opts: SamplingOptions::default(),
        };
        let plan = Plan {
            chat: true,
            rows: vec![row; rows],
            prompt_tokens: 1,
            stop: Vec::new(),
            logprobs: None,
            stream: false,
            include_usage: false,
            steering: RequestSteering {
                key: key.into(),
                ..Default::default()
            },
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = Job {
            plan: Arc::new(plan),
            events: tx,
            deadline: Instant::now(),
        };
        (job, rx)
    }

    #[test]
    fn a_batch_is_one_steering_oldest_first_within_its_rows() {
        let q = Queue::new(10);
        let mut keep = Vec::new();
        for (rows, key) in [(2, "a"), (1, "b"), (2, "a"), (3, "a"), (1, "b")] {
            let (j, rx) = job(rows, key);
            q.submit(j).unwrap();
            keep.push(rx);
        }
        let (j, _rx) = job(2, "c");
        assert_eq!(
            q.submit(j).unwrap_err().status.as_u16(),
            429,
            "9 + 2 rows > 10"
        );
        let take = |max| {
            q.next_batch(max, Duration::ZERO)
                .unwrap()
                .iter()
                .map(|j| (j.plan.rows.len(), j.plan.steering.key.clone()))
                .collect::<Vec<_>>()
        };
        let a = |n: usize| (n, "a".to_string());
        let b = |n: usize| (n, "b".to_string());
        assert_eq!(
            take(4),
            [a(2), a(2)],
            "the 3-row job does not fit beside them"
        );
        assert_eq!(q.waiting_rows(), 5);
        assert_eq!(take(4), [b(1), b(1)], "the oldest job now is b's");
        assert_eq!(
            take(1),
            [a(3)],
            "a job larger than max_rows still goes, alone"
        );
        for (rows, key) in [(2, "a"), (1, "a"), (1, "b"), (1, "a")] {
            let (j, rx) = job(rows, key);
            q.submit(j).unwrap();
            keep.push(rx);
        }
        let joined = |key, room| {
            q.join(key, room)
                .iter()
                .map(|j| j.plan.rows.len())
                .collect::<Vec<_>>()
        };
        assert!(joined("b", 4).is_empty(), "a's job is older");
        assert_eq!(
            joined("a", 2),
            [2],
            "the next job does not fit in what is left"
        );
        assert_eq!(joined("a", 4), [1], "b's job at the head stops the joining");
        assert_eq!(q.waiting_rows(), 2);
        assert_eq!(take(4), [b(1)], "b goes next, before the later a");
        q.close();
        assert_eq!(
            joined("a", 4),
            [1],
            "a closed queue still hands out what it holds"
        );
        let (j, _rx) = job(1, "a");
        assert_eq!(q.submit(j).unwrap_err().status.as_u16(), 503);
        assert!(
            q.next_batch(4, Duration::ZERO).is_none(),
            "closed and empty"
        );
    }
}
