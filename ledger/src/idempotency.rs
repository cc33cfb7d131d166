//! Idempotency keys: a `command_id` makes a command safe to resend, within a scope, and only
//! for the same command (docs/api.md, "Resending a command").
//!
//! - **Scope.** A command id is unique per principal for commands a token authorises, per
//!   presented key (its fingerprint) for activations, which anyone holding the key text may
//!   send, and per KMS host for `activate_kms_client`, which presents no key. So a tokenless
//!   client can never reach an operator's answers, nor one key holder another's.
//! - **Body.** The first answer is stored with the BLAKE3 digest of the command (its type,
//!   actor and every field but `at`, which the server stamps on activations, and
//!   `command_id`). A resend with another body is answered `command_id_reused` (HTTP 409) and
//!   appends nothing, as payment APIs treat idempotency keys.
//!
//! The stored key is `scope \x1f command_id` (ids never hold control characters, so the
//! parts cannot run together); the stored value is the 32-byte digest followed by the
//! answer's JSON (docs/format.md, table `first_answers`).

use keyledger_core::{Command, CommandBody, Event, EventBody, Fingerprint, State};

use std::ops::ControlFlow;

use crate::answer::Answer;
use crate::error::{Error, Result};
use crate::store::{Store, StoredAnswer};
use crate::walk::walk;

/// The code of the answer to a command id reused with a different command.
pub const REUSED: &str = "command_id_reused";

const SEPARATOR: char = '\u{1f}';

/// A command's idempotency key and the digest of what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// `scope \x1f command_id`, the stored key.
    pub key: String,
    pub digest: [u8; 32],
}

/// What a command id is unique within.
fn scope(command: &Command, presented: Option<&Fingerprint>) -> String {
    match (&command.body, presented) {
        (CommandBody::ActivateKmsClient(c), _) => format!("host{SEPARATOR}{}", c.host),
        (body, Some(fingerprint)) if body.is_activation() => {
            format!("key{SEPARATOR}{}", hex::encode(fingerprint.0))
        }
        _ => format!("actor{SEPARATOR}{}", command.actor),
    }
}

impl IdempotencyKey {
    /// The key of a command that carries a `command_id`; `presented` is the fingerprint of
    /// the key text it presents, if any.
    pub fn of(command: &Command, presented: Option<&Fingerprint>) -> Option<IdempotencyKey> {
        let id = command.command_id.as_ref()?;
        let mut hasher = blake3::Hasher::new();
        // bincode of (actor, body) is deterministic and already the log's encoding; it cannot
        // fail for these types (no maps, no unsized values).
        let bytes = bincode::serde::encode_to_vec(
            (&command.actor, &command.body),
            bincode::config::standard(),
        )
        .unwrap_or_default();
        hasher.update(&bytes);
        Some(IdempotencyKey {
            key: format!("{}{SEPARATOR}{id}", scope(command, presented)),
            digest: *hasher.finalize().as_bytes(),
        })
    }

    /// The command id this key was made from.
    pub fn command_id(&self) -> &str {
        self.key.rsplit(SEPARATOR).next().unwrap_or_default()
    }

    /// The first answer, if the same command was sent before; `command_id_reused` if another
    /// command was sent with this id.
    pub fn resend(&self, digest: &[u8; 32], first: &Answer) -> Answer {
        if *digest == self.digest {
            return first.clone();
        }
        Answer::error(
            REUSED,
            format!(
                "command_id {:?} was first used for a different command (its type, actor or \
                 fields differ); nothing was appended",
                self.command_id()
            ),
        )
    }

    /// The stored value: the digest, then the answer's JSON.
    pub fn stored(&self, answer: &Answer) -> Vec<u8> {
        let mut bytes = self.digest.to_vec();
        bytes.extend_from_slice(answer.to_json().as_bytes());
        bytes
    }

    /// A stored first answer read back: its digest and the answer.
    pub fn parse_stored(&self, bytes: &[u8]) -> Result<([u8; 32], Answer)> {
        let unreadable = |why: String| {
            Error::Storage(format!(
                "stored answer of command_id {:?} is unreadable: {why}",
                self.command_id()
            ))
        };
        let (digest, json) = bytes
            .split_first_chunk::<32>()
            .ok_or_else(|| unreadable("shorter than its digest".to_owned()))?;
        let answer = serde_json::from_slice(json).map_err(|e| unreadable(e.to_string()))?;
        Ok((*digest, answer))
    }

    /// Whether a first answer stored before scoped keys existed (database format 2, table
    /// `answers`, keyed by the bare command id) belongs to this scope: the event at its seq
    /// must have come from the same scope. Such answers carry no digest, so their body is not
    /// compared; one with no seq (a refusal that appended nothing) is not honoured, and the
    /// command is decided anew, which cannot apply anything twice.
    pub fn owns_legacy(&self, logged: &Event, state: &State) -> bool {
        let key_scope = |key_id: keyledger_core::KeyId| {
            state
                .key(key_id)
                .map(|key| format!("key{SEPARATOR}{}", hex::encode(key.fingerprint.0)))
        };
        let scope = match &logged.body {
            EventBody::MachinesActivated { key_id, .. }
            | EventBody::MachinesAlreadyActive { key_id, .. }
            | EventBody::KmsHostActivated { key_id, .. }
            | EventBody::OsaRedeemed { key_id, .. } => key_scope(*key_id),
            EventBody::ActivationRefused {
                attempt: keyledger_core::event::ActivationAttempt::KmsClient { host, .. },
                ..
            }
            | EventBody::KmsClientContacted { host, .. } => Some(format!("host{SEPARATOR}{host}")),
            EventBody::ActivationRefused { key_id, .. } => key_id.and_then(key_scope),
            _ => Some(format!("actor{SEPARATOR}{}", logged.actor)),
        };
        scope.is_some_and(|scope| {
            self.key
                .strip_prefix(scope.as_str())
                .is_some_and(|rest| rest.starts_with(SEPARATOR))
        })
    }
}

/// The first answer the store holds for `key`: stored with its digest, or stored before
/// scoped keys existed (format 2's `answers`, honoured only for its own scope).
pub fn stored_first_answer(
    store: &Store,
    key: &IdempotencyKey,
    state: &State,
) -> Result<Option<Answer>> {
    match store.first_answer(&key.key, key.command_id())? {
        Some(StoredAnswer::Scoped(bytes)) => {
            let (digest, first) = key.parse_stored(&bytes)?;
            Ok(Some(key.resend(&digest, &first)))
        }
        Some(StoredAnswer::Legacy(bytes)) => legacy_first_answer(store, key, state, &bytes),
        None => Ok(None),
    }
}

fn legacy_first_answer(
    store: &Store,
    key: &IdempotencyKey,
    state: &State,
    bytes: &[u8],
) -> Result<Option<Answer>> {
    let first: Answer = serde_json::from_slice(bytes).map_err(|e| {
        Error::Storage(format!(
            "stored answer of command_id {:?} is unreadable: {e}",
            key.command_id()
        ))
    })?;
    let Some(seq) = first.seq else {
        return Ok(None);
    };
    let mut logged = None;
    walk(store, seq, |record| {
        logged = Some(record.event);
        Ok(ControlFlow::Break(()))
    })?;
    Ok(logged
        .filter(|event| key.owns_legacy(event, state))
        .map(|_| first))
}

/// The answer to `key` if an earlier command of the same atomic submission carried its id
/// (its answer is not remembered until the whole submission is accepted, so the batch's
/// `seen` does not have it yet): a command repeated inside one submission is decided once.
pub fn repeated_in(
    keys: &[Option<IdempotencyKey>],
    answers: &[Answer],
    key: &IdempotencyKey,
) -> Option<Answer> {
    keys.iter().zip(answers).find_map(|(earlier, answer)| {
        let earlier = earlier.as_ref().filter(|e| e.key == key.key)?;
        Some(key.resend(&earlier.digest, answer))
    })
}
