//! `consumer`: durable consumers kept in the ledger's database.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use keyledger_ledger::consumer::{Consumer, DeliveryState, Signing, Webhook};
use keyledger_ledger::{Location, Store};

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
            webhook,
            signing,
            batch,
            feed,
        } => {
            let mut consumer = Consumer::new(name, license_id.as_deref(), types, wall_clock())
                .map_err(anyhow::Error::msg)?;
            if let Some(url) = webhook {
                let signing = Signing::parse(signing).map_err(anyhow::Error::msg)?;
                let secret =
                    (signing == Signing::HmacSha256).then(crate::serve::webhooks::new_secret);
                consumer.webhook = Some(
                    Webhook::new(url, signing, secret, *batch)
                        .map_err(|why| anyhow::anyhow!("--webhook: {why}"))?,
                );
            }
            if feed == "alerts" {
                consumer
                    .feed_alerts()
                    .map_err(|why| anyhow::anyhow!("--feed alerts: {why}"))?;
            }
            if !store.create_consumer(&consumer)? {
                bail!("a consumer {name:?} exists already");
            }
            outln!("created consumer {name} at position 0 (it receives the log from seq 1)");
            if let Some(hook) = &consumer.webhook {
                outln!("webhook: {} (signing {})", hook.url, signing);
                if let Some(secret) = &hook.secret {
                    outln!("secret: {secret}");
                    outln!("(shown once: the receiver checks Keyledger-Signature with it)");
                }
            }
        }
        ConsumerAction::List { format } => list(&store, format)?,
        ConsumerAction::Show { name, format } => show(&store, name, format)?,
        ConsumerAction::Reset { name, to } => {
            rewind(&store, name, *to)?;
            outln!("consumer {name} reset: delivery starts again after seq {to}");
        }
        ConsumerAction::Redeliver { name, from } => {
            if *from == 0 {
                bail!("--from 0: seqs start at 1");
            }
            rewind(&store, name, from - 1)?;
            outln!("consumer {name}: the events from seq {from} on are delivered again");
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

fn rewind(store: &Store, name: &str, to: u64) -> Result<()> {
    let head = store.head()?.seq;
    if to > head {
        bail!("seq {} is past the head of the log (seq {head})", to + 1);
    }
    let now = wall_clock();
    let changed = store
        .update_consumer(name, |c| c.rewind(to, now))
        .with_context(|| format!("cannot move consumer {name:?}"))?;
    if changed.is_none() {
        bail!("no consumer {name:?}");
    }
    Ok(())
}

/// `pull`, or the webhook's state and URL.
fn delivery(consumer: &Consumer) -> String {
    match &consumer.webhook {
        None => "pull".to_owned(),
        Some(hook) => {
            let state = match hook.state {
                DeliveryState::Active => "active",
                DeliveryState::Failing => "FAILING",
            };
            let feed = if consumer.alerts.is_some() {
                "alerts "
            } else {
                ""
            };
            format!("{feed}webhook {state} {}", hook.url)
        }
    }
}

fn list(store: &Store, format: &str) -> Result<()> {
    let all: Vec<Consumer> = store.consumers()?.iter().map(Consumer::redacted).collect();
    match format {
        "json" => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "consumers": all }))?
        ),
        "table" => {
            outln!(
                "{:<24} {:>12}  {:<12} {:<40} {:<27} delivery",
                "name",
                "position",
                "license ID",
                "types",
                "created"
            );
            for c in &all {
                let types = if c.types.is_empty() {
                    "all".to_owned()
                } else {
                    c.types.join(",")
                };
                outln!(
                    "{:<24} {:>12}  {:<12} {:<40} {:<27} {}",
                    c.name,
                    c.position,
                    c.license_id.as_deref().unwrap_or("all"),
                    types,
                    c.created_at.to_string(),
                    delivery(c)
                );
            }
        }
        other => bail!("--format {other:?}: expected table or json"),
    }
    Ok(())
}

fn show(store: &Store, name: &str, format: &str) -> Result<()> {
    let Some(consumer) = store.consumer(name)? else {
        bail!("no consumer {name:?}");
    };
    let consumer = consumer.redacted();
    match format {
        "json" => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "consumer": consumer }))?
        ),
        "table" => {
            outln!("consumer  {}", consumer.name);
            outln!("position  {}", consumer.position);
            outln!("delivery  {}", delivery(&consumer));
            let Some(hook) = &consumer.webhook else {
                return Ok(());
            };
            outln!(
                "attempts  {} ({} delivered), {} failed in a row",
                hook.attempts_total,
                hook.delivered_total,
                hook.failures
            );
            outln!(
                "{:<27} {:>12} {:>12} {:>7} {:>6} {:>8}  error",
                "at",
                "after",
                "through",
                "events",
                "status",
                "ms"
            );
            for a in hook.attempts.iter().rev() {
                let status = a.status.map_or("-".to_owned(), |s| s.to_string());
                outln!(
                    "{:<27} {:>12} {:>12} {:>7} {:>6} {:>8}  {}",
                    a.at.to_string(),
                    a.after,
                    a.through,
                    a.events,
                    status,
                    a.latency_ms,
                    a.error.as_deref().unwrap_or("")
                );
            }
        }
        other => bail!("--format {other:?}: expected table or json"),
    }
    Ok(())
}
