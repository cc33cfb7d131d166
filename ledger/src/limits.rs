//! The engine's limits and tuning points: what one batch, one record and the writer's
//! memory may hold, and when the writer's filter is saved.

use crate::{activated, codec};

/// Bounds on everything that grows in the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Commands decided and committed together as one block.
    pub batch_commands_max: usize,
    /// Submissions waiting for the writer; a full queue is backpressure.
    pub queue_depth: usize,
    /// Bytes of one encoded event.
    pub record_bytes_max: usize,
    /// Batches of at least this many commands commit on a separate thread while the writer
    /// decides the next batch; smaller ones commit on the writer thread itself. Not a limit
    /// on input: a tuning point measured on the benches (see `writer`).
    pub pipeline_from_commands: usize,
    /// Where the writer keeps which machines are active on which key: `true` (the default),
    /// on disk (the pair index, behind a filter of about 1.2 bytes a machine and a cache of
    /// `machine_cache_pairs`): memory stays bounded however long the history, and a machine
    /// activated again after it left the cache costs one index lookup; `false`, all of them
    /// in memory (about 100 bytes a machine ever activated), for a short-lived ledger.
    pub machine_facts_on_disk: bool,
    /// Durable (key, machine) pairs the writer keeps in memory on disk mode, of those
    /// activated or looked up lately, so a machine activated again soon costs no lookup
    /// (16 bytes a pair and the table's slack: at most about 40). Not a limit on input.
    pub machine_cache_pairs: usize,
    /// Pairs the writer's filter of activated pairs holds in its first part, on a new
    /// ledger; outgrown, it is rebuilt in the background at twice its pairs (see
    /// `activated`). Not a limit on input.
    pub filter_first_pairs: usize,
    /// Durable events between two saves of the writer's filter (saved in the background; see
    /// `saved_filter`), or one for every 8 bytes of filter if that is more: a start after a
    /// crash reads the saved filter and at most about this many events of the log for it. A
    /// writer that stops saves it when a 128th of this many events came after the last save.
    /// Not a limit on input.
    pub filter_save_events: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_commands_max: 4096,
            queue_depth: 16_384,
            record_bytes_max: codec::RECORD_BYTES_MAX,
            pipeline_from_commands: 512,
            machine_facts_on_disk: true,
            machine_cache_pairs: 262_144,
            filter_first_pairs: activated::FIRST_PART,
            filter_save_events: 10_000_000,
        }
    }
}
