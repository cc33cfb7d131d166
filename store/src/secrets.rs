//! Key text: made (from the operating system's CSPRNG), fingerprinted, and as stored: checked against the fingerprint the log recorded at issuance before
//! anything hands it out or calls the ledger sound. The `secrets` table sits outside the
//! hash chain (so text can be erased), so this check is what protects it from edits.

use keyledger_core::{Fingerprint, Last5, ProductKeyText};
use rand::Rng;

/// Why a stored key text does not match its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretMismatch {
    #[error("the stored key text is not a product key ({0})")]
    NotAKey(String),
    #[error("the stored key text ends in {found}, the issued key in {expected}")]
    Last5 { found: String, expected: String },
    #[error("the stored key text does not hash to the fingerprint the log recorded")]
    Fingerprint,
}

/// Checks a stored text against the key's fingerprint and last five characters.
pub fn check(text: &str, fingerprint: &Fingerprint, last5: &Last5) -> Result<(), SecretMismatch> {
    let parsed = ProductKeyText::parse(text).map_err(|e| SecretMismatch::NotAKey(e.to_string()))?;
    if parsed.last5() != *last5 {
        return Err(SecretMismatch::Last5 {
            found: parsed.last5().to_string(),
            expected: last5.to_string(),
        });
    }
    check_fingerprint(text, fingerprint).map(drop)
}

/// Checks a stored text against the key's fingerprint alone (what a read model keeps).
pub fn check_fingerprint(
    text: &str,
    fingerprint: &Fingerprint,
) -> Result<ProductKeyText, SecretMismatch> {
    let parsed = ProductKeyText::parse(text).map_err(|e| SecretMismatch::NotAKey(e.to_string()))?;
    if self::fingerprint(&parsed) != *fingerprint {
        return Err(SecretMismatch::Fingerprint);
    }
    Ok(parsed)
}

/// The BLAKE3 fingerprint of normalized key text (docs/rules.md, "Key text").
pub fn fingerprint(text: &ProductKeyText) -> Fingerprint {
    Fingerprint(*blake3::hash(text.reveal().as_bytes()).as_bytes())
}

/// New key text from the operating system's CSPRNG (via `rand`'s thread RNG).
pub fn generate_key_text() -> ProductKeyText {
    let mut rng = rand::rng();
    let indices: [u8; 25] = std::array::from_fn(|_| rng.random_range(0..24u8));
    ProductKeyText::from_alphabet_indices(&indices)
}
