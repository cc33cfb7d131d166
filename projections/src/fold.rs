//! Folding one event into the read models: its effect on the books through the one shared
//! fold ([`Books::apply`](keyledger_core::books::Books::apply)), then what only the read
//! models keep (license listings, refusals, daily counts, roles' and disclosures' history,
//! the history index). Events come from a verified log, so a broken reference is a bug and
//! asserts.

use keyledger_core::{Event, EventBody, KeyId, LicenseId};

use crate::model::*;

impl Projections {
    /// Folds one event of a chosen subset of the log (a statement's events): seqs increase
    /// but skip the events left out.
    pub fn apply_selected(&mut self, seq: u64, event: &Event) {
        assert!(seq > self.last_seq, "events are folded in seq order");
        self.last_seq = seq - 1;
        self.apply(seq, event);
    }

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
            // (`KeyView::machines_activated`); its history is the index beside the log.
            // Going through `subjects` and `apply_extras` instead costs 17% more
            // instructions per event (callgrind: 234 against 199).
            let key = self.key_mut(*key_id);
            if *already_active > 0 {
                key.day_mut(event.at).already_active += u64::from(*already_active);
            }
            return;
        }
        self.apply_extras(seq, event);
        // After the books' fold and the extras, so an event's own key, request or KMS host
        // is there to be named.
        let key = self.subjects(seq, &event.body).key;
        self.count_day(event, key);
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
            KmsHostActivated { key_id, host, .. } => self.note_kms_served(seq, *key_id, host),
            OperatorAdded { .. }
            // About the log, not the licenses.
            | StreamsCommitted { .. }
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
            | KmsClientContacted { .. }
            | OsaRedeemed { .. }
            | ActivationRefused { key_id: None, .. }
            | RequestGranted { .. }
            | RequestDenied { .. } => {}
        }
    }

    /// Which key a KMS host serves for a line from `seq` on, when that changes (a contact's
    /// history is its host's key at the time: `Projections::key_served`).
    fn note_kms_served(&mut self, seq: u64, key_id: KeyId, host: &keyledger_core::HostId) {
        let line = self
            .books
            .kms_line_of(key_id)
            .expect("a KMS host key's product has a KMS line");
        let served = self.kms_served.entry(host.clone()).or_default();
        let current = served.iter().rev().find(|(_, l, _)| *l == line);
        if current.is_none_or(|(_, _, key)| *key != key_id) {
            served.push((seq, line, key_id));
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
