//! Known bugs the deterministic simulator must find (`keyledger-simulator`, docs/testing.md).
//!
//! A search for bugs is only trusted once it has found bugs on purpose: each [`Bug`] is a
//! one-line defect at a place where a real one would do harm, switched on for the current
//! thread only, and only in builds with the `planted-bugs` feature. Without the feature
//! [`active`] is a constant `false` and the compiler removes every check; with it, nothing
//! changes until a test calls `plant` on its own thread.

/// A planted defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// An activation is decided without comparing the machines it needs with what is left
    /// on the key (R9): counts can pass their limits.
    SkipLimitCheck,
    /// A batch's answers stand although its commit failed: an acknowledged command can be
    /// missing from the log after recovery.
    AckBeforeCommit,
    /// A resent command is decided again instead of answered from its first answer.
    SkipIdempotency,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 3] = [
        Bug::SkipLimitCheck,
        Bug::AckBeforeCommit,
        Bug::SkipIdempotency,
    ];

    /// The name `--plant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipLimitCheck => "skip-limit-check",
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::SkipIdempotency => "skip-idempotency",
        }
    }

    /// The bug of this name (its `name`), if one.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
std::thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Switches `bug` on (or every planted bug off) for the current thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<Bug>) {
    PLANTED.with(|planted| planted.set(bug));
}

/// Whether `bug` is switched on for the current thread.
#[inline]
pub fn active(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|planted| planted.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
