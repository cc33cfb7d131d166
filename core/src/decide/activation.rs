//! MAK, ESU MAK and OSA activations: authorised by the key text they present.

use std::collections::HashSet;

use super::common::{org_exists, presented_key, Context, PROXY_MACHINES_MAX};
use crate::catalog::{ActivationMethod, KeyKind};
use crate::command::{Activate, RedeemOsa};
use crate::event::{CoveragePhase, EventBody};
use crate::ids::MachineId;
use crate::refusal::Refusal;
use crate::state::{Key, State};
use crate::Timestamp;

/// R7, R9, R12: all-or-nothing consumption of one activation per new machine.
pub(super) fn activate(
    state: &State,
    at: Timestamp,
    c: &Activate,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    check_machine_count(c)?;
    let key = presented_key(state, ctx)?;
    org_exists(state, &c.org)?;
    if !key.kind.is_mak() {
        return Err(Refusal::WrongKeyKind {
            key: key.last5.masked(),
            kind: key.kind,
            expected: "activate takes a mak or esu_mak key",
        });
    }
    check_usable(state, key, &c.org, at)?;
    let (new_machines, already_active) = split_new(state, key, &c.machines);
    let needed = new_machines.len() as u64;
    if needed > key.remaining() && !crate::planted::active(crate::planted::Bug::SkipLimitCheck) {
        return Err(Refusal::InsufficientActivations {
            key_id: key.id,
            remaining: key.remaining(),
            needed,
        });
    }
    let mut events = vec![EventBody::MachinesActivated {
        key_id: key.id,
        org: c.org.clone(),
        method: c.method,
        machines: new_machines,
        // At most `PROXY_MACHINES_MAX` (checked above).
        already_active: already_active.len() as u32,
    }];
    if !already_active.is_empty() {
        events.push(EventBody::MachinesAlreadyActive {
            key_id: key.id,
            org: c.org.clone(),
            method: c.method,
            machines: already_active,
        });
    }
    Ok(events)
}

/// R9: the distinct machines of a request not yet active on the key, and those that were.
fn split_new(state: &State, key: &Key, machines: &[MachineId]) -> (Vec<MachineId>, Vec<MachineId>) {
    if let [machine] = machines {
        // Independent activation, the common case: no scratch set.
        return if state.machine_active(key.id, machine) {
            (Vec::new(), vec![machine.clone()])
        } else {
            (vec![machine.clone()], Vec::new())
        };
    }
    let mut distinct = HashSet::with_capacity(machines.len());
    let mut new_machines = Vec::with_capacity(machines.len());
    let mut already_active = Vec::new();
    for machine in machines {
        if !distinct.insert(machine) {
            continue;
        }
        if state.machine_active(key.id, machine) {
            already_active.push(machine.clone());
        } else {
            new_machines.push(machine.clone());
        }
    }
    (new_machines, already_active)
}

/// R9: independent activation names one machine; proxy names 1..=10,000.
fn check_machine_count(c: &Activate) -> Result<(), Refusal> {
    let count = c.machines.len();
    let fits = match c.method {
        ActivationMethod::Online | ActivationMethod::Phone => count == 1,
        ActivationMethod::Proxy => (1..=PROXY_MACHINES_MAX).contains(&count),
    };
    if fits {
        return Ok(());
    }
    Err(Refusal::Invalid(match c.method {
        ActivationMethod::Proxy => {
            format!(
                "machines: proxy activation names 1..={PROXY_MACHINES_MAX} machines, got {count}"
            )
        }
        method => format!("machines: {method} activation names exactly one machine, got {count}"),
    }))
}

/// Blocked keys, foreign orgs (R7) and ESU coverage (R12) stop any MAK activation.
fn check_usable(
    state: &State,
    key: &Key,
    org: &crate::ids::OrgId,
    at: Timestamp,
) -> Result<(), Refusal> {
    if key.blocked {
        return Err(Refusal::KeyBlocked(key.id));
    }
    if !state.may_use(org, key) {
        return Err(Refusal::OutsideOwnershipStructure {
            org: org.clone(),
            license_id: key.license_id.clone(),
        });
    }
    if key.kind == KeyKind::EsuMak {
        let coverage = key.coverage.expect("ESU MAKs carry coverage");
        match coverage.phase_at(at) {
            CoveragePhase::NotStarted => {
                return Err(Refusal::EsuCoverageNotStarted {
                    key_id: key.id,
                    start: coverage.start,
                })
            }
            CoveragePhase::Ended => {
                return Err(Refusal::EsuCoverageEnded {
                    key_id: key.id,
                    end: coverage.end,
                })
            }
            CoveragePhase::Active => {}
        }
    }
    Ok(())
}

/// R20: an OSA key is redeemed into one tenant, once.
pub(super) fn redeem_osa(
    state: &State,
    c: &RedeemOsa,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    let key = presented_key(state, ctx)?;
    if key.kind != KeyKind::Osa {
        return Err(Refusal::WrongKeyKind {
            key: key.last5.masked(),
            kind: key.kind,
            expected: "redeem_osa takes an osa key",
        });
    }
    if key.blocked {
        return Err(Refusal::KeyBlocked(key.id));
    }
    if key.redeemed_into.is_some() {
        return Err(Refusal::AlreadyRedeemed { key_id: key.id });
    }
    Ok(vec![EventBody::OsaRedeemed {
        key_id: key.id,
        tenant: c.tenant.clone(),
    }])
}
