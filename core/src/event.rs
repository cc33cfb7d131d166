//! Events: the facts the log keeps forever.
//!
//! Every variant is part of the on-disk format (docs/format.md). Variants are encoded by
//! their index: append new ones at the end, never reorder or remove one. A record's version
//! is the record format byte in front of it (`keyledger_ledger::codec`): a variant whose
//! fields must change is instead appended as a new variant (the old one stays decodable and
//! the books fold both), or the record format is bumped with an upcast in the codec.
//!
//! Adding an event is one path: the variant here, its [`EventKind`] (the compiler asks for
//! it in [`EventBody::kind`]), its effect in `books.rs` and in each holder's own fold (both
//! name every variant), a golden sample in `ledger/tests/golden.rs` (its test fails for a
//! kind without one), and docs/format.md.

use serde::{Deserialize, Serialize};

use crate::catalog::{
    ActivationMethod, ActivationStatus, ClientFamily, DisclosureChannel, Family, KeyKind,
    KeyRequirement, KmsRequestReason, Program, Role,
};
use crate::ids::{
    ClientId, HostId, KeyId, LicenseId, MachineId, OrderId, OrgId, Principal, ProductId, RequestId,
    TenantId,
};
use crate::product_key::{Fingerprint, Last5};
use crate::refusal::RefusalCode;
use crate::{Digest, Timestamp};

macro_rules! event_kinds {
    ($($variant:ident = $text:literal,)+) => {
        /// Every kind of event, in the order of [`EventBody`]'s variants (their index in the
        /// record bytes), with the stable snake_case name exports and reports print.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($variant,)+
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $text,)+
                }
            }
        }

        impl EventBody {
            /// What kind of event this is.
            pub fn kind(&self) -> EventKind {
                match self {
                    $(EventBody::$variant { .. } => EventKind::$variant,)+
                }
            }
        }
    };
}

event_kinds! {
    OperatorAdded = "operator_added",
    OrgRegistered = "org_registered",
    LicenseIdRegistered = "license_id_registered",
    ProductRegistered = "product_registered",
    PurchaseRecorded = "purchase_recorded",
    KeyIssued = "key_issued",
    KeyBlocked = "key_blocked",
    EsuOrdered = "esu_ordered",
    MachinesActivated = "machines_activated",
    KmsHostActivated = "kms_host_activated",
    KmsClientContacted = "kms_client_contacted",
    OsaRedeemed = "osa_redeemed",
    ActivationRefused = "activation_refused",
    MakIncreaseRequested = "mak_increase_requested",
    KmsRequested = "kms_requested",
    RequestGranted = "request_granted",
    RequestDenied = "request_denied",
    RoleAssigned = "role_assigned",
    RoleRevoked = "role_revoked",
    KeysDisclosed = "keys_disclosed",
    KeyTextRetired = "key_text_retired",
    ExternalCountRecorded = "external_count_recorded",
    MachinesAlreadyActive = "machines_already_active",
}

/// One fact, with when it happened (business time) and who caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub actor: Principal,
    pub body: EventBody,
}

/// A coverage period `[start, end)` (R11, R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Coverage {
    /// Where `at` falls relative to the period.
    pub fn phase_at(&self, at: Timestamp) -> CoveragePhase {
        if at < self.start {
            CoveragePhase::NotStarted
        } else if at >= self.end {
            CoveragePhase::Ended
        } else {
            CoveragePhase::Active
        }
    }
}

/// Where a moment falls relative to a coverage period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoveragePhase {
    NotStarted,
    Active,
    Ended,
}

/// What an activation attempt asked for; kept with a recorded refusal (R10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationAttempt {
    Mak {
        org: OrgId,
        method: ActivationMethod,
        machines: u32,
    },
    KmsHost {
        org: OrgId,
        host: HostId,
    },
    KmsClient {
        host: HostId,
        client: ClientId,
        family: ClientFamily,
    },
    Osa {
        tenant: TenantId,
    },
    /// A MAK activation on a known key naming its machines, so that a machine's history
    /// shows the refusals it met. `Mak` (the count alone) is what older logs hold, and
    /// what a refusal on an unknown key or naming more than
    /// `decide::REFUSAL_MACHINES_NAMED_MAX` machines is recorded as.
    MakMachines {
        org: OrgId,
        method: ActivationMethod,
        machines: Vec<MachineId>,
    },
}

/// Every event type. Past tense: these happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    /// R3: a principal became an operator (the first one by `init`).
    OperatorAdded {
        principal: Principal,
    },
    OrgRegistered {
        org: OrgId,
        name: String,
        parent: Option<OrgId>,
    },
    LicenseIdRegistered {
        license_id: LicenseId,
        org: OrgId,
        program: Program,
        agreement_number: String,
        authorization_number: Option<String>,
        purchase_account: Option<String>,
    },
    ProductRegistered {
        product: ProductId,
        name: String,
        family: Family,
        version: String,
        edition: String,
        key_requirement: KeyRequirement,
    },
    /// R7/R24: licenses bought; kept apart from activation counts.
    PurchaseRecorded {
        license_id: LicenseId,
        product: ProductId,
        quantity: u64,
    },
    /// A key was issued. `limit` counts activations or seats (0 for kinds without a count);
    /// `hosts_max`/`per_host_max` bound KMS host keys (0 otherwise).
    KeyIssued {
        key_id: KeyId,
        license_id: LicenseId,
        product: ProductId,
        kind: KeyKind,
        limit: u64,
        hosts_max: u32,
        per_host_max: u32,
        coverage: Option<Coverage>,
        fingerprint: Fingerprint,
        last5: Last5,
    },
    KeyBlocked {
        key_id: KeyId,
    },
    /// R11.
    EsuOrdered {
        order_id: OrderId,
        license_id: LicenseId,
        product: ProductId,
        coverage: Coverage,
    },
    /// R9: `machines` are the newly consumed ones; `already_active` counts machines of the
    /// request that were active on the key before and consumed nothing.
    MachinesActivated {
        key_id: KeyId,
        org: OrgId,
        method: ActivationMethod,
        machines: Vec<MachineId>,
        already_active: u32,
    },
    /// R13: `activation` is 1 for a host's first activation on this key, up to `per_host_max`.
    KmsHostActivated {
        key_id: KeyId,
        org: OrgId,
        host: HostId,
        activation: u32,
    },
    /// R14: a client contacted a host; `count` is the host's count for the client's line
    /// (Windows or Office) including this contact.
    KmsClientContacted {
        host: HostId,
        client: ClientId,
        family: ClientFamily,
        count: u32,
        status: ActivationStatus,
    },
    /// R20.
    OsaRedeemed {
        key_id: KeyId,
        tenant: TenantId,
    },
    /// R10: a refused activation, with the reason and, for R9, the remaining count.
    ActivationRefused {
        key_id: Option<KeyId>,
        attempt: ActivationAttempt,
        code: RefusalCode,
        remaining: Option<u64>,
    },
    /// R17.
    MakIncreaseRequested {
        request_id: RequestId,
        license_id: LicenseId,
        product: ProductId,
        key_id: KeyId,
        activations_needed: u64,
        justification: String,
    },
    /// R18. `key_id` is the KMS host key to raise, for `additional_hosts`.
    KmsRequested {
        request_id: RequestId,
        license_id: LicenseId,
        product: ProductId,
        reason: KmsRequestReason,
        key_id: Option<KeyId>,
        host_activations_needed: u32,
        justification: String,
    },
    /// R19: the actor granted `amount` (activations or KMS host activations).
    RequestGranted {
        request_id: RequestId,
        amount: u64,
    },
    /// R19.
    RequestDenied {
        request_id: RequestId,
        reason: String,
    },
    RoleAssigned {
        principal: Principal,
        license_id: LicenseId,
        role: Role,
    },
    RoleRevoked {
        principal: Principal,
        license_id: LicenseId,
        role: Role,
    },
    /// R1/R2: the actor saw these keys' text.
    KeysDisclosed {
        key_ids: Vec<KeyId>,
        channel: DisclosureChannel,
        export_digest: Option<Digest>,
    },
    /// docs/rules.md, "Key text": the key's text was erased from the secrets; never disclosed again.
    KeyTextRetired {
        key_id: KeyId,
        reason: String,
    },
    /// Issue 19 (reconciliation): an outside activation service's count of a MAK, and the
    /// ledger's own remaining count when it was recorded, kept side by side as evidence.
    ExternalCountRecorded {
        key_id: KeyId,
        source: String,
        remaining: u64,
        observed_at: Timestamp,
        note: Option<String>,
        ledger_remaining: u64,
    },
    /// R9: the machines of an activation that were active on the key already (the
    /// `already_active` of the `machines_activated` just before it, by name). Consumes
    /// nothing; recorded so that a machine's history shows every time it was named.
    MachinesAlreadyActive {
        key_id: KeyId,
        org: OrgId,
        method: ActivationMethod,
        machines: Vec<MachineId>,
    },
}

impl EventBody {
    /// Every license ID, key, request and (for a KMS client's contact) KMS host the event
    /// names in its own fields, for the history index beside the log: a superset of the
    /// histories the event belongs to, known from the event alone (a grant names only its
    /// request, a contact only its host; the read models resolve them). A disclosure names
    /// each key it showed.
    pub fn named(&self) -> Vec<Named<'_>> {
        use EventBody::*;
        match self {
            LicenseIdRegistered { license_id, .. }
            | PurchaseRecorded { license_id, .. }
            | EsuOrdered { license_id, .. }
            | RoleAssigned { license_id, .. }
            | RoleRevoked { license_id, .. } => vec![Named::License(license_id)],
            KeyIssued {
                license_id, key_id, ..
            } => vec![Named::License(license_id), Named::Key(*key_id)],
            MakIncreaseRequested {
                request_id,
                license_id,
                key_id,
                ..
            } => vec![
                Named::License(license_id),
                Named::Key(*key_id),
                Named::Request(request_id),
            ],
            KmsRequested {
                request_id,
                license_id,
                key_id,
                ..
            } => {
                let mut named = vec![Named::License(license_id), Named::Request(request_id)];
                named.extend(key_id.map(Named::Key));
                named
            }
            RequestGranted { request_id, .. } | RequestDenied { request_id, .. } => {
                vec![Named::Request(request_id)]
            }
            KeyBlocked { key_id }
            | KeyTextRetired { key_id, .. }
            | ExternalCountRecorded { key_id, .. }
            | MachinesActivated { key_id, .. }
            | MachinesAlreadyActive { key_id, .. }
            | KmsHostActivated { key_id, .. }
            | OsaRedeemed { key_id, .. } => vec![Named::Key(*key_id)],
            ActivationRefused { key_id, .. } => key_id.iter().map(|k| Named::Key(*k)).collect(),
            KmsClientContacted { host, .. } => vec![Named::KmsHost(host)],
            KeysDisclosed { key_ids, .. } => {
                let mut keys = key_ids.clone();
                keys.sort_unstable();
                keys.dedup();
                keys.into_iter().map(Named::Disclosure).collect()
            }
            OperatorAdded { .. } | OrgRegistered { .. } | ProductRegistered { .. } => Vec::new(),
        }
    }

    /// Every machine (or KMS host or client) name the event records, for the machine index.
    pub fn machine_names(&self) -> Vec<&str> {
        match self {
            EventBody::MachinesActivated { machines, .. }
            | EventBody::MachinesAlreadyActive { machines, .. }
            | EventBody::ActivationRefused {
                attempt: ActivationAttempt::MakMachines { machines, .. },
                ..
            } => machines.iter().map(|m| m.as_str()).collect(),
            EventBody::KmsHostActivated { host, .. }
            | EventBody::ActivationRefused {
                attempt: ActivationAttempt::KmsHost { host, .. },
                ..
            } => vec![host.as_str()],
            EventBody::KmsClientContacted { client, .. }
            | EventBody::ActivationRefused {
                attempt: ActivationAttempt::KmsClient { client, .. },
                ..
            } => vec![client.as_str()],
            _ => Vec::new(),
        }
    }

    /// The stable snake_case name of the variant, as exports and reports print it.
    pub fn type_name(&self) -> &'static str {
        self.kind().name()
    }
}

/// Something an event names that has a history: what [`EventBody::named`] answers, and what
/// the history index beside the log is looked up by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Named<'a> {
    License(&'a LicenseId),
    Key(KeyId),
    Request(&'a RequestId),
    KmsHost(&'a HostId),
    /// A disclosure of the key's text (`keys_disclosed`).
    Disclosure(KeyId),
}

impl Named<'_> {
    /// The bytes the index hashes: a tag byte that no UTF-8 text starts with (so no
    /// machine name hashes the same input), the kind, and the id (`u64 LE` for a key, UTF-8
    /// otherwise). Part of the stored format (docs/format.md, "Machine index").
    pub fn index_bytes(&self) -> Vec<u8> {
        let (kind, id): (u8, &[u8]) = match self {
            Named::License(id) => (b'l', id.as_str().as_bytes()),
            Named::Key(id) => return [&[0xff, b'k'][..], &id.0.to_le_bytes()].concat(),
            Named::Disclosure(id) => return [&[0xff, b'd'][..], &id.0.to_le_bytes()].concat(),
            Named::Request(id) => (b'r', id.as_str().as_bytes()),
            Named::KmsHost(id) => (b'h', id.as_str().as_bytes()),
        };
        [&[0xff, kind][..], id].concat()
    }
}
