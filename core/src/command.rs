//! Commands: what a caller asks of the ledger (docs/api.md).
//!
//! A command is a `CommandBody` (one struct per `type`) plus the common fields `at`,
//! `actor` and `command_id`. On the wire it is one flat JSON object; the flat form is read
//! and written by `keyledger_ledger::wire`, which needs a JSON library `core` must not
//! depend on. Every body struct denies unknown fields, so a typo is an error, not a silently
//! dropped value.

use serde::{Deserialize, Serialize};

use crate::catalog::{
    ActivationMethod, ClientFamily, DisclosureChannel, Family, KeyKind, KeyRequirement,
    KmsRequestReason, Program, Role,
};
use crate::ids::{
    ClientId, CommandId, HostId, KeyId, LicenseId, MachineId, OrderId, OrgId, Principal, ProductId,
    RequestId, TenantId,
};
use crate::product_key::{Last5, ProductKeyText};
use crate::{Digest, Timestamp};

/// One command with its common fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Business time; decisions use it, never the wall clock.
    pub at: Timestamp,
    /// The principal (or, for activations, the calling machine or tool).
    pub actor: Principal,
    /// Makes the command safe to resend: the ledger answers a seen id with its first answer.
    pub command_id: Option<CommandId>,
    pub body: CommandBody,
}

/// Every command type, named as the JSON `type` field names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandBody {
    AddOperator(AddOperator),
    RegisterOrg(RegisterOrg),
    RegisterLicenseId(RegisterLicenseId),
    RegisterProduct(RegisterProduct),
    RecordPurchase(RecordPurchase),
    IssueKey(IssueKey),
    BlockKey(BlockKey),
    OrderEsu(OrderEsu),
    Activate(Activate),
    ActivateKmsHost(ActivateKmsHost),
    ActivateKmsClient(ActivateKmsClient),
    RedeemOsa(RedeemOsa),
    RequestMakIncrease(RequestMakIncrease),
    RequestKms(RequestKms),
    GrantRequest(GrantRequest),
    DenyRequest(DenyRequest),
    AssignRole(AssignRole),
    RevokeRole(RevokeRole),
    DiscloseKeys(DiscloseKeys),
    RetireKeyText(RetireKeyText),
    RecordExternalCount(RecordExternalCount),
}

impl CommandBody {
    /// The JSON `type` of this command.
    pub fn type_name(&self) -> &'static str {
        match self {
            CommandBody::AddOperator(_) => "add_operator",
            CommandBody::RegisterOrg(_) => "register_org",
            CommandBody::RegisterLicenseId(_) => "register_license_id",
            CommandBody::RegisterProduct(_) => "register_product",
            CommandBody::RecordPurchase(_) => "record_purchase",
            CommandBody::IssueKey(_) => "issue_key",
            CommandBody::BlockKey(_) => "block_key",
            CommandBody::OrderEsu(_) => "order_esu",
            CommandBody::Activate(_) => "activate",
            CommandBody::ActivateKmsHost(_) => "activate_kms_host",
            CommandBody::ActivateKmsClient(_) => "activate_kms_client",
            CommandBody::RedeemOsa(_) => "redeem_osa",
            CommandBody::RequestMakIncrease(_) => "request_mak_increase",
            CommandBody::RequestKms(_) => "request_kms",
            CommandBody::GrantRequest(_) => "grant_request",
            CommandBody::DenyRequest(_) => "deny_request",
            CommandBody::AssignRole(_) => "assign_role",
            CommandBody::RevokeRole(_) => "revoke_role",
            CommandBody::DiscloseKeys(_) => "disclose_keys",
            CommandBody::RetireKeyText(_) => "retire_key_text",
            CommandBody::RecordExternalCount(_) => "record_external_count",
        }
    }

    /// Activation commands are authorised by what they present, not by a role (R3 in
    /// docs/rules.md), and their refusals are recorded (R10).
    pub fn is_activation(&self) -> bool {
        matches!(
            self,
            CommandBody::Activate(_)
                | CommandBody::ActivateKmsHost(_)
                | CommandBody::ActivateKmsClient(_)
                | CommandBody::RedeemOsa(_)
        )
    }

    /// The key text this command presents, whose fingerprint the caller must put in the
    /// [`crate::Context`].
    pub fn presented_key(&self) -> Option<&ProductKeyText> {
        match self {
            CommandBody::Activate(c) => Some(&c.product_key),
            CommandBody::ActivateKmsHost(c) => Some(&c.product_key),
            CommandBody::RedeemOsa(c) => Some(&c.product_key),
            CommandBody::IssueKey(c) => c.product_key.as_ref(),
            _ => None,
        }
    }

    /// Whether deciding this command may issue a key whose text the caller must generate.
    pub fn may_generate_key(&self) -> bool {
        match self {
            CommandBody::IssueKey(c) => c.product_key.is_none(),
            CommandBody::GrantRequest(_) => true,
            _ => false,
        }
    }
}

/// R3: adds an operator. On an empty ledger this is `init`: the first operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddOperator {
    pub principal: Principal,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterOrg {
    pub org: OrgId,
    pub name: String,
    #[serde(default)]
    pub parent: Option<OrgId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterLicenseId {
    pub license_id: LicenseId,
    pub org: OrgId,
    pub program: Program,
    pub agreement_number: String,
    #[serde(default)]
    pub authorization_number: Option<String>,
    #[serde(default)]
    pub purchase_account: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterProduct {
    pub product: ProductId,
    pub name: String,
    pub family: Family,
    pub version: String,
    pub edition: String,
    pub key_requirement: KeyRequirement,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordPurchase {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub quantity: u64,
}

/// Issues a key. `limit` counts activations (MAK, ESU MAK) or seats (OSA); `hosts` and
/// `per_host` bound a KMS host key (R13, defaults 6 and 10). Without `product_key` the
/// caller generates the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub kind: KeyKind,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub hosts: Option<u32>,
    #[serde(default)]
    pub per_host: Option<u32>,
    #[serde(default)]
    pub coverage_start: Option<Timestamp>,
    #[serde(default)]
    pub coverage_end: Option<Timestamp>,
    #[serde(default)]
    pub product_key: Option<ProductKeyText>,
}

impl IssueKey {
    /// A key of `kind` for `product` under `license_id`, every optional term left out (the
    /// kind's defaults apply; the text is generated).
    pub fn new(license_id: LicenseId, product: ProductId, kind: KeyKind) -> IssueKey {
        IssueKey {
            license_id,
            product,
            kind,
            limit: None,
            hosts: None,
            per_host: None,
            coverage_start: None,
            coverage_end: None,
            product_key: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockKey {
    pub key_id: KeyId,
}

/// Erases a key's text from the ledger's secrets (docs/rules.md, "Key text": key text lives outside the
/// chain so that it can be erased): after it the text is never disclosed again. The key and
/// its history stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireKeyText {
    pub key_id: KeyId,
    /// Why (e.g. "posted publicly"), 1..=500 characters; recorded in the log.
    pub reason: String,
}

/// Records what an outside activation service (e.g. VAMT's "refresh remaining count")
/// reports of a MAK, as evidence beside the ledger's own count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordExternalCount {
    pub key_id: KeyId,
    /// Who reported it, e.g. "microsoft-activation-service" (1..=128 bytes).
    pub source: String,
    /// The activations the source says are left.
    pub remaining: u64,
    /// When the source said so; not after the command's own time.
    pub observed_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEsu {
    pub order_id: OrderId,
    pub license_id: LicenseId,
    pub product: ProductId,
    pub coverage_start: Timestamp,
    pub coverage_end: Timestamp,
}

/// R9: a MAK (or ESU MAK) activation of one machine, or of up to 10,000 by proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    pub product_key: ProductKeyText,
    pub org: OrgId,
    pub method: ActivationMethod,
    pub machines: Vec<MachineId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateKmsHost {
    pub product_key: ProductKeyText,
    pub org: OrgId,
    pub host: HostId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateKmsClient {
    pub host: HostId,
    pub client: ClientId,
    pub family: ClientFamily,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemOsa {
    pub product_key: ProductKeyText,
    pub tenant: TenantId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestMakIncrease {
    pub request_id: RequestId,
    pub license_id: LicenseId,
    #[serde(default)]
    pub authorization_number: Option<String>,
    pub product: ProductId,
    pub key_last5: Last5,
    pub activations_needed: u64,
    pub justification: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestKms {
    pub request_id: RequestId,
    pub license_id: LicenseId,
    pub product: ProductId,
    pub reason: KmsRequestReason,
    pub host_activations_needed: u32,
    pub justification: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub request_id: RequestId,
    pub amount: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    pub request_id: RequestId,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    pub principal: Principal,
    pub license_id: LicenseId,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRole {
    pub principal: Principal,
    pub license_id: LicenseId,
    pub role: Role,
}

/// R1/R2: the actor is about to see these keys' text. The ledger records the disclosure
/// before it hands out a single key; an export names the BLAKE3 digest of its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscloseKeys {
    pub key_ids: Vec<KeyId>,
    pub channel: DisclosureChannel,
    #[serde(default)]
    pub export_digest: Option<Digest>,
}
