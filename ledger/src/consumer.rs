//! Durable consumers (issue 18, item 2): a named reader of the log whose acknowledged
//! position the ledger's database keeps, so delivery survives restarts. Delivery is at
//! least once and in seq order; the seq is the receiver's idempotency key.
//!
//! A consumer is stored as one JSON document keyed by its name (docs/format.md,
//! "consumers"); its fields are a public contract (docs/api.md, "Durable consumers").
//! Updates are compare-and-set on the stored bytes, so the service's acknowledgements and an
//! operator's `consumer reset` from another process never overwrite each other unseen.

use keyledger_core::{EventKind, LicenseId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest consumer name, in bytes.
pub const CONSUMER_NAME_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub name: String,
    /// Only events in this license ID's history (its keys' included); all when absent.
    pub license_id: Option<String>,
    /// Only events of these types (their JSON `type`); all when empty.
    pub types: Vec<String>,
    /// The last seq the consumer acknowledged: delivery resumes after it.
    pub position: u64,
    pub created_at: Timestamp,
    /// When an operator last moved the position back (`consumer reset`).
    pub reset_at: Option<Timestamp>,
}

/// Why a consumer cannot be made as asked.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > CONSUMER_NAME_MAX || !name.chars().all(fine) {
        return Err(format!(
            "consumer name {name:?}: 1 to {CONSUMER_NAME_MAX} of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

impl Consumer {
    /// A new consumer at position 0 (it will receive the log from seq 1), its filter checked.
    pub fn new(
        name: &str,
        license_id: Option<&str>,
        types: &[String],
        created_at: Timestamp,
    ) -> std::result::Result<Consumer, String> {
        check_name(name)?;
        if let Some(id) = license_id {
            LicenseId::new(id).map_err(|e| format!("license ID {id:?}: {e}"))?;
        }
        for t in types {
            if !EventKind::ALL.iter().any(|k| k.name() == t) {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "event type {t:?} is not one of {}",
                    known.join(", ")
                ));
            }
        }
        let mut types = types.to_vec();
        types.sort();
        types.dedup();
        Ok(Consumer {
            name: name.to_owned(),
            license_id: license_id.map(str::to_owned),
            types,
            position: 0,
            created_at,
            reset_at: None,
        })
    }

    /// Whether an event of `kind` is one this consumer takes (its license filter is applied
    /// by the reader, which knows each license ID's history).
    pub fn takes(&self, kind: EventKind) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == kind.name())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("consumers serialize")
    }

    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Consumer> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Storage(format!("consumer {name:?}: its record is damaged: {e}")))
    }
}
