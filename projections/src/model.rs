//! The read models. Every map is a `BTreeMap` so that a projection encodes to the same
//! bytes however it was reached (snapshot + catch-up or a fold from zero): its digest is
//! what proves the two equal.

use std::collections::BTreeMap;

use keyledger_core::books::{Books, KeyRecord, KeyTerms};
use keyledger_core::event::CoveragePhase;
use keyledger_core::{
    Digest, DisclosureChannel, KeyId, KeyKind, LicenseId, OrderId, Principal, RefusalCode,
    RequestId, Role, Timestamp,
};
use serde::{Deserialize, Serialize};

/// What the read models keep per license ID beside the books: its keys, requests and ESU
/// orders in the order they came, and its history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseView {
    pub keys: Vec<KeyId>,
    pub requests: Vec<RequestId>,
    pub esu_orders: Vec<OrderId>,
    /// History index: the seqs of events naming this license ID (its keys' events are in
    /// their own histories; `Projections::license_history` merges them).
    pub history: Vec<u64>,
}

/// OSA status (R20).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsaStatus {
    Pending,
    Active,
    Blocked,
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl OsaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OsaStatus::Pending => "pending",
            OsaStatus::Active => "active",
            OsaStatus::Blocked => "blocked",
            OsaStatus::NotApplicable => "n/a",
        }
    }
}

/// Key usage: one key's terms (the books'; read through `Deref`), and what the read models
/// add: refusals by code, daily consumption and the history index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub terms: KeyTerms,
    /// R10: refused attempts by reason.
    pub refusals: BTreeMap<RefusalCode, u64>,
    /// Activations consumed per day (days since the epoch), for forecasts.
    pub daily: BTreeMap<i64, u64>,
    /// History index: the seqs of every event about this key.
    pub history: Vec<u64>,
}

impl From<KeyTerms> for KeyView {
    fn from(terms: KeyTerms) -> KeyView {
        KeyView {
            terms,
            refusals: BTreeMap::new(),
            daily: BTreeMap::new(),
            history: Vec::new(),
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
            *self.daily.entry(at.unix_day()).or_default() += consumed;
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
    pub seq: u64,
    pub at: Timestamp,
    pub actor: Principal,
    pub key_ids: Vec<KeyId>,
    pub channel: DisclosureChannel,
    pub export_digest: Option<Digest>,
}

/// A role assigned or revoked, for "who could see this key at time T".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub seq: u64,
    pub at: Timestamp,
    pub principal: Principal,
    pub license_id: LicenseId,
    pub role: Role,
    pub assigned: bool,
}

/// Everything the reports read, folded from events only: the books (the facts decisions
/// read too, folded by the same code) and what only the reports need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projections {
    pub last_seq: u64,
    pub last_at: Option<Timestamp>,
    pub books: Books<KeyView>,
    pub license_views: BTreeMap<LicenseId, LicenseView>,
    pub role_history: Vec<RoleChange>,
    pub disclosures: Vec<DisclosureView>,
}
