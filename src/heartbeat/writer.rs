//! The write queue between the ping handlers and the writer thread, and the writer
//! thread's work: journal lines, snapshots, and what a write's outcome does to the state,
//! the series and the answers.
//!
//! A handler puts its ping in the queue and awaits the answer; the one writer thread takes
//! everything waiting at once, writes one journal line per heartbeat (several pings of one
//! heartbeat fold into its newest state) and fsyncs once for the lot (group commit), then
//! answers each ping. So the cost of a ping does not grow with the number of heartbeats,
//! and a flood on one heartbeat costs the others one line per write.
//!
//! The queue is bounded per heartbeat ([`MAX_WAITING_PER_HEARTBEAT`]) and in all
//! ([`MAX_WAITING`]): a ping that finds no room is answered 503 at once, so that a flooded
//! heartbeat cannot fill the queue for the others, and a client that gave up leaves at most
//! its slot behind (the ping is still saved; nobody waits for the answer).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use tokio::sync::oneshot;

use super::store::{self, Journal};
use super::{PingKind, Shared, apply_ping, lock, metrics};

/// Journal lines (at least) after which the writer folds the journal into a snapshot: at
/// least this many, and at least 4 per heartbeat, so that a snapshot (whose cost grows
/// with the number of heartbeats) is written once per that many pings.
const COMPACT_LINES: usize = 1024;
/// Journal bytes after which the writer folds it into a snapshot.
const COMPACT_BYTES: u64 = 4 << 20;

/// Most pings of one heartbeat waiting to be written.
pub const MAX_WAITING_PER_HEARTBEAT: usize = 32;
/// Most pings waiting to be written, all heartbeats together.
pub const MAX_WAITING: usize = 4096;

/// What became of a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Saved {
    /// In the journal, fsynced.
    Yes,
    /// A reload removed the heartbeat meanwhile.
    Gone,
    /// The write failed; nothing changed.
    Failed,
}

/// A ping waiting to be written.
pub(super) struct Ping {
    pub kind: PingKind,
    /// When it arrived (Unix milliseconds).
    pub at_ms: i64,
    pub message: Option<String>,
    pub reply: oneshot::Sender<Saved>,
}

/// Everything the writer takes in one go.
#[derive(Default)]
pub(super) struct Batch {
    /// By heartbeat, in arrival order.
    pub pings: HashMap<String, Vec<Ping>>,
    /// A reload changed the set of heartbeats: write a snapshot.
    pub compact: bool,
    /// Told once that snapshot is written (or failed).
    pub compacted: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Waiting {
    batch: Batch,
    total: usize,
    stopped: bool,
    /// Tests hold the writer to fill the queue.
    paused: bool,
    /// Most pings of one heartbeat seen waiting at once.
    peak: usize,
}

/// The queue; see the module docs.
#[derive(Default)]
pub(super) struct Queue {
    // std Mutex: nothing async happens while held.
    waiting: Mutex<Waiting>,
    wake: Condvar,
}

/// No room in the queue (or the writer is gone).
#[derive(Debug)]
pub(super) struct Full;

impl Queue {
    /// Queues the ping `make` builds (under the lock, so that arrival times follow the
    /// queue's order).
    pub fn push(&self, name: &str, make: impl FnOnce() -> Ping) -> Result<(), Full> {
        let mut w = lock(&self.waiting);
        if w.stopped || w.total >= MAX_WAITING {
            return Err(Full);
        }
        let pings = match w.batch.pings.get_mut(name) {
            Some(pings) => pings,
            None => w.batch.pings.entry(name.to_owned()).or_default(),
        };
        if pings.len() >= MAX_WAITING_PER_HEARTBEAT {
            return Err(Full);
        }
        pings.push(make());
        let len = pings.len();
        w.total += 1;
        w.peak = w.peak.max(len);
        drop(w);
        self.wake.notify_one();
        Ok(())
    }

    /// Asks the writer for a snapshot; `done` is told once it is written (or failed).
    pub fn compact(&self, done: Option<oneshot::Sender<()>>) {
        let mut w = lock(&self.waiting);
        w.batch.compact = true;
        w.batch.compacted.extend(done);
        drop(w);
        self.wake.notify_one();
    }

    /// Ends the writer; waiting pings are dropped (their handlers answer 503).
    pub fn stop(&self) {
        let mut w = lock(&self.waiting);
        w.stopped = true;
        w.batch = Batch::default();
        w.total = 0;
        drop(w);
        self.wake.notify_one();
    }

    /// Waits for work; `None` once stopped.
    pub fn next(&self) -> Option<Batch> {
        let mut w = lock(&self.waiting);
        loop {
            if w.stopped {
                return None;
            }
            if !w.paused && (w.total > 0 || w.batch.compact) {
                w.total = 0;
                return Some(std::mem::take(&mut w.batch));
            }
            w = self.wake.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Holds (`true`) or lets go (`false`) the writer.
    pub fn pause(&self, paused: bool) {
        lock(&self.waiting).paused = paused;
        self.wake.notify_one();
    }

    /// Pings waiting, all heartbeats together.
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).total
    }

    /// Most pings of one heartbeat seen waiting at once, since the start.
    pub fn peak(&self) -> usize {
        lock(&self.waiting).peak
    }
}

/// The writer thread's work: group commit, snapshots, and what a write's outcome does.
impl Shared {
    /// The writer thread: saves what the queue holds until the queue is stopped.
    pub(super) fn run_writer(&self) {
        while let Some(batch) = self.queue.next() {
            if !batch.pings.is_empty() {
                self.save_batch(batch.pings);
            }
            let due = {
                let heartbeats = lock(&self.inner).states.len();
                let storage = lock(&self.storage);
                storage.journal.as_ref().is_some_and(|j| {
                    let (lines, bytes) = j.size();
                    lines >= COMPACT_LINES.max(heartbeats.saturating_mul(4))
                        || bytes >= COMPACT_BYTES
                })
            };
            if batch.compact || due {
                self.compact();
            }
            for done in batch.compacted {
                let _ = done.send(());
            }
        }
    }

    /// Writes one batch: one journal line per heartbeat, one fsync; then applies it and
    /// answers every ping.
    fn save_batch(&self, batch: std::collections::HashMap<String, Vec<Ping>>) {
        let mut pending = Vec::with_capacity(batch.len());
        {
            let inner = lock(&self.inner);
            for (name, mut pings) in batch {
                let Some(saved) = inner.states.get(&name) else {
                    for ping in pings {
                        let _ = ping.reply.send(Saved::Gone);
                    }
                    continue;
                };
                let mut state = saved.clone();
                for ping in &mut pings {
                    apply_ping(&mut state, ping.kind, ping.at_ms, ping.message.take());
                }
                pending.push((name, state, pings));
            }
        }
        if pending.is_empty() {
            return;
        }
        let written = self.write(|journal| {
            journal.append(
                pending
                    .iter()
                    .map(|(name, state, _)| (name.as_str(), state)),
            )
        });
        let mut inner = lock(&self.inner);
        for (name, state, pings) in pending {
            let answer = match (&written, inner.states.get_mut(&name)) {
                (_, None) => Saved::Gone,
                (Ok(()), Some(saved)) => {
                    *saved = state;
                    if pings.iter().any(|p| p.kind == PingKind::Success) {
                        inner.unsaved.remove(&name);
                    }
                    for ping in &pings {
                        self.metrics.ping(&name, ping.kind.as_str());
                    }
                    tracing::debug!(
                        heartbeat = name,
                        pings = pings.len(),
                        "heartbeat pings saved"
                    );
                    Saved::Yes
                }
                (Err(_), Some(_)) => {
                    if let Some(at) = pings
                        .iter()
                        .filter(|p| p.kind == PingKind::Success)
                        .map(|p| p.at_ms)
                        .max()
                    {
                        let newest = inner.unsaved.entry(name.clone()).or_insert(at);
                        *newest = (*newest).max(at);
                    }
                    for _ in &pings {
                        self.metrics.unsaved(&name, metrics::Unsaved::WriteFailed);
                    }
                    Saved::Failed
                }
            };
            for ping in pings {
                let _ = ping.reply.send(answer);
            }
        }
    }

    /// Folds everything into a new snapshot and empties the journal.
    pub(super) fn compact(&self) {
        let snapshot = lock(&self.inner).states.clone();
        let path = self.state_file.clone();
        let _ = self.write(move |journal| {
            store::write(&path, &snapshot)?;
            journal.clear()
        });
    }

    /// Runs `step` on the open journal (opened first when needed); counts, logs and sets
    /// the write gauge.
    fn write(&self, step: impl FnOnce(&mut Journal) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut storage = lock(&self.storage);
        let result = if storage.keep_as_is {
            Err(std::io::Error::other(
                "a state file that could not be used is kept as it is",
            ))
        } else {
            let journal = match storage.journal.take() {
                Some(journal) => Ok(journal),
                None => Journal::open(&self.state_file),
            };
            journal.and_then(|mut journal| {
                let result = step(&mut journal);
                storage.journal = Some(journal);
                result
            })
        };
        drop(storage);
        self.metrics.write_ok(result.is_ok());
        if let Err(e) = &result {
            self.metrics.write_error();
            tracing::error!(
                path = %self.state_file.display(),
                error = %e,
                "cannot write the heartbeat state: pings are answered 503 and not saved"
            );
        }
        result
    }
}
