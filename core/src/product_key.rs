//! Product key text, its fingerprint and its masked form (docs/rules.md, "Key text").
//!
//! Key text is a secret: it never enters an event. Events carry the [`Fingerprint`]
//! (BLAKE3 of the normalized text, computed outside `core` and handed in) and the
//! [`Last5`] characters that a masked display shows.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The 24 characters product keys are written in.
pub const KEY_ALPHABET: &[u8; 24] = b"BCDFGHJKMPQRTVWXY2346789";
/// Whether an ASCII byte is a key character: every activation parses a key, so membership
/// is one table lookup rather than a scan of the alphabet.
const IN_ALPHABET: [bool; 128] = {
    let mut table = [false; 128];
    let mut i = 0;
    while i < KEY_ALPHABET.len() {
        table[KEY_ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};
const GROUPS: usize = 5;
const GROUP_LEN: usize = 5;
/// Length of normalized key text: five groups of five and four dashes.
pub const KEY_TEXT_LEN: usize = GROUPS * GROUP_LEN + GROUPS - 1;

/// Why a text is not a product key. Positions are 1-based characters of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    /// Not 25 characters of the key alphabet once dashes are left out.
    #[error("product key must be {KEY_TEXT_LEN} characters (five groups of five joined by '-'), got {len}")]
    Length {
        /// The text's length in characters, dashes left out.
        len: usize,
    },
    /// Five groups of five need a dash between each two.
    #[error("product key has {found:?} at position {position}; expected '-' between groups")]
    MissingDash {
        /// Where a dash was expected (character offset).
        position: usize,
        /// What was there instead.
        found: char,
    },
    /// A character outside the key alphabet.
    #[error("product key has {found:?} at position {position}, which is not in the key alphabet BCDFGHJKMPQRTVWXY2346789")]
    BadCharacter {
        /// Where the character is (character offset).
        position: usize,
        /// The character, not in the key alphabet.
        found: char,
    },
}

/// Normalized (upper-case) product key text. Its `Debug` is masked so that key text cannot
/// leak through a log line or a panic message.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductKeyText(String);

crate::string_schema!(
    ProductKeyText,
    "a product key: five groups of five characters"
);

impl ProductKeyText {
    /// Accepts either case; anything but five dash-joined groups of alphabet characters is
    /// an error naming the first bad character and its position.
    pub fn parse(text: &str) -> Result<ProductKeyText, KeyTextError> {
        let len = text.chars().count();
        if len != KEY_TEXT_LEN {
            return Err(KeyTextError::Length { len });
        }
        let mut normalized = String::with_capacity(KEY_TEXT_LEN);
        for (i, c) in text.chars().enumerate() {
            let position = i + 1;
            if position % (GROUP_LEN + 1) == 0 {
                if c != '-' {
                    return Err(KeyTextError::MissingDash { position, found: c });
                }
                normalized.push('-');
                continue;
            }
            let upper = c.to_ascii_uppercase();
            if !upper.is_ascii() || !IN_ALPHABET[upper as usize] {
                return Err(KeyTextError::BadCharacter { position, found: c });
            }
            normalized.push(upper);
        }
        Ok(ProductKeyText(normalized))
    }

    /// Builds key text from 25 alphabet indices (each `< 24`), as drawn by the caller's
    /// CSPRNG: `core` holds no randomness of its own.
    pub fn from_alphabet_indices(indices: &[u8; GROUPS * GROUP_LEN]) -> ProductKeyText {
        let mut text = String::with_capacity(KEY_TEXT_LEN);
        for (i, &index) in indices.iter().enumerate() {
            assert!(
                usize::from(index) < KEY_ALPHABET.len(),
                "alphabet index out of range"
            );
            if i > 0 && i % GROUP_LEN == 0 {
                text.push('-');
            }
            text.push(char::from(KEY_ALPHABET[usize::from(index)]));
        }
        ProductKeyText(text)
    }

    /// The normalized text. Only disclosure paths (R1) may call this.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// The last five characters: what everyone may see of the key (R1).
    pub fn last5(&self) -> Last5 {
        Last5::from_normalized(&self.0[KEY_TEXT_LEN - GROUP_LEN..])
    }
}

impl fmt::Debug for ProductKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProductKeyText({})", self.last5().masked())
    }
}

impl TryFrom<String> for ProductKeyText {
    type Error = KeyTextError;

    fn try_from(text: String) -> Result<Self, KeyTextError> {
        ProductKeyText::parse(&text)
    }
}

impl From<ProductKeyText> for String {
    fn from(key: ProductKeyText) -> String {
        key.0
    }
}

/// The last five characters of a key: what everyone may see (R1) and what a limit-increase
/// request names (R17).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Last5([u8; GROUP_LEN]);

crate::string_schema!(Last5, "the last five characters of a product key");

/// Written as a plain string, without an intermediate `String`.
impl Serialize for Last5 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Last5 {
    fn from_normalized(text: &str) -> Last5 {
        let mut bytes = [0u8; GROUP_LEN];
        bytes.copy_from_slice(text.as_bytes());
        Last5(bytes)
    }

    /// Accepts five alphabet characters in either case.
    pub fn parse(text: &str) -> Result<Last5, KeyTextError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() != GROUP_LEN {
            return Err(KeyTextError::Length { len: chars.len() });
        }
        let mut bytes = [0u8; GROUP_LEN];
        for (i, &c) in chars.iter().enumerate() {
            let upper = c.to_ascii_uppercase();
            if !upper.is_ascii() || !IN_ALPHABET[upper as usize] {
                return Err(KeyTextError::BadCharacter {
                    position: i + 1,
                    found: c,
                });
            }
            bytes[i] = upper as u8;
        }
        Ok(Last5(bytes))
    }

    /// The five characters as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("Last5 holds alphabet bytes only")
    }

    /// The masked display of a key: `*****-*****-*****-*****-ABCDE` (R1).
    pub fn masked(&self) -> String {
        format!("*****-*****-*****-*****-{}", self.as_str())
    }
}

impl fmt::Debug for Last5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Last5({})", self.as_str())
    }
}

impl fmt::Display for Last5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Last5 {
    type Error = KeyTextError;

    fn try_from(text: String) -> Result<Self, KeyTextError> {
        Last5::parse(&text)
    }
}

impl From<Last5> for String {
    fn from(last5: Last5) -> String {
        last5.as_str().to_owned()
    }
}

macro_rules! hash32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        /// The first 8 bytes of a BLAKE3 digest are already uniformly distributed: they are
        /// the whole hash input (see [`DigestHashBuilder`]).
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                let mut prefix = [0u8; 8];
                prefix.copy_from_slice(&self.0[..8]);
                state.write_u64(u64::from_le_bytes(prefix));
            }
        }

        impl $name {
            /// Parses 64 hex digits.
            pub fn from_hex(text: &str) -> Result<$name, String> {
                let bytes = text.as_bytes();
                if bytes.len() != 64 {
                    return Err(format!("expected 64 hex digits, got {}", bytes.len()));
                }
                let mut out = [0u8; 32];
                for (i, pair) in bytes.chunks_exact(2).enumerate() {
                    let hex = std::str::from_utf8(pair).map_err(|_| "not ASCII".to_owned())?;
                    out[i] = u8::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad hex digit at position {}", 2 * i + 1))?;
                }
                Ok($name(out))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        $crate::string_schema!($name, "a BLAKE3 digest: 64 hex digits");

        /// Hex text in human-readable formats (JSON), 32 raw bytes in binary ones.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    $name::from_hex(&text).map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(deserializer).map($name)
                }
            }
        }
    };
}

/// Hashes digests by passing their first 8 bytes through. Safe for maps of keys issued by
/// operators: a caller cannot choose BLAKE3 outputs, so cannot crowd a bucket.
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestHashBuilder;

/// See [`DigestHashBuilder`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DigestHasher(u64);

impl std::hash::BuildHasher for DigestHashBuilder {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only digests use this hasher, and they write one u64; fold anything else in.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }
}

hash32!(
    /// BLAKE3 digest of normalized key text. The ledger finds keys by it (docs/rules.md, "Key text").
    Fingerprint
);
hash32!(
    /// A BLAKE3 digest of some bytes, e.g. of an exported key file (R2).
    Digest
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_alphabet_in_either_case_is_accepted_at_every_position() {
        let base = "BCDFG-HJKMP-QRTVW-XY234-6789B";
        for position in [0, 7, 28] {
            for byte in 0u8..128 {
                let mut text = base.as_bytes().to_vec();
                text[position] = byte;
                let Ok(text) = String::from_utf8(text) else {
                    continue;
                };
                let upper = byte.to_ascii_uppercase();
                let expected = KEY_ALPHABET.contains(&upper);
                match ProductKeyText::parse(&text) {
                    Ok(key) => {
                        assert!(expected, "{byte} accepted at {position}");
                        assert_eq!(key.reveal().as_bytes()[position], upper);
                    }
                    Err(err) => {
                        assert!(!expected, "{byte} refused at {position}: {err}");
                        assert_eq!(
                            err,
                            KeyTextError::BadCharacter {
                                position: position + 1,
                                found: char::from(byte)
                            }
                        );
                    }
                }
            }
        }
        // A multi-byte character counts as one character, at its position.
        let accented = base.replacen('C', "É", 1);
        assert_eq!(
            ProductKeyText::parse(&accented),
            Err(KeyTextError::BadCharacter {
                position: 2,
                found: 'É'
            })
        );
    }

    #[test]
    fn key_text_is_normalized_to_upper_case() {
        let key = ProductKeyText::parse("bcdfg-hjkmp-qrtvw-xy234-6789b").unwrap();
        assert_eq!(key.reveal(), "BCDFG-HJKMP-QRTVW-XY234-6789B");
        assert_eq!(key.last5().as_str(), "6789B");
        assert_eq!(key.last5().masked(), "*****-*****-*****-*****-6789B");
    }

    #[test]
    fn bad_key_text_names_the_character_and_position() {
        assert_eq!(
            ProductKeyText::parse("BCDFG-HJKMP-QRTVW-XY234-6789A"),
            Err(KeyTextError::BadCharacter {
                position: 29,
                found: 'A'
            })
        );
        assert_eq!(
            ProductKeyText::parse("BCDFG-HJKMP-QRTVW-XY234+6789B"),
            Err(KeyTextError::MissingDash {
                position: 24,
                found: '+'
            })
        );
        assert_eq!(
            ProductKeyText::parse("BCDFG-HJKMP"),
            Err(KeyTextError::Length { len: 11 })
        );
        // 'E' and '1' look plausible but are not in the alphabet.
        assert_eq!(
            ProductKeyText::parse("BCDFE-HJKMP-QRTVW-XY234-6789B"),
            Err(KeyTextError::BadCharacter {
                position: 5,
                found: 'E'
            })
        );
    }

    #[test]
    fn debug_never_shows_key_text() {
        let key = ProductKeyText::parse("BCDFG-HJKMP-QRTVW-XY234-6789B").unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains("BCDFG"), "{debug}");
        assert!(debug.contains("6789B"));
    }

    #[test]
    fn generated_text_parses_back() {
        let indices: [u8; 25] = std::array::from_fn(|i| (i * 7 % 24) as u8);
        let key = ProductKeyText::from_alphabet_indices(&indices);
        assert_eq!(ProductKeyText::parse(key.reveal()).unwrap(), key);
    }
}
