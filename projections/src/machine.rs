//! Machine history (VAMT's per-computer product list; a helpdesk's first question): every
//! event naming one machine, KMS host or client — keys activated on it, repeats while it
//! was active, refusals, KMS host activations and client contacts — with the license ID,
//! org and method of each, and the seq that is its inclusion proof. The events come from
//! the store's machine index; this module only turns them into rows.

use keyledger_core::event::ActivationAttempt;
use keyledger_core::{
    ActivationMethod, ActivationStatus, ClientFamily, Event, EventBody, KeyId, LicenseId, Timestamp,
};
use serde::Serialize;

use crate::model::Projections;
use crate::table::Format;

/// One event of a machine's history.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MachineRow {
    /// The event's seq.
    pub seq: u64,
    /// When it happened (business time).
    pub at: Timestamp,
    /// `activated`, `already_active`, `refused`, `kms_host_activated` or
    /// `kms_client_contacted`.
    pub what: &'static str,
    /// The key involved, if known.
    pub key_id: Option<u64>,
    /// The key's license ID, if known.
    pub license_id: Option<String>,
    /// The key's product, if known.
    pub product: Option<String>,
    /// The org the event named, if any.
    pub org: Option<String>,
    /// The activation method, for MAK activations and refusals.
    pub method: Option<ActivationMethod>,
    /// Refusals: the code (R10) and, for R9, what was left.
    pub code: Option<String>,
    /// For an R9 refusal, the activations that were left.
    pub remaining: Option<u64>,
    /// KMS client contacts: the host contacted, the client's family, the host's count for
    /// its line and the status it answered (R14); KMS host activations: `count` is the
    /// host's n-th activation on the key (R13).
    pub host: Option<String>,
    /// A KMS client's family.
    pub family: Option<ClientFamily>,
    /// The host's count (a client contact) or the host's n-th activation (a host activation).
    pub count: Option<u32>,
    /// What the KMS host answered the client (R14).
    pub status: Option<ActivationStatus>,
    /// Who caused the event.
    pub actor: String,
    /// Where its inclusion proof is served (`keyledger prove inclusion --seq SEQ` offline).
    pub proof: String,
}

/// A page of a machine's history (`keyledger machine`, `GET /v1/machines/{name}`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MachineHistory {
    /// The machine's name.
    pub machine: String,
    /// The last seq folded into this answer.
    pub at_seq: u64,
    /// Its events the reader may read, oldest first.
    pub rows: Vec<MachineRow>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<u64>,
}

/// A row for each event, of those `may_read` lets through (by the license ID the event is
/// about; `None` for refusals of unknown keys).
pub fn history(
    p: &Projections,
    events: &[(u64, Event)],
    may_read: impl Fn(Option<&LicenseId>) -> bool,
) -> Vec<MachineRow> {
    events
        .iter()
        .filter_map(|(seq, event)| row(p, *seq, event))
        .filter(|row| {
            let license = row
                .license_id
                .as_deref()
                .and_then(|l| LicenseId::new(l).ok());
            may_read(license.as_ref())
        })
        .collect()
}

/// Which of a key's activated machines to list.
#[derive(Clone, Debug, Default)]
pub struct KeyMachineFilter {
    /// Only machines activated for this org.
    pub org: Option<keyledger_core::OrgId>,
    /// Only machines activated by this method.
    pub method: Option<ActivationMethod>,
    /// Activated at or after `from`, before `to`.
    pub from: Option<Timestamp>,
    /// The end of the range (exclusive).
    pub to: Option<Timestamp>,
}

/// One machine a key activated (R9), with the activation that consumed it.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyMachine {
    /// The machine's name.
    pub machine: String,
    /// The seq of the activation that consumed it.
    pub seq: u64,
    /// When it was activated.
    pub at: Timestamp,
    /// The org it was activated for.
    pub org: String,
    /// How it was activated.
    pub method: ActivationMethod,
}

/// A page of a key's activated machines (`GET /v1/keys/{id}/machines`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyMachines {
    /// The key.
    pub key_id: u64,
    /// The key's license ID.
    pub license_id: String,
    /// The last seq folded into this answer.
    pub at_seq: u64,
    /// The machines of this page, in activation order.
    pub machines: Vec<KeyMachine>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<u64>,
}

/// The machines the event at `seq` activated on `key_id`, as `filter` selects them.
pub fn key_machines(
    key_id: KeyId,
    seq: u64,
    event: &Event,
    filter: &KeyMachineFilter,
    out: &mut Vec<KeyMachine>,
) {
    let EventBody::MachinesActivated {
        key_id: of,
        org,
        method,
        machines,
        ..
    } = &event.body
    else {
        return;
    };
    let selected = *of == key_id
        && filter.org.as_ref().is_none_or(|o| o == org)
        && filter.method.is_none_or(|m| m == *method)
        && filter.from.is_none_or(|t| event.at >= t)
        && filter.to.is_none_or(|t| event.at < t);
    if selected {
        out.extend(machines.iter().map(|m| KeyMachine {
            machine: m.to_string(),
            seq,
            at: event.at,
            org: org.to_string(),
            method: *method,
        }));
    }
}

impl KeyMachines {
    /// The machines as `format` (table, TSV or JSON).
    pub fn render(&self, format: Format) -> String {
        let columns = ["machine", "seq", "at", "org", "method"];
        let cells = |m: &KeyMachine| {
            vec![
                m.machine.clone(),
                m.seq.to_string(),
                m.at.to_string(),
                m.org.clone(),
                m.method.to_string(),
            ]
        };
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("lists serialize") + "\n",
            Format::Tsv => crate::table::tsv(&columns, self.machines.iter().map(cells)),
            Format::Table => {
                let table = crate::table::grid(&columns, self.machines.iter().map(cells));
                let more = self
                    .next_after
                    .map_or_else(String::new, |a| format!("more: --after {a}\n"));
                format!(
                    "Machines of key {} ({}) · as of seq {}\n{table}\n{more}",
                    self.key_id, self.license_id, self.at_seq
                )
            }
        }
    }
}

/// A row of `event` with only what every row has filled in.
fn blank(seq: u64, event: &Event) -> MachineRow {
    MachineRow {
        seq,
        at: event.at,
        what: "",
        key_id: None,
        license_id: None,
        product: None,
        org: None,
        method: None,
        code: None,
        remaining: None,
        host: None,
        family: None,
        count: None,
        status: None,
        actor: event.actor.to_string(),
        proof: format!("/v1/proofs/inclusion?seq={seq}"),
    }
}

/// The row of an event that names a machine, KMS host or client; `None` for any other.
fn row(p: &Projections, seq: u64, event: &Event) -> Option<MachineRow> {
    let mut row = blank(seq, event);
    let key = match &event.body {
        EventBody::MachinesActivated {
            key_id,
            org,
            method,
            ..
        }
        | EventBody::MachinesAlreadyActive {
            key_id,
            org,
            method,
            ..
        } => {
            row.what = match event.body {
                EventBody::MachinesActivated { .. } => "activated",
                _ => "already_active",
            };
            row.org = Some(org.to_string());
            row.method = Some(*method);
            Some(*key_id)
        }
        EventBody::KmsHostActivated {
            key_id,
            org,
            activation,
            ..
        } => {
            row.what = "kms_host_activated";
            row.org = Some(org.to_string());
            // R13: the host's n-th activation on the key.
            row.count = Some(*activation);
            Some(*key_id)
        }
        EventBody::KmsClientContacted {
            host,
            family,
            count,
            status,
            ..
        } => {
            row.what = "kms_client_contacted";
            row.host = Some(host.to_string());
            row.family = Some(*family);
            row.count = Some(*count);
            row.status = Some(*status);
            p.books
                .kms_hosts
                .get(host)
                .and_then(|h| h.key_for(family.kms_line()))
        }
        EventBody::ActivationRefused {
            key_id,
            attempt,
            code,
            remaining,
        } => {
            refused(&mut row, attempt, *code, *remaining);
            *key_id
        }
        _ => return None,
    };
    if let Some(key) = key.and_then(|k: KeyId| p.books.keys.get(k).map(|v| (k, v))) {
        row.key_id = Some(key.0 .0);
        row.license_id = Some(key.1.license_id.to_string());
        row.product = Some(key.1.product.to_string());
    }
    Some(row)
}

/// What a refusal row adds: the code (R10), what was left (R9), and the attempt's org and
/// method or host and family.
fn refused(
    row: &mut MachineRow,
    attempt: &ActivationAttempt,
    code: keyledger_core::RefusalCode,
    remaining: Option<u64>,
) {
    row.what = "refused";
    row.code = Some(code.as_str().to_owned());
    row.remaining = remaining;
    match attempt {
        ActivationAttempt::MakMachines { org, method, .. }
        | ActivationAttempt::Mak { org, method, .. } => {
            row.org = Some(org.to_string());
            row.method = Some(*method);
        }
        ActivationAttempt::KmsHost { org, .. } => row.org = Some(org.to_string()),
        ActivationAttempt::KmsClient { host, family, .. } => {
            row.host = Some(host.to_string());
            row.family = Some(*family);
        }
        ActivationAttempt::Osa { .. } => {}
    }
}

impl MachineHistory {
    /// The history as `format` (table, TSV or JSON).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("histories serialize") + "\n",
            Format::Tsv => self.to_tsv(),
            Format::Table => self.to_table(),
        }
    }

    const COLUMNS: [&'static str; 11] = [
        "seq",
        "at",
        "what",
        "key_id",
        "license_id",
        "product",
        "org",
        "method",
        "code",
        "host",
        "actor",
    ];

    fn cells(row: &MachineRow) -> [String; 11] {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        [
            row.seq.to_string(),
            row.at.to_string(),
            row.what.to_owned(),
            row.key_id.map_or_else(String::new, |k| k.to_string()),
            opt(&row.license_id),
            opt(&row.product),
            opt(&row.org),
            row.method.map_or_else(String::new, |m| m.to_string()),
            opt(&row.code),
            opt(&row.host),
            row.actor.clone(),
        ]
    }

    /// One header row, then one row an event.
    pub fn to_tsv(&self) -> String {
        crate::table::tsv(&Self::COLUMNS, self.rows.iter().map(Self::cells))
    }

    fn to_table(&self) -> String {
        let table = crate::table::grid(
            &Self::COLUMNS,
            self.rows.iter().map(|r| Self::cells(r).to_vec()),
        );
        let mut out = format!("Machine {} · as of seq {}\n", self.machine, self.at_seq);
        if self.rows.is_empty() {
            out.push_str("(no event names this machine)\n");
        } else {
            out.push_str(&format!("{table}\n"));
        }
        if let Some(after) = self.next_after {
            out.push_str(&format!("more: --after {after}\n"));
        }
        out.push_str("Each seq's inclusion proof: keyledger prove inclusion --seq SEQ\n");
        out
    }
}
