//! The roll-up of an ownership structure (the admin center's license summary): per product,
//! or per license ID, across every license ID whose org is in the structure (R7: keys may be
//! used anywhere in it). Purchases are shown beside activations and never mixed with them
//! (R24): they are not a compliance figure here.

use std::collections::BTreeMap;

use keyledger_core::{KeyKind, LicenseId, OrgId, Timestamp};
use serde::Serialize;

use crate::model::Projections;
use crate::report::{ExternalRow, Format, ACTIVATION_NOTE};

/// How the roll-up groups its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One row a product.
    Product,
    /// One row a license ID.
    LicenseId,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(text: &str) -> Result<GroupBy, String> {
        match text {
            "product" => Ok(GroupBy::Product),
            "license-id" | "license_id" => Ok(GroupBy::LicenseId),
            other => Err(format!(
                "unknown grouping {other:?}; expected product or license-id"
            )),
        }
    }
}

/// R7/R24: printed with every summary.
pub const PURCHASE_NOTE: &str =
    "purchased counts licenses bought under these license IDs (R7, R24): shown beside activations, it is not a compliance figure";

/// The roll-up of an ownership structure (`keyledger summary`, `GET /v1/summary`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The root of the ownership structure (the org asked for, or its root).
    pub root_org: String,
    /// The root org's name.
    pub root_name: String,
    /// What the rows group by: product or license ID.
    pub by: GroupBy,
    /// The business time the summary is evaluated at.
    pub report_time: Timestamp,
    /// The last seq folded into it.
    pub at_seq: u64,
    /// The license IDs added up (those the reader may see).
    pub license_ids: Vec<String>,
    /// One row a group.
    pub rows: Vec<SummaryRow>,
    /// Keys with an outside count (`record_external_count`), beside the ledger's own.
    pub reconciliation: Vec<ReconciliationRow>,
    /// What the activation counts are not (R7, R24).
    pub note: &'static str,
    /// What the purchase counts are not (R7, R24).
    pub purchase_note: &'static str,
}

/// One group's sums.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SummaryRow {
    /// The product, or the license ID (`by`).
    pub group: String,
    /// R7/R24: licenses bought; not a compliance figure.
    pub purchased: u64,
    /// Keys by kind (`mak`, `esu_mak`, `kms_host`, …).
    pub keys: BTreeMap<String, u64>,
    /// MAK and ESU MAK activations: used of total, and what is left.
    pub used: u64,
    /// MAK and ESU MAK activations allowed, grants included.
    pub total: u64,
    /// MAK and ESU MAK activations left.
    pub remaining: u64,
    /// KMS host keys: hosts activated of the hosts allowed.
    pub kms_hosts: u64,
    /// KMS hosts allowed, grants included.
    pub kms_hosts_limit: u64,
    /// R10: refused activations by code.
    pub refusals: BTreeMap<String, u64>,
    /// R17/R18: requests not yet decided.
    pub pending_requests: u64,
}

/// A key with an outside count, beside the ledger's own.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReconciliationRow {
    /// The key's license ID.
    pub license_id: String,
    /// The key's product.
    pub product: String,
    /// The key.
    pub key_id: u64,
    /// The ledger's remaining count now.
    pub remaining_now: u64,
    /// The last outside count, beside the ledger's own then.
    pub external: ExternalRow,
}

/// Why a summary cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// No org has this id.
    #[error("org {0}: not in the ledger")]
    UnknownOrg(String),
}

/// The roll-up of the structure `org` belongs to, over the license IDs `may_read` lets in.
pub fn summary(
    p: &Projections,
    org: &OrgId,
    by: GroupBy,
    at: Timestamp,
    may_read: impl Fn(&LicenseId) -> bool,
) -> Result<Summary, SummaryError> {
    let root = p
        .books
        .orgs
        .get(org)
        .map(|o| o.root.clone())
        .ok_or_else(|| SummaryError::UnknownOrg(org.to_string()))?;
    let licenses: Vec<&LicenseId> = p
        .books
        .licenses
        .iter()
        .filter(|(id, record)| p.books.orgs[&record.org].root == root && may_read(id))
        .map(|(id, _)| id)
        .collect();
    let mut rows: BTreeMap<String, SummaryRow> = BTreeMap::new();
    let group = |license: &LicenseId, product: &keyledger_core::ProductId| match by {
        GroupBy::Product => product.to_string(),
        GroupBy::LicenseId => license.to_string(),
    };
    let mut reconciliation = Vec::new();
    for license in &licenses {
        for ((_, product), quantity) in p.books.purchases.iter().filter(|((l, _), _)| l == *license)
        {
            row(&mut rows, group(license, product)).purchased += quantity;
        }
        let view = &p.license_views[*license];
        for key_id in &view.keys {
            let key = &p.books.keys[*key_id];
            add_key(row(&mut rows, group(license, &key.product)), key);
            if let Some(external) = &key.external {
                reconciliation.push(ReconciliationRow {
                    license_id: license.to_string(),
                    product: key.product.to_string(),
                    key_id: key_id.0,
                    remaining_now: key.remaining(),
                    external: ExternalRow::from(external),
                });
            }
        }
        for request_id in &view.requests {
            let request = &p.books.requests[request_id];
            if request.decision.is_none() {
                row(&mut rows, group(license, &request.product)).pending_requests += 1;
            }
        }
    }
    let root_name = p.books.orgs[&root].name.clone();
    Ok(Summary {
        root_org: root.to_string(),
        root_name,
        by,
        report_time: at,
        at_seq: p.last_seq,
        license_ids: licenses.iter().map(|l| l.to_string()).collect(),
        rows: rows
            .into_iter()
            .map(|(group, mut row)| {
                row.group = group;
                row
            })
            .collect(),
        reconciliation,
        note: ACTIVATION_NOTE,
        purchase_note: PURCHASE_NOTE,
    })
}

/// One key's counts added to its row.
fn add_key(row: &mut SummaryRow, key: &crate::model::KeyView) {
    *row.keys.entry(key.kind.as_str().to_owned()).or_default() += 1;
    match key.kind {
        KeyKind::Mak | KeyKind::EsuMak => {
            row.used += key.used();
            row.total += key.total();
            row.remaining += key.remaining();
        }
        KeyKind::KmsHost => {
            let kms = key.kms.as_ref().expect("KMS host keys have an allowance");
            row.kms_hosts += kms.hosts.len() as u64;
            row.kms_hosts_limit += kms.hosts_limit();
        }
        KeyKind::Osa | KeyKind::Setup | KeyKind::Embedded => {}
    }
    for (code, n) in &key.refusals {
        *row.refusals.entry(code.as_str().to_owned()).or_default() += n;
    }
}

fn row(rows: &mut BTreeMap<String, SummaryRow>, group: String) -> &mut SummaryRow {
    rows.entry(group).or_default()
}

impl Summary {
    /// The summary as `format` (table, TSV or JSON).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("summaries serialize") + "\n",
            Format::Tsv => self.to_tsv(),
            Format::Table => self.to_table(),
        }
    }

    fn columns(&self) -> [&'static str; 10] {
        [
            match self.by {
                GroupBy::Product => "product",
                GroupBy::LicenseId => "license_id",
            },
            "purchased",
            "keys",
            "used",
            "total",
            "remaining",
            "kms_hosts",
            "kms_hosts_limit",
            "refusals",
            "pending_requests",
        ]
    }

    fn cells(row: &SummaryRow) -> [String; 10] {
        let pairs = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        [
            row.group.clone(),
            row.purchased.to_string(),
            pairs(&row.keys),
            row.used.to_string(),
            row.total.to_string(),
            row.remaining.to_string(),
            row.kms_hosts.to_string(),
            row.kms_hosts_limit.to_string(),
            pairs(&row.refusals),
            row.pending_requests.to_string(),
        ]
    }

    /// One header row, then one row a group.
    pub fn to_tsv(&self) -> String {
        crate::table::tsv(&self.columns(), self.rows.iter().map(Self::cells))
    }

    fn to_table(&self) -> String {
        let rows = crate::table::grid(
            &self.columns(),
            self.rows.iter().map(|r| Self::cells(r).to_vec()),
        );
        let mut out = format!(
            "Ownership structure {} — {} · license IDs {} · report time {} · as of seq {}\n{rows}\n",
            self.root_name,
            self.root_org,
            self.license_ids.join(" "),
            self.report_time,
            self.at_seq
        );
        out.push_str("\nOutside counts (reconciliation)\n");
        if self.reconciliation.is_empty() {
            out.push_str("(none)\n");
        } else {
            let header = [
                "license_id",
                "key",
                "source",
                "observed at",
                "outside remaining",
                "ledger remaining",
                "difference",
                "remaining now",
            ];
            let outside = crate::table::grid(
                &header,
                self.reconciliation.iter().map(|r| {
                    vec![
                        r.license_id.clone(),
                        r.key_id.to_string(),
                        r.external.source.clone(),
                        r.external.observed_at.to_string(),
                        r.external.remaining.to_string(),
                        r.external.ledger_remaining.to_string(),
                        format!("{:+}", r.external.difference),
                        r.remaining_now.to_string(),
                    ]
                }),
            );
            out.push_str(&format!("{outside}\n"));
        }
        out.push_str(&format!(
            "\nNote: {}\nNote: {}\n",
            self.purchase_note, self.note
        ));
        out
    }
}
