//! Folding one event into the read models: its effect on the books through the one shared
//! fold ([`Books::apply`](keyledger_core::books::Books::apply)), then what only the read
//! models keep (license listings, refusals, daily counts, roles' and disclosures' history,
//! the history index). Events come from a verified log, so a broken reference is a bug and
//! asserts.

use keyledger_core::rights::Catalog;
use keyledger_core::state::RequestKind;
use keyledger_core::state::{LicenseRecord, Product};
use keyledger_core::{Event, EventBody, KeyId, LicenseId, ProductId};

use crate::model::*;

impl Projections {
    /// Folds the event at `seq`; seqs arrive in order.
    pub fn apply(&mut self, seq: u64, event: &Event) {
        assert_eq!(seq, self.last_seq + 1, "events are folded in seq order");
        self.last_seq = seq;
        self.last_at = Some(event.at);
        self.books.apply(event);
        if let EventBody::MachinesActivated {
            key_id,
            already_active,
            ..
        } = &event.body
        {
            // Nearly every event: its daily count rode on the books' fold
            // (`KeyView::machines_activated`); all that is left is the key's history. Going
            // through `subjects` and `apply_extras` instead costs 17% more instructions per
            // event (callgrind: 234 against 199).
            let key = self.key_mut(*key_id);
            if *already_active > 0 {
                key.day_mut(event.at).already_active += u64::from(*already_active);
            }
            key.history.push(seq);
            return;
        }
        // After the books' fold, so an event's own key or request is there to be named.
        let (license, key) = self.subjects(&event.body);
        self.apply_extras(seq, event);
        self.count_day(event, key);
        self.index(seq, license, key);
        if let EventBody::KeysDisclosed { key_ids, .. } = &event.body {
            self.index_disclosure(seq, key_ids);
        }
    }

    /// A disclosure belongs to the history of every license ID whose keys it showed (F4):
    /// the license's role holders, its consumers and its auditors read who saw its keys.
    fn index_disclosure(&mut self, seq: u64, key_ids: &[KeyId]) {
        let licenses: std::collections::BTreeSet<LicenseId> = key_ids
            .iter()
            .filter_map(|k| self.books.keys.get(*k))
            .map(|key| key.license_id.clone())
            .collect();
        for license in licenses {
            if let Some(view) = self.license_views.get_mut(&license) {
                view.history.push(seq);
            }
        }
    }

    /// Records `seq` in the history of its key and, for events that name one, of its license
    /// ID. A key's events are not copied into its license ID's history: that lookup (a
    /// string search) would sit on every activation; [`Projections::license_history`]
    /// merges the two when asked.
    fn index(&mut self, seq: u64, license: Option<LicenseId>, key: Option<KeyId>) {
        if let Some(view) = key.and_then(|k| self.books.keys.get_mut(k)) {
            view.history.push(seq);
        }
        if let Some(view) = license.and_then(|id| self.license_views.get_mut(&id)) {
            view.history.push(seq);
        }
    }

    /// Every seq about a license ID or any of its keys, in order.
    pub fn license_history(&self, id: &LicenseId) -> Option<Vec<u64>> {
        let license = self.license_views.get(id)?;
        let mut seqs = license.history.clone();
        for key in &license.keys {
            seqs.extend_from_slice(&self.books.keys[*key].history);
        }
        seqs.sort_unstable();
        seqs.dedup();
        Some(seqs)
    }

    /// At most `limit` seqs of a license ID's history in `from..=until`, in order: the
    /// sorted histories of the license ID and of each of its keys merged from `from` on, so
    /// a page costs in proportion to the page (and the number of keys), not to the history.
    pub fn license_history_page(
        &self,
        id: &LicenseId,
        from: u64,
        until: u64,
        limit: usize,
    ) -> Option<Vec<u64>> {
        use std::cmp::Reverse;
        let license = self.license_views.get(id)?;
        let sources: Vec<&[u64]> = std::iter::once(license.history.as_slice())
            .chain(
                license
                    .keys
                    .iter()
                    .map(|k| self.books.keys[*k].history.as_slice()),
            )
            .map(|h| &h[h.partition_point(|s| *s < from)..])
            .filter(|h| !h.is_empty())
            .collect();
        let mut heap: std::collections::BinaryHeap<Reverse<(u64, usize, usize)>> = sources
            .iter()
            .enumerate()
            .map(|(i, h)| Reverse((h[0], i, 0)))
            .collect();
        let mut page: Vec<u64> = Vec::with_capacity(limit.min(4096));
        while let Some(Reverse((seq, source, at))) = heap.pop() {
            if seq > until || page.len() == limit {
                break;
            }
            if page.last() != Some(&seq) {
                page.push(seq);
            }
            if let Some(next) = sources[source].get(at + 1) {
                heap.push(Reverse((*next, source, at + 1)));
            }
        }
        Some(page)
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
            | KeyTextRetired { key_id, .. }
            | ExternalCountRecorded { key_id, .. }
            | MachinesActivated { key_id, .. }
            | MachinesAlreadyActive { key_id, .. }
            | KmsHostActivated { key_id, .. }
            | OsaRedeemed { key_id, .. }
            | ActivationRefused {
                key_id: Some(key_id),
                ..
            } => (None, Some(*key_id)),
            RequestGranted { request_id, .. } | RequestDenied { request_id, .. } => {
                let request = &self.books.requests[request_id];
                let key = match request.kind {
                    RequestKind::MakIncrease { key_id, .. } => Some(key_id),
                    RequestKind::Kms { key_id, .. } => key_id,
                };
                (Some(request.license_id.clone()), key)
            }
            KmsClientContacted { host, family, .. } => {
                let key = self
                    .books
                    .kms_hosts
                    .get(host)
                    .and_then(|h| h.key_for(family.kms_line()));
                (None, key)
            }
            OperatorAdded { .. }
            | OrgRegistered { .. }
            | ProductRegistered { .. }
            | ActivationRefused { key_id: None, .. }
            | KeysDisclosed { .. } => (None, None),
        }
    }

    /// What the read models keep beside the books. Every variant is named: a new event must
    /// be looked at here too.
    fn apply_extras(&mut self, seq: u64, event: &Event) {
        use EventBody::*;
        match &event.body {
            LicenseIdRegistered { license_id, .. } => {
                self.license_views
                    .insert(license_id.clone(), LicenseView::default());
            }
            KeyIssued {
                key_id, license_id, ..
            } => self.license_mut(license_id).keys.push(*key_id),
            EsuOrdered {
                order_id,
                license_id,
                ..
            } => self
                .license_mut(license_id)
                .esu_orders
                .push(order_id.clone()),
            MakIncreaseRequested {
                request_id,
                license_id,
                ..
            }
            | KmsRequested {
                request_id,
                license_id,
                ..
            } => self
                .license_mut(license_id)
                .requests
                .push(request_id.clone()),
            ActivationRefused {
                key_id: Some(key_id),
                code,
                ..
            } => *self.key_mut(*key_id).refusals.entry(*code).or_default() += 1,
            ExternalCountRecorded { key_id, .. } => {
                self.key_mut(*key_id).external = external_count(seq, event);
            }
            RoleAssigned { .. } | RoleRevoked { .. } => {
                self.role_history.extend(role_change(seq, event));
            }
            KeysDisclosed { .. } => self.disclosures.extend(disclosure(seq, event)),
            OperatorAdded { .. }
            // Daily consumption: `KeyView::machines_activated`, called by the books' fold.
            | MachinesActivated { .. }
            | OrgRegistered { .. }
            | ProductRegistered { .. }
            | PurchaseRecorded { .. }
            | KeyBlocked { .. }
            | KeyTextRetired { .. }
            // Counted by the `machines_activated` before it (its `already_active`).
            | MachinesAlreadyActive { .. }
            // The day buckets: `count_day`.
            | KmsHostActivated { .. }
            | KmsClientContacted { .. }
            | OsaRedeemed { .. }
            | ActivationRefused { key_id: None, .. }
            | RequestGranted { .. }
            | RequestDenied { .. } => {}
        }
    }

    /// The day buckets of usage over time, for the events about `key` that count in them
    /// (activations count theirs in [`Projections::apply`] and the books' fold).
    fn count_day(&mut self, event: &Event, key: Option<KeyId>) {
        use EventBody::*;
        let Some(key_id) = key else { return };
        let count: fn(&mut DayUsage, u64) = match &event.body {
            ActivationRefused { code, .. } => {
                let code = *code;
                let day = self.key_mut(key_id).day_mut(event.at);
                *day.refused.entry(code).or_default() += 1;
                return;
            }
            KmsClientContacted { .. } => |d, n| d.kms_contacts += n,
            KmsHostActivated { .. } => |d, n| d.kms_host_activations += n,
            RequestGranted { .. } => |d, n| d.granted += n,
            _ => return,
        };
        let amount = match &event.body {
            RequestGranted { amount, .. } => *amount,
            _ => 1,
        };
        count(self.key_mut(key_id).day_mut(event.at), amount);
    }

    fn license_mut(&mut self, id: &LicenseId) -> &mut LicenseView {
        self.license_views.get_mut(id).expect("license ID exists")
    }

    fn key_mut(&mut self, id: KeyId) -> &mut KeyView {
        self.books.keys.get_mut(id).expect("key exists")
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
        self.books.products.get(id)
    }

    fn products(&self) -> Box<dyn Iterator<Item = (&ProductId, &Product)> + '_> {
        Box::new(self.books.products.iter())
    }

    fn license(&self, id: &LicenseId) -> Option<&LicenseRecord> {
        self.books.licenses.get(id)
    }

    fn purchased(&self, license_id: &LicenseId, product: &ProductId) -> u64 {
        self.books.purchased(license_id, product)
    }
}

/// The outside count an `external_count_recorded` event (at `seq`) records.
fn external_count(seq: u64, event: &Event) -> Option<ExternalCount> {
    let EventBody::ExternalCountRecorded {
        source,
        remaining,
        observed_at,
        note,
        ledger_remaining,
        ..
    } = &event.body
    else {
        return None;
    };
    Some(ExternalCount {
        seq,
        recorded_at: event.at,
        recorded_by: event.actor.clone(),
        source: source.clone(),
        remaining: *remaining,
        observed_at: *observed_at,
        note: note.clone(),
        ledger_remaining: *ledger_remaining,
    })
}

/// The role change a `role_assigned` or `role_revoked` event (at `seq`) records.
fn role_change(seq: u64, event: &Event) -> Option<RoleChange> {
    let (EventBody::RoleAssigned {
        principal,
        license_id,
        role,
    }
    | EventBody::RoleRevoked {
        principal,
        license_id,
        role,
    }) = &event.body
    else {
        return None;
    };
    Some(RoleChange {
        seq,
        at: event.at,
        principal: principal.clone(),
        license_id: license_id.clone(),
        role: *role,
        assigned: matches!(event.body, EventBody::RoleAssigned { .. }),
    })
}

/// Who saw which key texts, as a `keys_disclosed` event (at `seq`) records (R1, R2).
fn disclosure(seq: u64, event: &Event) -> Option<DisclosureView> {
    let EventBody::KeysDisclosed {
        key_ids,
        channel,
        export_digest,
    } = &event.body
    else {
        return None;
    };
    Some(DisclosureView {
        seq,
        at: event.at,
        actor: event.actor.clone(),
        key_ids: key_ids.clone(),
        channel: *channel,
        export_digest: *export_digest,
    })
}
