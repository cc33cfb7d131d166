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
    #[error("must not be empty")]
    Empty,
    #[error("is {len} bytes long; at most {ID_BYTES_MAX} are allowed")]
    TooLong { len: usize },
    #[error("contains a control character at byte {at}")]
    ControlCharacter { at: usize },
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

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        /// Written as a plain string, without the copy `serde(into)` would make.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                check_id(&text)?;
                Ok(Self(text))
            }

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
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
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
    /// A client-chosen id that makes a command safe to resend (DOMAIN.md §3).
    CommandId
);

/// A product key, numbered by the ledger from 1 in issue order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A position in the log; the first event is seq 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
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
}
