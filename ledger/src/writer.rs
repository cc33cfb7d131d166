//! The single writer: one thread owns the [`Engine`]; callers send submissions over a
//! bounded channel and wait for their answers, which arrive only after the durable commit.
//! Commits are pipelined with decisions (see `pipeline`).
//!
//! The writer is an OS thread rather than a task on the async runtime because a redb commit
//! blocks on fsync; a blocking task would pin a runtime thread just the same. The channel is
//! tokio's, so async callers (the HTTP service) await and sync callers (the CLI) block.

use std::thread::JoinHandle;

use keyledger_core::Command;
use tokio::sync::{mpsc, oneshot};

use crate::answer::Answer;
use crate::engine::{Batch, Engine, Prepared, Submission};
use crate::error::{Error, Result};
use crate::health::Health;

type Reply = oneshot::Sender<Result<Vec<Answer>>>;

/// Where the answers of a submission arrive, once its batch is durable.
pub type AnswerReceiver = oneshot::Receiver<Result<Vec<Answer>>>;

struct Job {
    submission: Submission,
    reply: Reply,
}

/// A cheap, cloneable way to submit commands to the writer.
#[derive(Clone, Debug)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    batch_commands_max: usize,
    health: Health,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("commands", &self.submission.commands.len())
            .finish()
    }
}

/// The running writer thread; [`Writer::stop`] drains the queue and returns the engine.
#[derive(Debug)]
pub struct Writer {
    handle: WriterHandle,
    thread: JoinHandle<Result<Engine>>,
}

/// At most this many restarts of a writer that died ([`RESTART_WINDOW`]): a writer that
/// keeps dying stops for good, and says why.
pub const RESTARTS_MAX: usize = 3;
pub const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Writer {
    pub fn spawn(mut engine: Engine) -> Writer {
        let limits = *engine.limits();
        let health = engine.health().clone();
        engine.set_health(health.clone());
        let (tx, rx) = mpsc::channel(limits.queue_depth);
        let supervised = health.clone();
        let thread = std::thread::Builder::new()
            .name("keyledger-writer".to_owned())
            .spawn(move || supervise(engine, rx, &supervised))
            .expect("the writer thread starts");
        Writer {
            handle: WriterHandle {
                tx,
                batch_commands_max: limits.batch_commands_max,
                health,
            },
            thread,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Stops accepting work, lets the writer finish every queued submission, and returns
    /// the engine. Handles cloned earlier must be dropped for the writer to see the end.
    /// An error says the writer died and could not be restarted (see [`Health`]).
    /// The filter of activated pairs is saved on the way when that saves the next start
    /// time ([`Engine::save_filter_at_stop`]; a failure to save it is said on stderr: the
    /// next start builds it, as after a crash).
    pub fn stop(self) -> Result<Engine> {
        drop(self.handle);
        let mut engine = match self.thread.join() {
            Ok(result) => result?,
            Err(_) => return Err(Error::WriterStopped("the writer thread died".to_owned())),
        };
        if let Err(err) = engine.save_filter_at_stop() {
            tracing::warn!(error = %err, "keyledger: the filter of activated pairs was not saved ({err})");
        }
        Ok(engine)
    }
}

/// Runs the writer; if it panics (a bug: no input may reach an assertion, but a bug must not
/// take the service down with it), reopens the store, folds a fresh engine from what is
/// durable and goes on with the same queue. Submissions of the dead writer's batches get
/// `writer_stopped` (their reply was dropped): one may have been committed, and a resend
/// with its `command_id` gets its first answer.
fn supervise(mut engine: Engine, mut rx: mpsc::Receiver<Job>, health: &Health) -> Result<Engine> {
    let (store, limits, listener) = (engine.store().clone(), *engine.limits(), engine.listener());
    let mut restarts: Vec<std::time::Instant> = Vec::new();
    loop {
        let attempt = std::panic::AssertUnwindSafe(|| run(engine, &mut rx));
        let why = match std::panic::catch_unwind(attempt) {
            Ok(engine) => return Ok(engine),
            Err(panic) => panic_message(&*panic),
        };
        restarts.retain(|at| at.elapsed() < RESTART_WINDOW);
        let reopened = if restarts.len() >= RESTARTS_MAX {
            Err(Error::WriterStopped(format!(
                "it died {} times within {} s",
                RESTARTS_MAX + 1,
                RESTART_WINDOW.as_secs()
            )))
        } else {
            // Dropping the dead writer's database may panic too (redb's locks are poisoned by
            // the first panic): that is part of closing it, not a reason to stay down.
            let reopen = std::panic::AssertUnwindSafe(|| {
                store.reopen()?;
                Engine::open(store.clone(), limits)
            });
            std::panic::catch_unwind(reopen)
                .unwrap_or_else(|panic| Err(Error::WriterStopped(panic_message(&*panic))))
        };
        match reopened {
            Ok(mut fresh) => {
                tracing::warn!(
                    event = "writer_restarted",
                    why = %why,
                    "keyledger: the writer died ({why}); restarted from the durable log"
                );
                restarts.push(std::time::Instant::now());
                if let Some(listener) = &listener {
                    fresh.set_listener(listener.clone());
                }
                fresh.set_health(health.clone());
                health.restarted(why);
                engine = fresh;
            }
            Err(err) => {
                let why = format!("the writer died ({why}) and was not restarted: {err}");
                tracing::error!(event = "writer_stopped", why = %why, "keyledger: {why}");
                health.set_stopped(why.clone());
                // Close the queue: every waiting and later submission gets `writer_stopped`.
                rx.close();
                while rx.blocking_recv().is_some() {}
                return Err(Error::WriterStopped(why));
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned());
    format!(
        "panic: {}",
        text.unwrap_or_else(|| "(no message)".to_owned())
    )
}

impl WriterHandle {
    fn job(
        &self,
        commands: Vec<Command>,
        atomic: bool,
    ) -> Result<(Job, oneshot::Receiver<Result<Vec<Answer>>>)> {
        if commands.len() > self.batch_commands_max {
            return Err(Error::BatchTooLarge {
                count: commands.len(),
                limit: self.batch_commands_max,
            });
        }
        let (reply, rx) = oneshot::channel();
        let submission = Submission {
            commands,
            atomic,
            server_time: false,
        };
        Ok((Job { submission, reply }, rx))
    }

    /// Submits and waits (async); a full queue makes the caller wait (backpressure).
    pub async fn submit(&self, commands: Vec<Command>, atomic: bool) -> Result<Vec<Answer>> {
        let (job, rx) = self.job(commands, atomic)?;
        self.tx.send(job).await.map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// The writer's health (see [`Health`]).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The error of a submission the writer will never answer: it stopped, or died while
    /// the submission was in its batch.
    fn stopped(&self) -> Error {
        let why = self.health.stopped().unwrap_or_else(|| {
            "it stopped or died before answering; a resend with the same command_id gets the \
             first answer if the command was committed"
                .to_owned()
        });
        Error::WriterStopped(why)
    }

    /// Commands in the queue right now (for metrics).
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Submits activations stamped with the server's clock (see [`Submission::server_time`]),
    /// without waiting for queue space: a full queue is an error (HTTP 503).
    pub async fn try_submit_stamped(&self, commands: Vec<Command>) -> Result<Vec<Answer>> {
        let (mut job, rx) = self.job(commands, false)?;
        job.submission.server_time = true;
        self.try_send(job, rx).await
    }

    /// Submits without waiting for queue space: a full queue is an error (HTTP 503).
    pub async fn try_submit(&self, commands: Vec<Command>, atomic: bool) -> Result<Vec<Answer>> {
        let (job, rx) = self.job(commands, atomic)?;
        self.try_send(job, rx).await
    }

    async fn try_send(&self, job: Job, rx: AnswerReceiver) -> Result<Vec<Answer>> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Unavailable("the queue is full"),
            mpsc::error::TrySendError::Closed(_) => self.stopped(),
        })?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Submits and waits, from a thread that is not an async task.
    pub fn submit_blocking(&self, commands: Vec<Command>, atomic: bool) -> Result<Vec<Answer>> {
        let (job, rx) = self.job(commands, atomic)?;
        self.tx.blocking_send(job).map_err(|_| self.stopped())?;
        rx.blocking_recv().map_err(|_| self.stopped())?
    }

    /// Submits without waiting for the answer (a pipelining caller collects them later).
    pub fn send_blocking(&self, commands: Vec<Command>, atomic: bool) -> Result<AnswerReceiver> {
        let (job, rx) = self.job(commands, atomic)?;
        self.tx.blocking_send(job).map_err(|_| self.stopped())?;
        Ok(rx)
    }
}

/// Submissions decided into a batch, with where each one's answers go.
struct Open {
    batch: Batch,
    replies: Vec<(Reply, Result<Vec<Answer>>)>,
}

/// A sealed batch whose commit runs on a blocking thread.
struct Committing {
    task: tokio::task::JoinHandle<(Prepared, Result<()>, u64)>,
    replies: Vec<(Reply, Result<Vec<Answer>>)>,
}

/// Group commit, pipelined for bulk batches (see `start_commit` for small ones). While one
/// batch commits (fsync, on a blocking thread), the writer decides the next one from
/// whatever arrives meanwhile; that batch is sealed and committed as soon as the previous
/// commit is durable. So at most two batches are ahead of the disk, one committing and one
/// being decided; replies go out in commit order, each only after its own batch is durable,
/// and a failed commit fails the batch decided after it as well (it was decided on a state
/// that the failure took back).
fn run(engine: Engine, rx: &mut mpsc::Receiver<Job>) -> Engine {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("the writer's runtime starts")
        .block_on(pipeline(engine, rx))
}

async fn pipeline(mut engine: Engine, rx: &mut mpsc::Receiver<Job>) -> Engine {
    let batch_max = engine.limits().batch_commands_max;
    let (mut open, mut committing, mut held) = (None::<Open>, None::<Committing>, None::<Job>);
    let mut closed = false;
    let mut gather = Gather::default();
    loop {
        if open.is_none() {
            if let Some(job) = held.take() {
                decide(&mut engine, &mut open, job);
            }
        }
        if committing.is_none() {
            // Nothing commits: gather what is queued into the open batch, seal, commit.
            while held.is_none() && !closed {
                match rx.try_recv() {
                    Ok(job) if fits(&open, &job, batch_max) => decide(&mut engine, &mut open, job),
                    Ok(job) => held = Some(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            let open_commands = open.as_ref().map(|o| o.batch.commands());
            if let Some(until) = gather.waits(open_commands, held.is_some() || closed) {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(job)) if fits(&open, &job, batch_max) => {
                        decide(&mut engine, &mut open, job)
                    }
                    Ok(Some(job)) => held = Some(job),
                    Ok(None) => closed = true,
                    Err(_) => gather.expired(),
                }
                continue;
            }
            if let Some(batch) = open.take() {
                gather.sealed(batch.batch.commands());
                committing = start_commit(&mut engine, batch);
                continue;
            }
        }
        if closed && open.is_none() && committing.is_none() && held.is_none() {
            return engine;
        }
        tokio::select! {
            biased;
            done = commit_finished(&mut committing) => {
                let replies = committing.take().map(|c| c.replies).unwrap_or_default();
                settle(&mut engine, done, replies, &mut open);
            }
            // While a batch commits, the next one is decided as its submissions arrive.
            job = rx.recv(), if !closed && held.is_none() => match job {
                Some(job) if fits(&open, &job, batch_max) => decide(&mut engine, &mut open, job),
                // Too big to join the open batch: it starts the next one.
                Some(job) => held = Some(job),
                None => closed = true,
            },
        }
    }
}

/// How long a batch that follows a busy one waits for its submissions (see [`Gather`]).
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(200);

/// Group commit's gathering. Under load the clients whose answers a batch carried send their
/// next requests over the moments after it; sealing at the first arrival commits a batch of
/// one or two and the rest wait for the next (at concurrency 256 a quarter of all batches
/// held one command, and each paid a whole fdatasync and redb commit). So a batch that
/// follows one of several commands waits, at most [`GATHER_WAIT`] from when it begins to
/// wait (right after its first submission), until it holds half as many; a batch that
/// follows a single command (one client, an idle service) is sealed at once, so a lone
/// request never waits. Only batches that commit on the writer thread wait: while a bulk
/// batch commits on the blocking thread, the next one fills anyway.
#[derive(Debug, Default)]
struct Gather {
    /// Half the last sealed batch's commands.
    want: usize,
    /// The open batch's deadline, set when it first waits.
    until: Option<tokio::time::Instant>,
}

impl Gather {
    /// When to stop waiting for more, if the open batch (of `open` commands, if any) should
    /// wait at all; `cannot_grow`: a submission is held for the next batch, or the queue is
    /// closed.
    fn waits(&mut self, open: Option<usize>, cannot_grow: bool) -> Option<tokio::time::Instant> {
        let open = open?;
        if cannot_grow || self.want < 2 || open >= self.want {
            return None;
        }
        Some(
            *self
                .until
                .get_or_insert_with(|| tokio::time::Instant::now() + GATHER_WAIT),
        )
    }

    /// The wait ran out: this batch is sealed as it is.
    fn expired(&mut self) {
        self.want = 0;
    }

    fn sealed(&mut self, commands: usize) {
        self.want = commands / 2;
        self.until = None;
    }
}

/// Records a batch takes before it is sealed, whatever its command count: a block is read
/// whole (every walk, replay and proof holds one at a time), so this bounds their memory.
/// Large proxy activations reach it long before `batch_commands_max` commands.
pub const BATCH_BYTES_TARGET: usize = 4 << 20;

/// Whether `job` joins the open batch: under the command limit and the bytes target (a
/// batch's first submission always does).
fn fits(open: &Option<Open>, job: &Job, batch_max: usize) -> bool {
    open.as_ref().is_none_or(|o| {
        o.replies.is_empty()
            || (o.batch.commands() + job.submission.commands.len() <= batch_max
                && o.batch.bytes() < BATCH_BYTES_TARGET)
    })
}

fn decide(engine: &mut Engine, open: &mut Option<Open>, job: Job) {
    let open = open.get_or_insert_with(|| Open {
        batch: engine.begin(),
        replies: Vec::new(),
    });
    let result = engine.add(&mut open.batch, &job.submission);
    open.replies.push((job.reply, result));
}

/// Seals the open batch and starts its commit; a batch with nothing to write is answered
/// at once (everything before it is durable: no commit is running).
///
/// A batch under [`Limits::pipeline_from_commands`] commits right here and is answered
/// before anything else is decided. Handing it to the blocking thread would cost two thread
/// wake-ups, plus one per submission decided while it commits, and on two cores that costs
/// more than overlapping a few decisions with the fsync saves. Measured over HTTP
/// (batches of up to a few hundred commands), committing here served 34% more requests at
/// concurrency 4, 26% more at 16 and 5–10% more at 256, the same at 1, 64 and 1024; and 28%
/// more events through the writer at batch 1 of the ledger bench, 16% more at batch 100.
/// Bulk batches (a thousand commands and up) gain from the overlap.
///
/// [`Limits::pipeline_from_commands`]: crate::Limits::pipeline_from_commands
fn start_commit(engine: &mut Engine, open: Open) -> Option<Committing> {
    let commands = open.batch.commands();
    let Some(prepared) = engine.seal(open.batch) else {
        reply_all(open.replies);
        return None;
    };
    if commands < engine.limits().pipeline_from_commands {
        let started = std::time::Instant::now();
        let outcome = prepared.commit(engine.store());
        let done = Ok((prepared, outcome, started.elapsed().as_micros() as u64));
        settle(engine, done, open.replies, &mut None);
        return None;
    }
    let store = engine.store().clone();
    let task = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let outcome = prepared.commit(&store);
        (prepared, outcome, started.elapsed().as_micros() as u64)
    });
    Some(Committing {
        task,
        replies: open.replies,
    })
}

async fn commit_finished(
    committing: &mut Option<Committing>,
) -> std::result::Result<(Prepared, Result<()>, u64), tokio::task::JoinError> {
    match committing {
        Some(c) => (&mut c.task).await,
        None => std::future::pending().await,
    }
}

fn settle(
    engine: &mut Engine,
    done: std::result::Result<(Prepared, Result<()>, u64), tokio::task::JoinError>,
    mut replies: Vec<(Reply, Result<Vec<Answer>>)>,
    open: &mut Option<Open>,
) {
    let failure = match done {
        Ok((prepared, outcome, micros)) => engine.settle(prepared, outcome, micros).err(),
        // The commit thread died: nothing says the batch is durable.
        Err(err) => Some(engine.abandon(format!("the commit did not finish: {err}"))),
    };
    if let Some(message) = failure {
        replies.extend(open.take().map(|o| o.replies).unwrap_or_default());
        for (_, result) in &mut replies {
            *result = Err(Error::CommitFailed(message.clone()));
        }
    }
    reply_all(replies);
}

fn reply_all(replies: Vec<(Reply, Result<Vec<Answer>>)>) {
    for (reply, result) in replies {
        // A caller that gave up waiting is no reason to stop the writer.
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group commit's gathering: only a batch that follows a busy one waits, only until it
    /// holds half as many commands or its time is up, and never when it cannot grow.
    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_half_the_last_ones_commands_and_no_longer() {
        let mut gather = Gather::default();
        assert_eq!(gather.waits(Some(1), false), None, "nothing sealed yet");
        gather.sealed(1);
        assert_eq!(gather.waits(Some(1), false), None, "after a lone command");
        gather.sealed(10);
        assert_eq!(gather.waits(None, false), None, "no open batch");
        let until = gather.waits(Some(1), false).expect("after 10, one waits");
        assert_eq!(until, tokio::time::Instant::now() + GATHER_WAIT);
        tokio::time::advance(std::time::Duration::from_micros(50)).await;
        assert_eq!(
            gather.waits(Some(4), false),
            Some(until),
            "the same deadline"
        );
        assert_eq!(gather.waits(Some(5), false), None, "half of 10 is there");
        assert_eq!(gather.waits(Some(4), true), None, "held or closed");
        gather.expired();
        assert_eq!(gather.waits(Some(1), false), None, "its time was up");
        gather.sealed(10);
        let next = gather
            .waits(Some(1), false)
            .expect("a new batch waits anew");
        assert_eq!(next, tokio::time::Instant::now() + GATHER_WAIT);
    }
}
