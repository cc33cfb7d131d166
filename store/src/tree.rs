//! The Merkle tree of the log, persisted so that a proof costs O(log n) reads.
//!
//! Only perfect subtrees of 256 leaves or more are stored (`merkle` table, levels >= 8):
//! about 1/128 of a hash per event. Anything smaller lies inside one 256-leaf chunk and is
//! recomputed from that chunk's records (one block read, typically). The writer keeps the
//! right edge of the tree (the [`Frontier`]) and writes new subtree hashes in the same
//! transaction as the block that completes them.

use std::cell::RefCell;

use crate::error::{Corruption, Error, Result};
use crate::merkle::{empty_root, leaf_hash, node_hash, split, Hash, ProofError, RangeHash};
use crate::Store;

/// The lowest stored level: subtrees of `2^8 = 256` leaves.
pub const STORED_LEVEL: u8 = 8;
const CHUNK: u64 = 1 << STORED_LEVEL;

/// The right edge of the tree: leaves of the unfinished chunk and, per level, a finished
/// left subtree still waiting for its right sibling.
#[derive(Clone, Debug, Default)]
pub struct Frontier {
    size: u64,
    pending: Vec<Hash>,
    lefts: Vec<Option<Hash>>,
}

impl Frontier {
    /// The frontier of the first `size` leaves of a stored log.
    pub fn load(store: &Store, size: u64) -> Result<Frontier> {
        let chunk_start = size / CHUNK * CHUNK;
        let pending = store
            .records(chunk_start + 1, size - chunk_start)?
            .iter()
            .map(|r| leaf_hash(r))
            .collect::<Vec<_>>();
        if pending.len() as u64 != size - chunk_start {
            return Err(missing(chunk_start + 1));
        }
        let mut lefts = vec![None; 64];
        for level in STORED_LEVEL..64 {
            let count = size >> level;
            if count == 0 {
                break;
            }
            if count % 2 == 1 {
                let node = store.merkle_node(level, count - 1)?;
                lefts[level as usize] =
                    Some(node.ok_or_else(|| missing(((count - 1) << level) + 1))?);
            }
        }
        Ok(Frontier {
            size,
            pending,
            lefts,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next leaf; pushes every subtree hash it completes onto `out`.
    pub fn push(&mut self, record: &[u8], out: &mut Vec<(u8, u64, Hash)>) {
        if self.lefts.is_empty() {
            self.lefts = vec![None; 64];
        }
        self.pending.push(leaf_hash(record));
        self.size += 1;
        if self.pending.len() as u64 != CHUNK {
            return;
        }
        let mut node = crate::merkle::MemoryTree {
            leaves: std::mem::take(&mut self.pending),
        }
        .range_hash(0, CHUNK)
        .expect("a full chunk has its leaves");
        let mut level = STORED_LEVEL;
        let mut index = (self.size - 1) >> level;
        out.push((level, index, node));
        while index % 2 == 1 {
            let left = self.lefts[level as usize]
                .take()
                .expect("an odd node has a left sibling waiting");
            node = node_hash(&left, &node);
            level += 1;
            index >>= 1;
            out.push((level, index, node));
        }
        self.lefts[level as usize] = Some(node);
    }
}

fn missing(seq: u64) -> Error {
    Error::Corrupt(Corruption::Undecodable {
        seq,
        why: "a Merkle subtree or record the tree needs is missing".to_owned(),
    })
}

/// The tree of the first `size` leaves of a stored log, as a [`RangeHash`] source.
#[derive(Debug)]
pub struct LedgerTree<'s> {
    store: &'s Store,
    size: u64,
    /// The leaf hashes of the last chunk read: a proof asks for several subtrees of it.
    chunk: RefCell<Option<(u64, Vec<Hash>)>>,
}

impl<'s> LedgerTree<'s> {
    pub fn new(store: &'s Store, size: u64) -> LedgerTree<'s> {
        LedgerTree {
            store,
            size,
            chunk: RefCell::new(None),
        }
    }

    fn chunk_leaves(&self, chunk: u64) -> std::result::Result<Vec<Hash>, ProofError> {
        if let Some((cached, leaves)) = self.chunk.borrow().as_ref() {
            if *cached == chunk {
                return Ok(leaves.clone());
            }
        }
        let start = chunk * CHUNK;
        let count = (self.size - start).min(CHUNK);
        let records = self
            .store
            .records(start + 1, count)
            .map_err(|e| ProofError::Source(e.to_string()))?;
        if records.len() as u64 != count {
            return Err(ProofError::Source(format!(
                "records {}..{} are missing",
                start + 1,
                start + count
            )));
        }
        let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
        *self.chunk.borrow_mut() = Some((chunk, leaves.clone()));
        Ok(leaves)
    }
}

impl RangeHash for LedgerTree<'_> {
    fn range_hash(&self, start: u64, end: u64) -> std::result::Result<Hash, ProofError> {
        if end > self.size {
            return Err(ProofError::TooLarge {
                want: end,
                have: self.size,
            });
        }
        let n = end - start;
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() && n >= CHUNK && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as u8;
            return self
                .store
                .merkle_node(level, start >> level)
                .map_err(|e| ProofError::Source(e.to_string()))?
                .ok_or_else(|| {
                    ProofError::Source(format!("subtree ({level}, {}) is missing", start >> level))
                });
        }
        if start / CHUNK == (end - 1) / CHUNK {
            let chunk = start / CHUNK;
            let leaves = self.chunk_leaves(chunk)?;
            let offset = (chunk * CHUNK) as usize;
            let tree = crate::merkle::MemoryTree {
                leaves: leaves[start as usize - offset..end as usize - offset].to_vec(),
            };
            return tree.range_hash(0, n);
        }
        let k = split(n);
        Ok(node_hash(
            &self.range_hash(start, start + k)?,
            &self.range_hash(start + k, end)?,
        ))
    }
}
