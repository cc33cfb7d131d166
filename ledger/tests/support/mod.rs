//! Shared by the ledger tests: commands written as the JSON a client would send, and a small
//! catalog (one org, one Select license ID, one product, one MAK with known text).
#![allow(dead_code)]

use keyledger_core::Command;
use keyledger_ledger::{wire, Answer, Engine, Submission};
use serde_json::{json, Value};

pub const OPERATOR: &str = "olga";
pub const MAK_TEXT: &str = "BCDFG-HJKMP-QRTVW-XY234-6789B";
pub const AT: &str = "2026-01-01T00:00:00Z";

pub fn cmd(value: Value) -> Command {
    wire::command_from_value(value).expect("test commands are well-formed")
}

pub fn catalog(limit: u64) -> Vec<Command> {
    vec![
        cmd(
            json!({"type": "register_org", "at": AT, "actor": OPERATOR, "org": "contoso", "name": "Contoso"}),
        ),
        cmd(
            json!({"type": "register_license_id", "at": AT, "actor": OPERATOR, "license_id": "V100",
                   "org": "contoso", "program": "select", "agreement_number": "A-1"}),
        ),
        cmd(
            json!({"type": "register_product", "at": AT, "actor": OPERATOR, "product": "win11-pro",
                   "name": "Windows 11 Pro", "family": "windows_client", "version": "11", "edition": "pro",
                   "key_requirement": "vl_key"}),
        ),
        cmd(
            json!({"type": "issue_key", "at": AT, "actor": OPERATOR, "license_id": "V100",
                   "product": "win11-pro", "kind": "mak", "limit": limit, "product_key": MAK_TEXT}),
        ),
    ]
}

pub fn activation(machine: &str) -> Command {
    cmd(
        json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK_TEXT,
               "org": "contoso", "method": "online", "machines": [machine]}),
    )
}

pub fn with_id(mut command: Command, id: &str) -> Command {
    command.command_id = Some(keyledger_core::CommandId::new(id).unwrap());
    command
}

/// Runs commands as one non-atomic submission in one batch.
pub fn run(engine: &mut Engine, commands: Vec<Command>) -> Vec<Answer> {
    let submission = Submission::new(commands);
    engine
        .run_batch(&[submission])
        .remove(0)
        .expect("the batch commits")
}

pub fn new_ledger(dir: &std::path::Path, limit: u64) -> Engine {
    let operator = keyledger_core::Principal::new(OPERATOR).unwrap();
    let at = keyledger_core::Timestamp::parse(AT).unwrap();
    let mut engine = keyledger_ledger::init(&dir.join("ledger.redb"), operator, at).unwrap();
    let answers = run(&mut engine, catalog(limit));
    assert!(answers.iter().all(|a| a.ok), "{answers:?}");
    engine
}
