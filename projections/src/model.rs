//! The read models. Every map is a `BTreeMap` so that a projection encodes to the same
//! bytes however it was reached (snapshot + catch-up or a fold from zero): its digest is
//! what proves the two equal.

use std::collections::{BTreeMap, BTreeSet};

use keyledger_core::event::{Coverage, CoveragePhase};
use keyledger_core::state::{LicenseRecord, Product};
use keyledger_core::{
    ClientId, Digest, DisclosureChannel, Fingerprint, HostId, KeyId, KeyKind, Last5, LicenseId,
    OrderId, OrgId, Principal, ProductId, RefusalCode, RequestId, Role, TenantId, Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgView {
    pub name: String,
    pub parent: Option<OrgId>,
}

/// A license ID and everything hanging off it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseView {
    pub record: LicenseRecord,
    /// R7/R24: units bought, apart from any activation count.
    pub purchases: BTreeMap<ProductId, u64>,
    pub keys: Vec<KeyId>,
    pub requests: Vec<RequestId>,
    pub esu_orders: Vec<OrderId>,
    /// History index: the seqs of events naming this license ID (its keys' events are in
    /// their own histories; `Projections::license_history` merges them).
    pub history: Vec<u64>,
}

/// A KMS host key's hosts (R13).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKeyView {
    pub hosts_max: u32,
    pub hosts_granted: u64,
    pub per_host_max: u32,
    pub hosts: BTreeMap<HostId, u32>,
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

/// Key usage: one key's counts, hosts, coverage and refusals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub kind: KeyKind,
    pub last5: Last5,
    /// BLAKE3 of the key text, as issued: what a stored secret must hash to before an
    /// export hands it out.
    pub fingerprint: Fingerprint,
    pub issued_at: Timestamp,
    /// Set at issuance (R8).
    pub limit: u64,
    /// Added by grants (R19).
    pub granted: u64,
    pub used: u64,
    pub blocked: bool,
    pub coverage: Option<Coverage>,
    pub kms: Option<KmsKeyView>,
    pub osa_tenant: Option<TenantId>,
    /// R10: refused attempts by reason.
    pub refusals: BTreeMap<RefusalCode, u64>,
    /// Activations consumed per day (days since the epoch), for forecasts.
    pub daily: BTreeMap<i64, u64>,
    /// History index: the seqs of every event about this key.
    pub history: Vec<u64>,
}

impl KeyView {
    pub fn total(&self) -> u64 {
        self.limit.saturating_add(self.granted)
    }

    pub fn remaining(&self) -> u64 {
        self.total().saturating_sub(self.used)
    }

    pub fn osa_status(&self) -> OsaStatus {
        match (self.kind, self.blocked, &self.osa_tenant) {
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
                let used = if self.osa_tenant.is_some() {
                    self.total()
                } else {
                    0
                };
                format!("{used}/{}", self.total())
            }
            KeyKind::KmsHost => {
                let kms = self.kms.as_ref().expect("KMS host keys have a KMS view");
                let limit = u64::from(kms.hosts_max).saturating_add(kms.hosts_granted);
                format!("{}/{limit}", kms.hosts.len())
            }
            KeyKind::Setup | KeyKind::Embedded => "n/a".to_owned(),
            KeyKind::Mak | KeyKind::EsuMak => format!("{}/{}", self.used, self.total()),
        }
    }
}

/// Every key's view, by key id. Key ids are dense from 1 in issue order (core asserts it),
/// so a vector indexed by `id - 1` replaces a search tree: the fold touches one key per
/// activation, and this makes that touch O(1) and cache-friendly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyTable(Vec<KeyView>);

impl KeyTable {
    fn index(id: &KeyId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(1)?).ok()
    }

    pub fn get(&self, id: &KeyId) -> Option<&KeyView> {
        self.0.get(Self::index(id)?)
    }

    pub fn get_mut(&mut self, id: &KeyId) -> Option<&mut KeyView> {
        let index = Self::index(id)?;
        self.0.get_mut(index)
    }

    /// Adds the next key; ids must arrive dense and in order.
    pub fn insert(&mut self, id: KeyId, view: KeyView) {
        assert_eq!(
            id.0,
            self.0.len() as u64 + 1,
            "key ids are dense and in issue order"
        );
        self.0.push(view);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &KeyView)> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, k)| (KeyId(i as u64 + 1), k))
    }
}

impl std::ops::Index<&KeyId> for KeyTable {
    type Output = KeyView;

    fn index(&self, id: &KeyId) -> &KeyView {
        self.get(id).expect("key exists")
    }
}

/// KMS host: its keys and the clients that contacted it (R14, R15).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsHostView {
    pub windows_key: Option<KeyId>,
    pub office_key: Option<KeyId>,
    pub windows_contacts: BTreeMap<ClientId, Timestamp>,
    pub office_contacts: BTreeMap<ClientId, Timestamp>,
}

/// A request's outcome. Externally tagged: snapshots are bincode, which cannot carry
/// serde's internally tagged enums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pending,
    Granted {
        amount: u64,
        decided_by: Principal,
        decided_at: Timestamp,
    },
    Denied {
        reason: String,
        decided_by: Principal,
        decided_at: Timestamp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub kind: keyledger_core::state::RequestKind,
    pub justification: String,
    pub requested_by: Principal,
    pub requested_at: Timestamp,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EsuOrderView {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub coverage: Coverage,
    pub ordered_at: Timestamp,
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

/// Everything the reports read, folded from events only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projections {
    pub last_seq: u64,
    pub last_at: Option<Timestamp>,
    pub operators: BTreeSet<Principal>,
    pub orgs: BTreeMap<OrgId, OrgView>,
    pub licenses: BTreeMap<LicenseId, LicenseView>,
    pub products: BTreeMap<ProductId, Product>,
    pub keys: KeyTable,
    pub kms_hosts: BTreeMap<HostId, KmsHostView>,
    pub requests: BTreeMap<RequestId, RequestView>,
    pub esu_orders: BTreeMap<OrderId, EsuOrderView>,
    pub roles: BTreeMap<(LicenseId, Principal), BTreeSet<Role>>,
    pub role_history: Vec<RoleChange>,
    pub disclosures: Vec<DisclosureView>,
}
