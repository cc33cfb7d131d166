//! Storage faults: a redb `StorageBackend` that fails a write or an fsync on a countdown,
//! once (a transient error) or from then on (a dead disk), driven by proptest.
//! What must hold: no command of a failed batch is answered `ok`; the in-memory state never
//! runs ahead of what the store holds; after reopening on a healthy disk the chain verifies,
//! every acknowledged activation is there, and the state equals a replay.

use crate::support;

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keyledger_core::KeyId;
use keyledger_ledger::{open, Engine, Error, Limits, Store, Submission};
use proptest::prelude::*;
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use support::*;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Write,
    Sync,
    /// A write panics (a bug below the writer, simulated): the writer thread unwinds.
    PanicOnWrite,
}

#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    fault: Fault,
    countdown: Arc<AtomicI64>,
    sticky: bool,
}

impl FaultyBackend {
    fn trip(&self, op: Fault) -> io::Result<()> {
        let panics = matches!((self.fault, op), (Fault::PanicOnWrite, Fault::Write));
        if !panics && std::mem::discriminant(&op) != std::mem::discriminant(&self.fault) {
            return Ok(());
        }
        let left = self.countdown.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 || (self.sticky && left < 0) {
            if panics {
                panic!("injected panic in a write");
            }
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.trip(Fault::Write)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.trip(Fault::Sync)?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.trip(Fault::Write)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
}

/// Opens the ledger on a faulty backend whose countdown is armed only once the open is done,
/// so the fault strikes while batches are written.
fn faulty_engine(path: &Path, fault: Fault, countdown: i64, sticky: bool) -> Engine {
    faulty_engine_with(path, fault, countdown, sticky, Limits::default())
}

fn faulty_engine_with(
    path: &Path,
    fault: Fault,
    countdown: i64,
    sticky: bool,
    limits: Limits,
) -> Engine {
    let armed = Arc::new(AtomicI64::new(i64::MAX));
    let store = faulty_store(path, fault, &armed, sticky);
    let engine = Engine::open(store, limits).unwrap();
    armed.store(countdown, Ordering::SeqCst);
    engine
}

/// A store whose every (re)opening gets a fresh backend on the same file, sharing one
/// countdown: a reopen after a transient fault works, one after a sticky fault fails again.
fn faulty_store(path: &Path, fault: Fault, countdown: &Arc<AtomicI64>, sticky: bool) -> Store {
    let (path, countdown) = (path.to_owned(), Arc::clone(countdown));
    let backend = move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        FaultyBackend {
            inner: FileBackend::new(file).unwrap(),
            fault,
            countdown: Arc::clone(&countdown),
            sticky,
        }
    };
    Store::with_backend(backend, "faulty").unwrap()
}

/// The engine's state equals a replay of what its store holds (unless it refuses writes).
fn state_matches_disk(engine: &Engine) -> Result<(), TestCaseError> {
    if engine.poisoned().is_some() {
        return Ok(());
    }
    if let Ok(replayed) = keyledger_ledger::engine::decision_state(engine.store(), engine.limits())
    {
        prop_assert_eq!(&replayed, engine.state());
    }
    Ok(())
}

/// Reopened on a healthy disk, the ledger verifies and holds every acknowledged machine.
fn reopened_holds(path: &Path, acknowledged: &[String]) -> Result<(), TestCaseError> {
    let engine = open(path).map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
    for machine in acknowledged {
        let id = keyledger_core::MachineId::new(machine.as_str()).unwrap();
        prop_assert!(
            engine.machine_active(KeyId(1), &id).unwrap(),
            "acknowledged {machine} is missing"
        );
    }
    prop_assert!(keyledger_ledger::verify(engine.store()).is_ok());
    Ok(())
}

/// Runs 25 batches of 3 activations; returns the machines whose activation was acknowledged
/// and how many batches failed.
fn drive(engine: &mut Engine) -> Result<(Vec<String>, usize), TestCaseError> {
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for batch in 0..25 {
        let machines: Vec<String> = (0..3).map(|i| format!("b{batch}-m{i}")).collect();
        let commands = machines.iter().map(|m| activation(m)).collect();
        let result = engine.run_batch(&[Submission::new(commands)]).remove(0);
        match result {
            Ok(answers) => {
                for (machine, answer) in machines.iter().zip(&answers) {
                    prop_assert!(answer.ok, "{answer:?}");
                    acknowledged.push(machine.clone());
                }
            }
            Err(Error::CommitFailed(_) | Error::Poisoned(_)) => failed += 1,
            Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
        }
        state_matches_disk(engine)?;
    }
    Ok((acknowledged, failed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_failed_write_or_sync_loses_nothing_acknowledged(
        sync in any::<bool>(), countdown in 1..25i64, sticky in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        drop(new_ledger_file(dir.path(), 1_000));
        let path = dir.path().join("ledger.redb");
        let fault = if sync { Fault::Sync } else { Fault::Write };
        let mut engine = faulty_engine(&path, fault, countdown, sticky);
        let (acknowledged, failed) = drive(&mut engine)?;
        // Every commit writes and syncs at least once, so a countdown under 25 fires.
        prop_assert!(failed > 0, "the fault never struck");
        drop(engine);
        reopened_holds(&path, &acknowledged)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The writer decides the next batch while the previous one commits. A failed commit
    /// must fail that next batch too (it was decided on the failed one), never answer `ok`
    /// for anything not durable, and leave the state equal to the disk. The same holds when
    /// the writer commits small batches itself (`pipelined` false).
    #[test]
    fn a_fault_under_the_pipelined_writer_loses_nothing_acknowledged(
        sync in any::<bool>(), countdown in 1..20i64, sticky in any::<bool>(),
        pipelined in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        drop(new_ledger_file(dir.path(), 1_000));
        let path = dir.path().join("ledger.redb");
        let fault = if sync { Fault::Sync } else { Fault::Write };
        // Three commands a batch: 20 queued submissions make 20 batches.
        let pipeline_from_commands = if pipelined { 1 } else { usize::MAX };
        let limits = Limits { batch_commands_max: 3, pipeline_from_commands, ..Limits::default() };
        let writer = keyledger_ledger::Writer::spawn(
            faulty_engine_with(&path, fault, countdown, sticky, limits),
        );
        let handle = writer.handle();
        let sent: Vec<(Vec<String>, _)> = (0..20)
            .map(|batch| {
                let machines: Vec<String> = (0..3).map(|i| format!("w{batch}-m{i}")).collect();
                let commands = machines.iter().map(|m| activation(m)).collect();
                (machines, handle.send_blocking(commands, false).unwrap())
            })
            .collect();
        let (mut acknowledged, mut failed) = (Vec::new(), 0);
        for (machines, rx) in sent {
            match rx.blocking_recv().unwrap() {
                Ok(answers) => {
                    prop_assert!(answers.iter().all(|a| a.ok), "{answers:?}");
                    acknowledged.extend(machines);
                }
                Err(Error::CommitFailed(_) | Error::Poisoned(_)) => failed += 1,
                Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
            }
        }
        drop(handle);
        let engine = writer.stop().unwrap();
        prop_assert!(failed > 0, "the fault never struck");
        state_matches_disk(&engine)?;
        drop(engine);
        reopened_holds(&path, &acknowledged)?;
    }
}

#[test]
fn a_sticky_sync_failure_fails_the_batch_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_ledger_file(dir.path(), 1_000));
    let path = dir.path().join("ledger.redb");
    let mut engine = faulty_engine(&path, Fault::Sync, 1, true);
    let head = engine.head();
    for _ in 0..3 {
        let result = engine
            .run_batch(&[Submission::new(vec![activation("pc-1")])])
            .remove(0);
        assert!(
            matches!(result, Err(Error::CommitFailed(_) | Error::Poisoned(_))),
            "{result:?}"
        );
        // After a failed fsync the kernel may have written the batch anyway; whatever the
        // file holds, the state is a fold of exactly that, and never runs ahead of it.
        assert!(engine.head().seq <= head.seq + 1);
        state_matches_disk(&engine).unwrap();
    }
    assert!(engine.state().key(KeyId(1)).unwrap().used() <= 1);
}

/// Finding 6 of issue 13: a failed commit used to poison the engine until a restart
/// ("Previous I/O error occurred" on every later write). Now the store is reopened and the
/// state folded again, so once the disk works the very next batch commits.
#[test]
fn finding6_a_transient_commit_failure_recovers_without_a_restart() {
    for fault in [Fault::Sync, Fault::Write] {
        let dir = tempfile::tempdir().unwrap();
        drop(new_ledger_file(dir.path(), 1_000));
        let path = dir.path().join("ledger.redb");
        let mut engine = faulty_engine(&path, fault, 1, false);
        let head = engine.head();
        let failed = engine
            .run_batch(&[Submission::new(vec![activation("lost-1")])])
            .remove(0);
        assert!(matches!(failed, Err(Error::CommitFailed(_))), "{failed:?}");
        assert_eq!(
            engine.poisoned(),
            None,
            "recovered at once: the disk works again"
        );
        // A failed write leaves nothing; after a failed fsync the kernel's written pages
        // may or may not be what recovery reads back (redb decides by its commit slots): the
        // batch was not acknowledged either way, and the state says what the disk holds.
        let lost = keyledger_core::MachineId::new("lost-1").unwrap();
        let landed = u64::from(engine.machine_active(KeyId(1), &lost).unwrap());
        if matches!(fault, Fault::Write | Fault::PanicOnWrite) {
            assert_eq!(landed, 0, "{fault:?}");
        }
        assert_eq!(engine.head().seq, head.seq + landed, "{fault:?}");
        let answers = run(
            &mut engine,
            vec![activation("kept-1"), activation("kept-2")],
        );
        assert!(answers.iter().all(|a| a.ok), "{answers:?}");
        assert_eq!(engine.head().seq, head.seq + landed + 2);
        state_matches_disk(&engine).unwrap();
        drop(engine);
        reopened_holds(&path, &["kept-1".to_owned(), "kept-2".to_owned()]).unwrap();
    }
}

/// While the disk keeps failing, the engine says so (health degraded, writes refused), and
/// retries; once it works again, writes go through with no restart.
#[test]
fn finding6_a_disk_that_fails_for_a_while_degrades_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_ledger_file(dir.path(), 1_000));
    let path = dir.path().join("ledger.redb");
    let armed = Arc::new(AtomicI64::new(i64::MAX));
    let store = faulty_store(&path, Fault::Write, &armed, true);
    let mut engine = Engine::open(store, Limits::default()).unwrap();
    armed.store(1, Ordering::SeqCst);
    let failed = engine
        .run_batch(&[Submission::new(vec![activation("a")])])
        .remove(0);
    assert!(matches!(failed, Err(Error::CommitFailed(_))), "{failed:?}");
    let refused = engine
        .run_batch(&[Submission::new(vec![activation("b")])])
        .remove(0);
    assert!(matches!(refused, Err(Error::Poisoned(_))), "{refused:?}");
    assert!(matches!(
        engine.health().status(),
        keyledger_ledger::health::Status::Degraded(_)
    ));
    // The disk works again: after the retry interval the next batch recovers and commits.
    armed.store(i64::MAX, Ordering::SeqCst);
    std::thread::sleep(keyledger_ledger::engine::RECOVERY_INTERVAL);
    let answers = run(&mut engine, vec![activation("c")]);
    assert!(answers[0].ok, "{answers:?}");
    assert_eq!(
        engine.health().status(),
        keyledger_ledger::health::Status::Ok
    );
    state_matches_disk(&engine).unwrap();
}

/// Finding 1 of issue 13: a writer that died used to leave the service answering 503 "writer
/// dropped the reply" to every write while `/healthz` said ok. Now the writer's supervisor
/// says so (`writer_stopped` for the submissions it dropped), reopens the store, folds a new
/// engine from what is durable and goes on; the health report counts the restart.
#[test]
fn finding1_a_writer_that_panics_is_restarted_from_the_durable_log() {
    let (_dir, path, armed, writer) = panicking_writer(false);
    let handle = writer.handle();
    let ok = handle
        .submit_blocking(vec![activation("before")], false)
        .unwrap();
    assert!(ok[0].ok);
    armed.store(1, Ordering::SeqCst);
    let died = handle.submit_blocking(vec![activation("dies")], false);
    assert!(matches!(died, Err(Error::WriterStopped(_))), "{died:?}");
    // The dropped reply arrives while the writer unwinds; the restart follows.
    let report = wait_for(|| {
        let report = handle.health().report();
        (report.restarts > 0).then_some(report)
    });
    assert_eq!(report.status, keyledger_ledger::health::Status::Ok);
    assert_eq!(report.restarts, 1);
    assert!(
        report
            .last_failure
            .as_deref()
            .unwrap()
            .contains("injected panic"),
        "{report:?}"
    );
    let after = handle
        .submit_blocking(vec![activation("after")], false)
        .unwrap();
    assert!(after[0].ok, "{after:?}");
    drop(handle);
    let engine = writer.stop().unwrap();
    state_matches_disk(&engine).unwrap();
    drop(engine);
    reopened_holds(&path, &["before".to_owned(), "after".to_owned()]).unwrap();
}

fn wait_for<T>(mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A writer whose restart fails too (the disk panics on every write) stops for good and
/// says why; every later submission gets `writer_stopped`.
#[test]
fn finding1_a_writer_that_cannot_be_restarted_stops_and_says_why() {
    let (_dir, _path, armed, writer) = panicking_writer(true);
    let handle = writer.handle();
    armed.store(1, Ordering::SeqCst);
    let died = handle.submit_blocking(vec![activation("m")], false);
    assert!(matches!(died, Err(Error::WriterStopped(_))), "{died:?}");
    let status = wait_for(|| match handle.health().status() {
        keyledger_ledger::health::Status::Ok => None,
        status => Some(status),
    });
    assert!(
        matches!(&status, keyledger_ledger::health::Status::Stopped(why) if why.contains("was not restarted")),
        "{status:?}"
    );
    let later = handle.submit_blocking(vec![activation("later")], false);
    assert!(matches!(later, Err(Error::WriterStopped(why)) if why.contains("was not restarted")));
    drop(handle);
    assert!(matches!(writer.stop(), Err(Error::WriterStopped(_))));
}

/// A writer that keeps dying is restarted at most `RESTARTS_MAX` times a minute, then stops.
#[test]
fn finding1_a_writer_that_keeps_dying_stops_after_its_restarts() {
    let (_dir, _path, armed, writer) = panicking_writer(false);
    let handle = writer.handle();
    let max = keyledger_ledger::writer::RESTARTS_MAX;
    for round in 0..=max {
        wait_for(|| (handle.health().report().restarts as usize == round).then_some(()));
        armed.store(1, Ordering::SeqCst);
        let died = handle.submit_blocking(vec![activation(&format!("m{round}"))], false);
        assert!(matches!(died, Err(Error::WriterStopped(_))), "{died:?}");
    }
    let status = wait_for(|| match handle.health().status() {
        keyledger_ledger::health::Status::Ok => None,
        status => Some(status),
    });
    assert!(
        matches!(&status, keyledger_ledger::health::Status::Stopped(why) if why.contains("died 4 times")),
        "{status:?}"
    );
    assert_eq!(handle.health().report().restarts as usize, max);
    drop(handle);
    assert!(matches!(writer.stop(), Err(Error::WriterStopped(_))));
}

/// A writer over a ledger whose disk panics on the next write once `armed` is set to 1
/// (every write from then on when `sticky`). Returns the directory, the ledger's path, the
/// countdown and the writer.
fn panicking_writer(
    sticky: bool,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Arc<AtomicI64>,
    keyledger_ledger::Writer,
) {
    let dir = tempfile::tempdir().unwrap();
    drop(new_ledger_file(dir.path(), 1_000));
    let path = dir.path().join("ledger.redb");
    let armed = Arc::new(AtomicI64::new(i64::MAX));
    let store = faulty_store(&path, Fault::PanicOnWrite, &armed, sticky);
    let writer = keyledger_ledger::Writer::spawn(Engine::open(store, inline()).unwrap());
    (dir, path, armed, writer)
}

/// Small batches commit on the writer thread itself: a panic there unwinds through it.
fn inline() -> Limits {
    Limits {
        pipeline_from_commands: usize::MAX,
        ..Limits::default()
    }
}

/// Issue 16: a failure at each step of the write-ahead commit path — writing the frame, its
/// fdatasync, the redb commit after it (non-durable, and the durable checkpoint), the file's
/// restart after a checkpoint — loses nothing acknowledged and reports nothing unacknowledged
/// as committed: the failed batch is absent once the ledger is reopened on a healthy disk.
#[test]
fn each_step_of_the_write_ahead_path_can_fail_and_nothing_acknowledged_is_lost() {
    use keyledger_ledger::store::redb::wal::WalStep;
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Wal(WalStep),
        Redb(Fault),
    }
    // (step, checkpoint every N frames): with 2, the failing batch's commit checkpoints
    // first. redb's non-durable commits write nothing to its backend (its cache holds them
    // until a durable commit), so a redb failure strikes at a checkpoint.
    let steps = [
        (Step::Wal(WalStep::Write), 1_000),
        (Step::Wal(WalStep::Sync), 1_000),
        (Step::Wal(WalStep::Restart), 2),
        (Step::Redb(Fault::Write), 2),
        (Step::Redb(Fault::Sync), 2),
    ];
    for (step, checkpoint_every) in steps {
        let dir = tempfile::tempdir().unwrap();
        drop(new_ledger_file(dir.path(), 1_000));
        let path = dir.path().join("ledger.redb");
        // One failure, on the first call of the chosen kind once armed.
        let armed = Arc::new(AtomicI64::new(i64::MAX));
        let wal_armed = Arc::clone(&armed);
        let wal_step = match step {
            Step::Wal(s) => Some(s),
            Step::Redb(_) => None,
        };
        let faults: keyledger_ledger::store::redb::wal::WalFaults = Arc::new(move |s| {
            if Some(s) == wal_step && wal_armed.fetch_sub(1, Ordering::SeqCst) == 0 {
                return Err(io::Error::other("injected write-ahead failure"));
            }
            Ok(())
        });
        let redb_fault = match step {
            Step::Redb(f) => f,
            Step::Wal(_) => Fault::Write, // never armed: its countdown is its own
        };
        let redb_armed = match step {
            Step::Redb(_) => Arc::clone(&armed),
            Step::Wal(_) => Arc::new(AtomicI64::new(i64::MAX)),
        };
        let backend_path = path.clone();
        let backend = move || FaultyBackend {
            inner: FileBackend::new(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&backend_path)
                    .unwrap(),
            )
            .unwrap(),
            fault: redb_fault,
            countdown: Arc::clone(&redb_armed),
            sticky: false,
        };
        let store =
            Store::with_backend_and_wal(backend, &path, checkpoint_every, faults, None).unwrap();
        let mut engine = Engine::open(store, Limits::default()).unwrap();
        let ok_1 = run(&mut engine, vec![activation("ok-1")]);
        assert!(ok_1[0].ok, "{step:?}: {ok_1:?}");
        let ok_2 = run(&mut engine, vec![activation("ok-2")]);
        assert!(ok_2[0].ok, "{step:?}: {ok_2:?}");
        // (The backend fails when its countdown reaches 0 after a decrement.)
        let next_call = if matches!(step, Step::Redb(_)) { 1 } else { 0 };
        armed.store(next_call, Ordering::SeqCst);
        let failed = engine
            .run_batch(&[Submission::new(vec![activation("lost")])])
            .remove(0);
        assert!(
            matches!(failed, Err(Error::CommitFailed(_))),
            "{step:?}: {failed:?}"
        );
        let after = run(&mut engine, vec![activation("ok-3")]);
        assert!(
            after[0].ok,
            "{step:?}: recovered without a restart: {after:?}"
        );
        state_matches_disk(&engine).unwrap();
        drop(engine);
        let reopened = open(&path).unwrap();
        for machine in ["ok-1", "ok-2", "ok-3"] {
            let id = keyledger_core::MachineId::new(machine).unwrap();
            assert!(
                reopened.machine_active(KeyId(1), &id).unwrap(),
                "{step:?}: {machine} was acknowledged"
            );
        }
        let lost = keyledger_core::MachineId::new("lost").unwrap();
        let landed = reopened.machine_active(KeyId(1), &lost).unwrap();
        // A failed redb fsync may leave its pages (the batch then reads back, as before
        // the write-ahead file); every other failure leaves nothing of the batch.
        if !matches!(step, Step::Redb(Fault::Sync)) {
            assert!(
                !landed,
                "{step:?}: an unacknowledged batch reads as committed"
            );
        }
        assert!(
            keyledger_ledger::verify(reopened.store()).is_ok(),
            "{step:?}"
        );
    }
}
