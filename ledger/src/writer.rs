//! The single writer: one thread owns the [`Engine`]; callers send submissions over a
//! bounded channel and wait for their answers, which arrive only after the durable commit.
//!
//! The writer is an OS thread rather than a task on the async runtime because a redb commit
//! blocks on fsync; a blocking task would pin a runtime thread just the same. The channel is
//! tokio's, so async callers (the HTTP service) await and sync callers (the CLI) block.

use std::thread::JoinHandle;

use keyledger_core::Command;
use tokio::sync::{mpsc, oneshot};

use crate::answer::Answer;
use crate::engine::{Engine, Submission};
use crate::error::{Error, Result};

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
    thread: JoinHandle<Engine>,
}

impl Writer {
    pub fn spawn(engine: Engine) -> Writer {
        let limits = *engine.limits();
        let (tx, rx) = mpsc::channel(limits.queue_depth);
        let thread = std::thread::Builder::new()
            .name("keyledger-writer".to_owned())
            .spawn(move || run(engine, rx))
            .expect("the writer thread starts");
        Writer {
            handle: WriterHandle {
                tx,
                batch_commands_max: limits.batch_commands_max,
            },
            thread,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Stops accepting work, lets the writer finish every queued submission, and returns
    /// the engine. Handles cloned earlier must be dropped for the writer to see the end.
    pub fn stop(self) -> Engine {
        drop(self.handle);
        self.thread
            .join()
            .expect("the writer thread does not panic")
    }
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
        self.tx
            .send(job)
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped"))?;
        rx.await
            .map_err(|_| Error::Unavailable("the writer dropped the reply"))?
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
            mpsc::error::TrySendError::Closed(_) => Error::Unavailable("the writer has stopped"),
        })?;
        rx.await
            .map_err(|_| Error::Unavailable("the writer dropped the reply"))?
    }

    /// Submits and waits, from a thread that is not an async task.
    pub fn submit_blocking(&self, commands: Vec<Command>, atomic: bool) -> Result<Vec<Answer>> {
        let (job, rx) = self.job(commands, atomic)?;
        self.tx
            .blocking_send(job)
            .map_err(|_| Error::Unavailable("the writer has stopped"))?;
        rx.blocking_recv()
            .map_err(|_| Error::Unavailable("the writer dropped the reply"))?
    }

    /// Submits without waiting for the answer (a pipelining caller collects them later).
    pub fn send_blocking(&self, commands: Vec<Command>, atomic: bool) -> Result<AnswerReceiver> {
        let (job, rx) = self.job(commands, atomic)?;
        self.tx
            .blocking_send(job)
            .map_err(|_| Error::Unavailable("the writer has stopped"))?;
        Ok(rx)
    }
}

/// Group commit: take what is queued, up to the batch limit, and commit it as one block.
fn run(mut engine: Engine, mut rx: mpsc::Receiver<Job>) -> Engine {
    let batch_max = engine.limits().batch_commands_max;
    while let Some(first) = rx.blocking_recv() {
        let mut commands = first.submission.commands.len();
        let mut jobs = vec![first];
        while commands < batch_max {
            match rx.try_recv() {
                Ok(job) if commands + job.submission.commands.len() <= batch_max => {
                    commands += job.submission.commands.len();
                    jobs.push(job);
                }
                Ok(job) => {
                    // Too big to join this batch: it starts the next one.
                    commit(&mut engine, std::mem::take(&mut jobs));
                    commands = job.submission.commands.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit(&mut engine, jobs);
    }
    engine
}

fn commit(engine: &mut Engine, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let (submissions, replies): (Vec<Submission>, Vec<Reply>) =
        jobs.into_iter().map(|j| (j.submission, j.reply)).unzip();
    let results = engine.run_batch(&submissions);
    for (reply, result) in replies.into_iter().zip(results) {
        // A caller that gave up waiting is no reason to stop the writer.
        let _ = reply.send(result);
    }
}
