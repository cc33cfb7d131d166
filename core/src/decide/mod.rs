//! `decide`: the pure licensing rules. Given the state and a command (with what the caller
//! computed outside `core`: fingerprints, generated key material), it answers the events to
//! append or the refusal. It reads no clock and holds no randomness.

mod activation;
mod catalog;
mod common;
mod keys;
mod kms;
mod requests;
mod streams;

use crate::command::{Command, CommandBody};
use crate::event::{ActivationAttempt, Event, EventBody};
use crate::refusal::Refusal;
use crate::state::State;

pub use common::{
    is_activation_actor, Context, NewKeyMaterial, ACTIVATION_ACTOR, COUNT_MAX, DISCLOSED_KEYS_MAX,
    KMS_ACTIVATIONS_PER_HOST_DEFAULT, KMS_HOSTS_DEFAULT, LEDGER_ACTOR, PROXY_MACHINES_MAX,
    REFUSAL_MACHINES_NAMED_MAX, TEXT_BYTES_MAX,
};

/// The result of handling one command: accepted events, or a refusal and, when R10 asks
/// for it, the event that records the refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The events to append, in order.
    Accepted(Vec<Event>),
    /// Refused: nothing changes but, where R10 asks, the refusal's own record.
    Refused {
        /// The refusal: its code and message.
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
        CommandBody::CommitStreams(c) => streams::commit_streams(actor, c, ctx)?,
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
