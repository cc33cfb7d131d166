//! The store's lookups by machine: the events that name a machine (or KMS host or client),
//! through the machine index and the blocks they point at, and whether a (key, machine)
//! pair was activated (the pair index where the store keeps one, else those events).

use keyledger_core::{EventBody, KeyId, MachineId};

use crate::block::Block;
use crate::codec::decode_record;
use crate::machines::{PairRow, SeqEvents};
use crate::{Corruption, Error, Result, Store};

/// The events at `seqs` (ascending), read from their blocks without checking the chain
/// (verification and proofs do that): each block touched is read and decompressed once.
pub fn events_at(store: &Store, seqs: &[u64]) -> Result<SeqEvents> {
    let mut out = Vec::with_capacity(seqs.len());
    let mut rest = seqs;
    while let Some(&seq) = rest.first() {
        let undecodable = |seq, why: String| Corruption::Undecodable { seq, why };
        let key = store
            .block_containing(seq)?
            .map(|(key, _)| key)
            .ok_or_else(|| Error::Storage(format!("no block holds seq {seq}")))?;
        let bytes = store
            .block_bytes(key)?
            .ok_or_else(|| Error::Storage(format!("block {key} is gone")))?;
        let block = Block::parse(&bytes).map_err(|e| undecodable(seq, e.to_string()))?;
        let inside = rest.partition_point(|s| *s <= block.last_seq());
        if inside == 0 || seq < block.first_seq {
            return Err(undecodable(seq, format!("not in block {key}")).into());
        }
        for &seq in &rest[..inside] {
            let record = usize::try_from(seq - block.first_seq)
                .ok()
                .filter(|i| *i < block.len())
                .map(|i| block.record(i))
                .ok_or_else(|| undecodable(seq, format!("not in block {key}")))?;
            let event = decode_record(record).map_err(|e| undecodable(seq, e.to_string()))?;
            out.push((seq, event));
        }
        rest = &rest[inside..];
    }
    Ok(out)
}
/// Events a lookup of one machine reads a page (a machine activated on many keys has many).
const LOOKUP_PAGE: usize = 64;

impl Store {
    /// Whether the log holds the activation of `machine` on `key` (`pair`, its row): one
    /// exact lookup in the pair index where the store keeps one (redb), else the events
    /// naming the machine (its index's candidates), in seq order, until that activation is
    /// found. The store must be indexed (a writer's is, from its open on).
    pub fn activated_pair(&self, pair: PairRow, key: KeyId, machine: &MachineId) -> Result<bool> {
        if let Some(active) = self.pair_active(pair)? {
            return Ok(active);
        }
        self.activated_by_events(key, machine)
    }

    /// [`Store::activated_pair`] from the machine index and the events it names.
    pub fn activated_by_events(&self, key: KeyId, machine: &MachineId) -> Result<bool> {
        let mut after = 0;
        loop {
            let (events, next) =
                self.indexed_machine_events(machine.as_str(), after, LOOKUP_PAGE)?;
            let found = events.iter().any(|(_, event)| match &event.body {
                EventBody::MachinesActivated {
                    key_id, machines, ..
                } => *key_id == key && machines.contains(machine),
                _ => false,
            });
            match (found, next) {
                (true, _) => return Ok(true),
                (false, Some(last)) => after = last,
                (false, None) => return Ok(false),
            }
        }
    }

    /// The events naming machine (or KMS host or client) `name` among the next `limit`
    /// the index names after seq `after`, and, when that filled the page, the last seq it
    /// looked at (`after` for the next page). A store that predates the index is indexed
    /// first.
    pub fn machine_events(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<(SeqEvents, Option<u64>)> {
        if self.backend.machine_index_missing()? {
            self.upgrade_format()?;
        }
        self.indexed_machine_events(name, after, limit)
    }

    /// [`Store::machine_events`] of a store known to be indexed (the writer's: it upgrades
    /// the store when it opens it), without asking again on every lookup.
    pub fn indexed_machine_events(
        &self,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<(SeqEvents, Option<u64>)> {
        let h = self.backend.machine_hasher()?.hash(name);
        let candidates = self.backend.machine_seqs(h, after, limit)?;
        let mut events = events_at(self, &candidates)?;
        events.retain(|(_, event)| event.body.machine_names().contains(&name));
        let next = (candidates.len() >= limit)
            .then(|| candidates.last().copied())
            .flatten();
        Ok((events, next))
    }

    /// The seqs of the events naming `name` after `after`: [`Store::machine_events`]'
    /// seqs, over as many pages as it takes.
    pub fn machine_seqs(&self, name: &str, after: u64, limit: usize) -> Result<Vec<u64>> {
        let (mut seqs, mut after) = (Vec::new(), after);
        while seqs.len() < limit {
            let (events, last) = self.machine_events(name, after, limit - seqs.len())?;
            seqs.extend(events.into_iter().map(|(seq, _)| seq));
            match last {
                Some(last) => after = last,
                None => break,
            }
        }
        Ok(seqs)
    }
}
