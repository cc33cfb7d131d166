//! A whole ledger copied into a new, empty store (`keyledger copy`): blocks with their
//! Merkle nodes re-derived and their index rows, then every row outside the blocks.

use std::ops::ControlFlow;

use crate::tree::Frontier;
use crate::{BatchWrite, Error, Head, Result, Store};

impl Store {
    /// Copies this whole ledger into `target`, a new, empty one: every block with its
    /// Merkle nodes (re-derived, so the target's tree is its own), then key texts, answers,
    /// snapshots and tokens. `progress(seq)` after each block. Answers the copied head;
    /// the caller checks the target's (`copy` verifies both).
    pub fn copy_to(&self, target: &Store, mut progress: impl FnMut(u64)) -> Result<Head> {
        if target.head()? != Head::EMPTY {
            return Err(Error::Exists(target.label().to_owned()));
        }
        target.claim_writer(false)?;
        let hasher = target.machine_hasher()?;
        let mut start = Head::EMPTY;
        let mut frontier = Frontier::default();
        let head = self.for_each_block_with_head(0, |key, bytes| {
            let block = crate::block::Block::parse(bytes).map_err(|e| {
                crate::error::Corruption::Undecodable {
                    seq: key,
                    why: e.to_string(),
                }
            })?;
            let mut merkle = Vec::new();
            for record in block.records() {
                frontier.push(record, &mut merkle);
            }
            let head = Head {
                seq: block.last_seq(),
                hash: block.head,
            };
            // The machine index is derived, not copied: it is built for the target's blocks.
            let index = hasher.rows_of_block(key, bytes)?;
            target.commit(&BatchWrite {
                block: Some((key, bytes.to_vec())),
                start,
                head: Some(head),
                merkle,
                index,
                ..BatchWrite::default()
            })?;
            start = head;
            progress(head.seq);
            Ok(ControlFlow::Continue(()))
        })?;
        let mut rows = Vec::new();
        self.backend.for_each_row(&mut |row| {
            rows.push(row);
            if rows.len() == 1024 {
                target.backend.put_rows(&std::mem::take(&mut rows))?;
            }
            Ok(())
        })?;
        target.backend.put_rows(&rows)?;
        // Durable consumers go along with their positions (their seqs are the same there).
        for consumer in self.consumers()? {
            target.create_consumer(&consumer)?;
        }
        Ok(head)
    }
}
