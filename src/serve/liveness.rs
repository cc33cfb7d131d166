//! Whether the store answers, for `/healthz`. The writer's health says only what its last
//! commit met; a store that froze while no one wrote (a partitioned PostgreSQL primary, a
//! stalled disk) would still look `ok`. A thread of its own reads the head every second, so
//! no probe ever waits inside a health check, and a probe that hangs is itself the answer.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use keyledger_ledger::Store;

/// How often the head is read.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long one read may take before the store counts as not answering.
pub const PATIENCE: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Probe {
    /// When the read under way began.
    since: Option<Instant>,
    /// Why the last read failed, if it did.
    failed: Option<String>,
}

/// The store's liveness, as its probe thread last saw it.
#[derive(Debug, Default)]
pub struct Liveness(Mutex<Probe>);

impl Liveness {
    /// Starts the probe thread; it stops once the returned handle is dropped.
    pub fn spawn(store: Store) -> std::io::Result<Arc<Liveness>> {
        let liveness = Arc::new(Liveness::default());
        let weak = Arc::downgrade(&liveness);
        std::thread::Builder::new()
            .name("keyledger-liveness".to_owned())
            .spawn(move || probe(&store, &weak))?;
        Ok(liveness)
    }

    /// Why the store does not answer, if it does not: the last read failed, or the one
    /// under way has waited longer than [`PATIENCE`].
    pub fn trouble(&self) -> Option<String> {
        let probe = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = probe.since.filter(|s| s.elapsed() > PATIENCE) {
            return Some(format!(
                "the store has not answered for {} s",
                since.elapsed().as_secs()
            ));
        }
        probe
            .failed
            .as_ref()
            .map(|why| format!("the store does not answer: {why}"))
    }
}

fn probe(store: &Store, liveness: &Weak<Liveness>) {
    loop {
        let Some(live) = liveness.upgrade() else {
            return;
        };
        live.0.lock().unwrap_or_else(|e| e.into_inner()).since = Some(Instant::now());
        let read = store.head();
        let mut probe = live.0.lock().unwrap_or_else(|e| e.into_inner());
        probe.since = None;
        probe.failed = read.err().map(|e| e.to_string());
        drop(probe);
        drop(live);
        std::thread::sleep(PROBE_EVERY);
    }
}
