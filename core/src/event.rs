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
            $(
                #[doc = concat!("`", $text, "`: the [`EventBody`] variant of the same name.")]
                $variant,
            )+
        }

        impl EventKind {
            /// Every kind, in the order of [`EventBody`]'s variants.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)+];

            /// The stable snake_case name of the kind.
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
    StreamsCommitted = "streams_committed",
}

/// One fact, with when it happened (business time) and who caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// When it happened (business time: the command's, never the wall clock).
    pub at: Timestamp,
    /// Who caused it: the principal of the command.
    pub actor: Principal,
    /// What happened.
    pub body: EventBody,
}

/// A coverage period `[start, end)` (R11, R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Coverage {
    /// The first moment covered.
    pub start: Timestamp,
    /// The first moment no longer covered.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CoveragePhase {
    /// Before the period starts.
    NotStarted,
    /// Inside the period.
    Active,
    /// At or after its end.
    Ended,
}

/// What an activation attempt asked for; kept with a recorded refusal (R10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivationAttempt {
    /// A MAK activation, by the count of machines it named.
    Mak {
        /// The org the activation named.
        org: OrgId,
        /// The activation method asked for.
        method: ActivationMethod,
        /// How many machines were named (the count alone: older logs, and large or unknown-key
        /// refusals).
        machines: u32,
    },
    /// A KMS host activation.
    KmsHost {
        /// The org the host activation named.
        org: OrgId,
        /// The KMS host, by its name.
        host: HostId,
    },
    /// A KMS client's contact.
    KmsClient {
        /// The KMS host, by its name.
        host: HostId,
        /// The KMS client machine, by its name.
        client: ClientId,
        /// The client's family.
        family: ClientFamily,
    },
    /// An OSA redemption.
    Osa {
        /// The tenant an OSA key is redeemed into (R20).
        tenant: TenantId,
    },
    /// A MAK activation on a known key naming its machines, so that a machine's history
    /// shows the refusals it met. `Mak` (the count alone) is what older logs hold, and
    /// what a refusal on an unknown key or naming more than
    /// `decide::REFUSAL_MACHINES_NAMED_MAX` machines is recorded as.
    MakMachines {
        /// The org the activation named.
        org: OrgId,
        /// The activation method asked for.
        method: ActivationMethod,
        /// The machines named, at most `REFUSAL_MACHINES_NAMED_MAX` of them (R10).
        machines: Vec<MachineId>,
    },
}

/// Every event type. Past tense: these happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    /// R3: a principal became an operator (the first one by `init`).
    OperatorAdded {
        /// The principal made an operator (R3).
        principal: Principal,
    },
    /// An org was registered (R7).
    OrgRegistered {
        /// The org's id.
        org: OrgId,
        /// The org's name.
        name: String,
        /// The org it belongs under; `None` for the root of an ownership structure (R7).
        parent: Option<OrgId>,
    },
    /// A license ID was registered.
    LicenseIdRegistered {
        /// The license ID registered.
        license_id: LicenseId,
        /// The org it belongs to (R7).
        org: OrgId,
        /// The volume-licensing program of the agreement.
        program: Program,
        /// The agreement's number, as on the licensor's paperwork.
        agreement_number: String,
        /// The authorization number, when the program issues one.
        authorization_number: Option<String>,
        /// The purchase account, when the program has one.
        purchase_account: Option<String>,
    },
    /// A product entered the catalog.
    ProductRegistered {
        /// The product's id.
        product: ProductId,
        /// The product's name.
        name: String,
        /// The product family (what KMS line and rules apply).
        family: Family,
        /// The product version, e.g. `11` or `2022`.
        version: String,
        /// The product edition, e.g. `pro` or `enterprise`.
        edition: String,
        /// What the product needs to run: a volume-license key, none, an embedded key, or a license
        /// server's number (R4-R6).
        key_requirement: KeyRequirement,
    },
    /// R7/R24: licenses bought; kept apart from activation counts.
    PurchaseRecorded {
        /// The license ID the licenses were bought under.
        license_id: LicenseId,
        /// The product, by its catalog id.
        product: ProductId,
        /// Licenses bought (R7, R24): not an activation count.
        quantity: u64,
    },
    /// A key was issued. `limit` counts activations or seats (0 for kinds without a count);
    /// `hosts_max`/`per_host_max` bound KMS host keys (0 otherwise).
    KeyIssued {
        /// The id the ledger gave the key.
        key_id: KeyId,
        /// The license ID the key is issued under.
        license_id: LicenseId,
        /// The product the key activates.
        product: ProductId,
        /// The kind of key.
        kind: KeyKind,
        /// Activations (MAK, ESU MAK) or seats (OSA) the key allows at issuance (R8).
        limit: u64,
        /// KMS hosts a KMS host key may activate (R13); 0 for other kinds.
        hosts_max: u32,
        /// Activations of one host a KMS host key allows (R13); 0 for other kinds.
        per_host_max: u32,
        /// An ESU MAK's coverage period (R11).
        coverage: Option<Coverage>,
        /// The BLAKE3 fingerprint of the key text (the text itself is kept outside the chain).
        fingerprint: Fingerprint,
        /// The key text's last five characters, which everyone may see (R1).
        last5: Last5,
    },
    /// A key was blocked.
    KeyBlocked {
        /// The key blocked.
        key_id: KeyId,
    },
    /// R11.
    EsuOrdered {
        /// The order's id.
        order_id: OrderId,
        /// The license ID (a volume-licensing agreement's enrollment) it concerns.
        license_id: LicenseId,
        /// The product, by its catalog id.
        product: ProductId,
        /// The coverage period ordered (R11).
        coverage: Coverage,
    },
    /// R9: `machines` are the newly consumed ones; `already_active` counts machines of the
    /// request that were active on the key before and consumed nothing.
    MachinesActivated {
        /// The MAK that activated them.
        key_id: KeyId,
        /// The org the machines belong to (R7).
        org: OrgId,
        /// How the machines were activated: online, by phone or by proxy (R9).
        method: ActivationMethod,
        /// The machines activated: each consumed one activation (R9).
        machines: Vec<MachineId>,
        /// Machines of the command that were active already (consumed nothing; named in the
        /// `machines_already_active` event that follows).
        already_active: u32,
    },
    /// R13: `activation` is 1 for a host's first activation on this key, up to `per_host_max`.
    KmsHostActivated {
        /// The KMS host key.
        key_id: KeyId,
        /// The org the host belongs to (R7).
        org: OrgId,
        /// The host activated.
        host: HostId,
        /// Which activation of this host on the key it was, from 1 (R13).
        activation: u32,
    },
    /// R14: a client contacted a host; `count` is the host's count for the client's line
    /// (Windows or Office) including this contact.
    KmsClientContacted {
        /// The KMS host contacted.
        host: HostId,
        /// The client that contacted it.
        client: ClientId,
        /// The client's family (its line and threshold, R14).
        family: ClientFamily,
        /// The host's count for the client's line when it answered (R14).
        count: u32,
        /// What the host answered: activated, already active, or pending its threshold (R14).
        status: ActivationStatus,
    },
    /// R20.
    OsaRedeemed {
        /// The OSA key redeemed.
        key_id: KeyId,
        /// The tenant it was redeemed into (R20).
        tenant: TenantId,
    },
    /// R10: a refused activation, with the reason and, for R9, the remaining count.
    ActivationRefused {
        /// The key presented, when the ledger knows it.
        key_id: Option<KeyId>,
        /// What the refused activation asked for.
        attempt: ActivationAttempt,
        /// Why it was refused (R10).
        code: RefusalCode,
        /// For `insufficient_activations`, what was left (R9).
        remaining: Option<u64>,
    },
    /// R17.
    MakIncreaseRequested {
        /// The request, by the id its requester chose.
        request_id: RequestId,
        /// The license ID (a volume-licensing agreement's enrollment) it concerns.
        license_id: LicenseId,
        /// The product, by its catalog id.
        product: ProductId,
        /// The MAK the request would raise.
        key_id: KeyId,
        /// Activations the request asks for (R17).
        activations_needed: u64,
        /// Why the request is made, in the requester's words (R17, R18).
        justification: String,
    },
    /// R18. `key_id` is the KMS host key to raise, for `additional_hosts`.
    KmsRequested {
        /// The request, by the id its requester chose.
        request_id: RequestId,
        /// The license ID (a volume-licensing agreement's enrollment) it concerns.
        license_id: LicenseId,
        /// The product, by its catalog id.
        product: ProductId,
        /// Why KMS is asked for (R18).
        reason: KmsRequestReason,
        /// The KMS host key the request would raise, if it names one.
        key_id: Option<KeyId>,
        /// KMS host activations the request asks for (R18).
        host_activations_needed: u32,
        /// Why the request is made, in the requester's words (R17, R18).
        justification: String,
    },
    /// R19: the actor granted `amount` (activations or KMS host activations).
    RequestGranted {
        /// The request granted.
        request_id: RequestId,
        /// Activations granted (R19).
        amount: u64,
    },
    /// R19.
    RequestDenied {
        /// The request denied.
        request_id: RequestId,
        /// Why it was denied.
        reason: String,
    },
    /// A principal got a role on a license ID.
    RoleAssigned {
        /// The principal who got the role.
        principal: Principal,
        /// The license ID the role is held on.
        license_id: LicenseId,
        /// The role assigned.
        role: Role,
    },
    /// A principal lost a role on a license ID.
    RoleRevoked {
        /// The principal who lost the role.
        principal: Principal,
        /// The license ID the role was held on.
        license_id: LicenseId,
        /// The role revoked.
        role: Role,
    },
    /// R1/R2: the actor saw these keys' text.
    KeysDisclosed {
        /// The keys whose text the actor was shown (R1).
        key_ids: Vec<KeyId>,
        /// How the text was shown: one key copied, or an export file (R1, R2).
        channel: DisclosureChannel,
        /// The BLAKE3 digest of the export file, for an export (R2).
        export_digest: Option<Digest>,
    },
    /// docs/rules.md, "Key text": the key's text was erased from the secrets; never disclosed again.
    KeyTextRetired {
        /// The key whose text was erased.
        key_id: KeyId,
        /// Why it was retired.
        reason: String,
    },
    /// Reconciliation: an outside activation service's count of a MAK, and the
    /// ledger's own remaining count when it was recorded, kept side by side as evidence.
    ExternalCountRecorded {
        /// The MAK the count is about.
        key_id: KeyId,
        /// Who reported the count, e.g. `microsoft-activation-service`.
        source: String,
        /// What the outside source says is left.
        remaining: u64,
        /// When the outside source reported the count.
        observed_at: Timestamp,
        /// A note on the observation, if any.
        note: Option<String>,
        /// What the ledger counted left when the outside count was recorded.
        ledger_remaining: u64,
    },
    /// R9: the machines of an activation that were active on the key already (the
    /// `already_active` of the `machines_activated` just before it, by name). Consumes
    /// nothing; recorded so that a machine's history shows every time it was named.
    MachinesAlreadyActive {
        /// The MAK the machines were named on.
        key_id: KeyId,
        /// The org of the activation.
        org: OrgId,
        /// The method of the activation.
        method: ActivationMethod,
        /// The machines named again while active (nothing consumed, R9).
        machines: Vec<MachineId>,
    },
    /// The ledger committed to its streams (docs/format.md, "Streams"): the root of the
    /// tree over every stream's entry after the first `size` events. Appended by the ledger
    /// itself at seq `size + 1`, so a checkpoint at its seq vouches for it.
    StreamsCommitted {
        /// The events the commitment covers: seqs `1..=size`.
        size: u64,
        /// How many streams the tree holds.
        streams: u64,
        /// The root of the streams tree.
        root: Digest,
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
            OperatorAdded { .. }
            | OrgRegistered { .. }
            | ProductRegistered { .. }
            | StreamsCommitted { .. } => Vec::new(),
        }
    }

    /// The streams the event belongs to (docs/format.md, "Streams"): the histories it is
    /// named in ([`EventBody::named`], a disclosure in each key's stream) and the org,
    /// product or operator list it defines. A statement proves a stream complete.
    pub fn streams(&self) -> Vec<Stream> {
        use EventBody::*;
        match self {
            OperatorAdded { .. } => vec![Stream::Operators],
            // A host's stream starts at its activation, so it is never empty.
            KmsHostActivated { key_id, host, .. } => {
                vec![Stream::Key(*key_id), Stream::KmsHost(host.clone())]
            }
            OrgRegistered { org, .. } => vec![Stream::Org(org.clone())],
            ProductRegistered { .. } => vec![Stream::Catalog],
            _ => self
                .named()
                .into_iter()
                .map(|named| match named {
                    Named::License(id) => Stream::License(id.clone()),
                    Named::Key(id) | Named::Disclosure(id) => Stream::Key(id),
                    Named::Request(id) => Stream::Request(id.clone()),
                    Named::KmsHost(id) => Stream::KmsHost(id.clone()),
                })
                .collect(),
        }
    }

    /// The streams a statement holding this event must hold too: those whose events folding
    /// it needs (the books assert on a broken reference) — the org a license ID or an
    /// activation belongs to, an org's parent, a key's license ID, a request's key, a host's
    /// key, the catalog for anything naming a product — and the histories it starts (a key issued, a request
    /// made, a host activated). A statement holds the streams its license ID's stream
    /// reaches this way (docs/proofs.md).
    pub fn depends_on(&self) -> Vec<Stream> {
        use EventBody::*;
        match self {
            LicenseIdRegistered { org, .. }
            | MachinesActivated { org, .. }
            | MachinesAlreadyActive { org, .. } => vec![Stream::Org(org.clone())],
            OrgRegistered { parent, .. } => parent.iter().cloned().map(Stream::Org).collect(),
            KeyIssued {
                key_id, license_id, ..
            } => vec![
                Stream::License(license_id.clone()),
                Stream::Catalog,
                Stream::Key(*key_id),
            ],
            PurchaseRecorded { .. } | EsuOrdered { .. } => vec![Stream::Catalog],
            MakIncreaseRequested {
                request_id, key_id, ..
            } => vec![
                Stream::Request(request_id.clone()),
                Stream::Catalog,
                Stream::Key(*key_id),
            ],
            KmsRequested {
                request_id, key_id, ..
            } => {
                let mut needs = vec![Stream::Request(request_id.clone()), Stream::Catalog];
                needs.extend(key_id.map(Stream::Key));
                needs
            }
            KmsHostActivated {
                key_id, host, org, ..
            } => vec![
                Stream::Key(*key_id),
                Stream::KmsHost(host.clone()),
                Stream::Org(org.clone()),
            ],
            OperatorAdded { .. }
            | ProductRegistered { .. }
            | KeyBlocked { .. }
            | KmsClientContacted { .. }
            | OsaRedeemed { .. }
            | ActivationRefused { .. }
            | RequestGranted { .. }
            | RequestDenied { .. }
            | RoleAssigned { .. }
            | RoleRevoked { .. }
            | KeysDisclosed { .. }
            | KeyTextRetired { .. }
            | ExternalCountRecorded { .. }
            | StreamsCommitted { .. } => Vec::new(),
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
    /// A license ID's history.
    License(&'a LicenseId),
    /// A key's history.
    Key(KeyId),
    /// A request's history.
    Request(&'a RequestId),
    /// A KMS host's history (the contacts it served).
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

/// A stream: the events of one entity, in log order (docs/format.md, "Streams").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    /// The operators (`operator_added`).
    Operators,
    /// An org's registration.
    Org(OrgId),
    /// The product catalog: every product's registration (a report's downgrade rights read
    /// the whole of it, R21).
    Catalog,
    /// A license ID's own events: registration, purchases, orders, roles, keys issued,
    /// requests made.
    License(LicenseId),
    /// A key's events after its issuance: activations, refusals, blocks, disclosures.
    Key(KeyId),
    /// A request's events: made, granted or denied.
    Request(RequestId),
    /// The client contacts a KMS host answered.
    KmsHost(HostId),
}

impl Stream {
    /// The stream's id as statements write it and the streams tree sorts it:
    /// `operators`, `org:ID`, `catalog`, `license:ID`, `key:N`, `request:ID`, `kms_host:ID`.
    pub fn id(&self) -> String {
        match self {
            Stream::Operators => "operators".to_owned(),
            Stream::Org(id) => format!("org:{id}"),
            Stream::Catalog => "catalog".to_owned(),
            Stream::License(id) => format!("license:{id}"),
            Stream::Key(id) => format!("key:{}", id.0),
            Stream::Request(id) => format!("request:{id}"),
            Stream::KmsHost(id) => format!("kms_host:{id}"),
        }
    }
}
