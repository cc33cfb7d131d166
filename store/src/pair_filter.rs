//! What the store shares with the writer's filter of activated pairs (`keyledger_ledger::activated`,
//! `keyledger_ledger::saved_filter`): the filter's density, which the redb pair runs' own filters
//! use too, and the layout of a saved filter in the store (its chunks and the marker that
//! names a whole generation).

/// Bits a pair in each filter part: about a 1% false-positive rate for a split-block Bloom
/// filter (one 32-byte block a pair, so a lookup is one cache line, not one per probe).
pub const BITS_PER_PAIR: usize = 10;

/// The store's note of which saved filter is whole (`meta` `saved_filter` on either store):
/// `u64 LE` generation, `u32 LE` chunks.
pub fn marker_bytes(generation: u64, chunks: u32) -> [u8; 12] {
    let mut marker = [0; 12];
    marker[..8].copy_from_slice(&generation.to_le_bytes());
    marker[8..].copy_from_slice(&chunks.to_le_bytes());
    marker
}

/// [`marker_bytes`] read back (`None`: not 12 bytes of them).
pub fn parse_marker(marker: &[u8]) -> Option<(u64, u32)> {
    let generation = u64::from_le_bytes(marker.get(..8)?.try_into().ok()?);
    let chunks = u32::from_le_bytes(marker.get(8..12)?.try_into().ok()?);
    Some((generation, chunks))
}

/// Bytes a piece of a save holds (the store keeps each as one chunk): what the writer copies
/// between two batches while a save is under way.
pub const PIECE_BYTES: usize = 1 << 20;
