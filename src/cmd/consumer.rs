//! `consumer`: durable consumers kept in the ledger's database (issue 18, item 2).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_ledger::consumer::Consumer;
use keyledger_ledger::Location;

use crate::cli::ConsumerAction;
use crate::output::outln;
use crate::view::{open_store, wall_clock};

pub fn run(data: &Location, action: &ConsumerAction) -> Result<ExitCode> {
    let store = open_store(data)?;
    match action {
        ConsumerAction::Create {
            name,
            license_id,
            types,
        } => {
            let consumer = Consumer::new(name, license_id.as_deref(), types, wall_clock())
                .map_err(anyhow::Error::msg)?;
            if !store.create_consumer(&consumer)? {
                bail!("a consumer {name:?} exists already");
            }
            outln!("created consumer {name} at position 0 (it receives the log from seq 1)");
        }
        ConsumerAction::List { format } => {
            let all = store.consumers()?;
            match format.as_str() {
                "json" => outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "consumers": all }))?
                ),
                "table" => {
                    outln!(
                        "{:<24} {:>12}  {:<12} {:<40} created",
                        "name",
                        "position",
                        "license ID",
                        "types"
                    );
                    for c in &all {
                        let types = if c.types.is_empty() {
                            "all".to_owned()
                        } else {
                            c.types.join(",")
                        };
                        outln!(
                            "{:<24} {:>12}  {:<12} {:<40} {}",
                            c.name,
                            c.position,
                            c.license_id.as_deref().unwrap_or("all"),
                            types,
                            c.created_at
                        );
                    }
                }
                other => bail!("--format {other:?}: expected table or json"),
            }
        }
        ConsumerAction::Reset { name, to } => {
            let head = store.head()?.seq;
            if *to > head {
                bail!("--to {to} is past the head of the log (seq {head})");
            }
            let now = wall_clock();
            let changed = store
                .update_consumer(name, |c| {
                    c.position = *to;
                    c.reset_at = Some(now);
                })
                .with_context(|| format!("cannot reset consumer {name:?}"))?;
            if changed.is_none() {
                bail!("no consumer {name:?}");
            }
            outln!("consumer {name} reset: delivery starts again after seq {to}");
        }
        ConsumerAction::Delete { name } => {
            if !store.delete_consumer(name)? {
                bail!("no consumer {name:?}");
            }
            outln!("deleted consumer {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
