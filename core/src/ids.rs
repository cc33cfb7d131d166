//! Identifiers. Each is a newtype so a license ID can never be passed where an org is meant.
//!
//! Text ids are 1..=128 bytes of printable text (no control characters): they are written
//! into the log forever, so their size is bounded at the door.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest text id accepted, in bytes.
pub const ID_BYTES_MAX: usize = 128;

/// Why a text cannot be an id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than `ID_BYTES_MAX` bytes.
    #[error("is {len} bytes long; at most {ID_BYTES_MAX} are allowed")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id holds a control character.
    #[error("contains a control character at byte {at}")]
    ControlCharacter {
        /// The byte offset of the control character.
        at: usize,
    },
}

fn check_id(text: &str) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty);
    }
    if text.len() > ID_BYTES_MAX {
        return Err(IdError::TooLong { len: text.len() });
    }
    if let Some((at, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(IdError::ControlCharacter { at });
    }
    Ok(())
}

/// Text ids are shared, not copied: an id is written into an event, the decision state and
/// the projections, and an `Arc<str>` clone is a reference count where a `String` clone is an
/// allocation. They serialize as plain strings either way (the record bytes do not change).
macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        /// Written as a plain string.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Read from a string, borrowed where the format allows (one allocation), and checked.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(IdVisitor::<Self>(std::marker::PhantomData))
            }
        }

        $crate::string_schema!($name, "an id: not empty, at most 256 bytes, no control characters");

        impl FromCheckedStr for $name {
            fn from_checked(text: &str) -> Self {
                Self(std::sync::Arc::from(text))
            }
        }

        impl $name {
            /// The id `text` names, if it is one (not empty, not too long, no control characters).
            pub fn new(text: impl AsRef<str>) -> Result<Self, IdError> {
                let text = text.as_ref();
                check_id(text)?;
                Ok(Self::from_checked(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(text: String) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Builds an id from text [`check_id`] accepted.
trait FromCheckedStr {
    fn from_checked(text: &str) -> Self;
}

struct IdVisitor<T>(std::marker::PhantomData<T>);

impl<T: FromCheckedStr> serde::de::Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id: 1..=128 bytes of text without control characters")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        check_id(text).map_err(E::custom)?;
        Ok(T::from_checked(text))
    }
}

text_id!(
    /// An organization (customer) slug.
    OrgId
);
text_id!(
    /// A volume-licensing license ID, e.g. `V1234567`.
    LicenseId
);
text_id!(
    /// A product slug, e.g. `windows-server-2022-standard`.
    ProductId
);
text_id!(
    /// A machine activated with a MAK (opaque to the ledger).
    MachineId
);
text_id!(
    /// A KMS host machine.
    HostId
);
text_id!(
    /// A KMS client machine.
    ClientId
);
text_id!(
    /// A limit-increase or KMS request, chosen by the requester.
    RequestId
);
text_id!(
    /// An ESU order, chosen by the operator.
    OrderId
);
text_id!(
    /// A person or tool acting on the ledger.
    Principal
);
text_id!(
    /// A Microsoft 365 tenant an OSA key is redeemed into.
    TenantId
);
text_id!(
    /// A client-chosen id that makes a command safe to resend (docs/api.md).
    CommandId
);

/// A product key, numbered by the ledger from 1 in issue order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_printable() {
        assert_eq!(OrgId::new(""), Err(IdError::Empty));
        assert_eq!(
            OrgId::new("x".repeat(129)),
            Err(IdError::TooLong { len: 129 })
        );
        assert_eq!(
            OrgId::new("ab\ncd"),
            Err(IdError::ControlCharacter { at: 2 })
        );
        assert_eq!(OrgId::new("contoso").unwrap().as_str(), "contoso");
        assert!(OrgId::new("x".repeat(128)).is_ok());
    }

    #[test]
    fn ids_read_from_strings_through_the_same_checks() {
        let machine: MachineId = serde_json::from_str("\"pc-1\"").unwrap();
        assert_eq!(machine.as_str(), "pc-1");
        assert_eq!(serde_json::to_string(&machine).unwrap(), "\"pc-1\"");
        let empty = serde_json::from_str::<MachineId>("\"\"").unwrap_err();
        assert!(empty.to_string().contains("must not be empty"), "{empty}");
        let control = serde_json::from_str::<OrgId>("\"a\\u0007b\"").unwrap_err();
        assert!(
            control.to_string().contains("control character at byte 1"),
            "{control}"
        );
        let number = serde_json::from_str::<OrgId>("5").unwrap_err();
        assert!(number.to_string().contains("expected an id"), "{number}");
        // A clone is the same text, and compares, orders and hashes as the text does.
        let copy = machine.clone();
        assert_eq!(copy, machine);
        assert_eq!(String::from(copy), "pc-1");
    }
}
