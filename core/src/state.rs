//! `State`: everything `decide` needs to know, folded from events by [`State::apply`].
//!
//! Every lookup a decision makes is a hash-map probe (O(1)) or, for the KMS contact window,
//! a B-tree operation (O(log n)): the state holds millions of activated machines.

use std::collections::BTreeSet;

/// The maps of the state are keyed by names clients choose (machine ids, orgs, hosts).
/// foldhash's quality hasher is seeded per process, like std's SipHash default, so a client
/// cannot precompute colliding names, and costs a fraction of SipHash per probe (an
/// activation makes several).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
/// See [`HashMap`].
pub type HashSet<K> = std::collections::HashSet<K, foldhash::quality::RandomState>;

use crate::catalog::{
    ActivationStatus, ClientFamily, Family, KeyKind, KeyRequirement, KmsLine, KmsRequestReason,
    Program, Role,
};
use crate::event::{Coverage, Event, EventBody};
use crate::ids::{
    ClientId, HostId, KeyId, LicenseId, MachineId, OrderId, OrgId, Principal, ProductId, RequestId,
    TenantId,
};
use crate::product_key::{Fingerprint, Last5};
use crate::time::{Span, Timestamp};

/// R14: a KMS contact counts for this long after it was made.
pub const KMS_CONTACT_WINDOW: Span = Span::days(30);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub name: String,
    pub parent: Option<OrgId>,
    /// The top of the parent chain: orgs with the same root share an ownership structure
    /// (R7). Computed once at registration, since parents never change.
    pub root: OrgId,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LicenseRecord {
    pub org: OrgId,
    pub program: Program,
    pub agreement_number: String,
    pub authorization_number: Option<String>,
    pub purchase_account: Option<String>,
}

impl LicenseRecord {
    /// R6: the number to enter in the RDS license-server activation wizard.
    pub fn license_server_number(&self) -> &str {
        match self.program {
            Program::OpenLicense => self
                .authorization_number
                .as_deref()
                .unwrap_or(&self.agreement_number),
            Program::Mpsa => self
                .purchase_account
                .as_deref()
                .unwrap_or(&self.agreement_number),
            _ => &self.agreement_number,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub name: String,
    pub family: Family,
    pub version: String,
    pub edition: String,
    pub key_requirement: KeyRequirement,
}

impl Product {
    /// The leading number of the version ("2019", "11", "2022 R2" → 2022), for R5 and R21.
    pub fn version_number(&self) -> Option<u32> {
        let digits: String = self
            .version
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    }
}

/// A KMS host key's allowance (R13).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KmsAllowance {
    pub hosts_max: u32,
    pub hosts_granted: u64,
    pub per_host_max: u32,
    /// Activations per host on this key.
    pub hosts: HashMap<HostId, u32>,
}

impl KmsAllowance {
    pub fn hosts_limit(&self) -> u64 {
        // `decide` keeps the sum within `COUNT_MAX`; saturating keeps a fold of any log total.
        u64::from(self.hosts_max).saturating_add(self.hosts_granted)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub id: KeyId,
    pub license_id: LicenseId,
    /// The root org of the license ID's ownership structure (R7), fixed at issuance since
    /// neither a license ID's org nor an org's parent ever changes.
    pub owner_root: OrgId,
    pub product: ProductId,
    pub kind: KeyKind,
    pub fingerprint: Fingerprint,
    pub last5: Last5,
    /// Activations (MAK, ESU MAK) or seats (OSA) set at issuance (R8).
    pub limit: u64,
    /// Added by granted limit-increase requests (R19).
    pub granted: u64,
    pub machines: HashSet<MachineId>,
    pub blocked: bool,
    pub coverage: Option<Coverage>,
    pub kms: Option<KmsAllowance>,
    pub redeemed_into: Option<TenantId>,
}

impl Key {
    pub fn used(&self) -> u64 {
        self.machines.len() as u64
    }

    pub fn total(&self) -> u64 {
        // `decide` keeps the sum within `COUNT_MAX`; saturating keeps a fold of any log total.
        self.limit.saturating_add(self.granted)
    }

    pub fn remaining(&self) -> u64 {
        self.total().saturating_sub(self.used())
    }
}

/// The clients that contacted a host within the last 30 days, on one line (R14).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ContactWindow {
    last_seen: HashMap<ClientId, Timestamp>,
    by_time: BTreeSet<(Timestamp, ClientId)>,
}

impl ContactWindow {
    /// Distinct clients whose last contact is less than 30 days before `at`.
    pub fn count_at(&self, at: Timestamp) -> u32 {
        let cutoff = at.minus(KMS_CONTACT_WINDOW);
        // Apply prunes the window at each contact, so the stale prefix is short.
        let stale = self
            .by_time
            .iter()
            .take_while(|(seen, _)| *seen <= cutoff)
            .count();
        (self.by_time.len() - stale) as u32
    }

    /// The count at `at` if `client` contacted the host then.
    pub fn count_with(&self, client: &ClientId, at: Timestamp) -> u32 {
        let cutoff = at.minus(KMS_CONTACT_WINDOW);
        let counted = matches!(self.last_seen.get(client), Some(seen) if *seen > cutoff);
        self.count_at(at) + u32::from(!counted)
    }

    fn record(&mut self, client: &ClientId, at: Timestamp) {
        if let Some(previous) = self.last_seen.insert(client.clone(), at) {
            self.by_time.remove(&(previous, client.clone()));
        }
        self.by_time.insert((at, client.clone()));
        let cutoff = at.minus(KMS_CONTACT_WINDOW);
        while let Some((seen, _)) = self.by_time.first() {
            if *seen > cutoff {
                break;
            }
            let (_, stale) = self.by_time.pop_first().expect("first exists");
            self.last_seen.remove(&stale);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KmsHost {
    pub windows_key: Option<KeyId>,
    pub office_key: Option<KeyId>,
    pub windows: ContactWindow,
    pub office: ContactWindow,
}

impl KmsHost {
    pub fn key_for(&self, line: KmsLine) -> Option<KeyId> {
        match line {
            KmsLine::Windows => self.windows_key,
            KmsLine::Office => self.office_key,
        }
    }

    pub fn window(&self, line: KmsLine) -> &ContactWindow {
        match line {
            KmsLine::Windows => &self.windows,
            KmsLine::Office => &self.office,
        }
    }
}

/// What a request asks for (R17, R18).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    MakIncrease {
        key_id: KeyId,
        activations_needed: u64,
    },
    Kms {
        reason: KmsRequestReason,
        key_id: Option<KeyId>,
        host_activations_needed: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Granted { amount: u64 },
    Denied { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub kind: RequestKind,
    pub justification: String,
    pub requested_by: Principal,
    pub requested_at: Timestamp,
    /// The outcome and who decided it; `None` while pending.
    pub decision: Option<(RequestOutcome, Principal)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsuOrder {
    pub license_id: LicenseId,
    pub product: ProductId,
    pub coverage: Coverage,
}

/// The decision state of the whole ledger.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    newest_at: Option<Timestamp>,
    operators: HashSet<Principal>,
    orgs: HashMap<OrgId, Org>,
    license_ids: HashMap<LicenseId, LicenseRecord>,
    products: HashMap<ProductId, Product>,
    purchases: HashMap<(LicenseId, ProductId), u64>,
    /// Indexed by `KeyId - 1`: key ids are dense and assigned in issue order.
    keys: Vec<Key>,
    keys_by_fingerprint:
        std::collections::HashMap<Fingerprint, KeyId, crate::product_key::DigestHashBuilder>,
    keys_by_license_product: HashMap<(LicenseId, ProductId), Vec<KeyId>>,
    kms_hosts: HashMap<HostId, KmsHost>,
    requests: HashMap<RequestId, Request>,
    esu_orders: HashMap<OrderId, EsuOrder>,
    roles: HashMap<(LicenseId, Principal), BTreeSet<Role>>,
}

impl crate::rights::Catalog for State {
    fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.get(id)
    }

    fn products(&self) -> Box<dyn Iterator<Item = (&ProductId, &Product)> + '_> {
        Box::new(self.products.iter())
    }

    fn license(&self, id: &LicenseId) -> Option<&LicenseRecord> {
        self.license_ids.get(id)
    }

    fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        State::purchased(self, license_id, product)
    }
}

impl State {
    /// The business time of the newest event; commands before it are `time_regression`.
    pub fn newest_at(&self) -> Option<Timestamp> {
        self.newest_at
    }

    pub fn is_operator(&self, principal: &Principal) -> bool {
        self.operators.contains(principal)
    }

    pub fn has_operators(&self) -> bool {
        !self.operators.is_empty()
    }

    pub fn org(&self, org: &OrgId) -> Option<&Org> {
        self.orgs.get(org)
    }

    pub fn license(&self, license_id: &LicenseId) -> Option<&LicenseRecord> {
        self.license_ids.get(license_id)
    }

    pub fn product(&self, product: &ProductId) -> Option<&Product> {
        self.products.get(product)
    }

    pub fn products(&self) -> impl Iterator<Item = (&ProductId, &Product)> {
        self.products.iter()
    }

    /// Units bought (R7, R24), kept apart from activations.
    pub fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        // The tuple key forces a clone; purchases are looked up rarely.
        self.purchases
            .get(&(license_id.clone(), product.clone()))
            .copied()
            .unwrap_or(0)
    }

    pub fn key(&self, key_id: KeyId) -> Option<&Key> {
        let index = usize::try_from(key_id.0.checked_sub(1)?).ok()?;
        self.keys.get(index)
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn key_by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<&Key> {
        self.keys_by_fingerprint
            .get(fingerprint)
            .and_then(|id| self.key(*id))
    }

    pub fn keys_of(&self, license_id: &LicenseId, product: &ProductId) -> &[KeyId] {
        self.keys_by_license_product
            .get(&(license_id.clone(), product.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// The id the next issued key gets.
    pub fn next_key_id(&self) -> KeyId {
        KeyId(self.keys.len() as u64 + 1)
    }

    pub fn kms_host(&self, host: &HostId) -> Option<&KmsHost> {
        self.kms_hosts.get(host)
    }

    pub fn request(&self, request_id: &RequestId) -> Option<&Request> {
        self.requests.get(request_id)
    }

    pub fn esu_order(&self, order_id: &OrderId) -> Option<&EsuOrder> {
        self.esu_orders.get(order_id)
    }

    pub fn has_role(&self, principal: &Principal, license_id: &LicenseId, role: Role) -> bool {
        self.roles_of(principal, license_id)
            .is_some_and(|roles| roles.contains(&role))
    }

    pub fn has_any_role(
        &self,
        principal: &Principal,
        license_id: &LicenseId,
        roles: &[Role],
    ) -> bool {
        self.roles_of(principal, license_id)
            .is_some_and(|held| roles.iter().any(|r| held.contains(r)))
    }

    fn roles_of(&self, principal: &Principal, license_id: &LicenseId) -> Option<&BTreeSet<Role>> {
        self.roles.get(&(license_id.clone(), principal.clone()))
    }

    /// R7: whether `org` belongs to the ownership structure `key` may be used in.
    pub fn may_use(&self, org: &OrgId, key: &Key) -> bool {
        self.orgs.get(org).is_some_and(|o| o.root == key.owner_root)
    }

    /// R7: whether `org` shares an ownership structure with the org owning `license_id`.
    pub fn same_ownership_structure(&self, org: &OrgId, license_id: &LicenseId) -> bool {
        let Some(license) = self.license_ids.get(license_id) else {
            return false;
        };
        match (self.orgs.get(org), self.orgs.get(&license.org)) {
            (Some(a), Some(b)) => a.root == b.root,
            _ => false,
        }
    }

    /// Folds one event into the state. Events come from `decide` or from the log, so they
    /// are trusted: a broken reference here is a bug, and asserts.
    pub fn apply(&mut self, event: &Event) {
        if let Some(newest) = self.newest_at {
            assert!(event.at >= newest, "event time runs backwards");
        }
        self.newest_at = Some(event.at);
        self.apply_body(&event.actor, event.at, &event.body);
    }

    fn apply_body(&mut self, actor: &Principal, at: Timestamp, body: &EventBody) {
        match body {
            EventBody::OperatorAdded { principal } => {
                self.operators.insert(principal.clone());
            }
            EventBody::OrgRegistered { org, name, parent } => self.apply_org(org, name, parent),
            EventBody::LicenseIdRegistered { .. } => {
                let (license_id, record) = body.license_record().expect("a license ID event");
                self.license_ids.insert(license_id.clone(), record);
            }
            EventBody::ProductRegistered { .. } => {
                let (product, record) = body.product_record().expect("a product event");
                self.products.insert(product.clone(), record);
            }
            EventBody::PurchaseRecorded {
                license_id,
                product,
                quantity,
            } => {
                let bought = self
                    .purchases
                    .entry((license_id.clone(), product.clone()))
                    .or_default();
                *bought = bought.saturating_add(*quantity);
            }
            EventBody::KeyIssued { .. } => self.apply_key_issued(body),
            EventBody::KeyBlocked { key_id } => self.key_mut(*key_id).blocked = true,
            EventBody::EsuOrdered {
                order_id,
                license_id,
                product,
                coverage,
            } => {
                let order = EsuOrder {
                    license_id: license_id.clone(),
                    product: product.clone(),
                    coverage: *coverage,
                };
                self.esu_orders.insert(order_id.clone(), order);
            }
            EventBody::MachinesActivated {
                key_id, machines, ..
            } => {
                let key = self.key_mut(*key_id);
                key.machines.extend(machines.iter().cloned());
                assert!(key.used() <= key.total(), "R9: key {key_id} over its limit");
            }
            EventBody::KmsHostActivated { .. } => self.apply_kms_host_activated(body),
            EventBody::KmsClientContacted {
                host,
                client,
                family,
                status,
                ..
            } => self.apply_kms_client_contacted(host, client, *family, *status, at),
            EventBody::OsaRedeemed { key_id, tenant } => {
                self.key_mut(*key_id).redeemed_into = Some(tenant.clone());
            }
            EventBody::ActivationRefused { .. } => {}
            EventBody::MakIncreaseRequested { .. } | EventBody::KmsRequested { .. } => {
                self.apply_request(actor, at, body);
            }
            EventBody::RequestGranted { request_id, amount } => {
                self.apply_grant(actor, request_id, *amount)
            }
            EventBody::RequestDenied { request_id, reason } => {
                let request = self.requests.get_mut(request_id).expect("request exists");
                let outcome = RequestOutcome::Denied {
                    reason: reason.clone(),
                };
                request.decision = Some((outcome, actor.clone()));
            }
            EventBody::RoleAssigned {
                principal,
                license_id,
                role,
            } => {
                self.roles
                    .entry((license_id.clone(), principal.clone()))
                    .or_default()
                    .insert(*role);
            }
            EventBody::RoleRevoked {
                principal,
                license_id,
                role,
            } => {
                let pair = (license_id.clone(), principal.clone());
                if let Some(roles) = self.roles.get_mut(&pair) {
                    roles.remove(role);
                    if roles.is_empty() {
                        self.roles.remove(&pair);
                    }
                }
            }
            EventBody::KeysDisclosed { .. } => {}
        }
    }

    fn key_mut(&mut self, key_id: KeyId) -> &mut Key {
        let index = usize::try_from(key_id.0 - 1).expect("key id fits in usize");
        &mut self.keys[index]
    }

    fn apply_org(&mut self, org: &OrgId, name: &str, parent: &Option<OrgId>) {
        let root = match parent {
            Some(parent) => self.orgs[parent].root.clone(),
            None => org.clone(),
        };
        let record = Org {
            name: name.to_owned(),
            parent: parent.clone(),
            root,
        };
        self.orgs.insert(org.clone(), record);
    }

    fn apply_key_issued(&mut self, body: &EventBody) {
        let EventBody::KeyIssued {
            key_id,
            license_id,
            product,
            kind,
            limit,
            hosts_max,
            per_host_max,
            coverage,
            fingerprint,
            last5,
        } = body
        else {
            unreachable!("apply_key_issued takes KeyIssued only")
        };
        assert_eq!(*key_id, self.next_key_id(), "key ids are dense");
        let owner = &self.license_ids[license_id].org;
        let owner_root = self.orgs[owner].root.clone();
        let kms = (*kind == KeyKind::KmsHost).then(|| KmsAllowance {
            hosts_max: *hosts_max,
            per_host_max: *per_host_max,
            ..KmsAllowance::default()
        });
        self.keys.push(Key {
            id: *key_id,
            license_id: license_id.clone(),
            owner_root,
            product: product.clone(),
            kind: *kind,
            fingerprint: *fingerprint,
            last5: *last5,
            limit: *limit,
            granted: 0,
            machines: HashSet::default(),
            blocked: false,
            coverage: *coverage,
            kms,
            redeemed_into: None,
        });
        self.keys_by_fingerprint.insert(*fingerprint, *key_id);
        self.keys_by_license_product
            .entry((license_id.clone(), product.clone()))
            .or_default()
            .push(*key_id);
    }

    fn apply_kms_host_activated(&mut self, body: &EventBody) {
        let EventBody::KmsHostActivated {
            key_id,
            host,
            activation,
            ..
        } = body
        else {
            unreachable!("apply_kms_host_activated takes KmsHostActivated only")
        };
        let product = self.key(*key_id).expect("key exists").product.clone();
        let line = self.products[&product].family.kms_line();
        let allowance = self.key_mut(*key_id).kms.as_mut().expect("KMS host key");
        allowance.hosts.insert(host.clone(), *activation);
        assert!(
            allowance.hosts.len() as u64 <= allowance.hosts_limit(),
            "R13: hosts over limit"
        );
        let record = self.kms_hosts.entry(host.clone()).or_default();
        match line {
            Some(KmsLine::Office) => record.office_key = Some(*key_id),
            _ => record.windows_key = Some(*key_id),
        }
    }

    fn apply_kms_client_contacted(
        &mut self,
        host: &HostId,
        client: &ClientId,
        family: ClientFamily,
        _status: ActivationStatus,
        at: Timestamp,
    ) {
        let record = self.kms_hosts.get_mut(host).expect("KMS host exists");
        match family.kms_line() {
            KmsLine::Windows => record.windows.record(client, at),
            KmsLine::Office => record.office.record(client, at),
        }
    }

    fn apply_request(&mut self, actor: &Principal, at: Timestamp, body: &EventBody) {
        let parts = body
            .request_parts()
            .expect("apply_request takes request events");
        let request = Request {
            license_id: parts.license_id.clone(),
            product: parts.product.clone(),
            kind: parts.kind,
            justification: parts.justification.to_owned(),
            requested_by: actor.clone(),
            requested_at: at,
            decision: None,
        };
        self.requests.insert(parts.request_id.clone(), request);
    }

    fn apply_grant(&mut self, actor: &Principal, request_id: &RequestId, amount: u64) {
        let request = self.requests.get_mut(request_id).expect("request exists");
        assert!(request.decision.is_none(), "R19: decided once");
        request.decision = Some((RequestOutcome::Granted { amount }, actor.clone()));
        match request.kind.clone() {
            RequestKind::MakIncrease { key_id, .. } => {
                let key = self.key_mut(key_id);
                key.granted = key.granted.saturating_add(amount);
            }
            RequestKind::Kms {
                reason: KmsRequestReason::AdditionalHosts,
                key_id: Some(key_id),
                ..
            } => {
                let allowance = self.key_mut(key_id).kms.as_mut().expect("KMS host key");
                allowance.hosts_granted = allowance.hosts_granted.saturating_add(amount);
            }
            // An Open Value exception grant is followed by its own KeyIssued event.
            RequestKind::Kms { .. } => {}
        }
    }
}
