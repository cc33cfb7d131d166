//! `keys`: the R2 key export. The disclosure is recorded (with the file's digest) before a
//! single key leaves: if recording fails, no file is written.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_core::command::DiscloseKeys;
use keyledger_core::{Command, CommandBody, Digest, DisclosureChannel, LicenseId, ProductId};
use keyledger_ledger::{Engine, Submission};
use keyledger_projections::keys::{export_keys, ExportScope, KeyExport};

use crate::cli::KeyScope;
use crate::view::principal;
use crate::view::{checked_secrets, now_at_least, projections, Until};

pub fn keys(
    data: &keyledger_ledger::Location,
    scope: &KeyScope,
    who: &str,
    out: Option<&Path>,
) -> Result<ExitCode> {
    let principal = principal(who, "as")?;
    let mut engine = crate::view::open_writer(data)?;
    let p = projections(engine.store(), Until::Head)?;
    let scope = if scope.all {
        ExportScope::All
    } else if let Some(product) = &scope.product {
        let product = ProductId::new(product.as_str()).context("--product")?;
        if !p.books.products.contains_key(&product) {
            bail!("no product {product} in the ledger");
        }
        ExportScope::Product(product)
    } else {
        let mut ids = Vec::new();
        for id in &scope.license_ids {
            let id = LicenseId::new(id.as_str()).context("--license-id")?;
            if !p.books.licenses.contains_key(&id) {
                bail!("no license ID {id} in the ledger");
            }
            ids.push(id);
        }
        ExportScope::LicenseIds(ids)
    };
    let export = export_keys(&p, &scope, &principal, checked_secrets(engine.store()))?;
    let digest = Digest(*blake3::hash(&export.tsv).as_bytes());
    let recorded = if export.disclosed.is_empty() {
        None
    } else {
        Some(record_disclosure(&mut engine, &principal, &export, digest)?)
    };
    match out {
        Some(path) => std::fs::write(path, &export.tsv)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            crate::output::text(std::str::from_utf8(&export.tsv).context("the export is UTF-8")?)?
        }
    }
    let disclosure = match recorded {
        Some(seq) => format!(
            "{} shown in full; disclosure recorded at seq {seq}",
            export.disclosed.len()
        ),
        None => "all masked; nothing disclosed".to_owned(),
    };
    eprintln!(
        "{} keys exported ({disclosure}); file digest blake3:{digest}",
        export.rows.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Records the export as a disclosure (R1, R2); answers the seq it was recorded at.
fn record_disclosure(
    engine: &mut Engine,
    principal: &keyledger_core::Principal,
    export: &KeyExport,
    digest: Digest,
) -> Result<u64> {
    let command = Command {
        at: now_at_least(engine.state().newest_at()),
        actor: principal.clone(),
        command_id: None,
        body: CommandBody::DiscloseKeys(DiscloseKeys {
            key_ids: export.disclosed.clone(),
            channel: DisclosureChannel::Export,
            export_digest: Some(digest),
        }),
    };
    let answer = engine
        .run_batch(&[Submission::new(vec![command])])
        .remove(0)?
        .remove(0);
    if !answer.ok {
        bail!(
            "the disclosure was refused ({}): {}; no keys were written",
            answer.code().unwrap_or_default(),
            answer.message().unwrap_or_default()
        );
    }
    Ok(answer.seq.expect("accepted answers carry a seq"))
}
