//! Storage faults: a redb `StorageBackend` that fails a write or an fsync on a countdown,
//! once (a transient error) or from then on (a dead disk), driven by proptest.
//! What must hold: no command of a failed batch is answered `ok`; the in-memory state never
//! runs ahead of what the store holds; after reopening on a healthy disk the chain verifies,
//! every acknowledged activation is there, and the state equals a replay.

mod support;

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
        if std::mem::discriminant(&op) != std::mem::discriminant(&self.fault) {
            return Ok(());
        }
        let left = self.countdown.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 || (self.sticky && left < 0) {
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
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let armed = Arc::new(AtomicI64::new(i64::MAX));
    let backend = FaultyBackend {
        inner: FileBackend::new(file).unwrap(),
        fault,
        countdown: Arc::clone(&armed),
        sticky,
    };
    let store = Store::with_backend(backend, "faulty").unwrap();
    let engine = Engine::open(store, limits).unwrap();
    armed.store(countdown, Ordering::SeqCst);
    engine
}

/// The engine's state equals a replay of what its store holds (unless it refuses writes).
fn state_matches_disk(engine: &Engine) -> Result<(), TestCaseError> {
    if engine.poisoned().is_some() {
        return Ok(());
    }
    let mut replayed = keyledger_core::State::default();
    let walked = keyledger_ledger::walk(engine.store(), 1, |r| {
        replayed.apply(&r.event);
        Ok(std::ops::ControlFlow::Continue(()))
    });
    if walked.is_ok() {
        prop_assert_eq!(&replayed, engine.state());
    }
    Ok(())
}

/// Reopened on a healthy disk, the ledger verifies and holds every acknowledged machine.
fn reopened_holds(path: &Path, acknowledged: &[String]) -> Result<(), TestCaseError> {
    let engine = open(path).map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
    let key = engine.state().key(KeyId(1)).unwrap();
    for machine in acknowledged {
        let id = keyledger_core::MachineId::new(machine.as_str()).unwrap();
        prop_assert!(
            key.machines.contains(&id),
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
        drop(new_ledger(dir.path(), 1_000));
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
        drop(new_ledger(dir.path(), 1_000));
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
        let engine = writer.stop();
        prop_assert!(failed > 0, "the fault never struck");
        state_matches_disk(&engine)?;
        drop(engine);
        reopened_holds(&path, &acknowledged)?;
    }
}

#[test]
fn a_sticky_sync_failure_fails_the_batch_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    drop(new_ledger(dir.path(), 1_000));
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
        assert_eq!(
            engine.head(),
            head,
            "the head never moves past a failed commit"
        );
    }
    assert_eq!(engine.state().key(KeyId(1)).unwrap().used(), 0);
}
