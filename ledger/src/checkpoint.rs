//! Signed checkpoints in the C2SP `tlog-checkpoint` / `signed-note` text format, so the
//! habits and tooling of transparency logs carry over (docs/proofs.md):
//!
//! ```text
//! keyledger/3fa1c2d4e5f60718          origin: this ledger (first 8 bytes of h(1), hex)
//! 1234                                tree size
//! <base64 root>                       Merkle root of the first `size` records
//! chain 1234 <hex h(size)>            extension: the hash chain's head at that size
//! time 2026-11-28T16:00:00Z           extension: when the checkpoint was signed
//!                                     (blank line)
//! — keyledger <base64(key hash[4] || Ed25519 signature[64])>
//! ```
//!
//! The signature covers the body: every line above the blank line, each ending in `\n`.
//! The key hash is the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key), and a
//! verifier key is written `name+hex(key hash)+base64(0x01 || public key)`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, Verifier};
use sha2::Digest as _;

use crate::merkle::Hash;

/// The signer's key name in notes and verifier keys.
pub const KEY_NAME: &str = "keyledger";
const ED25519: u8 = 0x01;
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// What a checkpoint states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub chain_head: Hash,
    pub time: keyledger_core::Timestamp,
}

/// Why a note, key or checkpoint is not acceptable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed verifier key: {0}")]
    Key(String),
    #[error("malformed checkpoint: {0}")]
    Note(String),
    #[error("no signature by this key verifies the checkpoint")]
    Signature,
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The ledger's signing key.
#[derive(Debug)]
pub struct LedgerKey(ed25519_dalek::SigningKey);

impl LedgerKey {
    pub fn from_seed(seed: &[u8; 32]) -> LedgerKey {
        LedgerKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The verifier key text: `keyledger+<key hash hex>+<base64(0x01 || public key)>`.
    pub fn verifier_key(&self) -> String {
        let public = self.0.verifying_key().to_bytes();
        let mut encoded = vec![ED25519];
        encoded.extend_from_slice(&public);
        format!(
            "{KEY_NAME}+{}+{}",
            hex::encode(key_hash(KEY_NAME, &public)),
            BASE64.encode(encoded)
        )
    }

    /// An Ed25519 signature of `message` (webhook deliveries; docs/api.md, "Webhooks"), to
    /// be checked with the public key inside `verifier_key`.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The signed note of `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.0.sign(body.as_bytes()).to_bytes();
        let public = self.0.verifying_key().to_bytes();
        let mut blob = key_hash(KEY_NAME, &public).to_vec();
        blob.extend_from_slice(&signature);
        format!(
            "{body}\n{SIGNATURE_PREFIX}{KEY_NAME} {}\n",
            BASE64.encode(blob)
        )
    }
}

impl Checkpoint {
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nchain {} {}\ntime {}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root),
            self.size,
            hex::encode(self.chain_head),
            self.time
        )
    }
}

/// A parsed verifier key: name, key hash, public key.
fn parse_verifier_key(
    text: &str,
) -> Result<(String, [u8; 4], ed25519_dalek::VerifyingKey), CheckpointError> {
    let bad = |why: &str| CheckpointError::Key(why.to_owned());
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+keyhash+base64key"));
    };
    let hash: [u8; 4] = hex::decode(hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad("key hash is not 8 hex digits"))?;
    let key = BASE64.decode(key).map_err(|_| bad("key is not base64"))?;
    let [ED25519, public @ ..] = key.as_slice() else {
        return Err(bad("not an Ed25519 key (type byte 0x01)"));
    };
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
    if key_hash(name, &public) != hash {
        return Err(bad("key hash does not match the key"));
    }
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public)
        .map_err(|_| bad("not a valid Ed25519 point"))?;
    Ok((name.to_owned(), hash, verifying))
}

/// Checks the form of a verifier key (name, key hash, Ed25519 key), without a note.
pub fn check_verifier_key(text: &str) -> Result<(), CheckpointError> {
    parse_verifier_key(text).map(|_| ())
}

/// Verifies a signed note with `verifier_key` and parses the checkpoint it carries.
pub fn verify(note: &str, verifier_key: &str) -> Result<Checkpoint, CheckpointError> {
    let (name, hash, key) = parse_verifier_key(verifier_key)?;
    let (body, signatures) = note
        .split_once("\n\n")
        .ok_or_else(|| CheckpointError::Note("no blank line before the signatures".to_owned()))?;
    let body = format!("{body}\n");
    let mut verified = false;
    for line in signatures.lines().filter(|l| !l.is_empty()) {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            CheckpointError::Note("a signature line must start with an em dash".to_owned())
        })?;
        let Some((signer, blob)) = rest.split_once(' ') else {
            return Err(CheckpointError::Note(
                "a signature line is `— name base64`".to_owned(),
            ));
        };
        let Ok(blob) = BASE64.decode(blob) else {
            continue;
        };
        if signer != name || blob.len() != 68 || blob[..4] != hash {
            continue;
        }
        let signature =
            ed25519_dalek::Signature::from_bytes(blob[4..].try_into().expect("64 bytes"));
        if key.verify(body.as_bytes(), &signature).is_ok() {
            verified = true;
        }
    }
    if !verified {
        return Err(CheckpointError::Signature);
    }
    parse_body(&body)
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let bad = |why: String| CheckpointError::Note(why);
    let lines: Vec<&str> = body.lines().collect();
    let [origin, size, root, extensions @ ..] = lines.as_slice() else {
        return Err(bad("expected origin, size and root lines".to_owned()));
    };
    let size: u64 = size
        .parse()
        .map_err(|_| bad(format!("size {size:?} is not a number")))?;
    let root: Hash = BASE64
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("root is not 32 base64 bytes".to_owned()))?;
    let mut chain_head = None;
    let mut time = None;
    for line in extensions {
        match line.split_once(' ') {
            Some(("chain", rest)) => {
                let (seq, head) = rest
                    .split_once(' ')
                    .ok_or_else(|| bad("chain line is `chain SEQ HEX`".to_owned()))?;
                if seq != size.to_string() {
                    return Err(bad(format!(
                        "the chain line names seq {seq}, not the tree size {size}"
                    )));
                }
                chain_head = hex::decode(head)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok());
            }
            Some(("time", t)) => time = keyledger_core::Timestamp::parse(t).ok(),
            _ => {}
        }
    }
    Ok(Checkpoint {
        origin: (*origin).to_owned(),
        size,
        root,
        chain_head: chain_head.ok_or_else(|| bad("missing or malformed chain line".to_owned()))?,
        time: time.ok_or_else(|| bad("missing or malformed time line".to_owned()))?,
    })
}
