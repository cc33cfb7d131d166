//! `import-keys`: issue keys from an admin-center style key export (the R2 columns).

use crate::output::outln;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_core::command::IssueKey;
use keyledger_core::{
    Command, CommandBody, KeyKind, LicenseId, Principal, ProductId, ProductKeyText,
};
use keyledger_ledger::Submission;
use keyledger_projections::keys::{read_key_export, KeyRow, RowError};
use keyledger_projections::Projections;

use crate::view::principal;
use crate::view::{now_at_least, projections, Until};

/// Issues the keys in batches of the engine's size, naming each refused row on stderr.
/// Answers how many were imported and how many refused.
fn run_imports(
    engine: &mut keyledger_ledger::Engine,
    file: &Path,
    lines: &[u64],
    commands: Vec<keyledger_core::Command>,
    atomic: bool,
) -> Result<(usize, usize)> {
    let (mut imported, mut refused) = (0, 0);
    let chunk = engine.limits().batch_commands_max;
    for (lines, commands) in lines.chunks(chunk).zip(commands.chunks(chunk)) {
        let submission = if atomic {
            Submission::atomic(commands.to_vec())
        } else {
            Submission::new(commands.to_vec())
        };
        for (line, answer) in lines.iter().zip(engine.run_batch(&[submission]).remove(0)?) {
            if answer.ok {
                imported += 1;
            } else {
                refused += 1;
                eprintln!(
                    "{}: line {line}: refused {}: {}",
                    file.display(),
                    answer.code().unwrap_or_default(),
                    answer.message().unwrap_or_default()
                );
            }
        }
    }
    Ok((imported, refused))
}

pub fn import_keys(
    data: &keyledger_ledger::Location,
    file: &Path,
    who: &str,
    atomic: bool,
) -> Result<ExitCode> {
    let operator = principal(who, "as")?;
    let input =
        std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (rows, mut bad) = read_key_export(input)
        .map_err(anyhow::Error::msg)
        .with_context(|| file.display().to_string())?;
    let mut engine = crate::view::open_writer(data)?;
    let p = projections(engine.store(), Until::Head)?;
    let at = now_at_least(engine.state().newest_at());
    let names = product_names(&p);
    let mut lines = Vec::new();
    let mut commands = Vec::new();
    for (line, row) in rows {
        match issue_command(&row, &names, &operator, at) {
            Ok(command) => {
                lines.push(line);
                commands.push(command);
            }
            Err(why) => bad.push(RowError { line, why }),
        }
    }
    bad.sort_by_key(|e| e.line);
    for err in &bad {
        eprintln!("{}: line {}: {}", file.display(), err.line, err.why);
    }
    if atomic && !bad.is_empty() {
        bail!(
            "{} unreadable row(s); with --atomic nothing was imported",
            bad.len()
        );
    }
    if atomic && commands.len() > engine.limits().batch_commands_max {
        bail!(
            "{} rows exceed one atomic batch ({} commands)",
            commands.len(),
            engine.limits().batch_commands_max
        );
    }
    let (imported, refused) = run_imports(&mut engine, file, &lines, commands, atomic)?;
    outln!(
        "imported {imported} keys; {refused} refused; {} unreadable rows",
        bad.len()
    );
    Ok(if refused + bad.len() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Product display name → id; names that appear twice cannot be resolved.
fn product_names(p: &Projections) -> BTreeMap<String, Option<ProductId>> {
    let mut names: BTreeMap<String, Option<ProductId>> = BTreeMap::new();
    for (id, product) in &p.books.products {
        names
            .entry(product.name.clone())
            .and_modify(|seen| *seen = None)
            .or_insert_with(|| Some(id.clone()));
    }
    names
}

fn issue_command(
    row: &KeyRow,
    names: &BTreeMap<String, Option<ProductId>>,
    operator: &Principal,
    at: keyledger_core::Timestamp,
) -> Result<Command, String> {
    let license_id =
        LicenseId::new(row.license_id.as_str()).map_err(|e| format!("License ID: {e}"))?;
    let product = match names.get(&row.product_name) {
        Some(Some(id)) => id.clone(),
        Some(None) => {
            return Err(format!(
                "Product {:?} names more than one product",
                row.product_name
            ))
        }
        None => {
            return Err(format!(
                "Product {:?} is not in the catalog",
                row.product_name
            ))
        }
    };
    let kind: KeyKind = row.key_type.parse().map_err(|e| format!("Key type: {e}"))?;
    if row.product_key.starts_with('*') {
        return Err(
            "Product key is masked: export with a role that shows key text (R1)".to_owned(),
        );
    }
    let text = ProductKeyText::parse(&row.product_key).map_err(|e| format!("Product key: {e}"))?;
    let total = row.total()?;
    let (limit, hosts) = match kind {
        KeyKind::Mak | KeyKind::Osa => (total, None),
        KeyKind::KmsHost => (
            None,
            total
                .map(|t| u32::try_from(t).map_err(|_| "too many KMS hosts".to_owned()))
                .transpose()?,
        ),
        KeyKind::Setup | KeyKind::Embedded => (None, None),
        KeyKind::EsuMak => {
            return Err(
                "an esu_mak row carries no coverage period; issue it with issue_key".to_owned(),
            )
        }
    };
    Ok(Command {
        at,
        actor: operator.clone(),
        command_id: None,
        body: CommandBody::IssueKey(IssueKey {
            license_id,
            product,
            kind,
            limit,
            hosts,
            per_host: None,
            coverage_start: None,
            coverage_end: None,
            product_key: Some(text),
        }),
    })
}
