//! Refusals: a business rule said no. Codes are stable API (docs/api.md); tests assert them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{KeyKind, KeyRequirement, Program};
use crate::ids::{HostId, KeyId, LicenseId, OrgId, ProductId, RequestId};
use crate::Timestamp;

macro_rules! refusal_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)+) => {
        /// The stable code of a refusal. Written to the log inside recorded refusals (R10),
        /// so variants are only ever appended.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum RefusalCode {
            $($(#[$doc])* $variant,)+
        }

        impl RefusalCode {
            /// Every code, in the order of their variant index.
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant,)+];

            /// The stable snake_case code answers carry.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RefusalCode::$variant => $text,)+
                }
            }
        }
    };
}

refusal_codes! {
    /// A role or the operator flag is missing.
    Forbidden = "forbidden",
    /// No org has the id named.
    UnknownOrg = "unknown_org",
    /// No license ID has the id named.
    UnknownLicenseId = "unknown_license_id",
    /// No product has the id named.
    UnknownProduct = "unknown_product",
    /// No key matches the text or id named.
    UnknownKey = "unknown_key",
    /// No KMS host of the name was activated.
    UnknownHost = "unknown_host",
    /// No request has the id named.
    UnknownRequest = "unknown_request",
    /// An id was reused.
    AlreadyExists = "already_exists",
    /// A value out of range.
    Invalid = "invalid",
    /// R4, R5, R6.
    NoKeyRequired = "no_key_required",
    /// The key is of another kind than the command needs.
    WrongKeyKind = "wrong_key_kind",
    /// The key was blocked.
    KeyBlocked = "key_blocked",
    /// R7.
    OutsideOwnershipStructure = "outside_ownership_structure",
    /// R9.
    InsufficientActivations = "insufficient_activations",
    /// R12.
    EsuCoverageNotStarted = "esu_coverage_not_started",
    /// R12.
    EsuCoverageEnded = "esu_coverage_ended",
    /// R13.
    KmsHostLimitReached = "kms_host_limit_reached",
    /// R13.
    KmsHostReactivationLimit = "kms_host_reactivation_limit",
    /// R15.
    NoOfficeKmsKeyOnHost = "no_office_kms_key_on_host",
    /// R15.
    OfficeKmsKeyAlreadyInstalled = "office_kms_key_already_installed",
    /// R17.
    KeyLast5Mismatch = "key_last5_mismatch",
    /// R18.
    OpenLicenseRetired = "open_license_retired",
    /// R18.
    ProgramNotEligible = "program_not_eligible",
    /// R19.
    RequestAlreadyDecided = "request_already_decided",
    /// R19.
    SamePrincipal = "same_principal",
    /// A command's `at` is earlier than the newest event; never recorded.
    TimeRegression = "time_regression",
    /// R14/R15: a Windows client asked a host that has no Windows KMS host key.
    NoWindowsKmsKeyOnHost = "no_windows_kms_key_on_host",
    /// R20: an OSA key is redeemed into one tenant, once.
    AlreadyRedeemed = "already_redeemed",
    /// Counts that combine (a key's limit and grants, a host allowance, purchases) would
    /// pass `COUNT_MAX`.
    CountOverMaximum = "count_over_maximum",
    /// R1 (docs/rules.md, "Key text"): a key whose text was retired cannot be disclosed or retired again.
    KeyTextRetired = "key_text_retired",
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The largest count a command may carry or a key, a host allowance or a purchase total may
/// reach: activation limits, seats, grants, purchases, KMS hosts and activations per host.
/// A billion is far above any volume-license agreement and far below where `u64` (or the
/// `u32` of KMS counts) could wrap, so no sum of counts the ledger accepts can overflow.
pub const COUNT_MAX: u64 = 1_000_000_000;

/// A business rule said no. `Display` is the message of the answer; [`Refusal::code`] its
/// stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The actor lacks what `rule` asks for.
    #[error("{rule}: {actor} {needs}")]
    Forbidden {
        /// The rule that refused (`R1`, `R3`, ...).
        rule: &'static str,
        /// Who asked.
        actor: String,
        /// What the actor lacks, in words.
        needs: String,
    },
    /// No org has this id.
    #[error("no org {0}")]
    UnknownOrg(OrgId),
    /// No license ID has this id.
    #[error("no license ID {0}")]
    UnknownLicenseId(LicenseId),
    /// No product has this id.
    #[error("no product {0}")]
    UnknownProduct(ProductId),
    /// No key matches (a presented key text or a key id).
    #[error("no such key: {0}")]
    UnknownKey(String),
    /// No KMS host of this name was activated.
    #[error("no KMS host {0} has been activated")]
    UnknownHost(HostId),
    /// No request has this id.
    #[error("no request {0}")]
    UnknownRequest(RequestId),
    /// `what` names the thing whose id was reused.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A value out of range; the text says which field and why.
    #[error("{0}")]
    Invalid(String),
    /// R4-R6: the product takes no volume-license key of this kind.
    #[error("R4/R5/R6: product {product} has key requirement {requirement}: {detail}")]
    NoKeyRequired {
        /// The product, by its catalog id.
        product: ProductId,
        /// The product's key requirement.
        requirement: KeyRequirement,
        /// What to do instead.
        detail: &'static str,
    },
    /// The key is of another kind than the command needs.
    #[error("key {key} is a {kind} key; {expected}")]
    WrongKeyKind {
        /// The key, as the command named it.
        key: String,
        /// The key's kind.
        kind: KeyKind,
        /// What the command needed, in words.
        expected: &'static str,
    },
    /// The key was blocked.
    #[error("key {0} is blocked")]
    KeyBlocked(KeyId),
    /// R7: the org is outside the key's ownership structure.
    #[error("R7: org {org} is outside the ownership structure of license ID {license_id}")]
    OutsideOwnershipStructure {
        /// The org the command named.
        org: OrgId,
        /// The key's license ID, whose structure it is outside of.
        license_id: LicenseId,
    },
    /// R9: too few activations left for every machine named.
    #[error("R9: key {key_id} has {remaining} activations remaining; the request needs {needed}")]
    InsufficientActivations {
        /// The key, by the id the ledger gave it at issuance.
        key_id: KeyId,
        /// Activations left on the key.
        remaining: u64,
        /// Activations the command needed.
        needed: u64,
    },
    /// R12: the ESU coverage has not started.
    #[error("R12: ESU coverage of key {key_id} starts at {start}")]
    EsuCoverageNotStarted {
        /// The key, by the id the ledger gave it at issuance.
        key_id: KeyId,
        /// When the coverage starts.
        start: Timestamp,
    },
    /// R12: the ESU coverage has ended.
    #[error("R12: ESU coverage of key {key_id} ended at {end}")]
    EsuCoverageEnded {
        /// The key, by the id the ledger gave it at issuance.
        key_id: KeyId,
        /// When the coverage ended.
        end: Timestamp,
    },
    /// R13: the KMS host key activated all the hosts it allows.
    #[error("R13: key {key_id} already activated its {hosts_max} KMS hosts")]
    KmsHostLimitReached {
        /// The key, by the id the ledger gave it at issuance.
        key_id: KeyId,
        /// The hosts the key allows.
        hosts_max: u64,
    },
    /// R13: this host was activated as often as the key allows.
    #[error("R13: host {host} was activated {per_host_max} times on key {key_id}")]
    KmsHostReactivationLimit {
        /// The key, by the id the ledger gave it at issuance.
        key_id: KeyId,
        /// The host activated too often.
        host: HostId,
        /// Activations of one host the key allows.
        per_host_max: u32,
    },
    /// R15: an Office client contacted a host without an Office KMS host key.
    #[error("R15: host {0} has no Office KMS host key")]
    NoOfficeKmsKeyOnHost(HostId),
    /// R14: a Windows client contacted a host without a Windows KMS host key.
    #[error("R14: host {0} has no Windows KMS host key")]
    NoWindowsKmsKeyOnHost(HostId),
    /// R15: the host holds an Office KMS host key already.
    #[error("R15: host {host} already holds Office KMS key {key_id}")]
    OfficeKmsKeyAlreadyInstalled {
        /// The host.
        host: HostId,
        /// The Office KMS host key it holds already (R15: one per host).
        key_id: KeyId,
    },
    /// R17: no MAK of the license ID and product ends in these five characters.
    #[error("R17: no MAK of product {product} under license ID {license_id} ends in {last5}")]
    KeyLast5Mismatch {
        /// The license ID the request named.
        license_id: LicenseId,
        /// The product the request named.
        product: ProductId,
        /// The last five characters the request gave.
        last5: String,
    },
    /// R18: Open License was retired: it asks for no KMS.
    #[error("R18: Open License was retired in December 2021; KMS requests are not accepted")]
    OpenLicenseRetired,
    /// R18: the program cannot ask for the Open Value KMS exception.
    #[error("R18: program {program} cannot ask for the Open Value KMS exception")]
    ProgramNotEligible {
        /// The license ID's program.
        program: Program,
    },
    /// R19: the request was decided already.
    #[error("R19: request {0} was already decided")]
    RequestAlreadyDecided(RequestId),
    /// R19: the requester may not decide their own request.
    #[error("R19: {0} made this request and cannot decide it")]
    SamePrincipal(String),
    /// R20: the OSA key was redeemed already.
    #[error("R20: OSA key {key_id} was already redeemed")]
    AlreadyRedeemed {
        /// The OSA key.
        key_id: KeyId,
    },
    /// A count would pass `COUNT_MAX`.
    #[error("{what} would reach {total}; counts are at most {max}", max = COUNT_MAX)]
    CountOverMaximum {
        /// Which count, in words.
        what: String,
        /// The total it would reach.
        total: u128,
    },
    /// The command's business time is before the newest event's.
    #[error("command time {at} is earlier than the newest event at {newest}")]
    TimeRegression {
        /// The command's business time.
        at: Timestamp,
        /// The business time of the newest event in the log.
        newest: Timestamp,
    },
    /// The key's text was retired: it is never disclosed again.
    #[error("key {0}: its text was retired; the ledger no longer holds it")]
    KeyTextRetired(KeyId),
}

impl Refusal {
    /// The stable code of this refusal (docs/api.md).
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::Forbidden { .. } => RefusalCode::Forbidden,
            Refusal::UnknownOrg(_) => RefusalCode::UnknownOrg,
            Refusal::UnknownLicenseId(_) => RefusalCode::UnknownLicenseId,
            Refusal::UnknownProduct(_) => RefusalCode::UnknownProduct,
            Refusal::UnknownKey(_) => RefusalCode::UnknownKey,
            Refusal::UnknownHost(_) => RefusalCode::UnknownHost,
            Refusal::UnknownRequest(_) => RefusalCode::UnknownRequest,
            Refusal::AlreadyExists(_) => RefusalCode::AlreadyExists,
            Refusal::Invalid(_) => RefusalCode::Invalid,
            Refusal::NoKeyRequired { .. } => RefusalCode::NoKeyRequired,
            Refusal::WrongKeyKind { .. } => RefusalCode::WrongKeyKind,
            Refusal::KeyBlocked(_) => RefusalCode::KeyBlocked,
            Refusal::OutsideOwnershipStructure { .. } => RefusalCode::OutsideOwnershipStructure,
            Refusal::InsufficientActivations { .. } => RefusalCode::InsufficientActivations,
            Refusal::EsuCoverageNotStarted { .. } => RefusalCode::EsuCoverageNotStarted,
            Refusal::EsuCoverageEnded { .. } => RefusalCode::EsuCoverageEnded,
            Refusal::KmsHostLimitReached { .. } => RefusalCode::KmsHostLimitReached,
            Refusal::KmsHostReactivationLimit { .. } => RefusalCode::KmsHostReactivationLimit,
            Refusal::NoOfficeKmsKeyOnHost(_) => RefusalCode::NoOfficeKmsKeyOnHost,
            Refusal::NoWindowsKmsKeyOnHost(_) => RefusalCode::NoWindowsKmsKeyOnHost,
            Refusal::OfficeKmsKeyAlreadyInstalled { .. } => {
                RefusalCode::OfficeKmsKeyAlreadyInstalled
            }
            Refusal::KeyLast5Mismatch { .. } => RefusalCode::KeyLast5Mismatch,
            Refusal::OpenLicenseRetired => RefusalCode::OpenLicenseRetired,
            Refusal::ProgramNotEligible { .. } => RefusalCode::ProgramNotEligible,
            Refusal::RequestAlreadyDecided(_) => RefusalCode::RequestAlreadyDecided,
            Refusal::SamePrincipal(_) => RefusalCode::SamePrincipal,
            Refusal::AlreadyRedeemed { .. } => RefusalCode::AlreadyRedeemed,
            Refusal::CountOverMaximum { .. } => RefusalCode::CountOverMaximum,
            Refusal::TimeRegression { .. } => RefusalCode::TimeRegression,
            Refusal::KeyTextRetired(_) => RefusalCode::KeyTextRetired,
        }
    }

    /// R9: the remaining activations a refusal reports, if it is about exhaustion.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Refusal::InsufficientActivations { remaining, .. } => Some(*remaining),
            _ => None,
        }
    }

    /// The rule id a `forbidden` refusal cites (an HTTP 403 names it).
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            Refusal::Forbidden { rule, .. } => Some(rule),
            _ => None,
        }
    }
}
