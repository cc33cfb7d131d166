//! The read models. Every map is a `BTreeMap` so that a projection encodes to the same
//! bytes however it was reached (snapshot + catch-up or a fold from zero): its digest is
//! what proves the two equal.

use std::collections::BTreeMap;

use keyledger_core::books::{Books, KeyRecord, KeyTerms};
use keyledger_core::catalog::KmsLine;
use keyledger_core::event::CoveragePhase;
use keyledger_core::{
    Digest, DisclosureChannel, HostId, KeyId, KeyKind, LicenseId, OrderId, Principal, RefusalCode,
    RequestId, Role, Timestamp,
};
use serde::{Deserialize, Serialize};

/// What the read models keep per license ID beside the books: its keys, requests and ESU
/// orders in the order they came (its history is read from the index beside the log:
/// `crate::history`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseView {
    /// Its keys, in issuance order.
    pub keys: Vec<KeyId>,
    /// Its requests, in filing order.
    pub requests: Vec<RequestId>,
    /// Its ESU orders, in order.
    pub esu_orders: Vec<OrderId>,
}

/// OSA status (R20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsaStatus {
    /// Issued, not yet redeemed.
    Pending,
    /// Redeemed into a tenant.
    Active,
    /// Blocked.
    Blocked,
    /// Not an OSA key.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl OsaStatus {
    /// The stable name reports print.
    pub fn as_str(self) -> &'static str {
        match self {
            OsaStatus::Pending => "pending",
            OsaStatus::Active => "active",
            OsaStatus::Blocked => "blocked",
            OsaStatus::NotApplicable => "n/a",
        }
    }
}

/// What happened to one key on one UTC day: the buckets usage over time (`usage`) and the
/// forecasts add up. A day is the finest period a report asks for, so sums of days are exact
/// for days, weeks and months.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    /// Activations consumed (R9: machines new to the key).
    pub consumed: u64,
    /// Machines named again that were active already (R9: they consume nothing).
    pub already_active: u64,
    /// R10: refused attempts by reason.
    pub refused: BTreeMap<RefusalCode, u64>,
    /// R14: client contacts counted by a host this key activated.
    pub kms_contacts: u64,
    /// R13: host activations on this KMS host key.
    pub kms_host_activations: u64,
    /// R19: activations (or KMS host activations) granted to the key.
    pub granted: u64,
}

/// Reconciliation: the last count an outside activation service reported for a
/// key, beside the ledger's own at the moment it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCount {
    /// The seq of the `external_count_recorded` event.
    pub seq: u64,
    /// When it was recorded (business time).
    pub recorded_at: Timestamp,
    /// Who recorded it.
    pub recorded_by: Principal,
    /// Who reported the count, e.g. `microsoft-activation-service`.
    pub source: String,
    /// What the outside source says is left.
    pub remaining: u64,
    /// When the outside source reported the count.
    pub observed_at: Timestamp,
    /// A note on the observation, if any.
    pub note: Option<String>,
    /// What the ledger counted left when the outside count was recorded.
    pub ledger_remaining: u64,
}

impl ExternalCount {
    /// The ledger's remaining count minus the outside one: positive when the ledger counts
    /// more left than the outside service does.
    pub fn difference(&self) -> i64 {
        // Both are at most `COUNT_MAX` (decide), far inside i64.
        self.ledger_remaining as i64 - self.remaining as i64
    }
}

/// Key usage: one key's terms (the books'; read through `Deref`), and what the read models
/// add: refusals by code, what happened each day and the last outside count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The key's terms, as the books keep them.
    pub terms: KeyTerms,
    /// R10: refused attempts by reason.
    pub refusals: BTreeMap<RefusalCode, u64>,
    /// Per UTC day (days since the epoch), for usage over time and forecasts.
    pub daily: BTreeMap<i64, DayUsage>,
    /// The last count an outside activation service reported, if any.
    pub external: Option<ExternalCount>,
}

impl From<KeyTerms> for KeyView {
    fn from(terms: KeyTerms) -> KeyView {
        KeyView {
            terms,
            refusals: BTreeMap::new(),
            daily: BTreeMap::new(),
            external: None,
        }
    }
}

impl KeyRecord for KeyView {
    fn terms(&self) -> &KeyTerms {
        &self.terms
    }

    fn terms_mut(&mut self) -> &mut KeyTerms {
        &mut self.terms
    }

    fn machines_activated(&mut self, machines: &[keyledger_core::MachineId], at: Timestamp) {
        let consumed = machines.len() as u64;
        if consumed > 0 {
            self.daily.entry(at.unix_day()).or_default().consumed += consumed;
        }
    }
}

impl std::ops::Deref for KeyView {
    type Target = KeyTerms;

    fn deref(&self) -> &KeyTerms {
        &self.terms
    }
}

impl KeyView {
    /// The bucket of the UTC day of `at`.
    pub fn day_mut(&mut self, at: Timestamp) -> &mut DayUsage {
        self.daily.entry(at.unix_day()).or_default()
    }

    /// The key's OSA status (R20).
    pub fn osa_status(&self) -> OsaStatus {
        match (self.kind, self.blocked, &self.redeemed_into) {
            (KeyKind::Osa, true, _) => OsaStatus::Blocked,
            (KeyKind::Osa, false, Some(_)) => OsaStatus::Active,
            (KeyKind::Osa, false, None) => OsaStatus::Pending,
            _ => OsaStatus::NotApplicable,
        }
    }

    /// R12: where `at` falls in the ESU coverage, for ESU MAKs.
    pub fn coverage_phase(&self, at: Timestamp) -> Option<CoveragePhase> {
        self.coverage.map(|c| c.phase_at(at))
    }

    /// `used/total` as the key export shows it (R2); OSA seats count as used once redeemed.
    pub fn used_of_total(&self) -> String {
        match self.kind {
            KeyKind::Osa => {
                let used = if self.redeemed_into.is_some() {
                    self.total()
                } else {
                    0
                };
                format!("{used}/{}", self.total())
            }
            KeyKind::KmsHost => {
                let kms = self.kms.as_ref().expect("KMS host keys have an allowance");
                format!("{}/{}", kms.hosts.len(), kms.hosts_limit())
            }
            KeyKind::Setup | KeyKind::Embedded => "n/a".to_owned(),
            KeyKind::Mak | KeyKind::EsuMak => format!("{}/{}", self.used, self.total()),
        }
    }
}

/// R1/R2: one disclosure of key text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureView {
    /// The seq of the `keys_disclosed` event.
    pub seq: u64,
    /// When the text was shown.
    pub at: Timestamp,
    /// Who was shown it.
    pub actor: Principal,
    /// The keys whose text was shown.
    pub key_ids: Vec<KeyId>,
    /// How the text was shown: one key copied, or an export file (R1, R2).
    pub channel: DisclosureChannel,
    /// The BLAKE3 digest of the export file, for an export (R2).
    pub export_digest: Option<Digest>,
}

/// A role assigned or revoked, for "who could see this key at time T".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The seq of the event.
    pub seq: u64,
    /// When the role changed.
    pub at: Timestamp,
    /// Whose role.
    pub principal: Principal,
    /// The license ID the role is on.
    pub license_id: LicenseId,
    /// The role.
    pub role: Role,
    /// `true` for an assignment, `false` for a revocation.
    pub assigned: bool,
}

/// Everything the reports read, folded from events only: the books (the facts decisions
/// read too, folded by the same code) and what only the reports need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projections {
    /// The last seq folded.
    pub last_seq: u64,
    /// The business time of the last event folded.
    pub last_at: Option<Timestamp>,
    /// The facts, folded by `Books::apply` as the decisions' are.
    pub books: Books<KeyView>,
    /// Per license ID: its keys, requests and ESU orders in order.
    pub license_views: BTreeMap<LicenseId, LicenseView>,
    /// Every role assigned or revoked, in order (who could see what, when).
    pub role_history: Vec<RoleChange>,
    /// Every disclosure of key text, in order (R1, R2).
    pub disclosures: Vec<DisclosureView>,
    /// Per KMS host, from which seq on it served which key for a line (a KMS client's
    /// contact belongs to that key's history: `Projections::key_served`).
    pub kms_served: BTreeMap<HostId, Vec<(u64, KmsLine, KeyId)>>,
}
