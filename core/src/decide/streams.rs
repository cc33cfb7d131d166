//! The ledger's commitment to its streams (docs/format.md, "Streams"). The root is computed
//! outside `core` (it hashes); the rule here is who commits and where.

use super::common::{Context, LEDGER_ACTOR};
use crate::command::CommitStreams;
use crate::event::EventBody;
use crate::ids::Principal;
use crate::refusal::Refusal;

/// Only the ledger itself commits, and only right after the events it covers: the
/// commitment is the event at seq `size + 1`, so a checkpoint taken at its seq covers
/// exactly what it commits to and nothing the streams tree leaves out.
pub(super) fn commit_streams(
    actor: &Principal,
    c: &CommitStreams,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    if actor.as_str() != LEDGER_ACTOR {
        return Err(Refusal::Forbidden {
            rule: "streams",
            actor: actor.to_string(),
            needs: format!("is not `{LEDGER_ACTOR}`: only the ledger commits its streams"),
        });
    }
    if c.size.checked_add(1) != Some(ctx.next_seq) {
        return Err(Refusal::Invalid(format!(
            "commit_streams: the commitment covers seqs 1..={} but would be seq {}",
            c.size, ctx.next_seq
        )));
    }
    Ok(vec![EventBody::StreamsCommitted {
        size: c.size,
        streams: c.streams,
        root: c.root,
    }])
}
