//! Shared by the benches: a ledger with one huge MAK, and activation commands for machines
//! never seen before (a global counter), so every measured activation consumes.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use keyledger_core::command::Activate;
use keyledger_core::{ActivationMethod, Command, CommandBody, Event, ProductKeyText};
use keyledger_ledger::{Engine, Submission};
use serde_json::json;

pub const MAK: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";
pub const AT: &str = "2026-01-01T00:00:00Z";

static NEXT_MACHINE: AtomicU64 = AtomicU64::new(0);

pub fn catalog() -> Vec<Command> {
    [
        json!({"type": "register_org", "at": AT, "actor": "olga", "org": "contoso", "name": "Contoso"}),
        json!({"type": "register_license_id", "at": AT, "actor": "olga", "license_id": "V100", "org": "contoso",
               "program": "select", "agreement_number": "S-1"}),
        json!({"type": "register_product", "at": AT, "actor": "olga", "product": "win11-pro", "name": "W11",
               "family": "windows_client", "version": "11", "edition": "pro", "key_requirement": "vl_key"}),
        json!({"type": "issue_key", "at": AT, "actor": "olga", "license_id": "V100", "product": "win11-pro",
               "kind": "mak", "limit": keyledger_core::decide::COUNT_MAX, "product_key": MAK}),
    ]
    .into_iter()
    .map(|v| keyledger_ledger::wire::command_from_value(v).unwrap())
    .collect()
}

/// A fresh ledger in `dir` holding the catalog, taking batches of up to 10,000 commands.
pub fn ledger(dir: &std::path::Path) -> Engine {
    ledger_with_batches_of(dir, 10_000)
}

/// A fresh ledger in `dir` holding the catalog, taking batches of up to `batch` commands.
pub fn ledger_with_batches_of(dir: &std::path::Path, batch: usize) -> Engine {
    ledger_at(
        keyledger_ledger::Location::File(dir.join("bench.redb")),
        batch,
    )
}

/// A fresh ledger at `path` (either store) holding the catalog, taking batches of up to
/// `batch` commands.
pub fn ledger_at(path: keyledger_ledger::Location, batch: usize) -> Engine {
    let operator = "olga".parse_principal();
    let mut engine = keyledger_ledger::init(&path, operator, AT.parse().unwrap()).unwrap();
    let setup = Submission::new(catalog());
    let answers = engine.run_batch(&[setup]).remove(0).unwrap();
    assert!(answers.iter().all(|a| a.ok));
    drop(engine);
    let limits = keyledger_ledger::Limits {
        batch_commands_max: batch,
        ..Default::default()
    };
    Engine::open(keyledger_ledger::Store::open(&path).unwrap(), limits).unwrap()
}

trait ParsePrincipal {
    fn parse_principal(&self) -> keyledger_core::Principal;
}

impl ParsePrincipal for str {
    fn parse_principal(&self) -> keyledger_core::Principal {
        keyledger_core::Principal::new(self).unwrap()
    }
}

/// `n` online activations of machines never activated before.
pub fn activations(n: usize) -> Vec<Command> {
    let key = ProductKeyText::parse(MAK).unwrap();
    let at = AT.parse().unwrap();
    (0..n)
        .map(|_| {
            let i = NEXT_MACHINE.fetch_add(1, Ordering::Relaxed);
            Command {
                at,
                actor: "vamt".parse_principal(),
                command_id: None,
                body: CommandBody::Activate(Activate {
                    product_key: key.clone(),
                    org: keyledger_core::OrgId::new("contoso").unwrap(),
                    method: ActivationMethod::Online,
                    machines: vec![
                        keyledger_core::MachineId::new(format!("machine-{i:010}")).unwrap()
                    ],
                }),
            }
        })
        .collect()
}

/// The events those activations produce, decided once against a plain state: what the
/// baselines write.
pub fn activation_events(n: usize) -> Vec<Event> {
    let mut state = keyledger_core::State::default();
    let mut events = Vec::with_capacity(n);
    let mut setup = catalog();
    setup.insert(
        0,
        Command {
            at: AT.parse().unwrap(),
            actor: "olga".parse_principal(),
            command_id: None,
            body: CommandBody::AddOperator(keyledger_core::command::AddOperator {
                principal: "olga".parse_principal(),
            }),
        },
    );
    for command in setup.iter().chain(activations(n).iter()) {
        let key = command
            .body
            .presented_key()
            .map(keyledger_ledger::secrets::fingerprint);
        let ctx = keyledger_core::Context {
            presented: key,
            new_key: None,
            ..Default::default()
        };
        let decided = keyledger_core::decide(&state, command, &ctx).unwrap();
        for event in decided {
            state.apply(&event);
            if matches!(
                event.body,
                keyledger_core::EventBody::MachinesActivated { .. }
            ) {
                events.push(event);
            }
        }
    }
    events
}

/// CPU time (user + system) each live thread of this process has used so far, by thread
/// name, from `/proc/self/task` (Linux; empty elsewhere). Threads sharing a name are summed.
pub fn thread_cpu() -> std::collections::BTreeMap<String, std::time::Duration> {
    let mut cpu = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("stat")),
        ) else {
            continue; // the thread ended between the listing and the read
        };
        // Fields after the parenthesised name: utime and stime are the 12th and 13th.
        let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let fields: Vec<&str> = after_name.split(' ').collect();
        let ticks: u64 = fields[11..13]
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        // USER_HZ is 100 on every Linux the benches run on.
        *cpu.entry(name.trim().to_owned()).or_default() +=
            std::time::Duration::from_millis(ticks * 10);
    }
    cpu
}
