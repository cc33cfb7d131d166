//! Whether the writer can take commands, shared between the writer thread (which sets it)
//! and whoever reports on it (`/healthz`, the CLI). A service must never answer "ok" to a
//! health check while its writes fail.

use std::sync::{Arc, Mutex};

/// What the writer is doing, as a health check reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Taking commands.
    Ok,
    /// A commit failed and the store could not be recovered yet: writes answer
    /// `not_committed` while the engine retries (for example until a full disk has room).
    Degraded(String),
    /// The writer thread died and could not be restarted: writes answer `writer_stopped`.
    Stopped(String),
}

/// Whether the log a writer started on was verified: at open when its state was folded from
/// the first event; in the background after a start from a snapshot (`crate::resume`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ChainCheck {
    #[default]
    Verified,
    /// A full walk of the chain, and a fold compared with the state the writer resumed, is
    /// under way.
    Verifying,
    /// The chain is damaged, or the resumed state is not the fold of the log: writes stop.
    Failed(String),
}

impl ChainCheck {
    /// As `/healthz` names it.
    pub fn name(&self) -> &'static str {
        match self {
            ChainCheck::Verified => "verified",
            ChainCheck::Verifying => "verifying",
            ChainCheck::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    degraded: Option<String>,
    stopped: Option<String>,
    restarts: u32,
    last_failure: Option<String>,
    chain: ChainCheck,
}

/// A cheap, cloneable view of the writer's health.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<Mutex<State>>);

/// What a health check shows: the status, and how often the writer was restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub status: Status,
    /// Times the writer thread died and was restarted from the durable log.
    pub restarts: u32,
    /// Why the writer last died or degraded, if it ever did.
    pub last_failure: Option<String>,
    pub chain: ChainCheck,
}

impl Health {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding this lock cannot leave it half-updated: every update is one
        // assignment.
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn report(&self) -> Report {
        self.with(|s| Report {
            status: match (&s.stopped, &s.degraded, &s.chain) {
                (Some(why), _, _) => Status::Stopped(why.clone()),
                (None, _, ChainCheck::Failed(why)) => Status::Stopped(why.clone()),
                (None, Some(why), _) => Status::Degraded(why.clone()),
                (None, None, _) => Status::Ok,
            },
            restarts: s.restarts,
            last_failure: s.last_failure.clone(),
            chain: s.chain.clone(),
        })
    }

    pub fn status(&self) -> Status {
        self.report().status
    }

    /// Why the writer stopped for good, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.with(|s| s.stopped.clone())
    }

    /// Why writes stop because the log failed verification, if they do.
    pub fn chain_failure(&self) -> Option<String> {
        self.with(|s| match &s.chain {
            ChainCheck::Failed(why) => Some(why.clone()),
            _ => None,
        })
    }

    /// What the check of the log says now (a failure stops writes: see [`ChainCheck`]).
    pub fn set_chain(&self, check: ChainCheck) {
        self.with(|s| {
            if let ChainCheck::Failed(why) = &check {
                s.last_failure = Some(why.clone());
            }
            s.chain = check;
        });
    }

    pub(crate) fn set_degraded(&self, why: Option<String>) {
        self.with(|s| {
            if let Some(why) = &why {
                s.last_failure = Some(why.clone());
            }
            s.degraded = why;
        });
    }

    pub(crate) fn set_stopped(&self, why: String) {
        self.with(|s| {
            s.last_failure = Some(why.clone());
            s.stopped = Some(why);
        });
    }

    pub(crate) fn restarted(&self, why: String) {
        self.with(|s| {
            s.restarts += 1;
            s.last_failure = Some(why);
            s.stopped = None;
            s.degraded = None;
        });
    }
}
