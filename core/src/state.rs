//! `State`: everything `decide` needs to know. Its facts are [`Books`], folded by the one
//! fold of every event's effect ([`Books::apply`]), which the read models share; what the
//! state adds is its own: hash indexes, so that every lookup a decision makes is a hash-map
//! probe (O(1)) or, for the KMS contact window, a B-tree operation (O(log n)), and the
//! [`MachineFacts`] a decision needs (which machines are active on a key: looked up on disk
//! by the writer, never all kept in memory).

use std::collections::BTreeSet;

pub use crate::maps::{HashMap, HashSet};

pub use crate::books::{
    Books, ContactWindow, Decision, EsuOrder, KeyRecord, KeyTerms, KmsAllowance, KmsHost,
    LicenseRecord, Org, Product, Request, RequestKind, RequestOutcome, KMS_CONTACT_WINDOW,
};
use crate::catalog::Role;
use crate::event::{Event, EventBody};
pub use crate::facts::MachineFacts;
use crate::ids::{
    HostId, KeyId, LicenseId, MachineId, OrderId, OrgId, Principal, ProductId, RequestId,
};
use crate::product_key::Fingerprint;
use crate::time::Timestamp;

/// A key as decisions see it: its terms (read through `Deref`). Its activated machines are
/// [`MachineFacts`], not kept here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    terms: KeyTerms,
}

impl From<KeyTerms> for Key {
    fn from(terms: KeyTerms) -> Key {
        Key { terms }
    }
}

impl KeyRecord for Key {
    fn terms(&self) -> &KeyTerms {
        &self.terms
    }

    fn terms_mut(&mut self) -> &mut KeyTerms {
        &mut self.terms
    }
}

impl std::ops::Deref for Key {
    type Target = KeyTerms;

    fn deref(&self) -> &KeyTerms {
        &self.terms
    }
}

/// The decision state of the whole ledger.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct State {
    books: Books<Key>,
    /// Org → the root of its ownership structure (R7): probed by every activation.
    org_roots: HashMap<OrgId, OrgId>,
    keys_by_fingerprint:
        std::collections::HashMap<Fingerprint, KeyId, crate::product_key::DigestHashBuilder>,
    keys_by_license_product: HashMap<(LicenseId, ProductId), Vec<KeyId>>,
    /// Which machines are active on which key, as far as the decision at hand needs.
    pub machine_facts: MachineFacts,
}

impl State {
    /// The facts, as the read models see them too.
    pub fn books(&self) -> &Books<Key> {
        &self.books
    }

    /// The business time of the newest event; commands before it are `time_regression`.
    pub fn newest_at(&self) -> Option<Timestamp> {
        self.books.newest_at
    }

    /// Whether `principal` is an operator (R3).
    pub fn is_operator(&self, principal: &Principal) -> bool {
        self.books.is_operator(principal)
    }

    /// Whether any operator exists (none: the ledger is empty).
    pub fn has_operators(&self) -> bool {
        !self.books.operators.is_empty()
    }

    /// The org of this id, if registered.
    pub fn org(&self, org: &OrgId) -> Option<&Org> {
        self.books.orgs.get(org)
    }

    /// Whether an org of this id is registered.
    pub fn has_org(&self, org: &OrgId) -> bool {
        self.org_roots.contains_key(org)
    }

    /// The license ID of this id, if registered.
    pub fn license(&self, license_id: &LicenseId) -> Option<&LicenseRecord> {
        self.books.licenses.get(license_id)
    }

    /// The product of this id, if registered.
    pub fn product(&self, product: &ProductId) -> Option<&Product> {
        self.books.products.get(product)
    }

    /// Every product, by id.
    pub fn products(&self) -> impl Iterator<Item = (&ProductId, &Product)> {
        self.books.products.iter()
    }

    /// Units bought (R7, R24), kept apart from activations.
    pub fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        self.books.purchased(license_id, product)
    }

    /// The key of this id, if issued.
    pub fn key(&self, key_id: KeyId) -> Option<&Key> {
        self.books.keys.get(key_id)
    }

    /// Every key, in issuance order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.books.keys.values()
    }

    /// R9: whether `machine` is active on `key` (see [`MachineFacts::active`]).
    pub fn machine_active(&self, key: KeyId, machine: &MachineId) -> bool {
        self.machine_facts.active(key, machine)
    }

    /// The key whose text has this fingerprint, if any (one hash-map probe).
    pub fn key_by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<&Key> {
        self.keys_by_fingerprint
            .get(fingerprint)
            .and_then(|id| self.key(*id))
    }

    /// The keys issued under `license_id` for `product`, in issuance order.
    pub fn keys_of(&self, license_id: &LicenseId, product: &ProductId) -> &[KeyId] {
        self.keys_by_license_product
            .get(&(license_id.clone(), product.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// The id the next issued key gets.
    pub fn next_key_id(&self) -> KeyId {
        self.books.keys.next_id()
    }

    /// The activated KMS host of this name, if any.
    pub fn kms_host(&self, host: &HostId) -> Option<&KmsHost> {
        self.books.kms_hosts.get(host)
    }

    /// The request of this id, if filed.
    pub fn request(&self, request_id: &RequestId) -> Option<&Request> {
        self.books.requests.get(request_id)
    }

    /// The ESU order of this id, if recorded.
    pub fn esu_order(&self, order_id: &OrderId) -> Option<&EsuOrder> {
        self.books.esu_orders.get(order_id)
    }

    /// Whether `principal` holds `role` on `license_id`.
    pub fn has_role(&self, principal: &Principal, license_id: &LicenseId, role: Role) -> bool {
        self.roles_of(principal, license_id)
            .is_some_and(|roles| roles.contains(&role))
    }

    /// Whether `principal` holds any of `roles` on `license_id`.
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
        self.books.roles_of(principal, license_id)
    }

    /// R7: whether `org` belongs to the ownership structure `key` may be used in.
    pub fn may_use(&self, org: &OrgId, key: &Key) -> bool {
        self.org_roots
            .get(org)
            .is_some_and(|root| *root == key.owner_root)
    }

    /// R7: whether `org` shares an ownership structure with the org owning `license_id`.
    pub fn same_ownership_structure(&self, org: &OrgId, license_id: &LicenseId) -> bool {
        let Some(license) = self.books.licenses.get(license_id) else {
            return false;
        };
        match (self.org_roots.get(org), self.org_roots.get(&license.org)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// The state whose books are `books` (its indexes built from them), with `machine_facts`:
    /// what a writer resumes from instead of folding the log from its first event. Equal to
    /// the fold of the events that made `books` (test `state_from_books_equals_the_fold`).
    pub fn from_books(books: Books<Key>, machine_facts: MachineFacts) -> State {
        let mut state = State {
            books,
            machine_facts,
            ..State::default()
        };
        for (id, org) in &state.books.orgs {
            state.org_roots.insert(id.clone(), org.root.clone());
        }
        // Key ids ascend in issue order: each list keeps the order the fold gives it.
        for (id, key) in state.books.keys.iter() {
            state.keys_by_fingerprint.insert(key.fingerprint, id);
            state
                .keys_by_license_product
                .entry((key.license_id.clone(), key.product.clone()))
                .or_default()
                .push(id);
        }
        state
    }

    /// Folds one event: its effect on the books, then the state's own indexes.
    pub fn apply(&mut self, event: &Event) {
        self.books.apply(event);
        self.index(&event.body);
    }

    /// What the state keeps beside the books. Every variant is named: a new event must be
    /// looked at here too.
    fn index(&mut self, body: &EventBody) {
        match body {
            EventBody::OrgRegistered { org, .. } => {
                let root = self.books.orgs[org].root.clone();
                self.org_roots.insert(org.clone(), root);
            }
            EventBody::KeyIssued {
                key_id,
                license_id,
                product,
                fingerprint,
                ..
            } => {
                self.keys_by_fingerprint.insert(*fingerprint, *key_id);
                self.keys_by_license_product
                    .entry((license_id.clone(), product.clone()))
                    .or_default()
                    .push(*key_id);
            }
            EventBody::MachinesActivated {
                key_id, machines, ..
            } => self.machine_facts.activated(*key_id, machines),
            EventBody::OperatorAdded { .. }
            | EventBody::LicenseIdRegistered { .. }
            | EventBody::ProductRegistered { .. }
            | EventBody::PurchaseRecorded { .. }
            | EventBody::KeyBlocked { .. }
            | EventBody::EsuOrdered { .. }
            | EventBody::KmsHostActivated { .. }
            | EventBody::KmsClientContacted { .. }
            | EventBody::OsaRedeemed { .. }
            | EventBody::ActivationRefused { .. }
            | EventBody::MakIncreaseRequested { .. }
            | EventBody::KmsRequested { .. }
            | EventBody::RequestGranted { .. }
            | EventBody::RequestDenied { .. }
            | EventBody::RoleAssigned { .. }
            | EventBody::RoleRevoked { .. }
            | EventBody::KeysDisclosed { .. }
            | EventBody::KeyTextRetired { .. }
            | EventBody::ExternalCountRecorded { .. }
            | EventBody::MachinesAlreadyActive { .. }
            | EventBody::StreamsCommitted { .. } => {}
        }
    }
}
