//! A run: the engine under test on the simulated disk, a reference engine on a disk that
//! never fails, the clients, the clock, and the steps between them.
//!
//! The reference is given exactly the submissions the engine under test acknowledged, in
//! the same batches: its answers and its chain are what the engine's must be. Every step
//! is drawn from the seed; nothing reads the wall clock or the OS's randomness, so a seed
//! replays the same run.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use keyledger_core::planted::{self, Bug};
use keyledger_ledger::resume::FilterStart;
use keyledger_ledger::store::redb::wal::{WalFaults, WalStep};
use keyledger_ledger::{Answer, Committed, Engine, Limits, Store, Submission};
use keyledger_projections::Projections;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check;
use crate::clients::Clients;
use crate::disk::{Disk, Faults};

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub seed: u64,
    pub steps: u64,
    /// Prints each step and its answers to stderr (for a replay).
    pub trace: bool,
    /// A known bug switched on for the run (the simulator must find it).
    pub plant: Option<Bug>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub steps: u64,
    pub commands: u64,
    pub acknowledged: u64,
    pub refused: u64,
    /// Submissions failed (a failed commit, a writer refusing while it recovers).
    pub failed: u64,
    pub resends_checked: u64,
    pub faults_injected: u64,
    pub power_losses: u64,
    pub restarts: u64,
    /// Opens a fault failed (tried again on a mended disk).
    pub opens_failed: u64,
    /// Opens that read the filter of activated pairs a clean stop saved.
    pub saved_filters_read: u64,
    /// Batches answered failed that a power loss left in the log (see `resolve_unknown`).
    pub unknown_resolved: u64,
    /// Unsynced writes a power loss dropped or tore.
    pub writes_lost: u64,
    pub writes_torn: u64,
    pub events: u64,
    /// Refusals by code (what the clients were told).
    pub refusals: std::collections::BTreeMap<String, u64>,
}

impl Outcome {
    /// Adds another run's counts (a sweep's totals).
    pub fn absorb(&mut self, o: &Outcome) {
        self.steps += o.steps;
        self.commands += o.commands;
        self.acknowledged += o.acknowledged;
        self.refused += o.refused;
        self.failed += o.failed;
        self.resends_checked += o.resends_checked;
        self.faults_injected += o.faults_injected;
        self.power_losses += o.power_losses;
        self.restarts += o.restarts;
        self.opens_failed += o.opens_failed;
        self.saved_filters_read += o.saved_filters_read;
        self.unknown_resolved += o.unknown_resolved;
        self.writes_lost += o.writes_lost;
        self.writes_torn += o.writes_torn;
        self.events += o.events;
        for (code, n) in &o.refusals {
            *self.refusals.entry(code.clone()).or_default() += n;
        }
    }
}

/// An invariant broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} step {}: {} (replay: keyledger-sim --seed {} --steps {})",
            self.seed,
            self.step,
            self.what,
            self.seed,
            self.step + 1
        )
    }
}

/// Frames between the write-ahead file's checkpoints: small, so that power losses find
/// redb commits that only the write-ahead file holds.
const CHECKPOINT_EVERY: u64 = 4;

/// The write-ahead file's fault: the n-th step of a kind from now fails.
#[derive(Debug, Default)]
struct WalCountdown {
    step: Option<(WalStep, u64)>,
    injected: u64,
}

pub(crate) struct World {
    pub rng: ChaCha8Rng,
    dir: tempfile::TempDir,
    pub disk: Disk,
    wal: Arc<Mutex<WalCountdown>>,
    /// The engine under test (`None` only while it is being replaced).
    engine: Option<Engine>,
    pub reference: Engine,
    pub clients: Clients,
    /// The first answer of every command the engine acknowledged or refused, by id.
    pub first_answers: HashMap<String, Answer>,
    /// The read models, folded from what the engine reported committed.
    pub live: Projections,
    committed: Receiver<Committed>,
    /// The submissions of the last batch that failed: if the power went during its commit,
    /// it may be in the log all the same (an unknown outcome, resolved after recovery).
    unknown: Vec<Submission>,
    hash_key: [u8; 16],
    trace: bool,
    pub clock: i64,
    pub outcome: Outcome,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("outcome", &self.outcome)
            .finish()
    }
}

fn limits() -> Limits {
    Limits {
        // A small cache: re-activations go to the pair index on the simulated disk.
        machine_cache_pairs: 8,
        // A small filter: it outgrows its part often and is rebuilt from the simulated
        // disk's pair index beside the batches (and its faults).
        filter_first_pairs: 16,
        ..Limits::default()
    }
}

/// Runs `config`; the first invariant that breaks ends it.
pub fn run(config: Config) -> Result<Outcome, Violation> {
    planted::plant(config.plant);
    let result = run_planted(config);
    planted::plant(None);
    result
}

fn run_planted(config: Config) -> Result<Outcome, Violation> {
    let violation = |step: u64| {
        move |what: String| Violation {
            seed: config.seed,
            step,
            what,
        }
    };
    let mut world = World::new(config.seed).map_err(violation(0))?;
    world.trace = config.trace;
    for step in 0..config.steps {
        // An assertion inside the engine (an invariant it checks itself) is a finding too.
        let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.step()));
        stepped
            .unwrap_or_else(|panic| Err(panicked(&panic)))
            .map_err(violation(step))?;
        world.outcome.steps = step + 1;
    }
    world.finish().map_err(violation(config.steps))?;
    Ok(world.outcome)
}

/// Whether an answer says the store failed a read (code `storage`).
fn store_failed(results: &[keyledger_ledger::Result<Vec<Answer>>]) -> bool {
    results
        .iter()
        .flatten()
        .flatten()
        .any(|answer| answer.code() == Some("storage"))
}

/// A panic's message, as a violation says it.
fn panicked(panic: &Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    format!("the engine panicked: {message}")
}

const ENGINE_RUNS: &str = "an engine runs between steps";

impl World {
    fn new(seed: u64) -> Result<World, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        let disk = Disk::default();
        let wal = Arc::new(Mutex::new(WalCountdown::default()));
        let hash_key: [u8; 16] = rng.random();
        let engine = open_engine(&dir, &disk, &wal, hash_key)?;
        let reference = Store::with_backend(redb::backends::InMemoryBackend::new, "reference")
            .and_then(|store| Engine::open(store, limits()))
            .map_err(|e| format!("the reference engine: {e}"))?;
        let (_, committed) = channel();
        let mut world = World {
            clients: Clients::new(&mut rng),
            rng,
            dir,
            disk,
            wal,
            engine: None,
            reference,
            first_answers: HashMap::new(),
            live: Projections::default(),
            committed,
            unknown: Vec::new(),
            hash_key,
            trace: false,
            clock: 0,
            outcome: Outcome::default(),
        };
        world.attach(engine);
        let catalog = world.clients.catalog();
        world.submit(vec![Submission::new(catalog)])?;
        Ok(world)
    }

    /// One step, drawn from the seed, then the invariants every step must keep.
    fn step(&mut self) -> Result<(), String> {
        self.clock += self.rng.random_range(0..600);
        let action = self.rng.random_range(0..100u32);
        if self.trace {
            eprintln!("step (action {action}) head {}", self.engine().head().seq);
        }
        match action {
            0..80 => {
                let submissions = (0..self.rng.random_range(1..=6))
                    .map(|_| self.clients.submission(&mut self.rng, self.clock))
                    .collect();
                self.submit(submissions)?;
            }
            80..88 => self.arm_fault(),
            88..91 => self.disk.free_space(),
            91..95 => self.power_loss()?,
            95..97 => self.restart()?,
            _ => self.resend_some()?,
        }
        if self.disk.is_off() {
            // The power went in the middle of a write.
            self.power_loss()?;
        }
        if self.engine().poisoned().is_some() {
            // The engine retries its recovery on a wall-clock interval: restart it instead,
            // as an operator (or a supervisor) would, so the run stays deterministic.
            self.disk.free_space();
            self.restart()?;
        }
        check::every_step(self.engine.as_ref().expect(ENGINE_RUNS), &self.reference)
    }

    /// Arms one fault: an I/O error on a near write or sync of the ledger file or of the
    /// write-ahead file, or a disk that fills up soon.
    fn arm_fault(&mut self) {
        let within = self.rng.random_range(1..=40);
        match self.rng.random_range(0..6u32) {
            5 => self.disk.arm(Faults {
                power_off_in: Some(within),
                ..Faults::default()
            }),
            0 => self.disk.arm(Faults {
                write_error_in: Some(within),
                ..Faults::default()
            }),
            1 => self.disk.arm(Faults {
                sync_error_in: Some(within % 4 + 1),
                ..Faults::default()
            }),
            2 => {
                let room = self.rng.random_range(0..64 * 1024);
                self.disk.arm(Faults {
                    capacity: Some(self.disk.file_len() + room),
                    ..Faults::default()
                });
            }
            3 => self.wal_countdown().step = Some((WalStep::Write, within % 6 + 1)),
            _ => self.wal_countdown().step = Some((WalStep::Sync, within % 6 + 1)),
        }
    }

    fn wal_countdown(&self) -> std::sync::MutexGuard<'_, WalCountdown> {
        self.wal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one batch of submissions through the engine under test; what it acknowledged
    /// goes to the reference in the same batch, and the answers must agree.
    pub fn submit(&mut self, submissions: Vec<Submission>) -> Result<(), String> {
        self.outcome.commands += submissions
            .iter()
            .map(|s| s.commands.len() as u64)
            .sum::<u64>();
        let before = self.engine().head();
        let results = self.engine().run_batch(&submissions);
        if self.trace {
            for (s, r) in submissions.iter().zip(&results) {
                let ids: Vec<String> = s.commands.iter().map(describe).collect();
                let r = r
                    .as_ref()
                    .map(|a| a.iter().map(|a| (a.ok, a.seq)).collect::<Vec<_>>());
                eprintln!("  submit atomic={} {ids:?} -> {r:?}", s.atomic);
            }
            let stored = self.engine().store().head().map(|h| h.seq);
            let poisoned = self.engine().poisoned().map(str::to_owned);
            let head = self.engine().head().seq;
            eprintln!("  engine head {head} stored head {stored:?} poisoned {poisoned:?}");
        }
        self.fold_committed();
        if store_failed(&results) {
            // The store refused a read (redb after an I/O error, until it is reopened): the
            // command was answered `storage`, an explicit failure to be retried, not a
            // decision. Such a batch cannot have committed anything.
            if self.engine().head() != before {
                return Err("a batch answered `storage` changed the log".to_owned());
            }
            self.outcome.failed += submissions.len() as u64;
            return Ok(());
        }
        let mut acknowledged = Vec::new();
        let mut answers = Vec::new();
        self.unknown.clear();
        for (submission, result) in submissions.into_iter().zip(results) {
            match result {
                Ok(given) => {
                    self.remember(&submission, &given)?;
                    acknowledged.push(submission);
                    answers.push(given);
                }
                Err(_) => {
                    self.outcome.failed += 1;
                    self.unknown.push(submission);
                }
            }
        }
        if acknowledged.is_empty() {
            return Ok(());
        }
        let expected = self.reference.run_batch(&acknowledged);
        check::same_answers(&acknowledged, &answers, expected)
    }

    /// Records each command's first answer; a command seen before must get it again. (An
    /// atomic submission that was refused answers for the submission, not for each command:
    /// nothing of it was applied or remembered.)
    fn remember(&mut self, submission: &Submission, answers: &[Answer]) -> Result<(), String> {
        let ok = answers.iter().filter(|a| a.ok).count() as u64;
        self.outcome.acknowledged += ok;
        self.outcome.refused += answers.len() as u64 - ok;
        for (command, answer) in submission
            .commands
            .iter()
            .zip(answers)
            .filter(|(_, a)| !a.ok)
        {
            let code = format!(
                "{} {}",
                command.body.type_name(),
                answer.code().unwrap_or("-")
            );
            *self.outcome.refusals.entry(code).or_default() += 1;
        }
        if submission.atomic && ok < answers.len() as u64 {
            return Ok(());
        }
        for (command, answer) in submission.commands.iter().zip(answers) {
            let Some(id) = &command.command_id else {
                continue;
            };
            match self.first_answers.get(id.as_str()) {
                Some(first) if first != answer => {
                    return Err(format!(
                        "command {id} ({}) was resent and answered {answer:?}, first {first:?}",
                        command.body.type_name()
                    ))
                }
                Some(_) => self.outcome.resends_checked += 1,
                None => {
                    self.first_answers
                        .insert(id.as_str().to_owned(), answer.clone());
                }
            }
        }
        Ok(())
    }

    /// Folds what the engine reported committed into the live read models.
    fn fold_committed(&mut self) {
        while let Ok(committed) = self.committed.try_recv() {
            let Some(first) = committed.first_seq else {
                continue;
            };
            for (offset, event) in committed.events.iter().enumerate() {
                self.live.apply(first + offset as u64, event);
            }
        }
    }

    /// Resends a few commands sent before, as one batch.
    fn resend_some(&mut self) -> Result<(), String> {
        let resends = self.clients.resends(&mut self.rng, 8);
        if resends.is_empty() {
            return Ok(());
        }
        self.submit(vec![Submission::new(resends)])
    }

    /// The power goes: unsynced writes to the ledger file are lost or torn; the engine
    /// starts again from what the disk holds.
    fn power_loss(&mut self) -> Result<(), String> {
        self.disk.power_off();
        drop(self.engine.take());
        self.reboot_disk();
        self.reopen()
    }

    /// After a power loss: a failed batch whose write-ahead frame was synced before the
    /// power went is in the log, though it was answered failed. Then the reference decides it
    /// too, its events join the live read models, and each command's first answer (asked by
    /// resending it) must be the reference's.
    fn resolve_unknown(&mut self) -> Result<(), String> {
        let before = self.reference.head().seq;
        if self.engine().head().seq == before || self.unknown.is_empty() {
            return Ok(());
        }
        let unknown = std::mem::take(&mut self.unknown);
        let expected = self.reference.run_batch(&unknown);
        let store = self.engine().store().clone();
        keyledger_ledger::walk(&store, before + 1, |record| {
            self.live.apply(record.seq, &record.event);
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .map_err(|e| format!("walk: {e}"))?;
        self.outcome.unknown_resolved += 1;
        let given = self.engine().run_batch(&unknown);
        let given: Vec<Vec<Answer>> = given
            .into_iter()
            .map(|r| r.map_err(|e| format!("a resend after recovery failed: {e}")))
            .collect::<Result<_, _>>()?;
        for (submission, answers) in unknown.iter().zip(&given) {
            self.remember(submission, answers)?;
        }
        check::same_answers(&unknown, &given, expected)
    }

    /// The disk after its power went: unsynced writes kept, lost or torn, counted.
    fn reboot_disk(&mut self) {
        let report = self.disk.crash(&mut self.rng);
        self.outcome.power_losses += 1;
        self.outcome.writes_lost += report.lost;
        self.outcome.writes_torn += report.torn;
    }

    /// The process stops (`kill -9`): what it wrote stays, synced or not. Every other stop
    /// is clean: the writer first saves its filter of activated pairs (as `Writer::stop`
    /// does; faults may fail the save), and the next open reads it back.
    fn restart(&mut self) -> Result<(), String> {
        if self.outcome.restarts % 2 == 1 {
            let saved = self.engine().save_filter();
            if self.trace {
                eprintln!("  clean stop: filter saved: {saved:?}");
            }
        }
        self.disk.power_off();
        drop(self.engine.take());
        self.disk.power_on();
        self.outcome.restarts += 1;
        self.reopen()
    }
}

impl World {
    pub fn engine(&mut self) -> &mut Engine {
        self.engine.as_mut().expect(ENGINE_RUNS)
    }

    /// [`check::after_recovery`] of the engine under test.
    fn check_after_recovery(&self) -> Result<(), String> {
        let engine = self.engine.as_ref().expect(ENGINE_RUNS);
        check::after_recovery(engine, &self.reference, &self.live)
    }

    /// Makes `engine` the engine under test, reporting its commits to the live read models.
    fn attach(&mut self, mut engine: Engine) {
        let (sender, committed) = channel();
        engine.set_listener(sender);
        self.committed = committed;
        self.engine = Some(engine);
    }

    /// Opens the engine again on what the disk holds, and checks what it recovered. An open
    /// that a fault fails is tried again once the disk is mended (faults cleared).
    fn reopen(&mut self) -> Result<(), String> {
        let engine = match open_engine(&self.dir, &self.disk, &self.wal, self.hash_key) {
            Ok(engine) => engine,
            Err(why) => {
                if self.trace {
                    eprintln!("  open failed ({why}); the disk is mended");
                }
                self.outcome.opens_failed += 1;
                if self.disk.is_off() {
                    // The power went during the open itself.
                    self.reboot_disk();
                }
                self.disk.arm(Faults::default());
                self.wal_countdown().step = None;
                open_engine(&self.dir, &self.disk, &self.wal, self.hash_key)?
            }
        };
        if matches!(engine.filter_start(), FilterStart::Saved { .. }) {
            self.outcome.saved_filters_read += 1;
        }
        self.attach(engine);
        self.resolve_unknown()?;
        self.check_after_recovery()
    }

    /// The last checks of a run: the whole chain, and every first answer asked again.
    fn finish(&mut self) -> Result<(), String> {
        self.disk.free_space();
        self.check_after_recovery()?;
        let resends = self.clients.all_sent();
        for chunk in resends.chunks(64) {
            self.submit(vec![Submission::new(chunk.to_vec())])?;
        }
        let wal_injected = self.wal_countdown().injected;
        self.outcome.faults_injected = self.disk.injected() + wal_injected;
        self.outcome.events = self.engine().head().seq;
        Ok(())
    }
}

/// The engine under test on `disk`, with its write-ahead file in `dir` failing where the
/// countdown says (and failing every step while the power is off).
fn open_engine(
    dir: &tempfile::TempDir,
    disk: &Disk,
    wal: &Arc<Mutex<WalCountdown>>,
    hash_key: [u8; 16],
) -> Result<Engine, String> {
    let (countdown, powered) = (Arc::clone(wal), disk.clone());
    let faults: WalFaults = Arc::new(move |step| {
        if powered.is_off() {
            return Err(std::io::Error::other("simulated power loss"));
        }
        let mut wal = countdown.lock().unwrap_or_else(|e| e.into_inner());
        match &mut wal.step {
            Some((armed, 1)) if *armed == step => {
                wal.step = None;
                wal.injected += 1;
                Err(std::io::Error::other(format!("simulated {step:?} failure")))
            }
            Some((armed, n)) if *armed == step => {
                *n -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    });
    let backend_disk = disk.clone();
    let path = dir.path().join("sim.redb");
    let store = Store::with_backend_and_wal(
        move || backend_disk.backend(),
        &path,
        CHECKPOINT_EVERY,
        faults,
        Some(hash_key),
    )
    .map_err(|e| format!("the ledger did not open after recovery: {e}"))?;
    Engine::open(store, limits()).map_err(|e| format!("the engine did not open: {e}"))
}

/// A command as a trace line shows it.
fn describe(command: &keyledger_core::Command) -> String {
    let id = command.command_id.as_ref().map_or("-", |id| id.as_str());
    match &command.body {
        keyledger_core::CommandBody::Activate(a) => {
            let machines: Vec<&str> = a.machines.iter().map(|m| m.as_str()).collect();
            let text = a.product_key.reveal();
            format!("{id} activate ..{} {machines:?}", &text[text.len() - 5..])
        }
        body => format!("{id} {}", body.type_name()),
    }
}
