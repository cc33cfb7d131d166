//! Limit-increase and KMS requests (R17, R18) and their one-time decision (R19).

use super::common::{
    combined, count, key_by_id, license, product, require_operator, require_role, text, Context,
    KMS_ACTIVATIONS_PER_HOST_DEFAULT,
};
use crate::catalog::{KeyKind, KmsRequestReason, Program, Role};
use crate::command::{DenyRequest, GrantRequest, RequestKms, RequestMakIncrease};
use crate::event::EventBody;
use crate::ids::{KeyId, Principal, RequestId};
use crate::refusal::Refusal;
use crate::state::{Request, RequestKind, State};

/// R17: the last five characters must name exactly one MAK or ESU MAK of that product
/// under that license ID.
pub(super) fn request_mak_increase(
    state: &State,
    actor: &Principal,
    c: &RequestMakIncrease,
) -> Result<Vec<EventBody>, Refusal> {
    let record = license(state, &c.license_id)?;
    let roles = [Role::Administrator, Role::KeyAdministrator, Role::KeyViewer];
    require_role(state, actor, &c.license_id, &roles, "R17")?;
    if record.program.has_authorization_number()
        && c.authorization_number != record.authorization_number
    {
        return Err(Refusal::Invalid(format!(
            "authorization_number must be that of license ID {} (program {})",
            c.license_id, record.program
        )));
    }
    product(state, &c.product)?;
    fresh_request_id(state, &c.request_id)?;
    count("activations_needed", c.activations_needed)?;
    text("justification", &c.justification)?;
    let matching: Vec<KeyId> = state
        .keys_of(&c.license_id, &c.product)
        .iter()
        .copied()
        .filter(|id| {
            let key = state.key(*id).expect("indexed keys exist");
            key.kind.is_mak() && key.last5 == c.key_last5
        })
        .collect();
    let key_id = match matching.as_slice() {
        [one] => *one,
        [] => {
            return Err(Refusal::KeyLast5Mismatch {
                license_id: c.license_id.clone(),
                product: c.product.clone(),
                last5: c.key_last5.to_string(),
            })
        }
        many => {
            return Err(Refusal::Invalid(format!(
                "key_last5 {} matches {} keys; ask the operator to raise one by key id",
                c.key_last5,
                many.len()
            )))
        }
    };
    Ok(vec![EventBody::MakIncreaseRequested {
        request_id: c.request_id.clone(),
        license_id: c.license_id.clone(),
        product: c.product.clone(),
        key_id,
        activations_needed: c.activations_needed,
        justification: c.justification.clone(),
    }])
}

/// R18: Open License is retired; only Open Value programs may ask for the KMS exception;
/// more hosts are asked for on an existing KMS host key of the product.
pub(super) fn request_kms(
    state: &State,
    actor: &Principal,
    c: &RequestKms,
) -> Result<Vec<EventBody>, Refusal> {
    let record = license(state, &c.license_id)?;
    let roles = [Role::Administrator, Role::ProductKeyReader];
    require_role(state, actor, &c.license_id, &roles, "R18")?;
    if record.program == Program::OpenLicense {
        return Err(Refusal::OpenLicenseRetired);
    }
    let product = product(state, &c.product)?;
    if product.family.kms_line().is_none() {
        return Err(Refusal::Invalid(format!(
            "product {} has no KMS host keys (Windows and Office only)",
            c.product
        )));
    }
    fresh_request_id(state, &c.request_id)?;
    count("host_activations_needed", c.host_activations_needed.into())?;
    text("justification", &c.justification)?;
    let key_id = match c.reason {
        KmsRequestReason::OpenValueException => {
            let eligible = matches!(
                record.program,
                Program::OpenValue | Program::OpenValueSubscription
            );
            if !eligible {
                return Err(Refusal::ProgramNotEligible {
                    program: record.program,
                });
            }
            None
        }
        KmsRequestReason::AdditionalHosts => Some(kms_key_to_raise(state, c)?),
    };
    Ok(vec![EventBody::KmsRequested {
        request_id: c.request_id.clone(),
        license_id: c.license_id.clone(),
        product: c.product.clone(),
        reason: c.reason,
        key_id,
        host_activations_needed: c.host_activations_needed,
        justification: c.justification.clone(),
    }])
}

/// The first unblocked KMS host key of the product under the license ID.
fn kms_key_to_raise(state: &State, c: &RequestKms) -> Result<KeyId, Refusal> {
    state
        .keys_of(&c.license_id, &c.product)
        .iter()
        .copied()
        .find(|id| {
            let key = state.key(*id).expect("indexed keys exist");
            key.kind == KeyKind::KmsHost && !key.blocked
        })
        .ok_or_else(|| {
            Refusal::UnknownKey(format!(
                "no unblocked KMS host key of product {} under license ID {}",
                c.product, c.license_id
            ))
        })
}

fn fresh_request_id(state: &State, id: &RequestId) -> Result<(), Refusal> {
    match state.request(id) {
        Some(_) => Err(Refusal::AlreadyExists(format!("request {id}"))),
        None => Ok(()),
    }
}

/// R19: pending, decided once, and never by the principal who asked.
fn pending<'s>(
    state: &'s State,
    actor: &Principal,
    id: &RequestId,
) -> Result<&'s Request, Refusal> {
    require_operator(state, actor, "R3")?;
    let request = state
        .request(id)
        .ok_or_else(|| Refusal::UnknownRequest(id.clone()))?;
    if request.decision.is_some() {
        return Err(Refusal::RequestAlreadyDecided(id.clone()));
    }
    if request.requested_by == *actor {
        return Err(Refusal::SamePrincipal(actor.to_string()));
    }
    Ok(request)
}

/// R19: a grant raises the MAK's limit or the KMS key's host limit (in `apply`); an Open
/// Value exception grant is followed by issuing a KMS host key for `amount` hosts.
pub(super) fn grant(
    state: &State,
    actor: &Principal,
    c: &GrantRequest,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    let request = pending(state, actor, &c.request_id)?;
    count("amount", c.amount)?;
    let granted = EventBody::RequestGranted {
        request_id: c.request_id.clone(),
        amount: c.amount,
    };
    match &request.kind {
        RequestKind::MakIncrease { key_id, .. } => {
            let key = key_by_id(state, *key_id)?;
            let what = || format!("the activation total of key {key_id}");
            combined(what, key.total(), c.amount)?;
            return Ok(vec![granted]);
        }
        RequestKind::Kms {
            reason: KmsRequestReason::AdditionalHosts,
            key_id,
            ..
        } => {
            // `request_kms` names the key to raise for every additional-hosts request.
            if let Some(key_id) = key_id {
                let key = key_by_id(state, *key_id)?;
                let hosts = key.kms.as_ref().map_or(0, |k| k.hosts_limit());
                let what = || format!("the KMS host limit of key {key_id}");
                combined(what, hosts, c.amount)?;
            }
            return Ok(vec![granted]);
        }
        RequestKind::Kms {
            reason: KmsRequestReason::OpenValueException,
            ..
        } => {}
    }
    // `count` bounded the amount far below u32::MAX.
    let hosts_max = c.amount as u32;
    let material = ctx
        .new_key
        .expect("the caller generates key material for grants");
    if state.key_by_fingerprint(&material.fingerprint).is_some() {
        return Err(Refusal::AlreadyExists(
            "a key with this product key text".to_owned(),
        ));
    }
    let issued = EventBody::KeyIssued {
        key_id: state.next_key_id(),
        license_id: request.license_id.clone(),
        product: request.product.clone(),
        kind: KeyKind::KmsHost,
        limit: 0,
        hosts_max,
        per_host_max: KMS_ACTIVATIONS_PER_HOST_DEFAULT,
        coverage: None,
        fingerprint: material.fingerprint,
        last5: material.last5,
    };
    Ok(vec![granted, issued])
}

pub(super) fn deny(
    state: &State,
    actor: &Principal,
    c: &DenyRequest,
) -> Result<Vec<EventBody>, Refusal> {
    pending(state, actor, &c.request_id)?;
    text("reason", &c.reason)?;
    Ok(vec![EventBody::RequestDenied {
        request_id: c.request_id.clone(),
        reason: c.reason.clone(),
    }])
}
