//! The engine: owns the decision `State`, the store and the chain head, and turns a batch
//! of submissions into one durable block.
//!
//! Order of work for a batch: decide each command against the live state (applying each
//! accepted event before the next decision), encode and chain its events into one block,
//! then commit the block, the head, new key secrets and idempotency answers in one redb
//! write transaction. Answers are released only after that commit returns. If it fails,
//! every command of the batch gets an error and the state is rebuilt from disk, so it never
//! runs ahead of what is durable.

use std::collections::HashMap;

use keyledger_core::{
    handle, Command, CommandBody, Context, Event, EventBody, NewKeyMaterial, Outcome,
    ProductKeyText, State,
};

use crate::answer::Answer;
use crate::block::BlockWriter;
use crate::codec::encode_record_into;
use crate::error::{Error, Result};
use crate::hashing::{BatchHashing, ChainState, HashingThread};
use crate::idempotency::IdempotencyKey;
use crate::limits::Limits;
use crate::secrets::{fingerprint, generate_key_text};
use crate::store::{BatchWrite, Head, Store};

/// What the engine computed outside `core` for one command.
#[derive(Debug)]
struct CommandContext {
    /// What `decide` reads.
    decide: Context,
    /// The key text generated for a command that may issue a key without given text; it goes
    /// to the secrets table, never into an event.
    generated: Option<ProductKeyText>,
}

/// Records a command's first answer in the batch (stored with it, seen by resends in it).
fn remember(p: &mut Pending, key: IdempotencyKey, answer: &Answer) {
    p.answers.push((key.key.clone(), key.stored(answer)));
    p.seen.insert(key.key, (key.digest, answer.clone()));
}

/// How often a poisoned engine tries to recover, at most.
pub const RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Commands submitted together: applied one by one, or all-or-nothing when `atomic`.
#[derive(Debug)]
pub struct Submission {
    pub commands: Vec<Command>,
    pub atomic: bool,
    /// The commands carry the server's clock as `at` (HTTP activations): the writer raises
    /// it to the newest event's time, so business time never runs backwards.
    pub server_time: bool,
}

impl Submission {
    /// Commands whose `at` the client chose, applied one by one.
    pub fn new(commands: Vec<Command>) -> Submission {
        Submission {
            commands,
            atomic: false,
            server_time: false,
        }
    }

    /// Commands applied all together or not at all.
    pub fn atomic(commands: Vec<Command>) -> Submission {
        Submission {
            atomic: true,
            ..Submission::new(commands)
        }
    }
}

/// What one committed batch appended, for listeners (live projections, metrics).
#[derive(Clone, Debug)]
pub struct Committed {
    /// The seq of the first event; absent when the batch appended none.
    pub first_seq: Option<u64>,
    pub events: Vec<Event>,
    pub commands: usize,
    pub commit_micros: u64,
}

#[derive(Debug)]
pub struct Engine {
    store: Store,
    state: State,
    head: Head,
    limits: Limits,
    /// Set when a failed commit left the store unreadable: the engine then refuses every
    /// batch, since its state may disagree with the disk, and retries the recovery (reopen
    /// the store, fold the state again) at most once per [`RECOVERY_INTERVAL`].
    poisoned: Option<String>,
    next_recovery: std::time::Instant,
    /// The last commit failed (the health report says so until one succeeds).
    commit_failed: bool,
    /// Where the writer's health is reported (`/healthz`).
    health: crate::health::Health,
    /// Told about every committed batch, when set.
    listener: Option<std::sync::mpsc::Sender<Committed>>,
    /// The right edge of the Merkle tree over the log.
    frontier: crate::tree::Frontier,
    /// Hashes the machine names of each batch's events for the store's machine index.
    machine_hasher: crate::machines::MachineHasher,
    fingerprints: crate::fingerprints::FingerprintCache,
    /// Hashes large batches beside their decisions; absent if it could not be started
    /// (batches are then hashed inline).
    hashing: Option<HashingThread>,
    /// First answers of commands (by idempotency key, with the command's digest) in sealed
    /// batches not yet durable: a resent command finds its first answer here before it
    /// reaches the store.
    inflight: HashMap<String, ([u8; 32], Answer)>,
    /// Every (key, machine) pair ever activated, as a filter in front of the machine index
    /// (see [`crate::prefetch`]).
    activated: crate::activated::ActivatedFilter,
    /// The filter's one-part rebuild under way, if one is (see [`crate::activated`]).
    rebuild: Option<crate::activated::Rebuild>,
    /// The filter's parts when a rebuild was last begun or found impossible: the next waits
    /// for another part (a store without a pair index is asked once a part, not a batch).
    rebuilt_at_parts: usize,
    /// Pairs activated by sealed batches not yet durable, and durable ones cached (on disk).
    pairs: crate::pair_facts::PairFacts,
    /// The number of the last batch begun (its machine facts are kept until it is durable).
    generation: u64,
    /// Where recoveries find a resume point (see [`crate::resume`]).
    resumer: Option<crate::resume::Resumer>,
    start: crate::resume::Start,
    filter_start: crate::resume::FilterStart,
    /// The head of the last batch known durable: a saved filter is bound to it.
    durable: Head,
    /// The seq the filter was last saved at (or read from), and the save under way.
    filter_saved_at: u64,
    saving: Option<(crate::saved_filter::Saving, u64)>,
    /// The last sealed batch's sizes: the next batch's tables start that large (batches of
    /// a load are alike), not grown and rehashed entry by entry.
    sizes: BatchSizes,
}

/// How many entries a batch's growing tables held at its seal.
#[derive(Clone, Copy, Debug, Default)]
struct BatchSizes {
    machine_rows: usize,
    pair_rows: usize,
    answers: usize,
    seen: usize,
    pairs: usize,
}

/// The decision state a writer folds from `store`'s log (machine facts on disk, none kept
/// in memory): what a writer's state must equal once its batches are durable.
pub fn decision_state(store: &Store, limits: &Limits) -> Result<State> {
    crate::resume::recovered_state(store, limits, None).map(|(state, _)| state)
}

/// A batch being decided: submissions join it one by one ([`Engine::add`]) until it is
/// sealed ([`Engine::seal`]) into a [`Prepared`] commit.
#[derive(Debug)]
pub struct Batch {
    pending: Pending,
    commands: usize,
    generation: u64,
}

impl Batch {
    /// Commands added so far.
    pub fn commands(&self) -> usize {
        self.commands
    }

    /// Bytes of the records added so far (before compression).
    pub fn bytes(&self) -> usize {
        self.pending.block.as_ref().map_or(0, |b| b.body().len())
    }
}

/// A decided batch: what to write, and what the engine learns once it is durable. The
/// engine already builds on it (the next batch may be decided meanwhile); its answers may
/// be released only after [`Engine::settle`] accepted its commit.
#[derive(Debug)]
pub struct Prepared {
    write: BatchWrite,
    generation: u64,
    first_seq: Option<u64>,
    events: Option<Vec<Event>>,
    commands: usize,
    answer_ids: Vec<String>,
}

impl Prepared {
    /// Commits the batch durably (one redb write transaction, fsync).
    pub fn commit(&self, store: &Store) -> Result<()> {
        store.commit(&self.write)
    }
}

/// What a batch has produced so far, before its commit.
#[derive(Debug)]
struct Pending {
    block: Option<BlockWriter>,
    /// Copies of the appended events, kept only when a listener wants them.
    events: Option<Vec<Event>>,
    /// The head the batch starts from.
    start: Head,
    /// The seq of the last record in `block` (the chain hash comes from `hashing`).
    last_seq: u64,
    hashing: BatchHashing,
    secrets: Vec<(u64, String)>,
    /// Keys whose text the batch retires (erased after its secrets are written).
    retired: Vec<u64>,
    index: crate::machines::IndexRows,
    answers: Vec<(String, Vec<u8>)>,
    seen: HashMap<String, ([u8; 32], Answer)>,
    /// Pairs the batch activated (machine facts on disk): active for its next commands.
    pairs: keyledger_core::state::HashSet<crate::machines::PairRow>,
}

impl Engine {
    /// Opens a store as its writer: claims it (see [`Store::claim_writer`]; a running
    /// writer makes this fail with [`Error::WriterBusy`]), then walks and verifies the whole
    /// chain while replaying it into `State`.
    pub fn open(store: Store, limits: Limits) -> Result<Engine> {
        Engine::open_resuming(store, limits, None)
    }

    /// [`Engine::open`], starting from the resume point `resumer` finds when it is usable
    /// (see [`crate::resume`]): then only the events after it are folded. [`Engine::start`]
    /// says which it was.
    pub fn open_resuming(
        store: Store,
        limits: Limits,
        resumer: Option<crate::resume::Resumer>,
    ) -> Result<Engine> {
        store.claim_writer(false)?;
        // The hash key first (made now for a store older than the machine index): the
        // filter of activated pairs is built as the log is folded.
        let machine_hasher = store.machine_hasher()?;
        let (state, head, activated, start, filter_start) =
            crate::resume::opened_state(&store, &limits, &machine_hasher, resumer.as_ref())?;
        let filter_saved_at = match filter_start {
            crate::resume::FilterStart::Saved { seq } => seq,
            _ => 0,
        };
        let frontier = crate::tree::Frontier::load(&store, head.seq)?;
        store.upgrade_format()?;
        Ok(Engine {
            machine_hasher,
            store,
            state,
            head,
            limits,
            poisoned: None,
            next_recovery: std::time::Instant::now(),
            commit_failed: false,
            health: Default::default(),
            listener: None,
            frontier,
            fingerprints: Default::default(),
            hashing: HashingThread::spawn().ok(),
            inflight: HashMap::new(),
            activated,
            rebuild: None,
            rebuilt_at_parts: 1,
            pairs: crate::pair_facts::PairFacts::new(limits.machine_cache_pairs),
            generation: 0,
            resumer,
            start,
            filter_start,
            durable: head,
            filter_saved_at,
            saving: None,
            sizes: BatchSizes::default(),
        })
    }

    /// How this writer's decision state was made at open.
    pub fn start(&self) -> &crate::resume::Start {
        &self.start
    }

    /// How this writer's filter of activated pairs was made at open.
    pub fn filter_start(&self) -> &crate::resume::FilterStart {
        &self.filter_start
    }

    /// Where this writer finds resume points (a restarted writer keeps its predecessor's).
    pub fn resumer(&self) -> Option<crate::resume::Resumer> {
        self.resumer.clone()
    }

    /// Whether `machine` is active on `key`, by what this engine has decided (durable or
    /// not): the facts of batches not yet durable, else the log.
    pub fn machine_active(
        &self,
        key: keyledger_core::KeyId,
        machine: &keyledger_core::MachineId,
    ) -> Result<bool> {
        if self.state.machine_facts.kept_active(key, machine) {
            return Ok(true);
        }
        let pair = self.machine_hasher.pair(key, machine);
        if self.pairs.active(&pair) {
            return Ok(true);
        }
        self.store.activated_pair(pair, key, machine)
    }

    /// Whether the filter in front of the pair index lets a lookup of the pair through
    /// ("maybe activated"): it must for every pair the log activated (the simulator checks).
    pub fn filter_admits(
        &self,
        key: keyledger_core::KeyId,
        machine: &keyledger_core::MachineId,
    ) -> bool {
        self.activated
            .may_contain(self.machine_hasher.pair(key, machine))
    }

    /// Puts a pair into the filter of activated machines without activating it: a forced
    /// false positive, for tests that the log, not the filter, has the last word.
    #[doc(hidden)]
    pub fn force_filter_positive(
        &mut self,
        key: keyledger_core::KeyId,
        machine: &keyledger_core::MachineId,
    ) {
        self.activated
            .insert(self.machine_hasher.pair(key, machine));
    }

    /// Swaps in the filter rebuilt in the background once it is done, and starts a rebuild
    /// when the filter has outgrown its part (see [`crate::activated`]). Between batches:
    /// every pair of the batches sealed so far is in the store or handed to the rebuild.
    fn tend_filter(&mut self) {
        if !self.limits.machine_facts_on_disk {
            return;
        }
        if let Some(rebuild) = self.rebuild.take() {
            match rebuild.finished() {
                Ok(Some(filter)) => {
                    self.activated = filter;
                    self.rebuilt_at_parts = self.activated.parts();
                }
                Ok(None) => {}
                Err(running) => self.rebuild = Some(running),
            }
            return;
        }
        if self.activated.parts() > self.rebuilt_at_parts.max(1) {
            self.rebuilt_at_parts = self.activated.parts();
            // Room for a quarter more (and the eighth `with_capacity` adds): about 1.6 bytes
            // a pair at the swap, filling to 1.25 before the next rebuild. More room would
            // rebuild less often and hold more memory for pairs not yet activated.
            let len = self.activated.len();
            let pairs = len.saturating_add(len / 4);
            let undurable = self.pairs.undurable();
            let first = self.limits.filter_first_pairs;
            self.rebuild = crate::activated::Rebuild::start(&self.store, pairs, first, undurable);
        }
    }

    /// Saves the filter in the background once `filter_save_events` more events are durable
    /// than at the last save, so a start after a crash reads the saved filter and only that
    /// many events of the log for it (see [`crate::saved_filter`]). A save under way gets its
    /// next piece (1 MiB of bits copied) here, between batches: no copy of the whole filter.
    fn tend_saved_filter(&mut self) {
        use crate::saved_filter::{SaveCursor, Saving, Step};
        if !self.limits.machine_facts_on_disk {
            return;
        }
        if let Some((saving, before)) = &mut self.saving {
            match saving.step(&self.activated) {
                Step::Going => {}
                Step::Done if !saving.is_finished() => {}
                Step::Done => self.saving = None,
                // Another begins once due again, from the filter as it is then.
                Step::GivenUp => {
                    self.filter_saved_at = *before;
                    self.saving = None;
                }
            }
            return;
        }
        // At most about 8 bytes of filter saved for every event since the last save (the
        // log takes ~90): a large filter is saved less often than every `filter_save_events`.
        let every = (self.activated.bytes() as u64 / 8).max(self.limits.filter_save_events);
        if self.durable.seq >= self.filter_saved_at.saturating_add(every) {
            // Every pair through `durable` was put in when its batch was decided, before now.
            let cursor = SaveCursor::new(&self.activated, self.durable, &self.machine_hasher);
            let before = self.filter_saved_at;
            self.saving = Saving::start(&self.store, cursor).map(|saving| (saving, before));
            self.filter_saved_at = self.durable.seq;
        }
    }

    /// Saves the filter now, bound to the last durable head (after any save under way), so
    /// the next start reads it and only the log after it.
    pub fn save_filter(&mut self) -> Result<()> {
        use crate::pair_filter::PIECE_BYTES;
        use crate::saved_filter::SaveCursor;
        self.saving = None;
        if !self.limits.machine_facts_on_disk || self.poisoned.is_some() {
            return Ok(());
        }
        let at = self.durable;
        let mut cursor = SaveCursor::new(&self.activated, at, &self.machine_hasher);
        // Nothing changes the filter meanwhile: this thread is its writer.
        let pieces =
            std::iter::from_fn(|| cursor.next_piece(&self.activated, PIECE_BYTES)).map(|piece| {
                piece.map_err(|_| Error::Storage("the filter changed while saved".into()))
            });
        self.store.put_saved_filter_pieces(pieces)?;
        self.filter_saved_at = at.seq;
        Ok(())
    }

    /// What a writer that stops calls: [`Engine::save_filter`], when the next start would
    /// otherwise read at least `filter_save_events / 128` events of log for its filter (78 K
    /// by default; fewer take a fraction of a second, and a small ledger stays untouched).
    pub fn save_filter_at_stop(&mut self) -> Result<()> {
        let behind = self.durable.seq.saturating_sub(self.filter_saved_at);
        if behind < (self.limits.filter_save_events / 128).max(1) {
            return Ok(());
        }
        self.save_filter()
    }

    /// What the writer keeps of pairs beyond the disk (machine facts on disk).
    pub fn pair_facts(&self) -> &crate::pair_facts::PairFacts {
        &self.pairs
    }

    /// Parts of the filter of activated machines (each adds about 1% of false positives;
    /// a rebuild brings them back to one).
    pub fn filter_parts(&self) -> usize {
        self.activated.parts()
    }

    /// Bytes of the filter of activated machines (capacity planning).
    pub fn activated_filter_bytes(&self) -> usize {
        self.activated.bytes()
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn head(&self) -> Head {
        self.head
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sends every committed batch's events to `listener` from now on.
    pub fn set_listener(&mut self, listener: std::sync::mpsc::Sender<Committed>) {
        self.listener = Some(listener);
    }

    /// Why the engine refuses writes, if it does (see [`Error::Poisoned`]).
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// The health this engine reports to (shared with the writer and `/healthz`).
    pub fn health(&self) -> &crate::health::Health {
        &self.health
    }

    /// Reports to `health` from now on (a restarted writer keeps its predecessor's).
    pub fn set_health(&mut self, health: crate::health::Health) {
        health.set_degraded(self.poisoned.clone());
        self.health = health;
    }

    /// The listener committed batches go to, for a restarted writer to keep.
    pub fn listener(&self) -> Option<std::sync::mpsc::Sender<Committed>> {
        self.listener.clone()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs a batch of submissions and commits it; one answer list per submission.
    pub fn run_batch(&mut self, submissions: &[Submission]) -> Vec<Result<Vec<Answer>>> {
        let mut batch = self.begin();
        let mut results: Vec<Result<Vec<Answer>>> = submissions
            .iter()
            .map(|s| self.add(&mut batch, s))
            .collect();
        let Some(prepared) = self.seal(batch) else {
            return results;
        };
        let started = std::time::Instant::now();
        let outcome = prepared.commit(&self.store);
        let micros = started.elapsed().as_micros() as u64;
        let acked_anyway =
            keyledger_core::planted::active(keyledger_core::planted::Bug::AckBeforeCommit);
        if let Err(message) = self.settle(prepared, outcome, micros) {
            for result in results.iter_mut().filter(|_| !acked_anyway) {
                *result = Err(Error::CommitFailed(message.clone()));
            }
        }
        results
    }

    /// Starts a batch on top of everything decided so far (durable or sealed).
    pub fn begin(&mut self) -> Batch {
        self.tend_filter();
        self.tend_saved_filter();
        self.generation += 1;
        Batch {
            generation: self.generation,
            pending: Pending {
                block: None,
                events: self.listener.as_ref().map(|_| Vec::new()),
                start: self.head,
                last_seq: self.head.seq,
                hashing: BatchHashing::new(ChainState::new(self.head, self.frontier.clone())),
                secrets: Vec::new(),
                retired: Vec::new(),
                index: crate::machines::IndexRows {
                    machines: Vec::with_capacity(self.sizes.machine_rows),
                    pairs: Vec::with_capacity(self.sizes.pair_rows),
                },
                answers: Vec::with_capacity(self.sizes.answers),
                seen: HashMap::with_capacity(self.sizes.seen),
                pairs: keyledger_core::state::HashSet::with_capacity_and_hasher(
                    self.sizes.pairs,
                    Default::default(),
                ),
            },
            commands: 0,
        }
    }

    /// Decides a submission into the batch (its answers hold until the batch is durable).
    pub fn add(&mut self, batch: &mut Batch, submission: &Submission) -> Result<Vec<Answer>> {
        if self.poisoned.is_some() && std::time::Instant::now() >= self.next_recovery {
            // Nothing is sealed on top of a poisoned state (every batch is refused), so the
            // durable log is the whole truth: fold it again. `batch` is still empty.
            self.rebuild_after_failed_commit();
            *batch = self.begin();
        }
        if let Some(why) = &self.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        if let Some(why) = self.health.chain_failure() {
            return Err(Error::WriterStopped(why));
        }
        batch.commands += submission.commands.len();
        self.run_submission(submission, &mut batch.pending)
    }

    /// Closes the batch: finishes its hashing and builds its write. The engine builds on
    /// it from now on. `None` when the batch has nothing to write.
    pub fn seal(&mut self, batch: Batch) -> Option<Prepared> {
        let mut p = batch.pending;
        self.sizes = BatchSizes {
            machine_rows: p.index.machines.len(),
            pair_rows: p.index.pairs.len(),
            answers: p.answers.len(),
            seen: p.seen.len(),
            pairs: p.pairs.len(),
        };
        self.pairs
            .sealed(batch.generation, std::mem::take(&mut p.pairs));
        let chain = match &p.block {
            Some(block) => p.hashing.finish(self.hashing.as_ref(), block.body()),
            None => ChainState::new(p.start, crate::tree::Frontier::default()),
        };
        assert_eq!(chain.head.seq, p.last_seq, "every record is hashed");
        let block = p
            .block
            .map(|b| (p.start.seq + 1, b.finish(&chain.head.hash)));
        let write = BatchWrite {
            block,
            start: p.start,
            merkle: chain.nodes,
            head: (chain.head != p.start).then_some(chain.head),
            secrets: p.secrets,
            retired: p.retired,
            index: p.index,
            answers: p.answers,
        };
        if write.is_empty() {
            return None;
        }
        if write.block.is_some() {
            self.head = chain.head;
            self.frontier = chain.frontier;
        }
        let answer_ids = p.seen.keys().cloned().collect();
        self.inflight.extend(p.seen);
        Some(Prepared {
            first_seq: write.block.as_ref().map(|(seq, _)| *seq),
            generation: batch.generation,
            write,
            events: p.events,
            commands: batch.commands,
            answer_ids,
        })
    }

    /// Takes the outcome of a prepared batch's commit. A failed commit rebuilds the state
    /// from disk, which also drops every batch decided after it: their submissions must be
    /// failed too (the error message is returned for that).
    pub fn settle(
        &mut self,
        prepared: Prepared,
        outcome: Result<()>,
        commit_micros: u64,
    ) -> std::result::Result<(), String> {
        for id in &prepared.answer_ids {
            self.inflight.remove(id);
        }
        if let Err(err) = outcome {
            self.commit_failed = true;
            self.rebuild_after_failed_commit();
            if self.poisoned.is_none() {
                // Recovered, but nothing says the next commit will do better (a disk still
                // full): health stays degraded until one succeeds.
                let why = format!("the last commit failed: {err}");
                self.health.set_degraded(Some(why));
            }
            return Err(err.to_string());
        }
        self.pairs.durable_through(prepared.generation);
        if let Some(head) = prepared.write.head {
            self.durable = head;
        }
        if std::mem::take(&mut self.commit_failed) {
            self.health.set_degraded(None);
        }
        if let (Some(listener), Some(events)) = (&self.listener, prepared.events) {
            let committed = Committed {
                first_seq: prepared.first_seq,
                events,
                commands: prepared.commands,
                commit_micros,
            };
            // A listener that went away is no reason to stop writing.
            let _ = listener.send(committed);
        }
        Ok(())
    }

    /// Gives up on every batch not known to be durable (its commit's outcome is unknown):
    /// rebuilds from disk as after a failed commit. Returns why, for their submissions.
    pub fn abandon(&mut self, why: String) -> String {
        self.rebuild_after_failed_commit();
        why
    }

    /// The state ran ahead of disk during the batch: reopen the store (redb refuses all
    /// work after an I/O error) and fold the state again from what is durable. If that
    /// fails (the disk is still full, the file unreadable), the engine refuses batches and
    /// retries on a later one: it never goes on with a state that may disagree with the disk.
    fn rebuild_after_failed_commit(&mut self) {
        match self.recover() {
            Ok(()) => self.poisoned = None,
            Err(err) => {
                self.poisoned = Some(err.to_string());
                self.next_recovery = std::time::Instant::now() + RECOVERY_INTERVAL;
            }
        }
        self.health.set_degraded(self.poisoned.clone());
    }

    fn recover(&mut self) -> Result<()> {
        self.inflight.clear();
        self.pairs.forget_undurable();
        // A filter rebuild reads the database being closed: wait for it (a reopen must find
        // the file closed; two handles on one file would write over each other). The next
        // batch starts another.
        self.rebuild = None;
        self.saving = None;
        self.rebuilt_at_parts = 1;
        self.store.reopen()?;
        // The filter keeps what it has: it only ever answers "maybe", and holds every pair
        // the log does (and perhaps some of the failed batch's).
        let (state, head) =
            crate::resume::recovered_state(&self.store, &self.limits, self.resumer.as_ref())?;
        self.frontier = crate::tree::Frontier::load(&self.store, head.seq)?;
        self.state = state;
        self.head = head;
        self.durable = head;
        Ok(())
    }

    /// Hands the batch's settled records to the hashing thread (see [`crate::hashing`]).
    /// Called only between commands of a non-atomic submission or between submissions,
    /// where no record can be rolled back any more.
    fn offer_for_hashing(&self, pending: &mut Pending) {
        if let Some(block) = &pending.block {
            let hashing = self.hashing.as_ref();
            pending.hashing.offer(hashing, block.body(), block.count());
        }
    }

    fn run_submission(&mut self, s: &Submission, pending: &mut Pending) -> Result<Vec<Answer>> {
        if s.commands.len() > self.limits.batch_commands_max {
            return Err(Error::BatchTooLarge {
                count: s.commands.len(),
                limit: self.limits.batch_commands_max,
            });
        }
        if s.atomic && s.commands.len() > 1 {
            let answers = self.run_atomic(&s.commands, pending);
            self.offer_for_hashing(pending);
            return Ok(answers);
        }
        let mut state = std::mem::take(&mut self.state);
        let mut answers = Vec::with_capacity(s.commands.len());
        for c in &s.commands {
            let answer = match (s.server_time, state.newest_at()) {
                (true, Some(newest)) if c.at < newest => {
                    let stamped = Command {
                        at: newest,
                        ..c.clone()
                    };
                    self.run_command(&mut state, &stamped, pending)
                }
                _ => self.run_command(&mut state, c, pending),
            };
            answers.push(answer);
            self.offer_for_hashing(pending);
        }
        self.state = state;
        self.offer_for_hashing(pending);
        Ok(answers)
    }

    /// All commands or none: decide against a copy, keep it only if every one is accepted.
    fn run_atomic(&mut self, commands: &[Command], pending: &mut Pending) -> Vec<Answer> {
        let mut scratch = self.state.clone();
        let saved = (
            pending.last_seq,
            pending.secrets.len(),
            pending.answers.len(),
            pending.retired.len(),
            pending.index.mark(),
        );
        let saved_events = pending.events.as_ref().map(Vec::len);
        let saved_block = pending.block.as_ref().map(BlockWriter::checkpoint);
        let mut answers = Vec::with_capacity(commands.len());
        let mut keys = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let ctx = self.context(&command.body, pending.last_seq + 1);
            let key = IdempotencyKey::of(command, ctx.decide.presented.as_ref());
            let first = match &key {
                Some(key) => crate::idempotency::repeated_in(&keys, &answers, key).or_else(|| {
                    self.first_answer(key, &scratch, pending)
                        .unwrap_or_else(|e| Some(Answer::error("storage", e.to_string())))
                }),
                None => None,
            };
            let answer = match first {
                Some(answer) => answer,
                None => self.run_command_atomic(&mut scratch, command, &ctx, pending),
            };
            keys.push(key);
            if !answer.ok {
                if let (Some(block), Some(mark)) = (pending.block.as_mut(), saved_block) {
                    block.rollback(mark);
                } else {
                    pending.block = None;
                }
                pending.last_seq = saved.0;
                if let (Some(events), Some(len)) = (pending.events.as_mut(), saved_events) {
                    events.truncate(len);
                }
                pending.secrets.truncate(saved.1);
                pending.answers.truncate(saved.2);
                pending.retired.truncate(saved.3);
                for pair in &pending.index.pairs[saved.4 .1..] {
                    pending.pairs.remove(pair);
                }
                pending.index.truncate(saved.4);
                return Answer::atomic_refusal(commands.len(), i, answer);
            }
            answers.push(answer);
        }
        for (key, answer) in keys.into_iter().zip(&answers) {
            if let Some(key) = key {
                remember(pending, key, answer);
            }
        }
        self.state = scratch;
        answers
    }

    fn run_command_atomic(
        &mut self,
        state: &mut State,
        c: &Command,
        ctx: &CommandContext,
        p: &mut Pending,
    ) -> Answer {
        // Inside an atomic submission a refusal appends nothing, not even its R10 record.
        match self.decide_looked_up(state, c, ctx, p) {
            Ok(Outcome::Accepted(events)) => self.append(state, c, ctx, events, None, p),
            Ok(Outcome::Refused { refusal, .. }) => Answer::refused(&refusal, None),
            Err(err) => Answer::error("storage", err.to_string()),
        }
    }

    /// Decides `c` over the machine facts it needs, looked up first (see
    /// [`crate::prefetch`]) and forgotten after: the next command looks again.
    fn decide_looked_up(
        &mut self,
        state: &mut State,
        c: &Command,
        ctx: &CommandContext,
        p: &Pending,
    ) -> Result<Outcome> {
        if !self.limits.machine_facts_on_disk {
            return Ok(handle(state, c, &ctx.decide));
        }
        let presented = ctx.decide.presented.as_ref();
        let known = crate::prefetch::Known {
            batch: &p.pairs,
            before: &mut self.pairs,
            filter: &self.activated,
        };
        let looked = crate::prefetch::look_up(
            &self.store,
            &self.machine_hasher,
            known,
            state,
            &c.body,
            presented,
        );
        let outcome = looked.map(|()| handle(state, c, &ctx.decide));
        state.machine_facts.clear_looked_up();
        outcome
    }

    fn run_command(&mut self, state: &mut State, c: &Command, p: &mut Pending) -> Answer {
        let ctx = self.context(&c.body, p.last_seq + 1);
        let key = IdempotencyKey::of(c, ctx.decide.presented.as_ref());
        if let Some(key) = &key {
            match self.first_answer(key, state, p) {
                Ok(Some(answer)) => return answer,
                Ok(None) => {}
                Err(err) => return Answer::error("storage", err.to_string()),
            }
        }
        let answer = match self.decide_looked_up(state, c, &ctx, p) {
            Ok(Outcome::Accepted(events)) => self.append(state, c, &ctx, events, None, p),
            Ok(Outcome::Refused {
                refusal,
                recorded: Some(event),
            }) => self.append(state, c, &ctx, vec![*event], Some(&refusal), p),
            Ok(Outcome::Refused { refusal, .. }) => Answer::refused(&refusal, None),
            Err(err) => Answer::error("storage", err.to_string()),
        };
        if let Some(key) = key {
            remember(p, key, &answer);
        }
        answer
    }

    /// The answer to a resent command: its first answer (this batch, a batch not yet
    /// durable, the store, or the unscoped table of format 2), or `command_id_reused`.
    fn first_answer(
        &self,
        key: &IdempotencyKey,
        state: &State,
        p: &Pending,
    ) -> Result<Option<Answer>> {
        if keyledger_core::planted::active(keyledger_core::planted::Bug::SkipIdempotency) {
            return Ok(None);
        }
        let pending = p.seen.get(&key.key).or_else(|| self.inflight.get(&key.key));
        if let Some((digest, first)) = pending {
            return Ok(Some(key.resend(digest, first)));
        }
        crate::idempotency::stored_first_answer(&self.store, key, state)
    }

    /// What deciding a command needs from outside `core`: the presented key's fingerprint,
    /// for commands that may issue a key freshly generated key text, and the seq its first
    /// event would take.
    fn context(&mut self, body: &CommandBody, next_seq: u64) -> CommandContext {
        let presented = body
            .presented_key()
            .map(|text| self.fingerprints.fingerprint(text));
        let generated = body.may_generate_key().then(generate_key_text);
        let new_key = generated.as_ref().map(|text| NewKeyMaterial {
            fingerprint: fingerprint(text),
            last5: text.last5(),
        });
        CommandContext {
            decide: Context {
                presented,
                new_key,
                next_seq,
            },
            generated,
        }
    }

    /// Encodes, chains and applies a command's events; answers with what they produced.
    /// Encodes a command's events straight into the batch's block. Every record is encoded
    /// before any is applied: an oversized one takes the command's records back out of the
    /// block, and the command is refused with nothing of it in the block or the state.
    fn encode_into_block(&self, events: &[Event], p: &mut Pending) -> Result<()> {
        let block = p
            .block
            .get_or_insert_with(|| BlockWriter::new(p.last_seq + 1));
        let mark = block.checkpoint();
        for event in events {
            let bytes = block.push_with(|body| encode_record_into(event, body));
            if bytes > self.limits.record_bytes_max {
                block.rollback(mark);
                if block.count() == 0 {
                    p.block = None;
                }
                return Err(Error::RecordTooLarge {
                    bytes,
                    limit: self.limits.record_bytes_max,
                });
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        state: &mut State,
        c: &Command,
        ctx: &CommandContext,
        events: Vec<Event>,
        refusal: Option<&keyledger_core::Refusal>,
        p: &mut Pending,
    ) -> Answer {
        if let Err(err) = self.encode_into_block(&events, p) {
            return Answer::error("record_too_large", err.to_string());
        }
        for event in &events {
            p.last_seq += 1;
            state.apply(event);

            if let EventBody::KeyIssued { key_id, .. } = &event.body {
                let text = match &c.body {
                    CommandBody::IssueKey(issue) if issue.product_key.is_some() => {
                        issue.product_key.clone()
                    }
                    _ => ctx.generated.clone(),
                };
                let text = text.expect("an issued key has text: given or generated");
                p.secrets.push((key_id.0, text.reveal().to_owned()));
            }
            if let EventBody::KeyTextRetired { key_id, .. } = &event.body {
                p.retired.push(key_id.0);
            }
            let before = p.index.pairs.len();
            self.machine_hasher
                .rows_of(p.last_seq, &event.body, &mut p.index);
            if self.limits.machine_facts_on_disk {
                for pair in &p.index.pairs[before..] {
                    self.activated.insert(*pair);
                    if let Some(rebuild) = &mut self.rebuild {
                        rebuild.note(*pair);
                    }
                    p.pairs.insert(*pair);
                }
            }
        }
        let answer = match refusal {
            Some(refusal) => Answer::refused(refusal, Some(p.last_seq)),
            None => Answer::accepted_with(state, p.last_seq, &events),
        };
        if let Some(listened) = p.events.as_mut() {
            listened.extend(events);
        }
        answer
    }
}
