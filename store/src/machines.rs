//! The machine index: for every event that names a machine (or a KMS host or client), a
//! row `(h, seq)`, `h` a 64-bit keyed hash of the name, and likewise for every license ID,
//! key, request and contacted KMS host it names ([`EventBody::named`]: the history index,
//! so that no history is held in memory); the store keeps the rows beside the
//! log, written in the same commit, so "what happened to machine X" is one lookup, not a scan
//! of the log. Rows are derived from events by one function ([`EventBody::machine_names`]);
//! the index can always be rebuilt from the log, and is on an upgrade. A hash names
//! candidates: the reader keeps the events that do name the machine, so a collision costs
//! one event read and never a wrong row. The key is the ledger's own (random, made when the
//! index is first written), so a client cannot choose names that collide with another's.

use std::hash::Hasher;

use keyledger_core::{Event, EventBody, KeyId, MachineId, Named};
use siphasher::sip::SipHasher13;

use crate::block::Block;
use crate::codec::decode_record;

/// One row of the index: the name's hash, the seq of the event naming it.
pub type MachineRow = (u64, u64);

/// One row of the pair index: the 128-bit keyed hash of a (key, machine) pair that an event
/// activated, as its high and low halves (see [`MachineHasher::pair`]).
pub type PairRow = (u64, u64);

/// The index rows of some events: the machine index's and the pair index's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexRows {
    pub machines: Vec<MachineRow>,
    pub pairs: Vec<PairRow>,
}

/// How many rows of each kind a batch held at some point (to roll back to it).
pub type RowsMark = (usize, usize);

impl IndexRows {
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty() && self.pairs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.machines.len() + self.pairs.len()
    }

    pub fn mark(&self) -> RowsMark {
        (self.machines.len(), self.pairs.len())
    }

    pub fn truncate(&mut self, (machines, pairs): RowsMark) {
        self.machines.truncate(machines);
        self.pairs.truncate(pairs);
    }

    pub fn extend(&mut self, other: &IndexRows) {
        self.machines.extend_from_slice(&other.machines);
        self.pairs.extend_from_slice(&other.pairs);
    }

    pub fn clear(&mut self) {
        self.machines.clear();
        self.pairs.clear();
    }
}

/// Events with their seqs, as the index names them.
pub type SeqEvents = Vec<(u64, Event)>;

/// Committed batches whose rows a writer holds before it writes them to the store in one go:
/// an index write at every commit would cost the store far more than the rows are worth.
pub const FLUSH_BATCHES: usize = 16;
/// …or this many rows, whichever comes first.
pub const FLUSH_ROWS: usize = 262_144;

/// A writer's rows of committed batches after the store's watermark (the last seq whose rows
/// the store holds), not yet written. Lost with the process, they are derived again from
/// the blocks after the watermark.
#[derive(Debug, Default)]
pub struct Pending {
    /// Only ever appended to or cleared (the lookup indexes below rely on it).
    rows: IndexRows,
    /// The last seq the rows cover (`None`: unknown, after an open or a reopen).
    pub to: Option<u64>,
    pub batches: usize,
    /// `rows` by hash, as of its first so many rows: the writer looks machines up before
    /// deciding, and a scan of up to a quarter million rows per lookup cost more than the
    /// decision.
    by_hash: std::sync::Mutex<(usize, keyledger_core::state::HashMap<u64, Vec<u64>>)>,
    /// `rows.pairs` as a set, as of its first so many rows (for the same reason).
    pairs: std::sync::Mutex<(usize, keyledger_core::state::HashSet<PairRow>)>,
}

impl Pending {
    /// Rows derived from the blocks after the store's watermark, up to seq `to`.
    pub fn derived(rows: IndexRows, to: u64, batches: usize) -> Pending {
        Pending {
            rows,
            to: Some(to),
            batches,
            ..Pending::default()
        }
    }

    pub fn rows(&self) -> &IndexRows {
        &self.rows
    }

    pub fn extend_rows(&mut self, rows: &IndexRows) {
        self.rows.extend(rows);
    }

    /// The rows were written to the store.
    pub fn clear_rows(&mut self) {
        self.rows.clear();
        self.batches = 0;
        *self.by_hash.get_mut().unwrap_or_else(|e| e.into_inner()) = Default::default();
        *self.pairs.get_mut().unwrap_or_else(|e| e.into_inner()) = Default::default();
    }

    /// Whether the pending rows hold the pair.
    pub fn holds_pair(&self, pair: PairRow) -> bool {
        let mut index = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        let (indexed, set) = &mut *index;
        set.extend(&self.rows.pairs[*indexed..]);
        *indexed = self.rows.pairs.len();
        set.contains(&pair)
    }

    /// The rows to write with a batch's `own` rows (these and its own) when the store takes
    /// a write every `batches` batches (or [`FLUSH_ROWS`] rows) and this batch is due; else
    /// `None`.
    pub fn flush_with(&self, own: &IndexRows, batches: usize) -> Option<IndexRows> {
        let due = self.batches + 1 >= batches || self.rows.len() + own.len() >= FLUSH_ROWS;
        due.then(|| {
            let mut rows = self.rows.clone();
            rows.extend(own);
            rows
        })
    }

    /// Adds the pending seqs of hash `h` after `after` to a store's `candidates`, and
    /// answers them ascending, once each, at most `limit`.
    pub fn with_candidates(
        &self,
        mut candidates: Vec<u64>,
        h: u64,
        after: u64,
        limit: usize,
    ) -> Vec<u64> {
        let mut index = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        let (indexed, by_hash) = &mut *index;
        for (rh, seq) in &self.rows.machines[*indexed..] {
            by_hash.entry(*rh).or_default().push(*seq);
        }
        *indexed = self.rows.machines.len();
        if let Some(seqs) = by_hash.get(&h) {
            candidates.extend(seqs.iter().filter(|seq| **seq > after));
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.truncate(limit);
        candidates
    }

    /// After a batch with rows `own` committed (up to seq `to`): its rows wait, or were
    /// written with the pending ones.
    pub fn committed(&mut self, own: &IndexRows, flushed: bool, to: u64) {
        if flushed {
            self.clear_rows();
        } else {
            self.rows.extend(own);
            self.batches += 1;
        }
        self.to = Some(to);
    }
}

/// Hashes names under a ledger's key (SipHash-1-3, 128-bit key; docs/format.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineHasher(pub [u8; 16]);

impl MachineHasher {
    pub fn hash(&self, name: &str) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.0);
        hasher.write(name.as_bytes());
        hasher.finish()
    }

    /// The history index's hash of something an event names ([`Named::index_bytes`]: never
    /// the input of a machine name's hash).
    pub fn named(&self, named: &Named<'_>) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.0);
        hasher.write(&named.index_bytes());
        hasher.finish()
    }

    /// The pair row of `machine` on `key`: SipHash-1-3 with 128-bit output, under the
    /// same key, of the domain tag `pair`, the key id (`u64 LE`) and the name's UTF-8. At 128
    /// bits, two pairs of one ledger share a row with odds near 10^-20 over a billion pairs,
    /// and a client cannot aim for it (the key is secret): the row is the pair's identity.
    pub fn pair(&self, key: KeyId, machine: &MachineId) -> PairRow {
        use siphasher::sip128::Hasher128;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(&self.0);
        hasher.write(b"pair");
        hasher.write(&key.0.to_le_bytes());
        hasher.write(machine.as_str().as_bytes());
        let h = hasher.finish128();
        (h.h1, h.h2)
    }

    /// 16 bytes that differ, but for odds near 2^-128, between two hash keys, and say
    /// nothing of the key: what a saved filter carries to show which key made its pairs
    /// (`keyledger_ledger::saved_filter`).
    pub fn key_check(&self) -> [u8; 16] {
        use siphasher::sip128::Hasher128;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(&self.0);
        hasher.write(b"saved filter key check");
        hasher.finish128().as_bytes()
    }

    /// The rows of the event at `seq`.
    pub fn rows_of(&self, seq: u64, body: &EventBody, rows: &mut IndexRows) {
        let names = body.machine_names();
        let machines = &mut rows.machines;
        let start = machines.len();
        machines.extend(names.into_iter().map(|m| (self.hash(m), seq)));
        machines.extend(body.named().iter().map(|n| (self.named(n), seq)));
        if machines.len() - start > 1 {
            // A refused request may name a machine twice; the index holds it once.
            machines[start..].sort_unstable();
            let mut unique = machines.split_off(start);
            unique.dedup();
            machines.extend(unique);
        }
        if let EventBody::MachinesActivated {
            key_id, machines, ..
        } = body
        {
            rows.pairs
                .extend(machines.iter().map(|m| self.pair(*key_id, m)));
        }
    }

    /// The rows of the block stored under `key` (a write-ahead frame carries only the block:
    /// its rows are derived again on replay; a copy derives them under the target's key). A
    /// block that does not decode is corruption at `key`.
    pub fn rows_of_block(&self, key: u64, bytes: &[u8]) -> crate::Result<IndexRows> {
        let mut rows = IndexRows::default();
        for_each_event(key, bytes, |seq, body| self.rows_of(seq, body, &mut rows))?;
        Ok(rows)
    }

    /// The history rows alone of the block under `key` (an upgrade from a store whose
    /// machine index predates them).
    pub fn named_rows_of_block(&self, key: u64, bytes: &[u8]) -> crate::Result<Vec<MachineRow>> {
        let mut rows = Vec::new();
        for_each_event(key, bytes, |seq, body| {
            let mut named: Vec<MachineRow> =
                body.named().iter().map(|n| (self.named(n), seq)).collect();
            named.sort_unstable();
            named.dedup();
            rows.extend(named);
        })?;
        Ok(rows)
    }
}

/// Decodes every event of the block stored under `key`, in order.
fn for_each_event(
    key: u64,
    bytes: &[u8],
    mut visit: impl FnMut(u64, &EventBody),
) -> crate::Result<()> {
    let undecodable = |why: String| crate::error::Corruption::Undecodable { seq: key, why };
    let block = Block::parse(bytes).map_err(|e| undecodable(format!("block: {e}")))?;
    for (i, record) in block.records().enumerate() {
        let seq = block.first_seq + i as u64;
        let event: Event =
            decode_record(record).map_err(|e| undecodable(format!("seq {seq}: {e}")))?;
        visit(seq, &event.body);
    }
    Ok(())
}
