//! Keys: issuing and blocking them, ESU orders, and disclosing key text.

use std::collections::HashSet;

use super::common::{
    count, key_by_id, license, product, require_operator, Context, DISCLOSED_KEYS_MAX,
    KMS_ACTIVATIONS_PER_HOST_DEFAULT, KMS_HOSTS_DEFAULT,
};
use crate::catalog::{DisclosureChannel, KeyKind, KeyRequirement, Program, Role};
use crate::command::{
    BlockKey, DiscloseKeys, IssueKey, OrderEsu, RecordExternalCount, RetireKeyText,
};
use crate::event::{Coverage, EventBody};
use crate::ids::Principal;
use crate::refusal::Refusal;
use crate::state::{Product, State};

/// R5: embedded keys are shown from this SQL Server version on.
pub const EMBEDDED_KEY_SHOWN_FROM_VERSION: u32 = 2022;
/// R5: what earlier embedded-key products show instead of a key.
pub const NO_KEY_REQUIRED_TEXT: &str = "This product does not require a product key";

/// The counts a key is issued with: `(limit, hosts_max, per_host_max)`.
type Allowance = (u64, u32, u32);

pub(super) fn issue_key(
    state: &State,
    actor: &Principal,
    c: &IssueKey,
    ctx: &Context,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    let record = license(state, &c.license_id)?;
    let product = product(state, &c.product)?;
    check_requirement(c, product)?;
    if c.kind == KeyKind::KmsHost
        && matches!(
            record.program,
            Program::OpenValue | Program::OpenValueSubscription
        )
    {
        return Err(Refusal::ProgramNotEligible {
            program: record.program,
        });
    }
    let (limit, hosts_max, per_host_max) = allowance(c, product)?;
    let coverage = coverage(c)?;
    let (fingerprint, last5) = match &c.product_key {
        Some(text) => (
            ctx.presented
                .expect("the caller fingerprints given key text"),
            text.last5(),
        ),
        None => {
            let material = ctx.new_key.expect("the caller generates key material");
            (material.fingerprint, material.last5)
        }
    };
    if state.key_by_fingerprint(&fingerprint).is_some() {
        return Err(Refusal::AlreadyExists(
            "a key with this product key text".to_owned(),
        ));
    }
    Ok(vec![EventBody::KeyIssued {
        key_id: state.next_key_id(),
        license_id: c.license_id.clone(),
        product: c.product.clone(),
        kind: c.kind,
        limit,
        hosts_max,
        per_host_max,
        coverage,
        fingerprint,
        last5,
    }])
}

/// R4, R5, R6: which products get keys at all, and which kind.
fn check_requirement(c: &IssueKey, product: &Product) -> Result<(), Refusal> {
    let refuse = |detail| Refusal::NoKeyRequired {
        product: c.product.clone(),
        requirement: product.key_requirement,
        detail,
    };
    match product.key_requirement {
        KeyRequirement::None => Err(refuse("the product is used without a key")),
        KeyRequirement::LicenseServer => Err(refuse(
            "activate the license server with the license ID's number instead",
        )),
        KeyRequirement::Embedded => {
            let shown = product
                .version_number()
                .is_some_and(|v| v >= EMBEDDED_KEY_SHOWN_FROM_VERSION);
            if !shown {
                return Err(refuse(NO_KEY_REQUIRED_TEXT));
            }
            if c.kind != KeyKind::Embedded {
                return Err(Refusal::WrongKeyKind {
                    key: format!("for product {}", c.product),
                    kind: c.kind,
                    expected: "an embedded-key product takes embedded keys only",
                });
            }
            Ok(())
        }
        KeyRequirement::VlKey if c.kind == KeyKind::Embedded => Err(Refusal::WrongKeyKind {
            key: format!("for product {}", c.product),
            kind: c.kind,
            expected: "embedded keys are for embedded-key products only",
        }),
        KeyRequirement::VlKey => Ok(()),
    }
}

/// R8, R13, R20: counted kinds need a limit; KMS host keys take host bounds; others none.
fn allowance(c: &IssueKey, product: &Product) -> Result<Allowance, Refusal> {
    let invalid = |text: &str| Err(Refusal::Invalid(format!("{} key: {text}", c.kind)));
    match c.kind {
        KeyKind::Mak | KeyKind::EsuMak | KeyKind::Osa => {
            if c.hosts.is_some() || c.per_host.is_some() {
                return invalid("hosts and per_host are for kms_host keys only");
            }
            match c.limit {
                None => invalid("limit must be given and greater than 0"),
                Some(limit) => Ok((count("limit", limit)?, 0, 0)),
            }
        }
        KeyKind::KmsHost => {
            if c.limit.is_some() {
                return invalid("a KMS host key takes hosts and per_host, not limit");
            }
            if product.family.kms_line().is_none() {
                return invalid("KMS host keys exist for Windows and Office products only");
            }
            let hosts = c.hosts.unwrap_or(KMS_HOSTS_DEFAULT);
            let per_host = c.per_host.unwrap_or(KMS_ACTIVATIONS_PER_HOST_DEFAULT);
            count("hosts", hosts.into())?;
            count("per_host", per_host.into())?;
            Ok((0, hosts, per_host))
        }
        KeyKind::Setup | KeyKind::Embedded => {
            if c.limit.is_some() || c.hosts.is_some() || c.per_host.is_some() {
                return invalid("this kind carries no count (R16)");
            }
            Ok((0, 0, 0))
        }
    }
}

/// R12: ESU MAKs carry a coverage period; no other kind does.
fn coverage(c: &IssueKey) -> Result<Option<Coverage>, Refusal> {
    match (c.kind, c.coverage_start, c.coverage_end) {
        (KeyKind::EsuMak, Some(start), Some(end)) => {
            if end <= start {
                return Err(Refusal::Invalid(
                    "coverage_end must be after coverage_start".to_owned(),
                ));
            }
            Ok(Some(Coverage { start, end }))
        }
        (KeyKind::EsuMak, _, _) => Err(Refusal::Invalid(
            "esu_mak key: coverage_start and coverage_end are required".to_owned(),
        )),
        (_, None, None) => Ok(None),
        (kind, _, _) => Err(Refusal::Invalid(format!(
            "{kind} key: coverage is for esu_mak keys only"
        ))),
    }
}

pub(super) fn block_key(
    state: &State,
    actor: &Principal,
    c: &BlockKey,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    let key = key_by_id(state, c.key_id)?;
    if key.blocked {
        return Err(Refusal::KeyBlocked(key.id));
    }
    Ok(vec![EventBody::KeyBlocked { key_id: c.key_id }])
}

/// The longest reason a retirement may record.
pub const RETIRE_REASON_MAX: usize = 500;

/// docs/rules.md, "Key text" (key text lives outside the chain so that it can be erased), R3: an
/// operator retires a key's text; once.
pub(super) fn retire_key_text(
    state: &State,
    actor: &Principal,
    c: &RetireKeyText,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    let key = key_by_id(state, c.key_id)?;
    if key.text_retired {
        return Err(Refusal::KeyTextRetired(key.id));
    }
    let chars = c.reason.trim().chars().count();
    if chars == 0 || chars > RETIRE_REASON_MAX {
        return Err(Refusal::Invalid(format!(
            "reason must be 1..={RETIRE_REASON_MAX} characters, got {chars}"
        )));
    }
    Ok(vec![EventBody::KeyTextRetired {
        key_id: key.id,
        reason: c.reason.trim().to_owned(),
    }])
}

/// The longest name of an outside count's source.
pub const EXTERNAL_SOURCE_BYTES_MAX: usize = 128;

/// Reconciliation, R3: an operator records what an outside activation service
/// says is left on a MAK. The event keeps the ledger's own remaining count at this command
/// beside it, so the difference is evidence in the log, not a later computation.
pub(super) fn record_external_count(
    state: &State,
    actor: &Principal,
    at: crate::Timestamp,
    c: &RecordExternalCount,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    let key = key_by_id(state, c.key_id)?;
    if !key.kind.is_mak() {
        return Err(Refusal::WrongKeyKind {
            key: key.last5.masked(),
            kind: key.kind,
            expected: "record_external_count takes a mak or esu_mak key",
        });
    }
    super::common::text("source", &c.source)?;
    if c.source.trim().len() > EXTERNAL_SOURCE_BYTES_MAX {
        return Err(Refusal::Invalid(format!(
            "source is {} bytes; at most {EXTERNAL_SOURCE_BYTES_MAX} are allowed",
            c.source.trim().len()
        )));
    }
    super::common::optional_text("note", &c.note)?;
    if c.remaining > super::common::COUNT_MAX {
        return Err(Refusal::Invalid(format!(
            "remaining is {}; at most {} is allowed",
            c.remaining,
            super::common::COUNT_MAX
        )));
    }
    if c.observed_at > at {
        return Err(Refusal::Invalid(format!(
            "observed_at {} is after the command's time {at}",
            c.observed_at
        )));
    }
    Ok(vec![EventBody::ExternalCountRecorded {
        key_id: key.id,
        source: c.source.trim().to_owned(),
        remaining: c.remaining,
        observed_at: c.observed_at,
        note: c.note.as_deref().map(|n| n.trim().to_owned()),
        ledger_remaining: key.remaining(),
    }])
}

/// R11: orders may be placed before coverage starts.
pub(super) fn order_esu(
    state: &State,
    actor: &Principal,
    c: &OrderEsu,
) -> Result<Vec<EventBody>, Refusal> {
    require_operator(state, actor, "R3")?;
    if state.esu_order(&c.order_id).is_some() {
        return Err(Refusal::AlreadyExists(format!("ESU order {}", c.order_id)));
    }
    license(state, &c.license_id)?;
    product(state, &c.product)?;
    if c.coverage_end <= c.coverage_start {
        return Err(Refusal::Invalid(
            "coverage_end must be after coverage_start".to_owned(),
        ));
    }
    Ok(vec![EventBody::EsuOrdered {
        order_id: c.order_id.clone(),
        license_id: c.license_id.clone(),
        product: c.product.clone(),
        coverage: Coverage {
            start: c.coverage_start,
            end: c.coverage_end,
        },
    }])
}

/// R1: seeing key text needs `administrator` or `product_key_reader` on each key's license
/// ID. R2: an export names the digest of its file; a copy names exactly one key.
pub(super) fn disclose_keys(
    state: &State,
    actor: &Principal,
    c: &DiscloseKeys,
) -> Result<Vec<EventBody>, Refusal> {
    if c.key_ids.is_empty() || c.key_ids.len() > DISCLOSED_KEYS_MAX {
        return Err(Refusal::Invalid(format!(
            "key_ids must name 1..={DISCLOSED_KEYS_MAX} keys, got {}",
            c.key_ids.len()
        )));
    }
    match (c.channel, &c.export_digest) {
        (DisclosureChannel::Copy, None) if c.key_ids.len() == 1 => {}
        (DisclosureChannel::Copy, _) => {
            return Err(Refusal::Invalid(
                "a copy discloses exactly one key and has no export_digest".to_owned(),
            ))
        }
        (DisclosureChannel::Export, Some(_)) => {}
        (DisclosureChannel::Export, None) => {
            return Err(Refusal::Invalid(
                "R2: an export must carry the export_digest of its file".to_owned(),
            ))
        }
    }
    let mut seen = HashSet::with_capacity(c.key_ids.len());
    for &key_id in &c.key_ids {
        if !seen.insert(key_id) {
            return Err(Refusal::Invalid(format!(
                "key_ids names key {key_id} twice"
            )));
        }
        let key = key_by_id(state, key_id)?;
        let roles: Vec<Role> = Role::ALL
            .iter()
            .copied()
            .filter(|r| r.may_see_key_text())
            .collect();
        super::common::require_role(state, actor, &key.license_id, &roles, "R1")?;
        if key.text_retired {
            return Err(Refusal::KeyTextRetired(key_id));
        }
    }
    Ok(vec![EventBody::KeysDisclosed {
        key_ids: c.key_ids.clone(),
        channel: c.channel,
        export_digest: c.export_digest,
    }])
}
