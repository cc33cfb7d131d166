//! Folding one event into the read models. Events come from a verified log, so a broken
//! reference is a bug and asserts.

use keyledger_core::rights::Catalog;
use keyledger_core::state::{LicenseRecord, Product};
use keyledger_core::{
    ClientFamily, Event, EventBody, KeyId, KeyKind, KmsLine, KmsRequestReason, LicenseId, ProductId,
};

use crate::model::*;
use keyledger_core::state::RequestKind;

impl Projections {
    /// Folds the event at `seq`; seqs arrive in order.
    pub fn apply(&mut self, seq: u64, event: &Event) {
        assert_eq!(seq, self.last_seq + 1, "events are folded in seq order");
        self.last_seq = seq;
        self.last_at = Some(event.at);
        let (license, key) = self.subjects(&event.body);
        self.apply_body(seq, event);
        self.index(seq, license, key);
    }

    /// Records `seq` in the history of its key and, for events that name one, of its license
    /// ID. A key's events are not copied into its license ID's history: that lookup (a
    /// string search) would sit on every activation; [`Projections::license_history`]
    /// merges the two when asked.
    fn index(&mut self, seq: u64, license: Option<LicenseId>, key: Option<KeyId>) {
        if let Some(view) = key.and_then(|k| self.keys.get_mut(&k)) {
            view.history.push(seq);
        }
        if let Some(view) = license.and_then(|id| self.licenses.get_mut(&id)) {
            view.history.push(seq);
        }
    }

    /// Every seq about a license ID or any of its keys, in order.
    pub fn license_history(&self, id: &LicenseId) -> Option<Vec<u64>> {
        let license = self.licenses.get(id)?;
        let mut seqs = license.history.clone();
        for key in &license.keys {
            seqs.extend_from_slice(&self.keys[key].history);
        }
        seqs.sort_unstable();
        seqs.dedup();
        Some(seqs)
    }

    /// The license ID and key an event is about, for the history index.
    fn subjects(&self, body: &EventBody) -> (Option<LicenseId>, Option<KeyId>) {
        use EventBody::*;
        match body {
            LicenseIdRegistered { license_id, .. }
            | PurchaseRecorded { license_id, .. }
            | EsuOrdered { license_id, .. }
            | RoleAssigned { license_id, .. }
            | RoleRevoked { license_id, .. }
            | KmsRequested {
                license_id,
                key_id: None,
                ..
            } => (Some(license_id.clone()), None),
            KeyIssued {
                license_id, key_id, ..
            }
            | MakIncreaseRequested {
                license_id, key_id, ..
            }
            | KmsRequested {
                license_id,
                key_id: Some(key_id),
                ..
            } => (Some(license_id.clone()), Some(*key_id)),
            KeyBlocked { key_id }
            | MachinesActivated { key_id, .. }
            | KmsHostActivated { key_id, .. }
            | OsaRedeemed { key_id, .. }
            | ActivationRefused {
                key_id: Some(key_id),
                ..
            } => (None, Some(*key_id)),
            RequestGranted { request_id, .. } | RequestDenied { request_id, .. } => {
                let request = &self.requests[request_id];
                let key = match request.kind {
                    RequestKind::MakIncrease { key_id, .. } => Some(key_id),
                    RequestKind::Kms { key_id, .. } => key_id,
                };
                (Some(request.license_id.clone()), key)
            }
            KmsClientContacted { host, family, .. } => {
                let key = self
                    .kms_hosts
                    .get(host)
                    .and_then(|h| match family.kms_line() {
                        KmsLine::Windows => h.windows_key,
                        KmsLine::Office => h.office_key,
                    });
                (None, key)
            }
            OperatorAdded { .. }
            | OrgRegistered { .. }
            | ProductRegistered { .. }
            | ActivationRefused { key_id: None, .. }
            | KeysDisclosed { .. } => (None, None),
        }
    }

    fn apply_body(&mut self, seq: u64, event: &Event) {
        use EventBody::*;
        let at = event.at;
        match &event.body {
            OperatorAdded { principal } => {
                self.operators.insert(principal.clone());
            }
            OrgRegistered { org, name, parent } => {
                let view = OrgView {
                    name: name.clone(),
                    parent: parent.clone(),
                };
                self.orgs.insert(org.clone(), view);
            }
            LicenseIdRegistered { .. } => {
                let (license_id, record) = event.body.license_record().expect("a license ID event");
                let view = LicenseView {
                    record,
                    purchases: Default::default(),
                    keys: Vec::new(),
                    requests: Vec::new(),
                    esu_orders: Vec::new(),
                    history: Vec::new(),
                };
                self.licenses.insert(license_id.clone(), view);
            }
            ProductRegistered { .. } => {
                let (product, record) = event.body.product_record().expect("a product event");
                self.products.insert(product.clone(), record);
            }
            PurchaseRecorded {
                license_id,
                product,
                quantity,
            } => {
                let bought = self
                    .license_mut(license_id)
                    .purchases
                    .entry(product.clone())
                    .or_default();
                *bought = bought.saturating_add(*quantity);
            }
            KeyIssued { .. } => self.apply_key_issued(at, &event.body),
            KeyBlocked { key_id } => self.key_mut(*key_id).blocked = true,
            EsuOrdered {
                order_id,
                license_id,
                product,
                coverage,
            } => {
                let view = EsuOrderView {
                    license_id: license_id.clone(),
                    product: product.clone(),
                    coverage: *coverage,
                    ordered_at: at,
                };
                self.esu_orders.insert(order_id.clone(), view);
                self.license_mut(license_id)
                    .esu_orders
                    .push(order_id.clone());
            }
            MachinesActivated {
                key_id, machines, ..
            } => {
                let key = self.key_mut(*key_id);
                let consumed = machines.len() as u64;
                key.used += consumed;
                if consumed > 0 {
                    *key.daily.entry(at.unix_day()).or_default() += consumed;
                }
            }
            KmsHostActivated {
                key_id,
                host,
                activation,
                ..
            } => self.apply_kms_host(*key_id, host, *activation),
            KmsClientContacted {
                host,
                client,
                family,
                ..
            } => {
                let view = self.kms_hosts.get_mut(host).expect("KMS host exists");
                let contacts = match family {
                    ClientFamily::Office => &mut view.office_contacts,
                    _ => &mut view.windows_contacts,
                };
                contacts.insert(client.clone(), at);
            }
            OsaRedeemed { key_id, tenant } => {
                self.key_mut(*key_id).osa_tenant = Some(tenant.clone())
            }
            ActivationRefused { key_id, code, .. } => {
                if let Some(key_id) = key_id {
                    *self.key_mut(*key_id).refusals.entry(*code).or_default() += 1;
                }
            }
            MakIncreaseRequested { .. } | KmsRequested { .. } => self.apply_request(event),
            RequestGranted { request_id, amount } => self.apply_grant(event, request_id, *amount),
            RequestDenied { request_id, reason } => {
                let request = self.requests.get_mut(request_id).expect("request exists");
                request.outcome = Outcome::Denied {
                    reason: reason.clone(),
                    decided_by: event.actor.clone(),
                    decided_at: at,
                };
            }
            RoleAssigned {
                principal,
                license_id,
                role,
            }
            | RoleRevoked {
                principal,
                license_id,
                role,
            } => {
                let assigned = matches!(event.body, RoleAssigned { .. });
                let held = self
                    .roles
                    .entry((license_id.clone(), principal.clone()))
                    .or_default();
                if assigned {
                    held.insert(*role);
                } else {
                    held.remove(role);
                }
                self.role_history.push(RoleChange {
                    seq,
                    at,
                    principal: principal.clone(),
                    license_id: license_id.clone(),
                    role: *role,
                    assigned,
                });
            }
            KeysDisclosed {
                key_ids,
                channel,
                export_digest,
            } => self.disclosures.push(DisclosureView {
                seq,
                at,
                actor: event.actor.clone(),
                key_ids: key_ids.clone(),
                channel: *channel,
                export_digest: *export_digest,
            }),
        }
    }

    fn license_mut(&mut self, id: &LicenseId) -> &mut LicenseView {
        self.licenses.get_mut(id).expect("license ID exists")
    }

    fn key_mut(&mut self, id: KeyId) -> &mut KeyView {
        self.keys.get_mut(&id).expect("key exists")
    }

    fn apply_key_issued(&mut self, at: keyledger_core::Timestamp, body: &EventBody) {
        let EventBody::KeyIssued {
            key_id,
            license_id,
            product,
            kind,
            limit,
            hosts_max,
            per_host_max,
            coverage,
            last5,
            fingerprint,
        } = body
        else {
            unreachable!("apply_key_issued takes KeyIssued")
        };
        let kms = (*kind == KeyKind::KmsHost).then(|| KmsKeyView {
            hosts_max: *hosts_max,
            hosts_granted: 0,
            per_host_max: *per_host_max,
            hosts: Default::default(),
        });
        let view = KeyView {
            license_id: license_id.clone(),
            product: product.clone(),
            kind: *kind,
            last5: *last5,
            fingerprint: *fingerprint,
            issued_at: at,
            limit: *limit,
            granted: 0,
            used: 0,
            blocked: false,
            coverage: *coverage,
            kms,
            osa_tenant: None,
            refusals: Default::default(),
            daily: Default::default(),
            history: Vec::new(),
        };
        self.keys.insert(*key_id, view);
        self.license_mut(license_id).keys.push(*key_id);
    }

    fn apply_kms_host(&mut self, key_id: KeyId, host: &keyledger_core::HostId, activation: u32) {
        let product = self.keys[&key_id].product.clone();
        let line = self.products[&product].family.kms_line();
        let kms = self.key_mut(key_id).kms.as_mut().expect("KMS host key");
        kms.hosts.insert(host.clone(), activation);
        let view = self.kms_hosts.entry(host.clone()).or_default();
        match line {
            Some(KmsLine::Office) => view.office_key = Some(key_id),
            _ => view.windows_key = Some(key_id),
        }
    }

    fn apply_request(&mut self, event: &Event) {
        let parts = event
            .body
            .request_parts()
            .expect("apply_request takes request events");
        let view = RequestView {
            license_id: parts.license_id.clone(),
            product: parts.product.clone(),
            kind: parts.kind,
            justification: parts.justification.to_owned(),
            requested_by: event.actor.clone(),
            requested_at: event.at,
            outcome: Outcome::Pending,
        };
        self.requests.insert(parts.request_id.clone(), view);
        self.license_mut(parts.license_id)
            .requests
            .push(parts.request_id.clone());
    }

    fn apply_grant(&mut self, event: &Event, request_id: &keyledger_core::RequestId, amount: u64) {
        let request = self.requests.get_mut(request_id).expect("request exists");
        request.outcome = Outcome::Granted {
            amount,
            decided_by: event.actor.clone(),
            decided_at: event.at,
        };
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
                let kms = self.key_mut(key_id).kms.as_mut().expect("KMS host key");
                kms.hosts_granted = kms.hosts_granted.saturating_add(amount);
            }
            RequestKind::Kms { .. } => {}
        }
    }

    /// Who held a role allowing disclosure (R1) on `license_id` at the end of `seq`.
    pub fn disclosure_holders_at(
        &self,
        license_id: &LicenseId,
        seq: u64,
    ) -> Vec<(keyledger_core::Principal, Vec<keyledger_core::Role>)> {
        let mut held: std::collections::BTreeMap<_, std::collections::BTreeSet<_>> =
            Default::default();
        for change in self
            .role_history
            .iter()
            .filter(|c| c.seq <= seq && &c.license_id == license_id)
        {
            let roles = held.entry(change.principal.clone()).or_default();
            if change.assigned {
                roles.insert(change.role);
            } else {
                roles.remove(&change.role);
            }
        }
        held.into_iter()
            .map(|(p, roles)| {
                (
                    p,
                    roles
                        .into_iter()
                        .filter(|r| r.may_see_key_text())
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, roles)| !roles.is_empty())
            .collect()
    }
}

impl Catalog for Projections {
    fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.get(id)
    }

    fn products(&self) -> Box<dyn Iterator<Item = (&ProductId, &Product)> + '_> {
        Box::new(self.products.iter())
    }

    fn license(&self, id: &LicenseId) -> Option<&LicenseRecord> {
        self.licenses.get(id).map(|l| &l.record)
    }

    fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        self.licenses
            .get(license_id)
            .and_then(|l| l.purchases.get(product).copied())
            .unwrap_or(0)
    }
}
