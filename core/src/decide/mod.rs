//! `decide`: the pure licensing rules. Given the state and a command (with what the caller
//! computed outside `core`: fingerprints, generated key material), it answers the events to
//! append or the refusal. It reads no clock and holds no randomness.

mod activation;
mod catalog;
mod keys;
mod kms;
mod requests;

use crate::command::{Command, CommandBody};
use crate::event::{ActivationAttempt, Event, EventBody};
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

/// Whether `principal` is an activation actor's name, reserved for tokenless activations.
pub fn is_activation_actor(principal: &Principal) -> bool {
    let name = principal.as_str();
    name == ACTIVATION_ACTOR
        || name
            .strip_prefix(ACTIVATION_ACTOR)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A principal a licensor command names must not be an activation actor's name.
fn principal_name(principal: &Principal) -> Result<(), Refusal> {
    if is_activation_actor(principal) {
        return Err(Refusal::Invalid(format!(
            "principal {principal}: names `{ACTIVATION_ACTOR}` and `{ACTIVATION_ACTOR}/…` are \
             kept for tokenless activations"
        )));
    }
    Ok(())
}

/// R13 defaults for a KMS host key.
pub const KMS_HOSTS_DEFAULT: u32 = 6;
pub const KMS_ACTIVATIONS_PER_HOST_DEFAULT: u32 = 10;

/// Material for a key the caller generated (from a CSPRNG, outside `core`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewKeyMaterial {
    pub fingerprint: Fingerprint,
    pub last5: Last5,
}

/// What the caller supplies beside the command: never a clock, never an RNG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// BLAKE3 fingerprint of the key text the command presents, if it presents one.
    pub presented: Option<Fingerprint>,
    /// Material for a key the command may issue without given text.
    pub new_key: Option<NewKeyMaterial>,
}

/// The result of handling one command: accepted events, or a refusal and, when R10 asks
/// for it, the event that records the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Vec<Event>),
    Refused {
        refusal: Refusal,
        /// Boxed: most refusals record nothing, and an event is large.
        recorded: Option<Box<Event>>,
    },
}

/// Decides one command against the state. `Ok` events are to be appended and applied in
/// order; `Err` leaves the state as it is (see [`handle`] for recorded refusals).
pub fn decide(state: &State, command: &Command, ctx: &Context) -> Result<Vec<Event>, Refusal> {
    if let Some(newest) = state.newest_at() {
        if command.at < newest {
            return Err(Refusal::TimeRegression {
                at: command.at,
                newest,
            });
        }
    }
    let actor = &command.actor;
    let bodies = match &command.body {
        CommandBody::AddOperator(c) => catalog::add_operator(state, actor, c)?,
        CommandBody::RegisterOrg(c) => catalog::register_org(state, actor, c)?,
        CommandBody::RegisterLicenseId(c) => catalog::register_license_id(state, actor, c)?,
        CommandBody::RegisterProduct(c) => catalog::register_product(state, actor, c)?,
        CommandBody::RecordPurchase(c) => catalog::record_purchase(state, actor, c)?,
        CommandBody::AssignRole(c) => catalog::assign_role(state, actor, c)?,
        CommandBody::RevokeRole(c) => catalog::revoke_role(state, actor, c)?,
        CommandBody::IssueKey(c) => keys::issue_key(state, actor, c, ctx)?,
        CommandBody::BlockKey(c) => keys::block_key(state, actor, c)?,
        CommandBody::OrderEsu(c) => keys::order_esu(state, actor, c)?,
        CommandBody::DiscloseKeys(c) => keys::disclose_keys(state, actor, c)?,
        CommandBody::RetireKeyText(c) => keys::retire_key_text(state, actor, c)?,
        CommandBody::RecordExternalCount(c) => {
            keys::record_external_count(state, actor, command.at, c)?
        }
        CommandBody::Activate(c) => activation::activate(state, command.at, c, ctx)?,
        CommandBody::RedeemOsa(c) => activation::redeem_osa(state, c, ctx)?,
        CommandBody::ActivateKmsHost(c) => kms::activate_host(state, c, ctx)?,
        CommandBody::ActivateKmsClient(c) => kms::activate_client(state, command.at, c)?,
        CommandBody::RequestMakIncrease(c) => requests::request_mak_increase(state, actor, c)?,
        CommandBody::RequestKms(c) => requests::request_kms(state, actor, c)?,
        CommandBody::GrantRequest(c) => requests::grant(state, actor, c, ctx)?,
        CommandBody::DenyRequest(c) => requests::deny(state, actor, c)?,
    };
    debug_assert!(
        !bodies.is_empty(),
        "an accepted command appends at least one event"
    );
    Ok(bodies
        .into_iter()
        .map(|body| Event {
            at: command.at,
            actor: command.actor.clone(),
            body,
        })
        .collect())
}

/// Decides a command and, for a refused activation, builds the event that records the
/// refusal (R10). Time regressions are never recorded: they would break time order.
pub fn handle(state: &State, command: &Command, ctx: &Context) -> Outcome {
    match decide(state, command, ctx) {
        Ok(events) => Outcome::Accepted(events),
        Err(refusal) => {
            let recorded = refusal_record(state, command, ctx, &refusal).map(Box::new);
            Outcome::Refused { refusal, recorded }
        }
    }
}

fn refusal_record(
    state: &State,
    command: &Command,
    ctx: &Context,
    refusal: &Refusal,
) -> Option<Event> {
    if matches!(refusal, Refusal::TimeRegression { .. }) {
        return None;
    }
    let presented = || ctx.presented.and_then(|f| state.key_by_fingerprint(&f));
    let (key_id, attempt) = match &command.body {
        // The machines by name, so each one's history shows the refusal; a key nobody
        // issued, or more names than a refusal records, by their count only (the bound on
        // what a tokenless request can add to the log).
        CommandBody::Activate(c)
            if c.machines.len() <= REFUSAL_MACHINES_NAMED_MAX && presented().is_some() =>
        {
            (
                presented().map(|k| k.id),
                ActivationAttempt::MakMachines {
                    org: c.org.clone(),
                    method: c.method,
                    machines: c.machines.clone(),
                },
            )
        }
        CommandBody::Activate(c) => (
            presented().map(|k| k.id),
            ActivationAttempt::Mak {
                org: c.org.clone(),
                method: c.method,
                machines: u32::try_from(c.machines.len()).unwrap_or(u32::MAX),
            },
        ),
        CommandBody::ActivateKmsHost(c) => (
            presented().map(|k| k.id),
            ActivationAttempt::KmsHost {
                org: c.org.clone(),
                host: c.host.clone(),
            },
        ),
        CommandBody::ActivateKmsClient(c) => (
            state
                .kms_host(&c.host)
                .and_then(|h| h.key_for(c.family.kms_line())),
            ActivationAttempt::KmsClient {
                host: c.host.clone(),
                client: c.client.clone(),
                family: c.family,
            },
        ),
        CommandBody::RedeemOsa(c) => (
            presented().map(|k| k.id),
            ActivationAttempt::Osa {
                tenant: c.tenant.clone(),
            },
        ),
        _ => return None,
    };
    Some(Event {
        at: command.at,
        actor: command.actor.clone(),
        body: EventBody::ActivationRefused {
            key_id,
            attempt,
            code: refusal.code(),
            remaining: refusal.remaining(),
        },
    })
}

// Guards shared by the rule modules.

fn require_operator(state: &State, actor: &Principal, rule: &'static str) -> Result<(), Refusal> {
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

fn require_role(
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

fn license<'s>(state: &'s State, id: &LicenseId) -> Result<&'s LicenseRecord, Refusal> {
    state
        .license(id)
        .ok_or_else(|| Refusal::UnknownLicenseId(id.clone()))
}

fn product<'s>(state: &'s State, id: &ProductId) -> Result<&'s Product, Refusal> {
    state
        .product(id)
        .ok_or_else(|| Refusal::UnknownProduct(id.clone()))
}

fn org_exists(state: &State, id: &OrgId) -> Result<(), Refusal> {
    if state.has_org(id) {
        Ok(())
    } else {
        Err(Refusal::UnknownOrg(id.clone()))
    }
}

fn key_by_id(state: &State, id: KeyId) -> Result<&Key, Refusal> {
    state
        .key(id)
        .ok_or_else(|| Refusal::UnknownKey(format!("key id {id}")))
}

/// The key whose fingerprint the caller computed from the presented text.
fn presented_key<'s>(state: &'s State, ctx: &Context) -> Result<&'s Key, Refusal> {
    let fingerprint = ctx
        .presented
        .expect("the caller fingerprints every presented key");
    state
        .key_by_fingerprint(&fingerprint)
        .ok_or_else(|| Refusal::UnknownKey("the presented product key is not issued".to_owned()))
}

/// A free-text field must say something, within [`TEXT_BYTES_MAX`].
fn text(field: &str, value: &str) -> Result<(), Refusal> {
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
fn count(field: &str, value: u64) -> Result<u64, Refusal> {
    match value {
        0 => Err(Refusal::Invalid(format!("{field} must be greater than 0"))),
        v if v > COUNT_MAX => Err(Refusal::Invalid(format!(
            "{field} is {v}; at most {COUNT_MAX} is allowed"
        ))),
        v => Ok(v),
    }
}

/// `current + added` where counts combine, refused (never wrapped) above [`COUNT_MAX`].
fn combined(what: impl FnOnce() -> String, current: u64, added: u64) -> Result<u64, Refusal> {
    let total = u128::from(current) + u128::from(added);
    if total > u128::from(COUNT_MAX) {
        return Err(Refusal::CountOverMaximum {
            what: what(),
            total,
        });
    }
    Ok(total as u64)
}

fn optional_text(field: &str, value: &Option<String>) -> Result<(), Refusal> {
    value.as_deref().map_or(Ok(()), |v| text(field, v))
}
