//! What every handler shares: the service's state behind one `Arc`.

use std::sync::{Arc, RwLock};

use keyledger_ledger::{Store, WriterHandle};
use keyledger_projections::Projections;

use super::{liveness, metrics, recent, throttle};

/// What every handler shares, behind one `Arc`: axum clones the state for every request,
/// and one reference count is cheaper than five.
#[derive(Clone, Debug)]
pub struct App(Arc<Shared>);

impl std::ops::Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl App {
    pub fn new(shared: Shared) -> App {
        App(Arc::new(shared))
    }

    /// Whether `principal` may read the event at `seq` (`view::may_read_seq`: the read rule
    /// asked of the event), read on a blocking thread; `Err` when the log cannot be read.
    pub async fn may_read_seq(
        &self,
        principal: &keyledger_core::Principal,
        seq: u64,
    ) -> keyledger_ledger::Result<bool> {
        let (store, projections, who) = (
            self.store.clone(),
            self.projections.clone(),
            principal.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let p = projections
                .read()
                .expect("no writer panics holding the lock");
            crate::view::may_read_seq(&store, &p, &who, seq)
        })
        .await
        .unwrap_or_else(|_| {
            Err(keyledger_ledger::Error::Storage(
                "the read did not finish".into(),
            ))
        })
    }
}

#[derive(Debug)]
pub struct Shared {
    pub writer: WriterHandle,
    pub store: Store,
    /// Signs checkpoints (docs/proofs.md).
    pub key: Arc<keyledger_ledger::checkpoint::LedgerKey>,
    pub projections: Arc<RwLock<Projections>>,
    pub metrics: Arc<metrics::Metrics>,
    /// The last seq folded into `projections`: event streams wait on it for new events.
    pub head: tokio::sync::watch::Sender<u64>,
    /// Set when the service shuts down: event streams end, so connections can close.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Told when a consumer is made or changed here: webhook delivery starts at once.
    pub consumers_changed: tokio::sync::Notify,
    /// When each recent batch was folded (webhook delivery lag).
    pub fold_times: Arc<recent::FoldTimes>,
    /// The change feed's JSON of the newest events read, shared by its readers.
    pub encoded_events: Arc<recent::EncodedEvents>,
    /// Refused activations by address and key (429 when they come too fast).
    pub throttle: throttle::Throttle,
    /// The open event streams.
    pub stream_slots: Arc<throttle::StreamSlots>,
    /// Whether the store answers reads (`/healthz`).
    pub liveness: Arc<liveness::Liveness>,
    /// The OpenID Connect provider, with `serve --oidc-issuer`.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// The latest checkpoint the witnesses cosigned (`serve --witness`).
    pub witnessed: super::cosigned::Witnessed,
    /// The streams table of the latest commitment (`streams.rs`), shared by the committing
    /// task, the witness rounds and the statement handler.
    pub streams: std::sync::Arc<std::sync::Mutex<keyledger_ledger::streams::StreamTable>>,
    /// One statement is made at a time: each walks the whole log twice, so a reader asking
    /// for many at once gets 429 instead of the server's cores.
    pub statement_slot: tokio::sync::Semaphore,
}

impl Shared {
    /// Whether `principal` is an operator, by the live projections.
    pub fn is_operator(&self, principal: &keyledger_core::Principal) -> bool {
        self.projections
            .read()
            .expect("no writer panics holding the lock")
            .is_operator(principal)
    }
}
