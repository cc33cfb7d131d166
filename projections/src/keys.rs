//! The key export of R2: tab-separated text with a header row, one row a key, in the
//! admin center's column order; and reading such a file back (import).

use keyledger_core::{Fingerprint, KeyId, LicenseId, Principal, ProductId, Role};
use serde::{Deserialize, Serialize};

use crate::model::Projections;

/// The header row of a key export (R2), in this order.
pub const EXPORT_COLUMNS: [&str; 8] = [
    "License ID",
    "Parent program",
    "Organization name",
    "Product",
    "Product key",
    "Key type",
    "Activations or seats",
    "OSA status",
];

/// Which keys an export covers (R2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportScope {
    /// The keys of these license IDs.
    LicenseIds(Vec<LicenseId>),
    /// The keys of one product, under every license ID the reader may read.
    Product(ProductId),
    /// Keys picked one by one (the console's check boxes).
    Keys(std::collections::BTreeSet<KeyId>),
    /// Every key the principal may see.
    All,
}

/// A built export: its rows, the tab-separated file rendered from them (whose BLAKE3 the
/// disclosure records), and the keys whose text it discloses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyExport {
    /// The exported keys, one row each.
    pub rows: Vec<KeyRow>,
    /// The export file's bytes (TSV): what the disclosure's digest covers (R2).
    pub tsv: Vec<u8>,
    /// Keys shown in full: the disclosure event must name exactly these (R1).
    pub disclosed: Vec<KeyId>,
}

/// A key whose stored text cannot be handed out: it does not hash to the fingerprint the
/// log recorded at issuance (the secrets table was altered), or it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("key {key_id}: {why}; no key text was handed out")]
pub struct SecretUnavailable {
    /// The key whose text could not be read.
    pub key_id: KeyId,
    /// Why, in words.
    pub why: String,
}

/// Builds the export for `principal`. A row appears for each key in scope under a license ID
/// on which the principal holds any role (operators see every license ID); its text is shown
/// only with `administrator` or `product_key_reader` there (R1), masked otherwise, and masked
/// too when the text was erased. `secret(key, fingerprint)` reads a key's stored text and
/// checks it against the fingerprint; any failure fails the whole export.
pub fn export_keys(
    p: &Projections,
    scope: &ExportScope,
    principal: &Principal,
    mut secret: impl FnMut(KeyId, &Fingerprint) -> Result<Option<String>, SecretUnavailable>,
) -> Result<KeyExport, SecretUnavailable> {
    let mut disclosed = Vec::new();
    let mut rows = Vec::new();
    for (key_id, key) in p.books.keys.iter() {
        let in_scope = match scope {
            ExportScope::LicenseIds(ids) => ids.contains(&key.license_id),
            ExportScope::Product(product) => &key.product == product,
            ExportScope::Keys(ids) => ids.contains(&key_id),
            ExportScope::All => true,
        };
        if !in_scope || !p.may_read(principal, &key.license_id) {
            continue;
        }
        let may_see = may_see_text(p, principal, &key.license_id);
        // A retired key's text is gone (its row shows the masked key, as to a non-reader).
        let text = if may_see && !key.text_retired {
            secret(key_id, &key.fingerprint)?
        } else {
            None
        };
        if text.is_some() {
            disclosed.push(key_id);
        }
        let license = &p.books.licenses[&key.license_id];
        rows.push(KeyRow {
            license_id: key.license_id.to_string(),
            program: license.program.as_str().to_owned(),
            organization: p.books.orgs[&license.org].name.clone(),
            product_name: p.books.products[&key.product].name.clone(),
            product_key: text.unwrap_or_else(|| key.last5.masked()),
            key_type: key.kind.as_str().to_owned(),
            used_of_total: key.used_of_total(),
            osa_status: key.osa_status().as_str().to_owned(),
        });
    }
    Ok(KeyExport {
        tsv: render_tsv(&rows),
        rows,
        disclosed,
    })
}

/// The R2 file: the header row, then one row a key, tab-separated with the csv crate's
/// quoting (a tab or a quote in a name is quoted, never a column shift).
pub fn render_tsv(rows: &[KeyRow]) -> Vec<u8> {
    let mut out = csv::WriterBuilder::new()
        .delimiter(b'\t')
        .from_writer(Vec::new());
    if rows.is_empty() {
        out.write_record(EXPORT_COLUMNS).expect("writes to memory");
    }
    for row in rows {
        out.serialize(row).expect("writes to memory");
    }
    out.into_inner().expect("flushes to memory")
}

/// Whether `principal` may see key text on `license_id` (R1).
pub fn may_see_text(p: &Projections, principal: &Principal, license_id: &LicenseId) -> bool {
    p.books
        .roles
        .get(&(license_id.clone(), principal.clone()))
        .is_some_and(|roles| roles.iter().any(|r: &Role| r.may_see_key_text()))
}

/// One row of a key export (R2), written and read back; its serde names are the columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = KeyExportRow)]
pub struct KeyRow {
    /// The license ID (R2 column `License ID`).
    #[serde(rename = "License ID")]
    pub license_id: String,
    /// The program (R2 column `Parent program`).
    #[serde(rename = "Parent program")]
    pub program: String,
    /// The org (R2 column `Organization name`).
    #[serde(rename = "Organization name")]
    pub organization: String,
    /// The product's name (R2 column `Product`).
    #[serde(rename = "Product")]
    pub product_name: String,
    /// The key text, or masked where R1 does not show it (R2 column `Product key`).
    #[serde(rename = "Product key")]
    pub product_key: String,
    /// The kind of key (R2 column `Key type`).
    #[serde(rename = "Key type")]
    pub key_type: String,
    /// Activations or seats as `used/total` (R2 column `Activations or seats`).
    #[serde(rename = "Activations or seats")]
    pub used_of_total: String,
    /// The OSA status (R20): `pending`, `active`, `blocked` or `n/a`.
    #[serde(rename = "OSA status")]
    pub osa_status: String,
}

impl KeyRow {
    /// The `total` of `used/total`, when the key has a count.
    pub fn total(&self) -> Result<Option<u64>, String> {
        if self.used_of_total == "n/a" {
            return Ok(None);
        }
        let (_, total) = self.used_of_total.split_once('/').ok_or_else(|| {
            format!(
                "Activations or seats {:?} is not used/total",
                self.used_of_total
            )
        })?;
        total.parse().map(Some).map_err(|_| {
            format!(
                "Activations or seats {:?} has no whole total",
                self.used_of_total
            )
        })
    }
}

/// A row that could not be read, by its line number in the file (the header is line 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The line of the file, from 1.
    pub line: u64,
    /// What is wrong with it.
    pub why: String,
}

/// The rows of a key export that were read, with their line numbers, and those that were not.
pub type ReadRows = (Vec<(u64, KeyRow)>, Vec<RowError>);

/// Reads a key export: the good rows with their line numbers, and the bad rows' errors.
pub fn read_key_export(input: impl std::io::Read) -> Result<ReadRows, String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("line 1: unreadable header: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header != EXPORT_COLUMNS {
        return Err(format!(
            "line 1: header must be {}",
            EXPORT_COLUMNS.join(" | ")
        ));
    }
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (index, row) in reader.deserialize::<KeyRow>().enumerate() {
        let line = index as u64 + 2;
        match row {
            Ok(row) => good.push((line, row)),
            Err(e) => bad.push(RowError {
                line,
                why: e.to_string(),
            }),
        }
    }
    Ok((good, bad))
}
