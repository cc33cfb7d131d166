//! Witnesses (C2SP `tlog-witness`, `tlog-cosignature`): a witness keeps, for each log it
//! follows, the latest checkpoint it cosigned, and cosigns a newer one only with a
//! consistency proof from that one. A checkpoint that a quorum of independent witnesses
//! cosigned is one the operator cannot show differently to another auditor (a split
//! view): the witnesses would have had to cosign two trees that are not prefixes of one
//! another, which they refuse (docs/proofs.md, "Witnesses").
//!
//! Cosignatures are C2SP's Ed25519 `cosignature/v1`: a note signature line
//! `— <name> base64(key ID[4] || timestamp[8, big-endian] || Ed25519 signature[64])` over
//! `cosignature/v1\ntime <timestamp>\n` and the checkpoint's body. The key ID is the first
//! 4 bytes of SHA-256(name || "\n" || 0x04 || public key); a witness's verifier key is
//! written `name+hex(key ID)+base64(0x04 || public key)`. The tree is keyledger's (RFC 6962's
//! shape, BLAKE3 hashes), so a witness must check consistency with BLAKE3: keyledger's own
//! (`keyledger witness serve`) does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::checkpoint::{self, CheckpointError};
use crate::merkle::{self, Hash};

/// The signature type byte of an Ed25519 `cosignature/v1`.
const COSIGNATURE_V1: u8 = 0x04;
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The most consistency proof lines a request may carry (C2SP).
const PROOF_LINES_MAX: usize = 63;

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([COSIGNATURE_V1]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The message a cosignature signs: the header, the time, the checkpoint's body.
fn cosigned_message(body: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{body}")
}

/// A witness's signing key and name.
pub struct WitnessKey {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessKey({})", self.name)
    }
}

impl WitnessKey {
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> WitnessKey {
        WitnessKey {
            name: name.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+hex(key ID)+base64(0x04 || public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key().to_bytes();
        let mut encoded = vec![COSIGNATURE_V1];
        encoded.extend_from_slice(&public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &public)),
            BASE64.encode(encoded)
        )
    }

    /// The cosignature line of a checkpoint `body` (every line above its blank line, each
    /// ending in a newline) at `time` (Unix seconds).
    pub fn cosign(&self, body: &str, time: u64) -> String {
        let signature = self.key.sign(cosigned_message(body, time).as_bytes());
        let public = self.key.verifying_key().to_bytes();
        let mut blob = key_id(&self.name, &public).to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(blob))
    }
}

/// A witness's verifier key, parsed.
#[derive(Clone, Debug)]
pub struct WitnessVerifier {
    name: String,
    id: [u8; 4],
    key: ed25519_dalek::VerifyingKey,
}

impl WitnessVerifier {
    pub fn parse(text: &str) -> Result<WitnessVerifier, CheckpointError> {
        let bad = |why: &str| CheckpointError::Key(format!("witness key {text:?}: {why}"));
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+keyid+base64key"));
        };
        let id: [u8; 4] = hex::decode(id)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| bad("the key ID is not 8 hex digits"))?;
        let key = BASE64
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        let [COSIGNATURE_V1, public @ ..] = key.as_slice() else {
            return Err(bad("not an Ed25519 cosignature/v1 key (type byte 0x04)"));
        };
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
        if key_id(name, &public) != id {
            return Err(bad("the key ID does not match the key"));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
            .map_err(|_| bad("not a valid Ed25519 point"))?;
        Ok(WitnessVerifier {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time of this witness's valid cosignature on `note`, if it has one.
    pub fn cosigned_at(&self, note: &str) -> Option<u64> {
        let (body, signatures) = note.split_once("\n\n")?;
        let body = format!("{body}\n");
        signatures.lines().find_map(|line| {
            let (name, blob) = line.strip_prefix(SIGNATURE_PREFIX)?.split_once(' ')?;
            let blob = BASE64.decode(blob).ok()?;
            if name != self.name || blob.len() != 4 + 8 + 64 || blob[..4] != self.id {
                return None;
            }
            let time = u64::from_be_bytes(blob[4..12].try_into().ok()?);
            let signature = ed25519_dalek::Signature::from_bytes(blob[12..].try_into().ok()?);
            let message = cosigned_message(&body, time);
            self.key
                .verify(message.as_bytes(), &signature)
                .ok()
                .map(|()| time)
        })
    }
}

/// Checks that `note` carries valid cosignatures of at least `quorum` of `witnesses`;
/// answers the names of those that cosigned.
pub fn check_quorum(
    note: &str,
    witnesses: &[WitnessVerifier],
    quorum: usize,
) -> Result<Vec<String>, String> {
    let cosigned: Vec<String> = witnesses
        .iter()
        .filter(|w| w.cosigned_at(note).is_some())
        .map(|w| w.name.clone())
        .collect();
    if cosigned.len() < quorum {
        return Err(format!(
            "{} of the {} witnesses given cosigned the checkpoint ({}), fewer than the quorum of {quorum}",
            cosigned.len(),
            witnesses.len(),
            if cosigned.is_empty() { "none".to_owned() } else { cosigned.join(", ") }
        ));
    }
    Ok(cosigned)
}

/// Why a witness did not cosign, with the HTTP status C2SP gives it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// 400: not a request of the protocol.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 404: a log this witness does not follow.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no signature of the log's key verifies.
    #[error("the checkpoint is not signed by the log's key")]
    NotSigned,
    /// 409: the old size is not the size this witness last cosigned (which it says).
    #[error("the witness last cosigned size {0}")]
    Conflict(u64),
    /// 409: the same size with another root: a fork.
    #[error("a fork: size {0} was cosigned with another root")]
    Fork(u64),
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof from size {0} does not verify")]
    Inconsistent(u64),
    /// 500: the witness's state could not be saved (nothing was cosigned).
    #[error("the witness's state cannot be saved: {0}")]
    State(String),
}

impl WitnessRefusal {
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::Malformed(_) => 400,
            WitnessRefusal::UnknownOrigin(_) => 404,
            WitnessRefusal::NotSigned => 403,
            WitnessRefusal::Conflict(_) | WitnessRefusal::Fork(_) => 409,
            WitnessRefusal::Inconsistent(_) => 422,
            WitnessRefusal::State(_) => 500,
        }
    }
}

/// What a witness remembers of a log: the latest checkpoint it cosigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub size: u64,
    /// base64, as in the checkpoint.
    pub root: String,
    /// The checkpoint note as submitted (evidence, should the log misbehave later).
    pub checkpoint: String,
}

/// The witness state file: `{"version": 1, "logs": {origin: Latest}}`.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    logs: BTreeMap<String, Latest>,
}

/// A witness: its key, the logs it follows (origin to the log's verifier key), and its
/// state, kept in a file that is replaced atomically (write, fsync, rename, fsync the
/// directory) before any cosignature is answered.
#[derive(Debug)]
pub struct Witness {
    key: WitnessKey,
    logs: BTreeMap<String, String>,
    path: PathBuf,
    state: Mutex<State>,
}

impl Witness {
    /// The witness with the state in `path` (none yet: an empty state).
    pub fn open(
        key: WitnessKey,
        logs: BTreeMap<String, String>,
        path: &Path,
    ) -> Result<Witness, String> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes)
                .map_err(|e| format!("{}: not a witness state file: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                version: 1,
                logs: BTreeMap::new(),
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if state.version != 1 {
            return Err(format!(
                "{}: state version {} (this keyledger reads 1)",
                path.display(),
                state.version
            ));
        }
        Ok(Witness {
            key,
            logs,
            path: path.to_owned(),
            state: Mutex::new(state),
        })
    }

    pub fn key(&self) -> &WitnessKey {
        &self.key
    }

    /// The latest checkpoint cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<Latest> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.logs.get(origin).cloned()
    }

    /// C2SP `add-checkpoint`: the request body in, the cosignature line out (`now` in Unix
    /// seconds). Checking the old size and saving the new state happen under one lock, so
    /// two requests cannot roll the state back.
    pub fn add_checkpoint(&self, request: &str, now: u64) -> Result<String, WitnessRefusal> {
        let (old, proof, note) = parse_request(request)?;
        let origin = note.lines().next().unwrap_or_default().to_owned();
        let log_key = self
            .logs
            .get(&origin)
            .ok_or_else(|| WitnessRefusal::UnknownOrigin(origin.clone()))?;
        let checkpoint = match checkpoint::verify(note, log_key) {
            Ok(checkpoint) => checkpoint,
            Err(CheckpointError::Signature | CheckpointError::Key(_)) => {
                return Err(WitnessRefusal::NotSigned)
            }
            Err(CheckpointError::Note(why)) => return Err(WitnessRefusal::Malformed(why)),
        };
        if old > checkpoint.size {
            return Err(WitnessRefusal::Malformed(format!(
                "old size {old} is larger than the checkpoint's {}",
                checkpoint.size
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let latest = state.logs.get(&origin);
        let known = latest.map_or(0, |l| l.size);
        if old != known {
            return Err(WitnessRefusal::Conflict(known));
        }
        check_consistency(latest, old, &proof, &checkpoint)?;
        let latest = Latest {
            size: checkpoint.size,
            root: BASE64.encode(checkpoint.root),
            checkpoint: note.to_owned(),
        };
        let previous = state.logs.insert(origin.clone(), latest);
        if let Err(e) = save(&self.path, &state) {
            // Nothing is answered: the memory goes back to what the file still says.
            match previous {
                Some(previous) => state.logs.insert(origin, previous),
                None => state.logs.remove(&origin),
            };
            return Err(WitnessRefusal::State(e));
        }
        let body = &note[..note.find("\n\n").map_or(note.len(), |i| i + 1)];
        Ok(self.key.cosign(body, now))
    }
}

/// `old N`, the proof lines, a blank line, the note.
fn parse_request(request: &str) -> Result<(u64, Vec<Hash>, &str), WitnessRefusal> {
    let bad = |why: &str| WitnessRefusal::Malformed(why.to_owned());
    let (head, note) = request
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the checkpoint"))?;
    let mut lines = head.lines();
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .ok_or_else(|| bad("the first line must be `old SIZE`"))?;
    if old.len() > 1 && old.starts_with('0') {
        return Err(bad("the old size has a leading zero"));
    }
    let old: u64 = old
        .parse()
        .map_err(|_| bad("the old size is not a number"))?;
    let proof: Vec<Hash> = lines
        .map(|line| {
            BASE64
                .decode(line)
                .ok()
                .and_then(|h| Hash::try_from(h).ok())
                .ok_or_else(|| bad("a proof line is not a base64 hash of 32 bytes"))
        })
        .collect::<Result<_, _>>()?;
    if proof.len() > PROOF_LINES_MAX {
        return Err(bad("more than 63 consistency proof lines"));
    }
    if old == 0 && !proof.is_empty() {
        return Err(bad("the proof must be empty when the old size is 0"));
    }
    Ok((old, proof, note))
}

/// The new checkpoint against the latest cosigned one.
fn check_consistency(
    latest: Option<&Latest>,
    old: u64,
    proof: &[Hash],
    checkpoint: &checkpoint::Checkpoint,
) -> Result<(), WitnessRefusal> {
    let Some(latest) = latest else {
        return Ok(());
    };
    let old_root: Hash = BASE64
        .decode(&latest.root)
        .ok()
        .and_then(|h| Hash::try_from(h).ok())
        .ok_or_else(|| WitnessRefusal::State("a stored root is not 32 base64 bytes".to_owned()))?;
    if old == checkpoint.size {
        return match old_root == checkpoint.root && proof.is_empty() {
            true => Ok(()),
            false => Err(WitnessRefusal::Fork(old)),
        };
    }
    if merkle::verify_consistency(old, checkpoint.size, &old_root, &checkpoint.root, proof) {
        Ok(())
    } else {
        Err(WitnessRefusal::Inconsistent(old))
    }
}

fn save(path: &Path, state: &State) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    use std::io::Write;
    temp.write_all(&bytes).map_err(|e| e.to_string())?;
    temp.as_file().sync_all().map_err(|e| e.to_string())?;
    temp.persist(path).map_err(|e| e.to_string())?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, LedgerKey};
    use crate::merkle::{leaf_hash, MemoryTree};

    /// A tree of `size` leaves `0..size`, its checkpoint signed by `log`.
    fn note(log: &LedgerKey, leaves: &[Hash], size: u64) -> String {
        let checkpoint = Checkpoint {
            origin: "keyledger/0011223344556677".to_owned(),
            size,
            root: merkle::root(&tree(leaves), size).unwrap(),
            chain_head: [7; 32],
            time: keyledger_core::Timestamp::parse("2026-12-07T00:00:00Z").unwrap(),
        };
        log.sign(&checkpoint)
    }

    fn tree(leaves: &[Hash]) -> MemoryTree {
        MemoryTree {
            leaves: leaves.to_vec(),
        }
    }

    fn request(old: u64, proof: &[Hash], note: &str) -> String {
        let mut text = format!("old {old}\n");
        for hash in proof {
            text.push_str(&BASE64.encode(hash));
            text.push('\n');
        }
        format!("{text}\n{note}")
    }

    fn witness(dir: &Path, log: &LedgerKey) -> Witness {
        let logs = BTreeMap::from([("keyledger/0011223344556677".to_owned(), log.verifier_key())]);
        let key = WitnessKey::from_seed("witness.example/w1", &[9; 32]);
        Witness::open(key, logs, &dir.join("state.json")).unwrap()
    }

    #[test]
    fn a_witness_cosigns_consistent_growth_refuses_forks_and_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let log = LedgerKey::from_seed(&[1; 32]);
        let leaves: Vec<Hash> = (0u8..20).map(|i| leaf_hash(&[i])).collect();
        let w = witness(dir.path(), &log);
        let verifier = WitnessVerifier::parse(&w.key().verifier_key()).unwrap();
        // First contact: old 0, no proof.
        let first = note(&log, &leaves, 5);
        let line = w
            .add_checkpoint(&request(0, &[], &first), 1_765_000_000)
            .unwrap();
        assert_eq!(
            verifier.cosigned_at(&format!("{first}{line}")),
            Some(1_765_000_000)
        );
        // Growth with its consistency proof.
        let grown = note(&log, &leaves, 12);
        let proof = merkle::consistency_path(&tree(&leaves), 5, 12).unwrap();
        let line = w
            .add_checkpoint(&request(5, &proof, &grown), 1_765_000_060)
            .unwrap();
        assert!(verifier.cosigned_at(&format!("{grown}{line}")).is_some());
        // A stale old size is a conflict that names what the witness holds.
        assert_eq!(
            w.add_checkpoint(&request(5, &proof, &grown), 0),
            Err(WitnessRefusal::Conflict(12))
        );
        // A fork at the same size (another root), and a fork that grows from it.
        let mut forked_leaves = leaves.clone();
        forked_leaves[3] = leaf_hash(b"rewritten");
        let fork = note(&log, &forked_leaves, 12);
        assert_eq!(
            w.add_checkpoint(&request(12, &[], &fork), 0),
            Err(WitnessRefusal::Fork(12))
        );
        let fork = note(&log, &forked_leaves, 15);
        let proof = merkle::consistency_path(&tree(&forked_leaves), 12, 15).unwrap();
        assert_eq!(
            w.add_checkpoint(&request(12, &proof, &fork), 0),
            Err(WitnessRefusal::Inconsistent(12))
        );
        // A smaller tree is never cosigned after a larger one.
        let smaller = note(&log, &leaves, 8);
        assert_eq!(
            w.add_checkpoint(&request(12, &[], &smaller), 0)
                .unwrap_err()
                .status(),
            400
        );
        // Another key's checkpoint, another origin.
        let stranger = LedgerKey::from_seed(&[2; 32]);
        let unsigned = note(&stranger, &leaves, 13);
        assert_eq!(
            w.add_checkpoint(&request(12, &[], &unsigned), 0),
            Err(WitnessRefusal::NotSigned)
        );
        let other = first.replacen(
            "keyledger/0011223344556677",
            "keyledger/ffffffffffffffff",
            1,
        );
        assert_eq!(
            w.add_checkpoint(&request(0, &[], &other), 0)
                .unwrap_err()
                .status(),
            404
        );
        // Restarted, it remembers size 12 and its root.
        drop(w);
        let again = witness(dir.path(), &log);
        assert_eq!(again.latest("keyledger/0011223344556677").unwrap().size, 12);
        let fork = note(&log, &forked_leaves, 12);
        assert_eq!(
            again.add_checkpoint(&request(12, &[], &fork), 0),
            Err(WitnessRefusal::Fork(12))
        );
    }

    #[test]
    fn a_quorum_counts_valid_cosignatures_of_the_witnesses_given() {
        let log = LedgerKey::from_seed(&[1; 32]);
        let leaves: Vec<Hash> = (0u8..4).map(|i| leaf_hash(&[i])).collect();
        let checkpoint = note(&log, &leaves, 4);
        let body = &checkpoint[..checkpoint.find("\n\n").unwrap() + 1];
        let (a, b) = (
            WitnessKey::from_seed("w.example/a", &[3; 32]),
            WitnessKey::from_seed("w.example/b", &[4; 32]),
        );
        let verifiers: Vec<WitnessVerifier> = [&a, &b]
            .iter()
            .map(|k| WitnessVerifier::parse(&k.verifier_key()).unwrap())
            .collect();
        let one = format!("{checkpoint}{}", a.cosign(body, 10));
        assert_eq!(check_quorum(&one, &verifiers, 1).unwrap(), ["w.example/a"]);
        let err = check_quorum(&one, &verifiers, 2).unwrap_err();
        assert!(err.contains("1 of the 2 witnesses given cosigned"), "{err}");
        let both = format!("{one}{}", b.cosign(body, 11));
        assert_eq!(check_quorum(&both, &verifiers, 2).unwrap().len(), 2);
        // A cosignature over another body, or by another key under the same name, counts not.
        let other_body = body.replace("\n4\n", "\n5\n");
        let forged = format!("{checkpoint}{}", a.cosign(&other_body, 10));
        assert!(check_quorum(&forged, &verifiers, 1).is_err());
        let impostor = WitnessKey::from_seed("w.example/a", &[5; 32]);
        let forged = format!("{checkpoint}{}", impostor.cosign(body, 10));
        assert!(check_quorum(&forged, &verifiers, 1).is_err());
    }

    /// Golden: the cosignature line of a fixed key, time and body, as C2SP
    /// tlog-cosignature specifies its bytes (key ID, big-endian time, Ed25519 signature
    /// over `cosignature/v1\ntime T\n` and the body). Ed25519 is deterministic, so the
    /// line is fixed; a change to any byte of the format changes it.
    #[test]
    fn the_cosignature_format_is_c2sps() {
        let key = WitnessKey::from_seed("witness.example/w1", &[7; 32]);
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let line = key.cosign(body, 1679315147);
        let blob = BASE64
            .decode(line.trim_end().rsplit(' ').next().unwrap())
            .unwrap();
        let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let mut id_input = b"witness.example/w1\n\x04".to_vec();
        id_input.extend_from_slice(public.as_bytes());
        assert_eq!(blob[..4], sha2::Sha256::digest(&id_input)[..4]);
        assert_eq!(
            u64::from_be_bytes(blob[4..12].try_into().unwrap()),
            1679315147
        );
        let message = format!("cosignature/v1\ntime 1679315147\n{body}");
        let signature = ed25519_dalek::Signature::from_bytes(blob[12..].try_into().unwrap());
        public.verify(message.as_bytes(), &signature).unwrap();
        assert!(line.starts_with("\u{2014} witness.example/w1 "));
        assert_eq!(key.verifier_key().split('+').count(), 3);
    }
}
