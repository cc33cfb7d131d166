//! Proof files for auditors (docs/proofs.md): JSON, self-contained, checkable with the
//! ledger's verifier key alone — no database.

use std::io::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, CheckpointError, LedgerKey};
use crate::codec::decode_record;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash};
use crate::store::{Location, Store};
use crate::tree::LedgerTree;
use crate::wire::event_to_json;

/// A proof as written to a file or sent over HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProofFile {
    /// Record `seq` is leaf `seq - 1` of the tree the checkpoint signs.
    Inclusion {
        seq: u64,
        tree_size: u64,
        /// base64 of the exact record bytes.
        record: String,
        /// The decoded record, for people; the verifier checks it says what `record` says.
        event: serde_json::Value,
        /// Audit path, leaf side first, hex.
        path: Vec<String>,
        /// The signed checkpoint of `tree_size` leaves.
        checkpoint: String,
    },
    /// The tree of `from_size` leaves (root `from_root`) is a prefix of the signed one.
    Consistency {
        from_size: u64,
        to_size: u64,
        from_root: String,
        path: Vec<String>,
        checkpoint: String,
    },
}

fn source_error(e: merkle::ProofError) -> Error {
    Error::Storage(e.to_string())
}

/// The ledger's origin line: `keyledger/` and the first 8 bytes of h(1), hex.
pub fn origin(store: &Store) -> Result<String> {
    let first = chain_head_at(store, 1)?;
    Ok(format!("keyledger/{}", hex::encode(&first[..8])))
}

/// The hash chain's head after `size` records.
pub fn chain_head_at(store: &Store, size: u64) -> Result<Hash> {
    let mut head = None;
    crate::walk::walk(store, size, |record| {
        head = Some(record.hash);
        Ok(std::ops::ControlFlow::Break(()))
    })?;
    head.ok_or_else(|| Error::Storage(format!("the log has no seq {size}")))
}

/// The checkpoint of the first `size` records, signed now (`time`).
pub fn checkpoint(
    store: &Store,
    key: &LedgerKey,
    size: u64,
    time: keyledger_core::Timestamp,
) -> Result<String> {
    let head = store.head()?.seq;
    if size == 0 || size > head {
        return Err(Error::Storage(format!(
            "tree size {size} is not in 1..={head}"
        )));
    }
    let root = merkle::root(&LedgerTree::new(store, size), size).map_err(source_error)?;
    let checkpoint = Checkpoint {
        origin: origin(store)?,
        size,
        root,
        chain_head: chain_head_at(store, size)?,
        time,
    };
    Ok(key.sign(&checkpoint))
}

pub fn prove_inclusion(
    store: &Store,
    key: &LedgerKey,
    seq: u64,
    size: u64,
    time: keyledger_core::Timestamp,
) -> Result<ProofFile> {
    if seq == 0 || seq > size {
        return Err(Error::Storage(format!(
            "seq {seq} is not in a tree of {size} records"
        )));
    }
    let note = checkpoint(store, key, size, time)?;
    let tree = LedgerTree::new(store, size);
    let path = merkle::inclusion_path(&tree, seq - 1, size).map_err(source_error)?;
    let record = store
        .records(seq, 1)?
        .pop()
        .ok_or_else(|| Error::Storage(format!("no seq {seq}")))?;
    let event = decode_record(&record).map_err(|e| Error::Storage(e.to_string()))?;
    Ok(ProofFile::Inclusion {
        seq,
        tree_size: size,
        record: BASE64.encode(&record),
        event: event_to_json(&event),
        path: path.iter().map(hex::encode).collect(),
        checkpoint: note,
    })
}

/// The consistency path between the trees of `from` and `to` records (RFC 6962 §2.1.2),
/// as a witness takes it.
pub fn consistency_hashes(store: &Store, from: u64, to: u64) -> Result<Vec<Hash>> {
    merkle::consistency_path(&LedgerTree::new(store, to), from, to).map_err(source_error)
}

pub fn prove_consistency(
    store: &Store,
    key: &LedgerKey,
    from: u64,
    to: u64,
    time: keyledger_core::Timestamp,
) -> Result<ProofFile> {
    let note = checkpoint(store, key, to, time)?;
    let tree = LedgerTree::new(store, to);
    let path = merkle::consistency_path(&tree, from, to).map_err(source_error)?;
    let from_root = merkle::root(&LedgerTree::new(store, from), from).map_err(source_error)?;
    Ok(ProofFile::Consistency {
        from_size: from,
        to_size: to,
        from_root: hex::encode(from_root),
        path: path.iter().map(hex::encode).collect(),
        checkpoint: note,
    })
}

/// Why a proof file does not verify.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofFileError {
    #[error("not a proof file: {0}")]
    Json(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Rejected(String),
}

/// What a verified proof established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    pub statement: String,
}

fn hashes(hex_list: &[String]) -> std::result::Result<Vec<Hash>, ProofFileError> {
    hex_list
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ProofFileError::Rejected(format!("{h:?} is not a 32-byte hex hash")))
        })
        .collect()
}

/// Verifies a proof file with the ledger's verifier key; `old_checkpoint` (a note the
/// auditor kept) pins the `from` side of a consistency proof.
/// The signed checkpoint a proof file carries (with any cosignatures on it).
pub fn checkpoint_of(text: &str) -> Option<String> {
    match serde_json::from_str::<ProofFile>(text).ok()? {
        ProofFile::Inclusion { checkpoint, .. } | ProofFile::Consistency { checkpoint, .. } => {
            Some(checkpoint)
        }
    }
}

pub fn verify_proof(
    text: &str,
    verifier_key: &str,
    old_checkpoint: Option<&str>,
) -> std::result::Result<Verified, ProofFileError> {
    let proof: ProofFile =
        serde_json::from_str(text).map_err(|e| ProofFileError::Json(e.to_string()))?;
    match proof {
        ProofFile::Inclusion {
            seq,
            tree_size,
            record,
            event,
            path,
            checkpoint: note,
        } => {
            let signed = checkpoint::verify(&note, verifier_key)?;
            let inclusion = Inclusion {
                seq,
                tree_size,
                record: &record,
                event: &event,
                path: &path,
            };
            verify_inclusion_proof(&inclusion, signed)
        }
        ProofFile::Consistency {
            from_size,
            to_size,
            from_root,
            path,
            checkpoint: note,
        } => {
            let signed = checkpoint::verify(&note, verifier_key)?;
            let old = old_checkpoint
                .map(|old| checkpoint::verify(old, verifier_key))
                .transpose()?;
            let sizes = (from_size, to_size);
            verify_consistency_proof(sizes, &from_root, &path, signed, old)
        }
    }
}

fn reject<T>(why: String) -> std::result::Result<T, ProofFileError> {
    Err(ProofFileError::Rejected(why))
}

/// An inclusion proof's fields, as the file has them.
struct Inclusion<'a> {
    seq: u64,
    tree_size: u64,
    record: &'a str,
    event: &'a serde_json::Value,
    path: &'a [String],
}

/// The record is the event shown, and its audit path leads to the signed root.
fn verify_inclusion_proof(
    p: &Inclusion<'_>,
    signed: Checkpoint,
) -> std::result::Result<Verified, ProofFileError> {
    let (seq, tree_size) = (p.seq, p.tree_size);
    if tree_size != signed.size {
        return reject(format!(
            "the proof is for a tree of {tree_size}, the checkpoint signs {}",
            signed.size
        ));
    }
    if seq == 0 || seq > tree_size {
        return reject(format!(
            "seq {seq} is not covered by the signed tree of {tree_size} records"
        ));
    }
    let record = BASE64
        .decode(p.record)
        .map_err(|_| ProofFileError::Rejected("record is not base64".to_owned()))?;
    let decoded = decode_record(&record)
        .map_err(|e| ProofFileError::Rejected(format!("record does not decode: {e}")))?;
    if event_to_json(&decoded) != *p.event {
        return reject("event differs from the record".to_owned());
    }
    let leaf = merkle::leaf_hash(&record);
    if !merkle::verify_inclusion(seq - 1, tree_size, &leaf, &hashes(p.path)?, &signed.root) {
        return reject(format!(
            "the audit path does not lead from seq {seq} to the signed root"
        ));
    }
    let statement = format!(
        "seq {seq} ({}) is in the log of {tree_size} records signed at {}",
        decoded.body.type_name(),
        signed.time
    );
    Ok(Verified {
        checkpoint: signed,
        statement,
    })
}

/// The tree of `from_size` (the kept checkpoint's, if one was given) is a prefix of the
/// signed tree of `to_size`.
fn verify_consistency_proof(
    (from_size, to_size): (u64, u64),
    from_root: &str,
    path: &[String],
    signed: Checkpoint,
    old: Option<Checkpoint>,
) -> std::result::Result<Verified, ProofFileError> {
    if to_size != signed.size {
        return reject(format!(
            "the proof is to a tree of {to_size}, the checkpoint signs {}",
            signed.size
        ));
    }
    let from_root: Hash = hex::decode(from_root)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            ProofFileError::Rejected("from_root is not a 32-byte hex hash".to_owned())
        })?;
    if let Some(old) = old {
        if old.origin != signed.origin || old.size != from_size || old.root != from_root {
            return reject(format!(
                "the kept checkpoint (size {}) is not the proof's starting tree (size {from_size})",
                old.size
            ));
        }
    }
    if !merkle::verify_consistency(from_size, to_size, &from_root, &signed.root, &hashes(path)?) {
        return reject(format!(
            "the tree of {from_size} records is not a prefix of the signed tree of {to_size}"
        ));
    }
    let statement = format!(
        "the log of {from_size} records is a prefix of the log of {to_size} records signed at {}",
        signed.time
    );
    Ok(Verified {
        checkpoint: signed,
        statement,
    })
}

/// The ledger's signing key (mode 0600; [`Location::signing_key_path`] says where): loaded,
/// or created with a fresh CSPRNG seed when `create` is set.
pub fn signing_key(data: impl Into<Location>, create: bool) -> Result<(LedgerKey, bool)> {
    let path = key_path(data)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    Error::Storage(format!(
                        "{}: not a 32-byte hex Ed25519 seed",
                        path.display()
                    ))
                })?;
            Ok((LedgerKey::from_seed(&seed), false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
            let seed: [u8; 32] = rand::random();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            writeln!(file, "{}", hex::encode(seed))?;
            file.sync_all()?;
            Ok((LedgerKey::from_seed(&seed), true))
        }
        Err(err) => Err(Error::Io(std::io::Error::new(
            err.kind(),
            format!("{}: {err}", path.display()),
        ))),
    }
}

/// Where the signing key of the ledger at `data` is (see [`Location::signing_key_path`]).
pub fn key_path(data: impl Into<Location>) -> Result<std::path::PathBuf> {
    data.into().signing_key_path()
}
