//! Fingerprints of presented key text, remembered. Activations present the same few keys
//! over and over (a MAK serves thousands of machines), and each fingerprint is a BLAKE3
//! hash; a hit costs one 29-byte comparison instead.

use keyledger_core::{Fingerprint, ProductKeyText};

use crate::secrets::fingerprint;

const SLOTS: usize = 64;

/// A direct-mapped cache from key text to its fingerprint. Its `Debug` shows no key text.
#[derive(Default)]
pub struct FingerprintCache {
    slots: Vec<Option<(ProductKeyText, Fingerprint)>>,
}

impl FingerprintCache {
    pub fn fingerprint(&mut self, text: &ProductKeyText) -> Fingerprint {
        if self.slots.is_empty() {
            self.slots = vec![None; SLOTS];
        }
        let slot = &mut self.slots[slot_of(text)];
        match slot {
            Some((cached, found)) if cached == text => *found,
            _ => {
                let found = fingerprint(text);
                *slot = Some((text.clone(), found));
                found
            }
        }
    }
}

/// FNV-1a over the text, folded to a slot. Not a defence against anything: a collision only
/// costs a BLAKE3 hash, and the answer is always the fingerprint of the text presented.
fn slot_of(text: &ProductKeyText) -> usize {
    let hash = text
        .reveal()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash ^ (hash >> 32)) as usize % SLOTS
}

impl std::fmt::Debug for FingerprintCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.slots.iter().flatten().count();
        write!(f, "FingerprintCache({held} keys)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_fingerprints_equal_computed_ones_whatever_the_collisions() {
        let mut cache = FingerprintCache::default();
        let texts: Vec<ProductKeyText> = (0..500u32)
            .map(|i| {
                let indices: [u8; 25] =
                    std::array::from_fn(|j| ((i * 7 + j as u32 * 3) % 24) as u8);
                ProductKeyText::from_alphabet_indices(&indices)
            })
            .collect();
        for round in 0..3 {
            for text in &texts {
                assert_eq!(cache.fingerprint(text), fingerprint(text), "round {round}");
            }
        }
        let shown = format!("{cache:?}");
        assert!(
            shown.starts_with("FingerprintCache(") && !shown.contains('-'),
            "{shown}"
        );
    }
}
