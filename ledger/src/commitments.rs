//! Committing the streams (docs/format.md, "Streams"): the table folded from the log up to
//! its head, then a `streams_committed` through the writer at the seq right after it.

use std::ops::ControlFlow;

use keyledger_core::Timestamp;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::StreamTable;

/// Folds the records after the table's size up to `size` from the log.
pub fn catch_up(table: &mut StreamTable, store: &Store, size: u64) -> Result<()> {
    if size <= table.size() {
        return Ok(());
    }
    crate::walk::walk(store, table.size() + 1, |record| {
        if record.seq > size {
            return Ok(ControlFlow::Break(()));
        }
        table.absorb(record.seq, record.bytes, &record.event);
        Ok(ControlFlow::Continue(()))
    })?;
    if table.size() != size {
        return Err(Error::Storage(format!(
            "the log ends at seq {} before seq {size}",
            table.size()
        )));
    }
    Ok(())
}

/// How many times [`commit`] tries before it gives up: each try folds the events that
/// landed meanwhile, so it fails only under a write load that never pauses for a batch.
const COMMIT_TRIES: usize = 20;

/// Appends a `streams_committed` for the whole log through `writer`, the table folded up
/// to the head first, at the newest event's business time (`now` only for an empty table). Answers the commitment's seq, or `None` when the log has
/// not grown since the last commitment.
pub fn commit(
    writer: &crate::writer::WriterHandle,
    store: &Store,
    table: &mut StreamTable,
    now: Timestamp,
) -> Result<Option<u64>> {
    for _ in 0..COMMIT_TRIES {
        let head = store.head()?.seq;
        catch_up(table, store, head)?;
        if head == 0 || table.last_commitment() == Some(head) {
            return Ok(None);
        }
        // Business time is the commands': a commitment takes the newest event's, so that it
        // never moves the ledger's clock past what its users record.
        let at = table.newest_at().unwrap_or(now);
        let mut answers = writer.submit_blocking(vec![table.commit_command(at)], false)?;
        let answer = answers.pop().expect("one answer a command");
        if answer.ok {
            return Ok(answer.seq);
        }
        let code = answer.text.as_ref().and_then(|t| t.code.clone());
        if !matches!(code.as_deref(), Some("invalid" | "time_regression")) {
            return Err(Error::Storage(format!(
                "the streams commitment was refused: {}",
                answer
                    .text
                    .and_then(|t| t.message)
                    .unwrap_or_else(|| "no reason given".to_owned())
            )));
        }
        // Events landed between the fold and the decision: fold them and try again.
    }
    Err(Error::Storage(format!(
        "the log kept growing: no streams commitment after {COMMIT_TRIES} tries"
    )))
}
