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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Command {
    /// Business time; decisions use it, never the wall clock.
    pub at: Timestamp,
    /// The principal (or, for activations, the calling machine or tool).
    pub actor: Principal,
    /// Makes the command safe to resend: the ledger answers a seen id with its first answer.
    pub command_id: Option<CommandId>,
    /// What the command asks, by its type.
    pub body: CommandBody,
}

/// Every command type, named as the JSON `type` field names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandBody {
    /// See [`AddOperator`].
    AddOperator(AddOperator),
    /// See [`RegisterOrg`].
    RegisterOrg(RegisterOrg),
    /// See [`RegisterLicenseId`].
    RegisterLicenseId(RegisterLicenseId),
    /// See [`RegisterProduct`].
    RegisterProduct(RegisterProduct),
    /// See [`RecordPurchase`].
    RecordPurchase(RecordPurchase),
    /// See [`IssueKey`].
    IssueKey(IssueKey),
    /// See [`BlockKey`].
    BlockKey(BlockKey),
    /// See [`OrderEsu`].
    OrderEsu(OrderEsu),
    /// See [`Activate`].
    Activate(Activate),
    /// See [`ActivateKmsHost`].
    ActivateKmsHost(ActivateKmsHost),
    /// See [`ActivateKmsClient`].
    ActivateKmsClient(ActivateKmsClient),
    /// See [`RedeemOsa`].
    RedeemOsa(RedeemOsa),
    /// See [`RequestMakIncrease`].
    RequestMakIncrease(RequestMakIncrease),
    /// See [`RequestKms`].
    RequestKms(RequestKms),
    /// See [`GrantRequest`].
    GrantRequest(GrantRequest),
    /// See [`DenyRequest`].
    DenyRequest(DenyRequest),
    /// See [`AssignRole`].
    AssignRole(AssignRole),
    /// See [`RevokeRole`].
    RevokeRole(RevokeRole),
    /// See [`DiscloseKeys`].
    DiscloseKeys(DiscloseKeys),
    /// See [`RetireKeyText`].
    RetireKeyText(RetireKeyText),
    /// See [`RecordExternalCount`].
    RecordExternalCount(RecordExternalCount),
    /// See [`CommitStreams`].
    CommitStreams(CommitStreams),
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
            CommandBody::CommitStreams(_) => "commit_streams",
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddOperator {
    /// The principal made an operator.
    pub principal: Principal,
}

/// Registers an org, under `parent` or as the root of a new ownership structure (R7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterOrg {
    /// The new org's id.
    pub org: OrgId,
    /// The org's name.
    pub name: String,
    /// The org it belongs under; `None` for the root of an ownership structure (R7).
    #[serde(default)]
    pub parent: Option<OrgId>,
}

/// Registers a license ID: an agreement under a program, owned by an org (R7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterLicenseId {
    /// The new license ID.
    pub license_id: LicenseId,
    /// The org it belongs to (R7).
    pub org: OrgId,
    /// The volume-licensing program of the agreement.
    pub program: Program,
    /// The agreement's number, as on the licensor's paperwork.
    pub agreement_number: String,
    /// The authorization number, when the program issues one.
    #[serde(default)]
    pub authorization_number: Option<String>,
    /// The purchase account, when the program has one.
    #[serde(default)]
    pub purchase_account: Option<String>,
}

/// Registers a product in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterProduct {
    /// The new product's id.
    pub product: ProductId,
    /// The product's name.
    pub name: String,
    /// The product family (what KMS line and rules apply).
    pub family: Family,
    /// The product version, e.g. `11` or `2022`.
    pub version: String,
    /// The product edition, e.g. `pro` or `enterprise`.
    pub edition: String,
    /// What the product needs to run: a volume-license key, none, an embedded key, or a license
    /// server's number (R4-R6).
    pub key_requirement: KeyRequirement,
}

/// Records licenses bought under a license ID (R7, R24).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPurchase {
    /// The license ID the licenses were bought under.
    pub license_id: LicenseId,
    /// The product, by its catalog id.
    pub product: ProductId,
    /// Licenses bought (R7, R24): not an activation count.
    pub quantity: u64,
}

/// Issues a key. `limit` counts activations (MAK, ESU MAK) or seats (OSA); `hosts` and
/// `per_host` bound a KMS host key (R13, defaults 6 and 10). Without `product_key` the
/// caller generates the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// The license ID the key is issued under.
    pub license_id: LicenseId,
    /// The product the key activates.
    pub product: ProductId,
    /// The kind of key to issue.
    pub kind: KeyKind,
    /// Activations (MAK, ESU MAK) or seats (OSA); the kind's default when absent (R8).
    #[serde(default)]
    pub limit: Option<u64>,
    /// KMS hosts a KMS host key may activate (R13, default 6).
    #[serde(default)]
    pub hosts: Option<u32>,
    /// Activations of one host a KMS host key allows (R13, default 10).
    #[serde(default)]
    pub per_host: Option<u32>,
    /// An ESU MAK's coverage start (R11).
    #[serde(default)]
    pub coverage_start: Option<Timestamp>,
    /// An ESU MAK's coverage end, exclusive (R11).
    #[serde(default)]
    pub coverage_end: Option<Timestamp>,
    /// The key text to issue; generated by the ledger when absent.
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

/// Blocks a key: it activates nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockKey {
    /// The key to block: it activates nothing more.
    pub key_id: KeyId,
}

/// Erases a key's text from the ledger's secrets (docs/rules.md, "Key text": key text lives outside the
/// chain so that it can be erased): after it the text is never disclosed again. The key and
/// its history stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireKeyText {
    /// The key whose text is erased.
    pub key_id: KeyId,
    /// Why (e.g. "posted publicly"), 1..=500 characters; recorded in the log.
    pub reason: String,
}

/// The ledger commits to its streams (docs/format.md, "Streams"). Only the ledger itself
/// (actor `keyledger`) commits, at the seq right after `size`; the wire refuses the type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitStreams {
    /// The events the commitment covers: seqs `1..=size`.
    pub size: u64,
    /// How many streams the tree holds.
    pub streams: u64,
    /// The root of the streams tree, as computed outside `core`.
    pub root: Digest,
}

/// Records what an outside activation service (e.g. VAMT's "refresh remaining count")
/// reports of a MAK, as evidence beside the ledger's own count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordExternalCount {
    /// The MAK the outside count is about.
    pub key_id: KeyId,
    /// Who reported it, e.g. "microsoft-activation-service" (1..=128 bytes).
    pub source: String,
    /// The activations the source says are left.
    pub remaining: u64,
    /// When the source said so; not after the command's own time.
    pub observed_at: Timestamp,
    /// A note on the observation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Records an ESU order: coverage for a product under a license ID (R11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderEsu {
    /// The new order's id.
    pub order_id: OrderId,
    /// The license ID the order is under.
    pub license_id: LicenseId,
    /// The product the coverage is for.
    pub product: ProductId,
    /// The start of the ESU coverage period (R11).
    pub coverage_start: Timestamp,
    /// The end of the ESU coverage period, exclusive (R11).
    pub coverage_end: Timestamp,
}

/// R9: a MAK (or ESU MAK) activation of one machine, or of up to 10,000 by proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activate {
    /// The MAK's text, as the machines present it.
    pub product_key: ProductKeyText,
    /// The org the machines belong to: inside the key's ownership structure (R7).
    pub org: OrgId,
    /// How the machines were activated: online, by phone or by proxy (R9).
    pub method: ActivationMethod,
    /// The machines to activate: one, or up to 10,000 by proxy (R9).
    pub machines: Vec<MachineId>,
}

/// R13: activates a KMS host with a KMS host key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateKmsHost {
    /// The KMS host key's text.
    pub product_key: ProductKeyText,
    /// The org the host belongs to (R7).
    pub org: OrgId,
    /// The host to activate.
    pub host: HostId,
}

/// R14: a KMS client's contact with its host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateKmsClient {
    /// The KMS host the client contacts.
    pub host: HostId,
    /// The client machine.
    pub client: ClientId,
    /// The client's family, which decides its line and threshold (R14).
    pub family: ClientFamily,
}

/// R20: redeems an OSA key into a tenant, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemOsa {
    /// The OSA key's text.
    pub product_key: ProductKeyText,
    /// The tenant to redeem it into (R20: once).
    pub tenant: TenantId,
}

/// R17: asks for more activations on a MAK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMakIncrease {
    /// The new request's id.
    pub request_id: RequestId,
    /// The license ID whose MAK is to grow.
    pub license_id: LicenseId,
    /// The authorization number, when the program has one.
    #[serde(default)]
    pub authorization_number: Option<String>,
    /// The MAK's product.
    pub product: ProductId,
    /// The MAK's last five characters: which key (R17).
    pub key_last5: Last5,
    /// Activations the request asks for (R17).
    pub activations_needed: u64,
    /// Why the request is made, in the requester's words (R17, R18).
    pub justification: String,
}

/// R18: asks for KMS, or for more KMS hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestKms {
    /// The new request's id.
    pub request_id: RequestId,
    /// The license ID that asks for KMS.
    pub license_id: LicenseId,
    /// The product KMS is asked for.
    pub product: ProductId,
    /// Why: an Open Value exception or more hosts (R18).
    pub reason: KmsRequestReason,
    /// KMS host activations the request asks for (R18).
    pub host_activations_needed: u32,
    /// Why the request is made, in the requester's words (R17, R18).
    pub justification: String,
}

/// R19: grants a pending request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The request to grant.
    pub request_id: RequestId,
    /// Activations (or KMS hosts) granted (R19).
    pub amount: u64,
}

/// R19: denies a pending request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// The request to deny.
    pub request_id: RequestId,
    /// Why it is denied.
    pub reason: String,
}

/// Gives a principal a role on a license ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    /// The principal who gets the role.
    pub principal: Principal,
    /// The license ID the role is held on.
    pub license_id: LicenseId,
    /// The role assigned.
    pub role: Role,
}

/// Takes a role on a license ID from a principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRole {
    /// The principal who loses the role.
    pub principal: Principal,
    /// The license ID the role was held on.
    pub license_id: LicenseId,
    /// The role revoked.
    pub role: Role,
}

/// R1/R2: the actor is about to see these keys' text. The ledger records the disclosure
/// before it hands out a single key; an export names the BLAKE3 digest of its file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscloseKeys {
    /// The keys whose text the actor is shown.
    pub key_ids: Vec<KeyId>,
    /// `copy` (exactly one key) or `export` (R2).
    pub channel: DisclosureChannel,
    /// The BLAKE3 digest of the export file, for `export` (R2).
    #[serde(default)]
    pub export_digest: Option<Digest>,
}
