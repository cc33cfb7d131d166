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
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum RefusalCode {
            $($(#[$doc])* $variant,)+
        }

        impl RefusalCode {
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant,)+];

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
    UnknownOrg = "unknown_org",
    UnknownLicenseId = "unknown_license_id",
    UnknownProduct = "unknown_product",
    UnknownKey = "unknown_key",
    UnknownHost = "unknown_host",
    UnknownRequest = "unknown_request",
    /// An id was reused.
    AlreadyExists = "already_exists",
    /// A value out of range.
    Invalid = "invalid",
    /// R4, R5, R6.
    NoKeyRequired = "no_key_required",
    WrongKeyKind = "wrong_key_kind",
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
        rule: &'static str,
        actor: String,
        needs: String,
    },
    #[error("no org {0}")]
    UnknownOrg(OrgId),
    #[error("no license ID {0}")]
    UnknownLicenseId(LicenseId),
    #[error("no product {0}")]
    UnknownProduct(ProductId),
    /// No key matches (a presented key text or a key id).
    #[error("no such key: {0}")]
    UnknownKey(String),
    #[error("no KMS host {0} has been activated")]
    UnknownHost(HostId),
    #[error("no request {0}")]
    UnknownRequest(RequestId),
    /// `what` names the thing whose id was reused.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A value out of range; the text says which field and why.
    #[error("{0}")]
    Invalid(String),
    #[error("R4/R5/R6: product {product} has key requirement {requirement}: {detail}")]
    NoKeyRequired {
        product: ProductId,
        requirement: KeyRequirement,
        detail: &'static str,
    },
    #[error("key {key} is a {kind} key; {expected}")]
    WrongKeyKind {
        key: String,
        kind: KeyKind,
        expected: &'static str,
    },
    #[error("key {0} is blocked")]
    KeyBlocked(KeyId),
    #[error("R7: org {org} is outside the ownership structure of license ID {license_id}")]
    OutsideOwnershipStructure { org: OrgId, license_id: LicenseId },
    #[error("R9: key {key_id} has {remaining} activations remaining; the request needs {needed}")]
    InsufficientActivations {
        key_id: KeyId,
        remaining: u64,
        needed: u64,
    },
    #[error("R12: ESU coverage of key {key_id} starts at {start}")]
    EsuCoverageNotStarted { key_id: KeyId, start: Timestamp },
    #[error("R12: ESU coverage of key {key_id} ended at {end}")]
    EsuCoverageEnded { key_id: KeyId, end: Timestamp },
    #[error("R13: key {key_id} already activated its {hosts_max} KMS hosts")]
    KmsHostLimitReached { key_id: KeyId, hosts_max: u64 },
    #[error("R13: host {host} was activated {per_host_max} times on key {key_id}")]
    KmsHostReactivationLimit {
        key_id: KeyId,
        host: HostId,
        per_host_max: u32,
    },
    #[error("R15: host {0} has no Office KMS host key")]
    NoOfficeKmsKeyOnHost(HostId),
    #[error("R14: host {0} has no Windows KMS host key")]
    NoWindowsKmsKeyOnHost(HostId),
    #[error("R15: host {host} already holds Office KMS key {key_id}")]
    OfficeKmsKeyAlreadyInstalled { host: HostId, key_id: KeyId },
    #[error("R17: no MAK of product {product} under license ID {license_id} ends in {last5}")]
    KeyLast5Mismatch {
        license_id: LicenseId,
        product: ProductId,
        last5: String,
    },
    #[error("R18: Open License was retired in December 2021; KMS requests are not accepted")]
    OpenLicenseRetired,
    #[error("R18: program {program} cannot ask for the Open Value KMS exception")]
    ProgramNotEligible { program: Program },
    #[error("R19: request {0} was already decided")]
    RequestAlreadyDecided(RequestId),
    #[error("R19: {0} made this request and cannot decide it")]
    SamePrincipal(String),
    #[error("R20: OSA key {key_id} was already redeemed")]
    AlreadyRedeemed { key_id: KeyId },
    #[error("{what} would reach {total}; counts are at most {max}", max = COUNT_MAX)]
    CountOverMaximum { what: String, total: u128 },
    #[error("command time {at} is earlier than the newest event at {newest}")]
    TimeRegression { at: Timestamp, newest: Timestamp },
    #[error("key {0}: its text was retired; the ledger no longer holds it")]
    KeyTextRetired(KeyId),
}

impl Refusal {
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
