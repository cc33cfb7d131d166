//! KMS: host keys activating hosts (R13, R15) and hosts activating clients (R14, R15).

use super::common::{key_by_id, org_exists, presented_key, Context};
use crate::catalog::{ActivationStatus, KeyKind, KmsLine};
use crate::command::{ActivateKmsClient, ActivateKmsHost};
use crate::event::EventBody;
use crate::refusal::Refusal;
use crate::state::State;
use crate::Timestamp;

/// R13: at most `hosts_max` (+ grants) distinct hosts, each activated at most `per_host_max`
/// times. R15: a host holds at most one Office KMS key.
pub(super) fn activate_host(
    state: &State,
    c: &ActivateKmsHost,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    let key = presented_key(state, ctx)?;
    org_exists(state, &c.org)?;
    let Some(allowance) = key.kms.as_ref().filter(|_| key.kind == KeyKind::KmsHost) else {
        return Err(Refusal::WrongKeyKind {
            key: key.last5.masked(),
            kind: key.kind,
            expected: "activate_kms_host takes a kms_host key",
        });
    };
    if key.blocked {
        return Err(Refusal::KeyBlocked(key.id));
    }
    if !state.may_use(&c.org, key) {
        return Err(Refusal::OutsideOwnershipStructure {
            org: c.org.clone(),
            license_id: key.license_id.clone(),
        });
    }
    let activation = match allowance.hosts.get(&c.host) {
        Some(&done) if done >= allowance.per_host_max => {
            return Err(Refusal::KmsHostReactivationLimit {
                key_id: key.id,
                host: c.host.clone(),
                per_host_max: allowance.per_host_max,
            })
        }
        Some(&done) => done + 1,
        None if allowance.hosts.len() as u64 >= allowance.hosts_limit() => {
            return Err(Refusal::KmsHostLimitReached {
                key_id: key.id,
                hosts_max: allowance.hosts_limit(),
            })
        }
        None => 1,
    };
    let line = state
        .product(&key.product)
        .and_then(|p| p.family.kms_line());
    if line == Some(KmsLine::Office) {
        let installed = state.kms_host(&c.host).and_then(|h| h.office_key);
        if let Some(other) = installed.filter(|other| *other != key.id) {
            return Err(Refusal::OfficeKmsKeyAlreadyInstalled {
                host: c.host.clone(),
                key_id: other,
            });
        }
    }
    Ok(vec![EventBody::KmsHostActivated {
        key_id: key.id,
        org: c.org.clone(),
        host: c.host.clone(),
        activation,
    }])
}

/// R14: every contact is counted; the client is activated once the host's count for its
/// line, this contact included, reaches the family's threshold. R15: Office clients need
/// an Office KMS key on the host.
pub(super) fn activate_client(
    state: &State,
    at: Timestamp,
    c: &ActivateKmsClient,
) -> Result<Vec<EventBody>, Refusal> {
    let host = state
        .kms_host(&c.host)
        .ok_or_else(|| Refusal::UnknownHost(c.host.clone()))?;
    let line = c.family.kms_line();
    let key_id = host.key_for(line).ok_or_else(|| match line {
        KmsLine::Office => Refusal::NoOfficeKmsKeyOnHost(c.host.clone()),
        KmsLine::Windows => Refusal::NoWindowsKmsKeyOnHost(c.host.clone()),
    })?;
    if key_by_id(state, key_id)?.blocked {
        return Err(Refusal::KeyBlocked(key_id));
    }
    let count = host.window(line).count_with(&c.client, at);
    let status = if count >= c.family.kms_threshold() {
        ActivationStatus::Activated
    } else {
        ActivationStatus::PendingThreshold
    };
    Ok(vec![EventBody::KmsClientContacted {
        host: c.host.clone(),
        client: c.client.clone(),
        family: c.family,
        count,
        status,
    }])
}
