//! `keyledger serve`: the HTTP service. Every write goes through the single writer; every
//! answer is sent after the durable commit. Live projections follow each committed batch.
//!
//! Shutdown (SIGINT/SIGTERM): stop accepting, let in-flight requests finish (their commands
//! are queued or committing), stop the writer after it drains its queue, fold the last
//! batches, write a projection snapshot, exit 0.

mod activation;
pub mod app;
pub mod auth;
pub mod connections;
mod cosigned;
pub(crate) mod feed;
mod liveness;
mod metrics;
mod middleware;
pub mod openapi;
pub(crate) mod recent;
mod routes;
pub mod status;
pub(crate) mod streams;
mod targets;
pub mod throttle;
pub mod tls;
pub(crate) mod webhooks;
mod witnesses;

pub use app::{App, Shared};

use crate::output::outln;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use keyledger_ledger::health::ChainCheck;
use keyledger_ledger::resume::{FilterStart, Start};
use keyledger_ledger::{Committed, Store, Writer};
use keyledger_projections::Projections;

use crate::view::{projections, write_snapshot, Until};

pub fn run(
    data: &keyledger_ledger::Location,
    args: &crate::cli::ServeArgs,
    pages: axum::Router<App>,
) -> Result<ExitCode> {
    let listen = &args.listen;
    let limits = connections::ConnectionLimits::from(args);
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?}: expected IP:PORT"))?;
    // Before anything opens: a missing key is a refusal to start, never a fresh key that
    // signs proofs no auditor pinned (F10).
    let key = signing_key(data, args.create_signing_key)?;
    // A certificate that cannot be read is a refusal to start, before the ledger is claimed.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Tls::load(cert, key)?),
        _ => None,
    };
    let oidc = crate::oidc::Oidc::from_args(args)?.map(Arc::new);
    let witnesses = witnesses::parse(&args.witnesses)?;
    let store = claimed_store(data, args)?;
    // The read models first: the writer resumes from their books (one decode of the
    // snapshot, not two).
    let folded = projections(&store, Until::Head)?;
    let resume = crate::view::resume_point(&store, &folded)?;
    let mut engine = open_writer(store.clone(), data, args, resume)?;
    check_chain_in_background(&engine);
    let folded = Arc::new(RwLock::new(folded));
    let metrics = Arc::new(metrics::Metrics::new());
    let (tx, rx) = std::sync::mpsc::channel::<Committed>();
    engine.set_listener(tx);
    let writer = Writer::spawn(engine);
    let head = tokio::sync::watch::Sender::new(folded.read().expect("not yet shared").last_seq);
    let fold_times = Arc::new(recent::FoldTimes::default());
    let follower = {
        let (folded, metrics, store) = (Arc::clone(&folded), Arc::clone(&metrics), store.clone());
        let (head, fold_times) = (head.clone(), Arc::clone(&fold_times));
        std::thread::spawn(move || follow(rx, &folded, &metrics, &store, &head, &fold_times))
    };
    let app = App::new(Shared {
        writer: writer.handle(),
        store: store.clone(),
        key: Arc::new(key),
        projections: Arc::clone(&folded),
        metrics,
        head,
        closing: tokio::sync::watch::Sender::new(false),
        consumers_changed: tokio::sync::Notify::new(),
        fold_times,
        encoded_events: Arc::default(),
        throttle: throttle::Throttle::new(throttle::ThrottlePolicy::from(args)),
        stream_slots: Arc::new(throttle::StreamSlots::new(
            args.streams_max,
            args.streams_per_principal,
        )),
        liveness: liveness::Liveness::spawn(store.clone())?,
        oidc,
        witnessed: Arc::default(),
        streams: Arc::default(),
        statement_slot: tokio::sync::Semaphore::new(1),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let policy = Arc::new(webhooks::Policy::from(args));
    let streams_every = std::time::Duration::from_secs(args.streams_every);
    runtime.spawn(streams::run(app.clone(), streams_every));
    if !witnesses.is_empty() {
        let every = std::time::Duration::from_secs(args.witness_every);
        runtime.spawn(witnesses::run(app.clone(), witnesses, every));
    }
    runtime.block_on(serve(app, addr, limits, policy, pages, tls))?;
    drop(runtime);
    stop(writer, follower, &folded, &store)
}

/// After the last request: the writer drains (every handler's clone of its handle went
/// with the runtime), the follower folds what it committed, a snapshot is written.
fn stop(
    writer: Writer,
    follower: std::thread::JoinHandle<()>,
    folded: &RwLock<Projections>,
    store: &Store,
) -> Result<ExitCode> {
    let stopped = writer.stop().err();
    follower
        .join()
        .expect("the projection follower does not panic");
    let folded = folded.read().expect("no handler panicked holding the lock");
    write_snapshot(store, &folded)?;
    if let Some(err) = stopped {
        tracing::error!("keyledger: stopped at seq {}: {err}", folded.last_seq);
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!(
        "keyledger: stopped cleanly at seq {}; snapshot written",
        folded.last_seq
    );
    Ok(ExitCode::SUCCESS)
}

/// A writer that resumed from a snapshot trusted it only as far as its chain hash: walk the
/// whole chain and compare the fold with the state it started with, beside the service
/// (`/healthz` says `"chain": "verifying"` until done; a failure stops writes).
fn check_chain_in_background(engine: &keyledger_ledger::Engine) {
    if !matches!(engine.start(), Start::Resumed { .. }) {
        return;
    }
    let (store, head, health) = (
        engine.store().clone(),
        engine.head(),
        engine.health().clone(),
    );
    let books = engine.state().books().clone();
    health.set_chain(ChainCheck::Verifying);
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        match keyledger_ledger::resume::verify_start(&store, head, &books) {
            Ok(()) => {
                tracing::info!(
                    "keyledger: the chain through seq {} verified in {:.1} s",
                    head.seq,
                    started.elapsed().as_secs_f64()
                );
                health.set_chain(ChainCheck::Verified);
            }
            Err(why) => {
                tracing::error!(
                    event = "chain_check_failed",
                    "keyledger: {why}; writes stop"
                );
                health.set_chain(ChainCheck::Failed(why));
            }
        }
    });
}

/// The ledger's writer, saying what its store recovered and how durable it is; with
/// `--wait-for-writer`, once the writer before it stops.
fn claimed_store(data: &keyledger_ledger::Location, args: &crate::cli::ServeArgs) -> Result<Store> {
    let store = Store::open(data).with_context(|| format!("cannot open ledger {data}"))?;
    let recovery = store.recovery();
    for said in [recovery.note(), recovery.warning()].into_iter().flatten() {
        tracing::info!("{said}");
    }
    if args.wait_for_writer {
        tracing::info!(
            event = "waiting_for_writer",
            "waiting to become the writer of {data}"
        );
    }
    store.claim_writer(args.wait_for_writer)?;
    if let Some(warning) = store.durability_warning()? {
        tracing::warn!("warning: {warning}");
    }
    Ok(store)
}

/// The writer of `store`, starting from `resume` (the read models' books) when the chain
/// vouches for it, and later recoveries from the newest snapshot.
fn open_writer(
    store: Store,
    data: &keyledger_ledger::Location,
    args: &crate::cli::ServeArgs,
    resume: Option<keyledger_ledger::resume::Resume>,
) -> Result<keyledger_ledger::Engine> {
    let writer_limits = keyledger_ledger::Limits {
        machine_facts_on_disk: args.machine_facts.on_disk(args.machine_facts_on_disk),
        ..Default::default()
    };
    let engine = keyledger_ledger::Engine::open_resuming(
        store,
        writer_limits,
        Some(crate::view::resumer_from(resume)),
    )
    .with_context(|| format!("cannot open ledger {data}"))?;
    match engine.start() {
        Start::Log => {}
        Start::Resumed { seq } => {
            tracing::info!("keyledger: the writer resumed at seq {seq} from the read models' books")
        }
        Start::Refused { seq, why } => {
            tracing::warn!(
                "keyledger: the snapshot at seq {seq} was not used ({why}); folded the log"
            )
        }
    }
    report_filter_start(engine.filter_start());
    Ok(engine)
}

/// Says where the writer's filter of activated pairs came from (the saved one is the fast
/// start; a refused one is worth a line).
fn report_filter_start(start: &FilterStart) {
    let (from, refused) = match start {
        FilterStart::NotKept => return,
        FilterStart::Saved { seq } => {
            tracing::info!(
                "keyledger: the filter of activated pairs was read as saved at seq {seq}"
            );
            return;
        }
        FilterStart::PairIndex { refused } => ("the pair index", refused),
        FilterStart::Log { refused } => ("the log", refused),
    };
    match refused {
        Some(why) => tracing::info!("keyledger: {why}; the filter was built from {from}"),
        None => tracing::info!("keyledger: the filter of activated pairs was built from {from}"),
    }
}

/// The checkpoint signing key of the ledger at `data`; created only when asked.
fn signing_key(
    data: &keyledger_ledger::Location,
    create: bool,
) -> Result<keyledger_ledger::checkpoint::LedgerKey> {
    let path = keyledger_ledger::proof::key_path(data)?;
    match keyledger_ledger::proof::signing_key(data, create) {
        Ok((key, created)) => {
            if created {
                tracing::info!(
                    "keyledger: created the checkpoint signing key {} (--create-signing-key); verifier key {}",
                    path.display(),
                    key.verifier_key()
                );
            }
            Ok(key)
        }
        Err(keyledger_ledger::Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "no checkpoint signing key at {} (`keyledger init` creates it; check {} if you \
                 set it, or pass --create-signing-key to make a new one that no auditor has \
                 pinned yet)",
                path.display(),
                keyledger_ledger::store::location::SIGNING_KEY_ENV
            )
        }
        Err(err) => Err(err)
            .with_context(|| format!("cannot read the checkpoint signing key {}", path.display())),
    }
}

async fn serve(
    app: App,
    addr: SocketAddr,
    limits: connections::ConnectionLimits,
    policy: Arc<webhooks::Policy>,
    pages: axum::Router<App>,
    tls: Option<Arc<tls::Tls>>,
) -> Result<()> {
    let acceptor = tls.as_ref().map(tls::Tls::acceptor).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // The handlers are in place before the address is printed: a SIGTERM sent the moment a
    // script reads it is a clean shutdown, never the default action's kill.
    let shutdown_signals = ShutdownSignals::install()?;
    if let Some(oidc) = &app.oidc {
        oidc.listening_on(&format!("{scheme}://{bound}"));
        let oidc = oidc.clone();
        // Said at once if the provider cannot be reached (its tokens would all be refused
        // as unverifiable); the service runs on, for keyledger's own tokens.
        tokio::spawn(async move {
            match oidc.discovered().await {
                Ok(_) => tracing::info!(
                    event = "oidc_discovered",
                    issuer = oidc.issuer(),
                    "keyledger: single sign-on with {}; browsers come back to {}",
                    oidc.issuer(),
                    oidc.redirect_url()
                ),
                Err(err) => tracing::warn!(
                    event = "oidc_unreachable",
                    issuer = oidc.issuer(),
                    "keyledger: {err}; tried again at the next sign-in"
                ),
            }
        });
    }
    // Tests and scripts read this line to find an ephemeral port.
    outln!("listening on {scheme}://{bound}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(
        "keyledger: serving {} on {scheme}://{bound}; the console is at {scheme}://{bound}/ui",
        app.store.label()
    );
    let closing = app.closing.clone();
    let shutdown = async move {
        shutdown_signals.received().await;
        closing.send_replace(true);
    };
    let deliveries = tokio::spawn(webhooks::supervise(app.clone(), policy));
    let pruning = tokio::spawn(prune_throttle(app.clone()));
    let reloading = tls.map(|tls| tokio::spawn(tls.reload_on_hangup()));
    let router = routes::router(app, pages);
    connections::serve(listener, router, limits, acceptor, shutdown).await;
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    // Each delivery task ends at the close; one in flight finishes its attempt first.
    let _ = deliveries.await;
    pruning.abort();
    Ok(())
}

/// Forgets the throttle's full buckets and spent blocks every few seconds.
async fn prune_throttle(app: App) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        app.throttle.prune();
    }
}

/// SIGINT and SIGTERM, registered when made.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!("keyledger: shutting down: finishing in-flight requests");
    }
}

/// Folds every committed batch into the live projections, in commit order, and writes a
/// snapshot every `SNAPSHOT_EVERY_EVENTS` events so a restart catches up from near the head.
/// Folds the log's events from the projections' last seq up to (not including) `until`.
fn catch_up(p: &mut Projections, store: &Store, until: u64) {
    let from = p.last_seq + 1;
    let read = keyledger_ledger::walk(store, from, |record| {
        if record.seq >= until {
            return Ok(std::ops::ControlFlow::Break(()));
        }
        p.apply(record.seq, &record.event);
        Ok(std::ops::ControlFlow::Continue(()))
    });
    match read {
        Ok(_) => tracing::warn!(
            "keyledger: folded seqs {from}..{} from the log (committed, though answered as failed)",
            until - 1
        ),
        Err(err) => tracing::error!(
            "keyledger: could not read seqs {from}..{} back: {err}",
            until - 1
        ),
    }
}

fn follow(
    rx: std::sync::mpsc::Receiver<Committed>,
    folded: &RwLock<Projections>,
    metrics: &metrics::Metrics,
    store: &Store,
    head: &tokio::sync::watch::Sender<u64>,
    fold_times: &recent::FoldTimes,
) {
    let mut snapshotted = folded.read().expect("not yet shared").last_seq;
    for committed in rx {
        metrics.observe(&committed);
        let Some(first) = committed.first_seq else {
            continue;
        };
        let mut p = folded.write().expect("no reader panics holding the lock");
        if first > p.last_seq + 1 {
            // A batch whose commit was answered as failed but landed (its outcome was
            // unknown: a lost PostgreSQL connection, a failed fsync) is in the log and in the
            // engine's refolded state, but never reached this listener: read it back.
            catch_up(&mut p, store, first);
        }
        for (i, event) in committed.events.iter().enumerate() {
            let seq = first + i as u64;
            if seq == p.last_seq + 1 {
                p.apply(seq, event);
            }
        }
        let folded_to = p.last_seq;
        drop(p);
        fold_times.folded(folded_to);
        head.send_replace(folded_to);
        let p = folded.read().expect("no reader panics holding the lock");
        if p.last_seq >= snapshotted + crate::view::SNAPSHOT_EVERY_EVENTS {
            match write_snapshot(store, &p) {
                Ok(()) => snapshotted = p.last_seq,
                Err(err) => {
                    tracing::warn!("keyledger: snapshot at seq {} failed: {err:#}", p.last_seq)
                }
            }
        }
    }
}
