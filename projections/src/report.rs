//! The compliance report of one license ID, as JSON (stable field names, docs/api.md),
//! tab-separated text (one row a key) or a human table.

use std::collections::BTreeMap;

use keyledger_core::event::CoveragePhase;
use keyledger_core::rights;
use keyledger_core::state::RequestOutcome;
use keyledger_core::{
    ClientFamily, KeyId, KeyKind, KeyRequirement, KmsRequestReason, LicenseId, Program, Role,
    Timestamp,
};
use serde::Serialize;

use crate::forecast::{forecast, WINDOW_DAYS_DEFAULT};
use crate::model::*;
pub use crate::table::{phase_name, Format};

/// R24, printed with every report.
pub const ACTIVATION_NOTE: &str =
    "activation counts are kept apart from purchases: they are not license-compliance or billing figures (R7, R24)";

/// One license ID's report as of a moment (`keyledger report`, `GET /v1/license-ids/{id}/report`):
/// docs/api.md, "Reports".
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LicenseReport {
    /// The license ID reported on.
    pub license_id: String,
    /// The business time counts and coverage are evaluated at.
    pub report_time: Timestamp,
    /// The last seq folded into this report.
    pub at_seq: u64,
    /// The org it belongs to, with its parents (R7).
    pub org: OrgRow,
    /// Its volume-licensing program.
    pub program: Program,
    /// The agreement's number.
    pub agreement_number: String,
    /// The authorization number, when the program has one.
    pub authorization_number: Option<String>,
    /// The purchase account, when the program has one.
    pub purchase_account: Option<String>,
    /// R6: what an RDS license server is activated with.
    pub rds_activation_number: String,
    /// Licenses bought, by product (R7, R24).
    pub purchases: Vec<PurchaseRow>,
    /// Its keys, in issuance order, with their counts at the report's moment.
    pub keys: Vec<KeyRow>,
    /// The KMS hosts its KMS host keys activated (R13-R15).
    pub kms_hosts: Vec<KmsHostRow>,
    /// Its limit-increase and KMS requests (R17-R19).
    pub requests: Vec<RequestRow>,
    /// Its ESU orders (R11, R12).
    pub esu_orders: Vec<EsuOrderRow>,
    /// Who holds which roles on it.
    pub roles: Vec<RoleRow>,
    /// R1/R2: who saw or exported keys of this license ID, and when.
    pub disclosures: Vec<DisclosureRow>,
    /// R1: who could see key text here at the report's moment.
    pub may_see_key_text: Vec<RoleRow>,
    /// Per product bought: downgrade, reimage and other rights (R21-R23).
    pub rights: Vec<RightsRow>,
    /// The alerts of this license ID at the report's moment, with the default rules
    /// (derived, never in the log).
    pub alerts: Vec<crate::alerts::Alert>,
    /// What the counts are not (R7, R24).
    pub note: &'static str,
}

/// One disclosure of this license ID's key text (R1, R2).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DisclosureRow {
    /// The seq of the `keys_disclosed` event.
    pub seq: u64,
    /// When the text was shown.
    pub at: Timestamp,
    /// Who was shown it.
    pub actor: String,
    /// `copy` or `export`.
    pub channel: keyledger_core::DisclosureChannel,
    /// The keys of this license ID that were disclosed.
    pub key_ids: Vec<u64>,
    /// The export file's digest, for an export (R2).
    pub export_digest: Option<keyledger_core::Digest>,
}

/// The license ID's org and its place in the ownership structure (R7).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct OrgRow {
    /// The org's id.
    pub org: String,
    /// The org's name.
    pub name: String,
    /// Parents, nearest first, up to the root of the ownership structure (R7).
    pub parent_chain: Vec<String>,
}

/// Licenses of one product bought (R7, R24).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PurchaseRow {
    /// The product bought.
    pub product: String,
    /// Licenses bought: not an activation count (R24).
    pub quantity: u64,
}

/// One key of the license ID and its counts at the report's moment.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ReportKeyRow)]
pub struct KeyRow {
    /// The key's id.
    pub key_id: u64,
    /// The product it activates.
    pub product: String,
    /// The kind of key.
    pub kind: KeyKind,
    /// Always masked in reports (R1): `*****-*****-*****-*****-ABCDE`.
    pub key: String,
    /// The limit set at issuance (R8).
    pub limit: u64,
    /// Activations added by granted requests (R19).
    pub granted: u64,
    /// The key's limit plus what was granted (R9, R19).
    pub total: u64,
    /// Activations consumed (R9).
    pub used: u64,
    /// Activations left.
    pub remaining: u64,
    /// Units of the key's product bought under the license ID (R8: may differ from limit).
    pub purchased: u64,
    /// Whether the key was blocked: it activates nothing more.
    pub blocked: bool,
    /// The OSA status (R20): `pending`, `active`, `blocked` or `n/a`.
    pub osa_status: &'static str,
    /// Where the report's moment falls in an ESU MAK's coverage (R12).
    pub esu_coverage: Option<CoveragePhase>,
    /// An ESU MAK's coverage start (R11).
    pub coverage_start: Option<Timestamp>,
    /// An ESU MAK's coverage end (R11).
    pub coverage_end: Option<Timestamp>,
    /// KMS hosts a KMS host key activated (R13).
    pub kms_hosts: Option<u64>,
    /// KMS hosts it may activate, grants included (R13, R19).
    pub kms_hosts_limit: Option<u64>,
    /// Refused activations on it, by code (R10).
    pub refusals: BTreeMap<String, u64>,
    /// Activations a day over the forecast window, if any were made.
    pub rate_per_day: Option<f64>,
    /// When it runs out at that rate, if it does.
    pub exhaustion: Option<Timestamp>,
    /// The last count an outside activation service reported (`record_external_count`).
    pub external: Option<ExternalRow>,
}

/// An outside count beside the ledger's own at the moment it was recorded.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExternalRow {
    /// The seq of the `external_count_recorded` event: its inclusion proof.
    pub seq: u64,
    /// Who reported it.
    pub source: String,
    /// What the outside service says is left.
    pub remaining: u64,
    /// When the outside source reported the count.
    pub observed_at: Timestamp,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// Who recorded it.
    pub recorded_by: String,
    /// A note on the observation, if any.
    pub note: Option<String>,
    /// What the ledger counted left when the observation was recorded.
    pub ledger_remaining: u64,
    /// `ledger_remaining - remaining`: positive when the ledger counts more left.
    pub difference: i64,
}

impl From<&ExternalCount> for ExternalRow {
    fn from(e: &ExternalCount) -> ExternalRow {
        ExternalRow {
            seq: e.seq,
            source: e.source.clone(),
            remaining: e.remaining,
            observed_at: e.observed_at,
            recorded_at: e.recorded_at,
            recorded_by: e.recorded_by.to_string(),
            note: e.note.clone(),
            ledger_remaining: e.ledger_remaining,
            difference: e.difference(),
        }
    }
}

/// A KMS host a key of the license ID activated, and its counts (R13-R15).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KmsHostRow {
    /// The host's name.
    pub host: String,
    /// The KMS host key installed on it.
    pub key_id: u64,
    /// The key's line: `windows` or `office`.
    pub line: &'static str,
    /// Times the host was activated on the key (R13).
    pub activations: u32,
    /// Distinct Windows machines (clients and servers) in the last 30 days (R14).
    pub windows_count: u64,
    /// Distinct Office clients in the last 30 days (R14).
    pub office_count: u64,
    /// Whether the Windows count reached the servers' threshold, 5 (R14).
    pub windows_server_threshold_met: bool,
    /// Whether the Windows count reached the clients' threshold, 25 (R14).
    pub windows_client_threshold_met: bool,
    /// Whether the Office count reached its threshold, 5 (R14).
    pub office_threshold_met: bool,
}

/// A request of the license ID and its decision (R17-R19).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RequestRow {
    /// The request's id.
    pub request_id: String,
    /// `mak_increase` or `kms`.
    pub kind: &'static str,
    /// The product asked about.
    pub product: String,
    /// The key the request would raise, if it names one.
    pub key_id: Option<u64>,
    /// Activations (or host activations) asked for.
    pub needed: u64,
    /// Why the request is made, in the requester's words (R17, R18).
    pub justification: String,
    /// Who filed the request.
    pub requested_by: String,
    /// When the request was filed.
    pub requested_at: Timestamp,
    /// `pending`, `granted` or `denied`.
    pub outcome: &'static str,
    /// What was granted, once granted.
    pub amount: Option<u64>,
    /// Why it was denied, once denied.
    pub reason: Option<String>,
    /// Who decided the request.
    pub decided_by: Option<String>,
    /// When the request was decided.
    pub decided_at: Option<Timestamp>,
}

/// An ESU order of the license ID (R11, R12).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EsuOrderRow {
    /// The order's id.
    pub order_id: String,
    /// The product covered.
    pub product: String,
    /// The start of the ESU coverage period (R11).
    pub coverage_start: Timestamp,
    /// The end of the ESU coverage period, exclusive (R11).
    pub coverage_end: Timestamp,
    /// Where the report's moment falls in the coverage (R12).
    pub phase: CoveragePhase,
}

/// A principal's roles on the license ID.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RoleRow {
    /// The principal.
    pub principal: String,
    /// The roles it holds on the license ID.
    pub roles: Vec<Role>,
}

/// What the licenses of one product allow (R4-R6, R21-R23).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RightsRow {
    /// The product's id.
    pub product: String,
    /// The product's name.
    pub name: String,
    /// Licenses of it bought under the license ID (R7, R24).
    pub purchased: u64,
    /// What it needs to run (R4-R6).
    pub key_requirement: KeyRequirement,
    /// What a user sees instead of, or about, a key (R4, R5, R6).
    pub key_note: Option<String>,
    /// R21.
    pub downgrade_to: Vec<String>,
    /// R22.
    pub reimage_eligible: bool,
    /// Why reimaging is or is not allowed (R22).
    pub reimage_reason: &'static str,
    /// R23.
    pub training_backup_evaluation: bool,
}

/// Builds the report of `license_id` from projections folded up to the report's moment.
pub fn license_report(
    p: &Projections,
    license_id: &LicenseId,
    at: Timestamp,
) -> Option<LicenseReport> {
    let license = p.license_views.get(license_id)?;
    let record = &p.books.licenses[license_id];
    let keys: Vec<KeyRow> = license.keys.iter().map(|id| key_row(p, *id, at)).collect();
    Some(LicenseReport {
        license_id: license_id.to_string(),
        report_time: at,
        at_seq: p.last_seq,
        org: org_row(p, &record.org),
        program: record.program,
        agreement_number: record.agreement_number.clone(),
        authorization_number: record.authorization_number.clone(),
        purchase_account: record.purchase_account.clone(),
        rds_activation_number: record.license_server_number().to_owned(),
        purchases: purchases(p, license_id)
            .map(|(product, quantity)| PurchaseRow {
                product: product.to_string(),
                quantity: *quantity,
            })
            .collect(),
        kms_hosts: kms_host_rows(p, license, at),
        requests: license
            .requests
            .iter()
            .map(|id| request_row(p, id))
            .collect(),
        esu_orders: license
            .esu_orders
            .iter()
            .map(|id| {
                let order = &p.books.esu_orders[id];
                EsuOrderRow {
                    order_id: id.to_string(),
                    product: order.product.to_string(),
                    coverage_start: order.coverage.start,
                    coverage_end: order.coverage.end,
                    phase: order.coverage.phase_at(at),
                }
            })
            .collect(),
        roles: p
            .books
            .roles
            .range((license_id.clone(), min_principal())..)
            .take_while(|((l, _), _)| l == license_id)
            .filter(|(_, roles)| !roles.is_empty())
            .map(|((_, principal), roles)| RoleRow {
                principal: principal.to_string(),
                roles: roles.iter().copied().collect(),
            })
            .collect(),
        disclosures: disclosure_rows(p, license),
        may_see_key_text: p
            .disclosure_holders_at(license_id, p.last_seq)
            .into_iter()
            .map(|(principal, roles)| RoleRow {
                principal: principal.to_string(),
                roles,
            })
            .collect(),
        rights: rights_rows(p, license_id, license, record),
        alerts: crate::alerts::alerts(
            p,
            Some(license_id),
            at,
            &crate::alerts::AlertRules::default(),
        ),
        keys,
        note: ACTIVATION_NOTE,
    })
}

fn disclosure_rows(p: &Projections, license: &LicenseView) -> Vec<DisclosureRow> {
    p.disclosures
        .iter()
        .filter_map(|d| {
            let key_ids: Vec<u64> = d
                .key_ids
                .iter()
                .filter(|k| license.keys.contains(k))
                .map(|k| k.0)
                .collect();
            (!key_ids.is_empty()).then(|| DisclosureRow {
                seq: d.seq,
                at: d.at,
                actor: d.actor.to_string(),
                channel: d.channel,
                key_ids,
                export_digest: d.export_digest,
            })
        })
        .collect()
}

fn min_principal() -> keyledger_core::Principal {
    keyledger_core::Principal::new("\u{20}").expect("a space is a valid, minimal principal")
}

fn org_row(p: &Projections, org: &keyledger_core::OrgId) -> OrgRow {
    let mut chain = Vec::new();
    let orgs = &p.books.orgs;
    let mut next = orgs[org].parent.clone();
    while let Some(parent) = next {
        next = orgs[&parent].parent.clone();
        chain.push(parent.to_string());
    }
    OrgRow {
        org: org.to_string(),
        name: orgs[org].name.clone(),
        parent_chain: chain,
    }
}

/// One key's row of a report at `at` (also a row of the console's Keys table).
pub fn key_row(p: &Projections, id: KeyId, at: Timestamp) -> KeyRow {
    let key = &p.books.keys[id];
    let forecast = key
        .kind
        .is_mak()
        .then(|| forecast(id, key, at, WINDOW_DAYS_DEFAULT));
    KeyRow {
        key_id: id.0,
        product: key.product.to_string(),
        kind: key.kind,
        key: key.last5.masked(),
        limit: key.limit,
        granted: key.granted,
        total: key.total(),
        used: key.used(),
        remaining: key.remaining(),
        purchased: p.books.purchased(&key.license_id, &key.product),
        blocked: key.blocked,
        osa_status: key.osa_status().as_str(),
        esu_coverage: key.coverage_phase(at),
        coverage_start: key.coverage.map(|c| c.start),
        coverage_end: key.coverage.map(|c| c.end),
        kms_hosts: key.kms.as_ref().map(|k| k.hosts.len() as u64),
        kms_hosts_limit: key.kms.as_ref().map(|k| k.hosts_limit()),
        refusals: key
            .refusals
            .iter()
            .map(|(c, n)| (c.as_str().to_owned(), *n))
            .collect(),
        rate_per_day: forecast.as_ref().map(|f| f.rate_per_day),
        exhaustion: forecast.and_then(|f| f.exhaustion),
        external: key.external.as_ref().map(ExternalRow::from),
    }
}

/// R7/R24: the units of each product bought under `license_id`, in product order.
fn purchases<'p>(
    p: &'p Projections,
    license_id: &'p LicenseId,
) -> impl Iterator<Item = (&'p keyledger_core::ProductId, &'p u64)> + 'p {
    p.books
        .purchases
        .range((license_id.clone(), min_product())..)
        .take_while(move |((l, _), _)| l == license_id)
        .map(|((_, product), quantity)| (product, quantity))
}

fn min_product() -> keyledger_core::ProductId {
    keyledger_core::ProductId::new("\u{20}").expect("a space is a valid, minimal id")
}

fn kms_host_rows(p: &Projections, license: &LicenseView, at: Timestamp) -> Vec<KmsHostRow> {
    let mut rows = Vec::new();
    for key_id in &license.keys {
        let Some(kms) = &p.books.keys[*key_id].kms else {
            continue;
        };
        for (host, activations) in &kms.hosts {
            let view = &p.books.kms_hosts[host];
            let line = if view.office_key == Some(*key_id) {
                "office"
            } else {
                "windows"
            };
            // The same window decisions count with (R14).
            let windows_count = u64::from(view.windows.count_at(at));
            let office_count = u64::from(view.office.count_at(at));
            rows.push(KmsHostRow {
                host: host.to_string(),
                key_id: key_id.0,
                line,
                activations: *activations,
                windows_count,
                office_count,
                windows_server_threshold_met: windows_count
                    >= u64::from(ClientFamily::WindowsServer.kms_threshold()),
                windows_client_threshold_met: windows_count
                    >= u64::from(ClientFamily::WindowsClient.kms_threshold()),
                office_threshold_met: office_count
                    >= u64::from(ClientFamily::Office.kms_threshold()),
            });
        }
    }
    rows
}

/// One request's row, pending or decided.
pub fn request_row(p: &Projections, id: &keyledger_core::RequestId) -> RequestRow {
    let request = &p.books.requests[id];
    let (kind, key_id, needed) = match &request.kind {
        keyledger_core::state::RequestKind::MakIncrease {
            key_id,
            activations_needed,
        } => ("mak_increase", Some(key_id.0), *activations_needed),
        keyledger_core::state::RequestKind::Kms {
            reason,
            key_id,
            host_activations_needed,
        } => (
            match reason {
                KmsRequestReason::OpenValueException => "open_value_exception",
                KmsRequestReason::AdditionalHosts => "additional_hosts",
            },
            key_id.map(|k| k.0),
            u64::from(*host_activations_needed),
        ),
    };
    let (outcome, amount, reason) = match request.decision.as_ref().map(|d| &d.outcome) {
        None => ("pending", None, None),
        Some(RequestOutcome::Granted { amount }) => ("granted", Some(*amount), None),
        Some(RequestOutcome::Denied { reason }) => ("denied", None, Some(reason.clone())),
    };
    let decided = request.decision.as_ref().map(|d| (&d.by, &d.at));
    RequestRow {
        request_id: id.to_string(),
        kind,
        product: request.product.to_string(),
        key_id,
        needed,
        justification: request.justification.clone(),
        requested_by: request.requested_by.to_string(),
        requested_at: request.requested_at,
        outcome,
        amount,
        reason,
        decided_by: decided.map(|(by, _)| by.to_string()),
        decided_at: decided.map(|(_, at)| *at),
    }
}

fn rights_rows(
    p: &Projections,
    license_id: &LicenseId,
    license: &LicenseView,
    record: &keyledger_core::state::LicenseRecord,
) -> Vec<RightsRow> {
    let mut products: Vec<&keyledger_core::ProductId> = purchases(p, license_id)
        .map(|(product, _)| product)
        .chain(license.keys.iter().map(|id| &p.books.keys[*id].product))
        .collect();
    products.sort();
    products.dedup();
    products
        .into_iter()
        .map(|id| {
            let product = &p.books.products[id];
            let reimage = rights::reimage(&p.books, license_id, id);
            RightsRow {
                product: id.to_string(),
                name: product.name.clone(),
                purchased: p.books.purchased(license_id, id),
                key_requirement: product.key_requirement,
                key_note: key_note(product, record),
                downgrade_to: rights::downgrade_targets(&p.books, id)
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
                reimage_eligible: reimage.eligible,
                reimage_reason: reimage.reason,
                training_backup_evaluation: rights::training_backup_evaluation(record.program),
            }
        })
        .collect()
}

/// R4, R5, R6: what a user sees for products without an ordinary VL key.
pub fn key_note(
    product: &keyledger_core::state::Product,
    record: &keyledger_core::state::LicenseRecord,
) -> Option<String> {
    match product.key_requirement {
        KeyRequirement::VlKey => None,
        KeyRequirement::None => Some("no product key required".to_owned()),
        KeyRequirement::Embedded => {
            let shown = product.version_number().is_some_and(|v| v >= 2022);
            Some(if shown {
                "the product key is embedded in the setup media and shown here".to_owned()
            } else {
                "This product does not require a product key".to_owned()
            })
        }
        KeyRequirement::LicenseServer => Some(format!(
            "no product key: activate the license server with {}",
            record.license_server_number()
        )),
    }
}
