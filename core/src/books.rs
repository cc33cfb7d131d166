//! The licensing books: every fact both the decisions and the reports read — operators,
//! orgs, license IDs, products, purchases, keys and their counts, KMS hosts and their
//! contact windows, requests, ESU orders, roles — and [`Books::apply`], the one fold of
//! each event's effect on them.
//!
//! [`crate::State`] (the decision state) and the read models of `keyledger-projections`
//! both hold a `Books` and fold every event through it; each adds only what it alone needs
//! (the decision state: indexes for O(1) lookups and the activated machines; the read
//! models: history, disclosures, daily consumption). So a report cannot disagree with the
//! decision that produced it: they are the same numbers.
//!
//! Every map is ordered (`BTreeMap`), so books reached by any path encode to the same bytes
//! (projection snapshots are checked by digest). The hot lookups of an activation do not
//! touch these maps: keys are a dense table, and the decision state keeps hash indexes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

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

/// An org: one node of an ownership structure (R7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Org {
    /// The org's name.
    pub name: String,
    /// The org it belongs under; `None` for the root of an ownership structure (R7).
    pub parent: Option<OrgId>,
    /// The top of the parent chain: orgs with the same root share an ownership structure
    /// (R7). Computed once at registration, since parents never change.
    pub root: OrgId,
}

/// A license ID as registered: the agreement it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseRecord {
    /// The org the license ID belongs to: the ownership structure it serves (R7).
    pub org: OrgId,
    /// The volume-licensing program of the agreement.
    pub program: Program,
    /// The agreement's number, as on the licensor's paperwork.
    pub agreement_number: String,
    /// The authorization number, when the program issues one.
    pub authorization_number: Option<String>,
    /// The purchase account, when the program has one.
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

/// A product of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    /// The product's name as the catalog shows it.
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

/// A KMS host key's allowance (R13) and the hosts it activated.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmsAllowance {
    /// KMS hosts the key may activate at issuance (R13).
    pub hosts_max: u32,
    /// KMS hosts added by granted requests (R18, R19).
    pub hosts_granted: u64,
    /// Activations of one host the key allows (R13).
    pub per_host_max: u32,
    /// Activations per host on this key.
    pub hosts: BTreeMap<HostId, u32>,
}

impl KmsAllowance {
    /// KMS hosts the key may activate: its own and those granted (R13, R19).
    pub fn hosts_limit(&self) -> u64 {
        // `decide` keeps the sum within `COUNT_MAX`; saturating keeps a fold of any log total.
        u64::from(self.hosts_max).saturating_add(self.hosts_granted)
    }
}

/// Everything the log says about one key, but its activated machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyTerms {
    /// The key's id, given at issuance.
    pub id: KeyId,
    /// The license ID (a volume-licensing agreement's enrollment) it concerns.
    pub license_id: LicenseId,
    /// The root org of the license ID's ownership structure (R7), fixed at issuance since
    /// neither a license ID's org nor an org's parent ever changes.
    pub owner_root: OrgId,
    /// The product, by its catalog id.
    pub product: ProductId,
    /// The kind of key, which decides the rules that apply to it.
    pub kind: KeyKind,
    /// The BLAKE3 fingerprint of the key text: how a presented key is found.
    pub fingerprint: Fingerprint,
    /// The key text's last five characters, which everyone may see (R1).
    pub last5: Last5,
    /// When the key was issued.
    pub issued_at: Timestamp,
    /// Activations (MAK, ESU MAK) or seats (OSA) set at issuance (R8).
    pub limit: u64,
    /// Added by granted limit-increase requests (R19).
    pub granted: u64,
    /// Machines activated (R9): the machines of every `machines_activated` of the key.
    pub used: u64,
    /// Whether the key was blocked: it activates nothing more.
    pub blocked: bool,
    /// The key's text was retired (erased from the secrets): never disclosed again.
    pub text_retired: bool,
    /// The ESU coverage period of an ESU MAK (R11, R12).
    pub coverage: Option<Coverage>,
    /// A KMS host key's allowance (R13); `None` for other kinds.
    pub kms: Option<KmsAllowance>,
    /// R20: the tenant an OSA key was redeemed into.
    pub redeemed_into: Option<TenantId>,
}

impl KeyTerms {
    /// Activations consumed (R9).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The limit plus what was granted (R9, R19).
    pub fn total(&self) -> u64 {
        // `decide` keeps the sum within `COUNT_MAX`; saturating keeps a fold of any log total.
        self.limit.saturating_add(self.granted)
    }

    /// What is left: total minus used, never below zero.
    pub fn remaining(&self) -> u64 {
        self.total().saturating_sub(self.used)
    }
}

/// A key as a holder of the books keeps it: its terms, and whatever the holder adds to it
/// (the decision state its machines, the read models their history and daily counts).
pub trait KeyRecord: From<KeyTerms> {
    /// The key's terms.
    fn terms(&self) -> &KeyTerms;
    /// The key's terms, to change as an event says.
    fn terms_mut(&mut self) -> &mut KeyTerms;

    /// Called by [`Books::apply`] after it counted `machines` (new to the key) as used at
    /// `at`: the activation is the hottest event, so the holder's own bookkeeping of it
    /// rides on the same key lookup.
    fn machines_activated(&mut self, _machines: &[MachineId], _at: Timestamp) {}
}

impl KeyRecord for KeyTerms {
    fn terms(&self) -> &KeyTerms {
        self
    }

    fn terms_mut(&mut self) -> &mut KeyTerms {
        self
    }
}

/// Keys by id. Key ids are dense from 1 in issue order, so a vector indexed by `id - 1`
/// replaces a search tree: one O(1), cache-friendly touch per activation. A statement's fold
/// holds only some keys: the others are gaps, and such a table is never saved.
#[derive(Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct KeyTable<K>(Vec<Option<K>>);

impl<K> Default for KeyTable<K> {
    fn default() -> KeyTable<K> {
        KeyTable(Vec::new())
    }
}

/// Saved as the list of every key (the snapshot format): a table with gaps cannot be.
impl<K: Serialize> Serialize for KeyTable<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.iter().any(Option::is_none) {
            return Err(serde::ser::Error::custom(
                "a key table with gaps (a statement's fold) is never saved",
            ));
        }
        use serde::ser::SerializeSeq;
        // The length up front: bincode writes it before the elements.
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for key in self.0.iter().flatten() {
            seq.serialize_element(key)?;
        }
        seq.end()
    }
}

impl<'de, K: Deserialize<'de>> Deserialize<'de> for KeyTable<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys: Vec<K> = Vec::deserialize(deserializer)?;
        Ok(KeyTable(keys.into_iter().map(Some).collect()))
    }
}

impl<K> KeyTable<K> {
    fn index(id: KeyId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(1)?).ok()
    }

    /// The key with this id, if issued.
    pub fn get(&self, id: KeyId) -> Option<&K> {
        self.0.get(Self::index(id)?)?.as_ref()
    }

    /// The key with this id, to change, if issued.
    pub fn get_mut(&mut self, id: KeyId) -> Option<&mut K> {
        let index = Self::index(id)?;
        self.0.get_mut(index)?.as_mut()
    }

    /// The highest key id issued (the number of keys, but in a statement's fold).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key was issued.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The id the next issued key gets.
    pub fn next_id(&self) -> KeyId {
        KeyId(self.0.len() as u64 + 1)
    }

    /// Every key with its id, in issuance order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyId, &K)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((KeyId(i as u64 + 1), k.as_ref()?)))
    }

    /// Every key, in issuance order.
    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.0.iter().flatten()
    }

    /// Keeps `key` under `id`, past every id kept so far.
    fn insert(&mut self, id: KeyId, key: K) {
        let index = Self::index(id).expect("key ids start at 1");
        assert!(index >= self.0.len(), "key ids increase");
        self.0.resize_with(index, || None);
        self.0.push(Some(key));
    }
}

impl<K> std::ops::Index<KeyId> for KeyTable<K> {
    type Output = K;

    fn index(&self, id: KeyId) -> &K {
        self.get(id).expect("key exists")
    }
}

/// The clients that contacted a host within the last 30 days, on one line (R14).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContactWindow {
    last_seen: BTreeMap<ClientId, Timestamp>,
    by_time: BTreeSet<(Timestamp, ClientId)>,
}

impl ContactWindow {
    /// Distinct clients whose last contact is less than 30 days before `at` (and not after
    /// it: the window of books folded up to `at` holds nothing later).
    pub fn count_at(&self, at: Timestamp) -> u32 {
        let cutoff = at.minus(KMS_CONTACT_WINDOW);
        // `record` prunes the window at each contact, so the stale prefix is short.
        let stale = self
            .by_time
            .iter()
            .take_while(|(seen, _)| *seen <= cutoff)
            .count();
        (self.by_time.len() - stale) as u32
    }

    /// The newest contact in the window: the count can only fall after it (clients age
    /// out), so `count_at` of it is the count the window last reached.
    pub fn latest_contact(&self) -> Option<Timestamp> {
        self.by_time.last().map(|(seen, _)| *seen)
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
            if let Some((_, stale)) = self.by_time.pop_first() {
                self.last_seen.remove(&stale);
            }
        }
    }
}

/// A KMS host: the keys installed on it per line and its contact windows (R13–R15).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KmsHost {
    /// The KMS host key installed for the Windows line, if any.
    pub windows_key: Option<KeyId>,
    /// The KMS host key installed for the Office line, if any (R15).
    pub office_key: Option<KeyId>,
    /// The Windows line's recent client contacts (R14).
    pub windows: ContactWindow,
    /// The Office line's recent client contacts (R14).
    pub office: ContactWindow,
}

impl KmsHost {
    /// The KMS host key installed for `line`, if any.
    pub fn key_for(&self, line: KmsLine) -> Option<KeyId> {
        match line {
            KmsLine::Windows => self.windows_key,
            KmsLine::Office => self.office_key,
        }
    }

    /// The recent client contacts of `line` (R14).
    pub fn window(&self, line: KmsLine) -> &ContactWindow {
        match line {
            KmsLine::Windows => &self.windows,
            KmsLine::Office => &self.office,
        }
    }

    fn window_mut(&mut self, line: KmsLine) -> &mut ContactWindow {
        match line {
            KmsLine::Windows => &mut self.windows,
            KmsLine::Office => &mut self.office,
        }
    }

    fn install(&mut self, line: KmsLine, key_id: KeyId) {
        match line {
            KmsLine::Windows => self.windows_key = Some(key_id),
            KmsLine::Office => self.office_key = Some(key_id),
        }
    }
}

/// What a request asks for (R17, R18).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// R17: more activations on a MAK.
    MakIncrease {
        /// The MAK whose limit the request would raise.
        key_id: KeyId,
        /// Activations the request asks for (R17).
        activations_needed: u64,
    },
    /// R18: KMS (an Open Value exception) or more KMS hosts.
    Kms {
        /// Why KMS is asked for: an Open Value exception or more hosts (R18).
        reason: KmsRequestReason,
        /// The KMS host key whose allowance the request would raise, if it names one.
        key_id: Option<KeyId>,
        /// KMS host activations the request asks for (R18).
        host_activations_needed: u32,
    },
}

/// How a request was decided (R19).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Granted, with the amount.
    Granted {
        /// Activations granted (R19).
        amount: u64,
    },
    /// Denied, with the reason.
    Denied {
        /// Why, in words (recorded in the log).
        reason: String,
    },
}

/// A request's one decision (R19).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// Granted (with the amount) or denied (with the reason).
    pub outcome: RequestOutcome,
    /// Who decided (R19: never the requester).
    pub by: Principal,
    /// When it was decided.
    pub at: Timestamp,
}

/// A limit-increase or KMS request and its decision (R17-R19).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Request {
    /// The license ID (a volume-licensing agreement's enrollment) it concerns.
    pub license_id: LicenseId,
    /// The product, by its catalog id.
    pub product: ProductId,
    /// What the request asks for.
    pub kind: RequestKind,
    /// Why the request is made, in the requester's words (R17, R18).
    pub justification: String,
    /// Who filed the request.
    pub requested_by: Principal,
    /// When the request was filed.
    pub requested_at: Timestamp,
    /// `None` while pending.
    pub decision: Option<Decision>,
}

/// An ESU order: coverage bought for a product under a license ID (R11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EsuOrder {
    /// The license ID (a volume-licensing agreement's enrollment) it concerns.
    pub license_id: LicenseId,
    /// The product, by its catalog id.
    pub product: ProductId,
    /// The coverage period the order buys (R11).
    pub coverage: Coverage,
    /// When the order was recorded.
    pub ordered_at: Timestamp,
}

/// The books; `K` is how the holder keeps a key (see [`KeyRecord`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Books<K> {
    /// The business time of the newest event; commands before it are `time_regression`.
    pub newest_at: Option<Timestamp>,
    /// The operators: principals who may do everything (R3).
    pub operators: BTreeSet<Principal>,
    /// Every org, by id (the ownership structures, R7).
    pub orgs: BTreeMap<OrgId, Org>,
    /// Every license ID, by id.
    pub licenses: BTreeMap<LicenseId, LicenseRecord>,
    /// The product catalog, by id.
    pub products: BTreeMap<ProductId, Product>,
    /// R7/R24: units bought, apart from any activation count.
    pub purchases: BTreeMap<(LicenseId, ProductId), u64>,
    /// Every key, by id, as the holder keeps it.
    pub keys: KeyTable<K>,
    /// Every activated KMS host, by name (R13-R15).
    pub kms_hosts: BTreeMap<HostId, KmsHost>,
    /// Every request, by id (R17-R19).
    pub requests: BTreeMap<RequestId, Request>,
    /// Every ESU order, by id (R11).
    pub esu_orders: BTreeMap<OrderId, EsuOrder>,
    /// Roles held, per license ID and principal; a principal whose last role is revoked has
    /// no entry.
    pub roles: BTreeMap<(LicenseId, Principal), BTreeSet<Role>>,
}

impl<K> Default for Books<K> {
    fn default() -> Books<K> {
        Books {
            newest_at: None,
            operators: BTreeSet::new(),
            orgs: BTreeMap::new(),
            licenses: BTreeMap::new(),
            products: BTreeMap::new(),
            purchases: BTreeMap::new(),
            keys: KeyTable::default(),
            kms_hosts: BTreeMap::new(),
            requests: BTreeMap::new(),
            esu_orders: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

impl<K> Books<K> {
    /// The same books with each key kept as `keep` makes it: how a holder of other key
    /// records (the read models) hands its books to another (a writer resuming from a
    /// snapshot).
    pub fn map_keys<L>(&self, keep: impl Fn(&K) -> L) -> Books<L> {
        Books {
            newest_at: self.newest_at,
            operators: self.operators.clone(),
            orgs: self.orgs.clone(),
            licenses: self.licenses.clone(),
            products: self.products.clone(),
            purchases: self.purchases.clone(),
            keys: KeyTable(self.keys.0.iter().map(|k| k.as_ref().map(&keep)).collect()),
            kms_hosts: self.kms_hosts.clone(),
            requests: self.requests.clone(),
            esu_orders: self.esu_orders.clone(),
            roles: self.roles.clone(),
        }
    }
}

impl<K: KeyRecord> Books<K> {
    /// The terms of the key with this id, if issued.
    pub fn key(&self, id: KeyId) -> Option<&KeyTerms> {
        self.keys.get(id).map(K::terms)
    }

    fn terms_mut(&mut self, id: KeyId) -> &mut KeyTerms {
        self.keys.get_mut(id).expect("key exists").terms_mut()
    }

    /// Whether `principal` is an operator (R3): the one rule, which the decision state and
    /// the read models both ask.
    pub fn is_operator(&self, principal: &Principal) -> bool {
        self.operators.contains(principal)
    }

    /// Units bought (R7, R24), kept apart from activations.
    pub fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        // The tuple key forces a clone; purchases are looked up rarely.
        self.purchases
            .get(&(license_id.clone(), product.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// The roles `principal` holds on `license_id` (empty when none).
    pub fn roles_of(
        &self,
        principal: &Principal,
        license_id: &LicenseId,
    ) -> Option<&BTreeSet<Role>> {
        self.roles.get(&(license_id.clone(), principal.clone()))
    }

    /// The KMS line a key's product serves (R15); `None` for products without KMS keys.
    pub fn kms_line_of(&self, key_id: KeyId) -> Option<KmsLine> {
        let key = self.key(key_id)?;
        self.products.get(&key.product)?.family.kms_line()
    }

    /// Folds one event's effect on the books. Events come from `decide` or from the log, so
    /// they are trusted: a broken reference here is a bug, and asserts.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm an event type: the one fold, read as a table"
    )]
    pub fn apply(&mut self, event: &Event) {
        if let Some(newest) = self.newest_at {
            assert!(event.at >= newest, "event time runs backwards");
        }
        self.newest_at = Some(event.at);
        let (actor, at) = (&event.actor, event.at);
        match &event.body {
            EventBody::OperatorAdded { principal } => {
                self.operators.insert(principal.clone());
            }
            EventBody::OrgRegistered { org, name, parent } => self.apply_org(org, name, parent),
            EventBody::LicenseIdRegistered { .. } => {
                let (license_id, record) = event.body.license_record().expect("a license ID event");
                self.licenses.insert(license_id.clone(), record);
            }
            EventBody::ProductRegistered { .. } => {
                let (product, record) = event.body.product_record().expect("a product event");
                self.products.insert(product.clone(), record);
            }
            EventBody::PurchaseRecorded {
                license_id,
                product,
                quantity,
            } => self.apply_purchase(license_id, product, *quantity),
            EventBody::KeyIssued { .. } => self.apply_key_issued(at, &event.body),
            EventBody::KeyBlocked { key_id } => self.terms_mut(*key_id).blocked = true,
            EventBody::KeyTextRetired { key_id, .. } => self.terms_mut(*key_id).text_retired = true,
            EventBody::EsuOrdered { .. } => self.apply_esu_order(at, &event.body),
            EventBody::MachinesActivated {
                key_id, machines, ..
            } => self.apply_machines_activated(*key_id, machines, at),
            EventBody::KmsHostActivated {
                key_id,
                host,
                activation,
                ..
            } => self.apply_kms_host_activated(*key_id, host, *activation),
            EventBody::KmsClientContacted {
                host,
                client,
                family,
                status,
                ..
            } => self.apply_kms_client_contacted(host, client, *family, *status, at),
            EventBody::OsaRedeemed { key_id, tenant } => {
                self.terms_mut(*key_id).redeemed_into = Some(tenant.clone());
            }
            // A refusal changes no count (R10); the read models count refusals themselves.
            EventBody::ActivationRefused { .. } => {}
            EventBody::MakIncreaseRequested { .. } | EventBody::KmsRequested { .. } => {
                self.apply_request(actor, at, &event.body);
            }
            EventBody::RequestGranted { request_id, amount } => {
                self.apply_grant(actor, at, request_id, *amount)
            }
            EventBody::RequestDenied { request_id, reason } => {
                let outcome = RequestOutcome::Denied {
                    reason: reason.clone(),
                };
                self.decide_request(request_id, outcome, actor, at);
            }
            EventBody::RoleAssigned {
                principal,
                license_id,
                role,
            } => self.apply_role_assigned(principal, license_id, *role),
            EventBody::RoleRevoked {
                principal,
                license_id,
                role,
            } => self.apply_role_revoked(principal, license_id, *role),
            // A disclosure changes no fact of the books; the read models list them.
            EventBody::KeysDisclosed { .. } => {}
            // Evidence of what an outside service counts; the read models keep the last one.
            EventBody::ExternalCountRecorded { .. } => {}
            // R9: machines named again consume nothing (`machines_activated` counted them);
            // the ledger's commitment to its streams is about the log, not the licenses.
            EventBody::MachinesAlreadyActive { .. } | EventBody::StreamsCommitted { .. } => {}
        }
    }

    /// R12: an ESU order's coverage, kept for the keys of its product and license ID.
    fn apply_esu_order(&mut self, at: Timestamp, body: &EventBody) {
        let EventBody::EsuOrdered {
            order_id,
            license_id,
            product,
            coverage,
        } = body
        else {
            unreachable!("apply_esu_order takes EsuOrdered only")
        };
        let order = EsuOrder {
            license_id: license_id.clone(),
            product: product.clone(),
            coverage: *coverage,
            ordered_at: at,
        };
        self.esu_orders.insert(order_id.clone(), order);
    }

    fn apply_purchase(&mut self, license_id: &LicenseId, product: &ProductId, quantity: u64) {
        let bought = self.purchases.entry((license_id.clone(), product.clone()));
        let bought = bought.or_default();
        *bought = bought.saturating_add(quantity);
    }

    fn apply_role_assigned(&mut self, principal: &Principal, license_id: &LicenseId, role: Role) {
        let holder = (license_id.clone(), principal.clone());
        self.roles.entry(holder).or_default().insert(role);
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

    /// R9: the new machines count as used; the holder records them on the same lookup.
    fn apply_machines_activated(&mut self, key_id: KeyId, machines: &[MachineId], at: Timestamp) {
        let record = self.keys.get_mut(key_id).expect("key exists");
        let key = record.terms_mut();
        key.used = key.used.saturating_add(machines.len() as u64);
        assert!(key.used <= key.total(), "R9: key {key_id} over its limit");
        record.machines_activated(machines, at);
    }

    /// A principal whose last role on a license ID is revoked has no entry left.
    fn apply_role_revoked(&mut self, principal: &Principal, license_id: &LicenseId, role: Role) {
        let holder = (license_id.clone(), principal.clone());
        if let Some(roles) = self.roles.get_mut(&holder) {
            roles.remove(&role);
            if roles.is_empty() {
                self.roles.remove(&holder);
            }
        }
    }

    fn apply_key_issued(&mut self, at: Timestamp, body: &EventBody) {
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
        // Dense in the log (decide issues `next_id`); a statement's fold skips the keys of
        // other license IDs.
        assert!(*key_id >= self.keys.next_id(), "key ids increase");
        let owner = &self.licenses[license_id].org;
        let owner_root = self.orgs[owner].root.clone();
        let kms = (*kind == KeyKind::KmsHost).then(|| KmsAllowance {
            hosts_max: *hosts_max,
            per_host_max: *per_host_max,
            ..KmsAllowance::default()
        });
        let terms = KeyTerms {
            id: *key_id,
            license_id: license_id.clone(),
            owner_root,
            product: product.clone(),
            kind: *kind,
            fingerprint: *fingerprint,
            last5: *last5,
            issued_at: at,
            limit: *limit,
            granted: 0,
            used: 0,
            blocked: false,
            text_retired: false,
            coverage: *coverage,
            kms,
            redeemed_into: None,
        };
        self.keys.insert(*key_id, K::from(terms));
    }

    fn apply_kms_host_activated(&mut self, key_id: KeyId, host: &HostId, activation: u32) {
        // `decide` issues KMS host keys for Windows and Office products only.
        let line = self
            .kms_line_of(key_id)
            .expect("a KMS host key's product has a KMS line");
        let allowance = self.terms_mut(key_id).kms.as_mut().expect("KMS host key");
        allowance.hosts.insert(host.clone(), activation);
        assert!(
            allowance.hosts.len() as u64 <= allowance.hosts_limit(),
            "R13: hosts over limit"
        );
        self.kms_hosts
            .entry(host.clone())
            .or_default()
            .install(line, key_id);
    }

    fn apply_kms_client_contacted(
        &mut self,
        host: &HostId,
        client: &ClientId,
        family: ClientFamily,
        // Every contact counts, activated or still pending its threshold (R14).
        _status: ActivationStatus,
        at: Timestamp,
    ) {
        let record = self.kms_hosts.get_mut(host).expect("KMS host exists");
        record.window_mut(family.kms_line()).record(client, at);
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

    fn decide_request(
        &mut self,
        request_id: &RequestId,
        outcome: RequestOutcome,
        actor: &Principal,
        at: Timestamp,
    ) -> RequestKind {
        let request = self.requests.get_mut(request_id).expect("request exists");
        assert!(request.decision.is_none(), "R19: decided once");
        request.decision = Some(Decision {
            outcome,
            by: actor.clone(),
            at,
        });
        request.kind.clone()
    }

    fn apply_grant(&mut self, actor: &Principal, at: Timestamp, id: &RequestId, amount: u64) {
        let outcome = RequestOutcome::Granted { amount };
        match self.decide_request(id, outcome, actor, at) {
            RequestKind::MakIncrease { key_id, .. } => {
                let key = self.terms_mut(key_id);
                key.granted = key.granted.saturating_add(amount);
            }
            RequestKind::Kms {
                reason: KmsRequestReason::AdditionalHosts,
                key_id: Some(key_id),
                ..
            } => {
                let allowance = self.terms_mut(key_id).kms.as_mut().expect("KMS host key");
                allowance.hosts_granted = allowance.hosts_granted.saturating_add(amount);
            }
            // `request_kms` names the key for every additional-hosts request.
            RequestKind::Kms {
                reason: KmsRequestReason::AdditionalHosts,
                key_id: None,
                ..
            } => {}
            // An Open Value exception grant is followed by its own KeyIssued event.
            RequestKind::Kms {
                reason: KmsRequestReason::OpenValueException,
                ..
            } => {}
        }
    }
}

/// The facts every request event carries (R17, R18), whichever kind it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestParts<'e> {
    /// The request, by the id its requester chose.
    pub request_id: &'e RequestId,
    /// The license ID (a volume-licensing agreement's enrollment) it concerns.
    pub license_id: &'e LicenseId,
    /// The product, by its catalog id.
    pub product: &'e ProductId,
    /// The kind of key (MAK, ESU MAK, KMS host, setup, OSA, embedded).
    pub kind: RequestKind,
    /// Why the request is made, in the requester's words (R17, R18).
    pub justification: &'e str,
}

/// The records the folds keep, read from the events that register them.
impl EventBody {
    /// The license ID a `LicenseIdRegistered` event records, as the record both folds keep.
    pub fn license_record(&self) -> Option<(&LicenseId, LicenseRecord)> {
        let EventBody::LicenseIdRegistered {
            license_id,
            org,
            program,
            agreement_number,
            authorization_number,
            purchase_account,
        } = self
        else {
            return None;
        };
        let record = LicenseRecord {
            org: org.clone(),
            program: *program,
            agreement_number: agreement_number.clone(),
            authorization_number: authorization_number.clone(),
            purchase_account: purchase_account.clone(),
        };
        Some((license_id, record))
    }

    /// The product a `ProductRegistered` event records.
    pub fn product_record(&self) -> Option<(&ProductId, Product)> {
        let EventBody::ProductRegistered {
            product,
            name,
            family,
            version,
            edition,
            key_requirement,
        } = self
        else {
            return None;
        };
        let record = Product {
            name: name.clone(),
            family: *family,
            version: version.clone(),
            edition: edition.clone(),
            key_requirement: *key_requirement,
        };
        Some((product, record))
    }

    /// The request a `MakIncreaseRequested` or `KmsRequested` event records.
    pub fn request_parts(&self) -> Option<RequestParts<'_>> {
        use RequestKind;
        match self {
            EventBody::MakIncreaseRequested {
                request_id,
                license_id,
                product,
                key_id,
                activations_needed,
                justification,
            } => Some(RequestParts {
                request_id,
                license_id,
                product,
                kind: RequestKind::MakIncrease {
                    key_id: *key_id,
                    activations_needed: *activations_needed,
                },
                justification,
            }),
            EventBody::KmsRequested {
                request_id,
                license_id,
                product,
                reason,
                key_id,
                host_activations_needed,
                justification,
            } => Some(RequestParts {
                request_id,
                license_id,
                product,
                kind: RequestKind::Kms {
                    reason: *reason,
                    key_id: *key_id,
                    host_activations_needed: *host_activations_needed,
                },
                justification,
            }),
            _ => None,
        }
    }
}
