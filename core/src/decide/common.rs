//! What the rules of every area share: the limits on input, the context a decision gets
//! beside the command, and the lookups and guards each rule starts with.

use crate::ids::{KeyId, LicenseId, OrgId, Principal, ProductId};
use crate::product_key::{Fingerprint, Last5};
use crate::refusal::Refusal;
use crate::state::{Key, LicenseRecord, Product, State};
use crate::Role;

/// The most machines one proxy activation may name (R9).
pub const PROXY_MACHINES_MAX: usize = 10_000;
/// The most machines a recorded refusal names (R10): a refusal on a known key names up to
/// this many, so each one's history shows it; anything larger, and every refusal on a key
/// the ledger does not know, is recorded by its count alone. Refusals cost no token, so
/// what one may add to the append-only log is bounded (at most this many names of
/// `ID_BYTES_MAX` each), whatever the request carried.
pub const REFUSAL_MACHINES_NAMED_MAX: usize = 64;
/// The most bytes of a free-text field (names, justifications, reasons).
pub const TEXT_BYTES_MAX: usize = 2_048;
/// The most keys one disclosure may name (R1, R2).
pub const DISCLOSED_KEYS_MAX: usize = 100_000;
/// See [`crate::refusal::COUNT_MAX`]: the limit the `count_overflow` refusal names.
pub use crate::refusal::COUNT_MAX;
/// The actor of tokenless activations, and the prefix (`activation-client/<name>`) of those
/// that name their tool: no principal may be called so, so an activation's actor can never
/// read like a principal's action in the log.
pub const ACTIVATION_ACTOR: &str = "activation-client";

/// The actor of the events the ledger appends of itself (`streams_committed`): no principal
/// may be called so.
pub const LEDGER_ACTOR: &str = "keyledger";

/// Whether `principal` is an activation actor's name, reserved for tokenless activations.
pub fn is_activation_actor(principal: &Principal) -> bool {
    let name = principal.as_str();
    name == ACTIVATION_ACTOR
        || name
            .strip_prefix(ACTIVATION_ACTOR)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A principal a licensor command names must not be an activation actor's name.
pub(super) fn principal_name(principal: &Principal) -> Result<(), Refusal> {
    if is_activation_actor(principal) {
        return Err(Refusal::Invalid(format!(
            "principal {principal}: names `{ACTIVATION_ACTOR}` and `{ACTIVATION_ACTOR}/…` are \
             kept for tokenless activations"
        )));
    }
    if principal.as_str() == LEDGER_ACTOR {
        return Err(Refusal::Invalid(format!(
            "principal {principal}: the name is kept for what the ledger appends of itself"
        )));
    }
    Ok(())
}

/// R13 defaults for a KMS host key.
pub const KMS_HOSTS_DEFAULT: u32 = 6;
/// R13 default: activations of one host a KMS host key allows.
pub const KMS_ACTIVATIONS_PER_HOST_DEFAULT: u32 = 10;

/// Material for a key the caller generated (from a CSPRNG, outside `core`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewKeyMaterial {
    /// The BLAKE3 fingerprint of the generated text.
    pub fingerprint: Fingerprint,
    /// The generated text's last five characters.
    pub last5: Last5,
}

/// What the caller supplies beside the command: never a clock, never an RNG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// BLAKE3 fingerprint of the key text the command presents, if it presents one.
    pub presented: Option<Fingerprint>,
    /// Material for a key the command may issue without given text.
    pub new_key: Option<NewKeyMaterial>,
    /// The seq the command's first event would take.
    pub next_seq: u64,
}

pub(super) fn require_operator(
    state: &State,
    actor: &Principal,
    rule: &'static str,
) -> Result<(), Refusal> {
    if state.is_operator(actor) {
        Ok(())
    } else {
        Err(Refusal::Forbidden {
            rule,
            actor: actor.to_string(),
            needs: "is not an operator".to_owned(),
        })
    }
}

pub(super) fn require_role(
    state: &State,
    actor: &Principal,
    license_id: &LicenseId,
    roles: &[Role],
    rule: &'static str,
) -> Result<(), Refusal> {
    if state.has_any_role(actor, license_id, roles) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(Refusal::Forbidden {
        rule,
        actor: actor.to_string(),
        needs: format!(
            "holds none of {} on license ID {license_id}",
            names.join(", ")
        ),
    })
}

pub(super) fn license<'s>(state: &'s State, id: &LicenseId) -> Result<&'s LicenseRecord, Refusal> {
    state
        .license(id)
        .ok_or_else(|| Refusal::UnknownLicenseId(id.clone()))
}

pub(super) fn product<'s>(state: &'s State, id: &ProductId) -> Result<&'s Product, Refusal> {
    state
        .product(id)
        .ok_or_else(|| Refusal::UnknownProduct(id.clone()))
}

pub(super) fn org_exists(state: &State, id: &OrgId) -> Result<(), Refusal> {
    if state.has_org(id) {
        Ok(())
    } else {
        Err(Refusal::UnknownOrg(id.clone()))
    }
}

pub(super) fn key_by_id(state: &State, id: KeyId) -> Result<&Key, Refusal> {
    state
        .key(id)
        .ok_or_else(|| Refusal::UnknownKey(format!("key id {id}")))
}

/// The key whose fingerprint the caller computed from the presented text.
pub(super) fn presented_key<'s>(state: &'s State, ctx: &Context) -> Result<&'s Key, Refusal> {
    let fingerprint = ctx
        .presented
        .expect("the caller fingerprints every presented key");
    state
        .key_by_fingerprint(&fingerprint)
        .ok_or_else(|| Refusal::UnknownKey("the presented product key is not issued".to_owned()))
}

/// A free-text field must say something, within [`TEXT_BYTES_MAX`].
pub(super) fn text(field: &str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::Invalid(format!("{field} must not be empty")));
    }
    if value.len() > TEXT_BYTES_MAX {
        return Err(Refusal::Invalid(format!(
            "{field} is {} bytes; at most {TEXT_BYTES_MAX} are allowed",
            value.len()
        )));
    }
    Ok(())
}

/// A count a command carries: more than 0 and at most [`COUNT_MAX`] (else `invalid`).
pub(super) fn count(field: &str, value: u64) -> Result<u64, Refusal> {
    match value {
        0 => Err(Refusal::Invalid(format!("{field} must be greater than 0"))),
        v if v > COUNT_MAX => Err(Refusal::Invalid(format!(
            "{field} is {v}; at most {COUNT_MAX} is allowed"
        ))),
        v => Ok(v),
    }
}

/// `current + added` where counts combine, refused (never wrapped) above [`COUNT_MAX`].
pub(super) fn combined(
    what: impl FnOnce() -> String,
    current: u64,
    added: u64,
) -> Result<u64, Refusal> {
    let total = u128::from(current) + u128::from(added);
    if total > u128::from(COUNT_MAX) {
        return Err(Refusal::CountOverMaximum {
            what: what(),
            total,
        });
    }
    Ok(total as u64)
}

pub(super) fn optional_text(field: &str, value: &Option<String>) -> Result<(), Refusal> {
    value.as_deref().map_or(Ok(()), |v| text(field, v))
}
