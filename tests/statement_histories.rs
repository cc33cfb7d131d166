//! Statements over random histories (issue: "random histories, both stores"): three license
//! IDs in two ownership structures sharing KMS host names, with activations inside and
//! outside their structure, requests and decisions, roles, disclosures across license IDs,
//! blocks and outside counts. For every license ID, the report folded from its statement
//! alone (after the statement went through its JSON file and was verified) is the report
//! of the whole log at the commitment. On redb, or PostgreSQL with
//! `KEYLEDGER_TEST_STORE=postgres`.

use crate::support::pg;

use keyledger_core::{LicenseId, ProductKeyText, Timestamp};
use keyledger_ledger::checkpoint::LedgerKey;
use keyledger_ledger::commitments;
use keyledger_ledger::statement::{self, Statement};
use keyledger_ledger::streams::StreamTable;
use keyledger_ledger::{wire, Engine, Limits, Location, Store, Writer};
use keyledger_projections::subset::subset_report;
use keyledger_projections::{license_report, Format, Projections};
use proptest::prelude::*;
use serde_json::{json, Value};

const LICENSES: [&str; 3] = ["V1", "V2", "V3"];
/// The org each license ID belongs to; contoso-east is under contoso.
const LICENSE_ORGS: [&str; 3] = ["contoso", "contoso-east", "fabrikam"];
const ORGS: [&str; 3] = ["contoso", "contoso-east", "fabrikam"];
/// Each license ID's administrator (R17), who makes its requests.
const ADMINS: [&str; 3] = ["amy", "bob", "cat"];

#[derive(Clone, Debug)]
enum Op {
    Activate {
        license: u8,
        org: u8,
        machines: Vec<u8>,
    },
    KmsHost {
        key: u8,
        host: u8,
    },
    KmsClient {
        host: u8,
        client: u8,
    },
    Request {
        license: u8,
        needed: u8,
    },
    Decide {
        request: u8,
        grant: bool,
        amount: u8,
    },
    Role {
        who: u8,
        license: u8,
        assign: bool,
    },
    Disclose {
        keys: Vec<u8>,
    },
    Block {
        key: u8,
    },
    OutsideCount {
        key: u8,
        remaining: u8,
    },
    Advance {
        hours: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3u8, 0..3u8, prop::collection::vec(0..12u8, 1..4))
            .prop_map(|(license, org, machines)| Op::Activate { license, org, machines }),
        2 => (0..2u8, 0..3u8).prop_map(|(key, host)| Op::KmsHost { key, host }),
        3 => (0..3u8, 0..20u8).prop_map(|(host, client)| Op::KmsClient { host, client }),
        2 => (0..3u8, 1..5u8).prop_map(|(license, needed)| Op::Request { license, needed }),
        2 => (0..8u8, any::<bool>(), 1..5u8)
            .prop_map(|(request, grant, amount)| Op::Decide { request, grant, amount }),
        1 => (0..3u8, 0..3u8, any::<bool>())
            .prop_map(|(who, license, assign)| Op::Role { who, license, assign }),
        1 => prop::collection::vec(1..6u8, 1..4).prop_map(|keys| Op::Disclose { keys }),
        1 => (1..6u8).prop_map(|key| Op::Block { key }),
        1 => (1..4u8, 0..9u8).prop_map(|(key, remaining)| Op::OutsideCount { key, remaining }),
        1 => (1..200u16).prop_map(|hours| Op::Advance { hours }),
    ]
}

/// Key texts: the three MAKs (keys 1..=3, one a license ID) and two KMS host keys (4 on
/// V1, 5 on V3).
fn key_text(key: u8) -> String {
    let indices: [u8; 25] = std::array::from_fn(|i| ((i * 7 + usize::from(key) * 5) % 24) as u8);
    ProductKeyText::from_alphabet_indices(&indices)
        .reveal()
        .to_owned()
}

fn catalog() -> Vec<Value> {
    let mut commands = vec![
        json!({"type": "add_operator", "principal": "olga"}),
        json!({"type": "register_org", "org": "contoso", "name": "Contoso"}),
        json!({"type": "register_org", "org": "contoso-east", "name": "Contoso East", "parent": "contoso"}),
        json!({"type": "register_org", "org": "fabrikam", "name": "Fabrikam"}),
        json!({"type": "register_product", "product": "win10-pro", "name": "Windows 10 Pro",
               "family": "windows_client", "version": "10", "edition": "pro", "key_requirement": "vl_key"}),
        json!({"type": "register_product", "product": "win11-pro", "name": "Windows 11 Pro",
               "family": "windows_client", "version": "11", "edition": "pro", "key_requirement": "vl_key"}),
        json!({"type": "register_product", "product": "ws2022", "name": "WS 2022",
               "family": "windows_server", "version": "2022", "edition": "standard", "key_requirement": "vl_key"}),
    ];
    for (i, license) in LICENSES.iter().enumerate() {
        commands.push(json!({"type": "register_license_id", "license_id": license,
            "org": LICENSE_ORGS[i], "program": "open_license", "agreement_number": format!("A-{i}"),
            "authorization_number": "AUTH", "purchase_account": "PA"}));
    }
    for (i, license) in LICENSES.iter().enumerate() {
        commands.push(
            json!({"type": "issue_key", "license_id": license, "product": "win11-pro",
            "kind": "mak", "limit": 4, "product_key": key_text(i as u8 + 1)}),
        );
        commands.push(
            json!({"type": "assign_role", "principal": ADMINS[i], "license_id": license,
            "role": "administrator"}),
        );
    }
    for (key, license) in [(4u8, "V1"), (5, "V3")] {
        commands.push(
            json!({"type": "issue_key", "license_id": license, "product": "ws2022",
            "kind": "kms_host", "hosts": 2, "per_host": 3, "product_key": key_text(key)}),
        );
    }
    commands
}

fn command(op: &Op, requests: &mut u8) -> Option<Value> {
    Some(match op {
        Op::Activate {
            license,
            org,
            machines,
        } => {
            let machines: Vec<String> = machines.iter().map(|m| format!("m{m}")).collect();
            let method = if machines.len() == 1 {
                "online"
            } else {
                "proxy"
            };
            json!({"type": "activate", "actor": "vamt", "product_key": key_text(license + 1),
                   "org": ORGS[usize::from(*org)], "method": method, "machines": machines})
        }
        Op::KmsHost { key, host } => {
            let org = if *key == 0 { "contoso" } else { "fabrikam" };
            json!({"type": "activate_kms_host", "actor": "kms-admin", "product_key": key_text(key + 4),
                   "org": org, "host": format!("h{host}")})
        }
        Op::KmsClient { host, client } => json!({"type": "activate_kms_client", "actor": "kms",
            "host": format!("h{host}"), "client": format!("pc{client}"), "family": "windows_server"}),
        Op::Request { license, needed } => {
            *requests += 1;
            let text = key_text(license + 1);
            json!({"type": "request_mak_increase", "actor": ADMINS[usize::from(*license)],
                   "request_id": format!("r{requests}"), "license_id": LICENSES[usize::from(*license)],
                   "authorization_number": "AUTH", "product": "win11-pro",
                   "key_last5": &text[text.len() - 5..], "activations_needed": needed,
                   "justification": "growth"})
        }
        Op::Decide {
            request,
            grant: true,
            amount,
        } => json!({"type": "grant_request",
            "request_id": format!("r{request}"), "amount": amount}),
        Op::Decide { request, .. } => json!({"type": "deny_request",
            "request_id": format!("r{request}"), "reason": "not now"}),
        Op::Role {
            who,
            license,
            assign,
        } => {
            let principal = ["vic", "wes", "amy"][usize::from(*who)];
            let kind = if *assign {
                "assign_role"
            } else {
                "revoke_role"
            };
            json!({"type": kind, "principal": principal,
                   "license_id": LICENSES[usize::from(*license)], "role": "key_viewer"})
        }
        Op::Disclose { keys } => {
            let mut keys = keys.clone();
            keys.sort_unstable();
            keys.dedup();
            json!({"type": "disclose_keys", "key_ids": keys, "channel": "export",
                   "export_digest": "ab".repeat(32)})
        }
        Op::Block { key } => json!({"type": "block_key", "key_id": key}),
        Op::OutsideCount { key, remaining } => json!({"type": "record_external_count",
            "key_id": key, "source": "vamt", "remaining": remaining,
            "observed_at": "2026-03-01T00:00:00Z"}),
        Op::Advance { .. } => return None,
    })
}

/// A fresh store: a redb file in `dir`, or a new database.
fn fresh_store(dir: &std::path::Path) -> (Store, Option<pg::Database>) {
    let database = pg::on_postgres().then(pg::Database::create);
    let text = match &database {
        Some(database) => database.url(),
        None => dir.join("ledger.redb").to_str().unwrap().to_owned(),
    };
    let store = Store::create(Location::parse(&text).unwrap()).unwrap();
    (store, database)
}

/// Runs the history through the writer and commits the streams: the commitment's seq.
fn run(store: &Store, ops: &[Op]) -> u64 {
    let writer = Writer::spawn(Engine::open(store.clone(), Limits::default()).unwrap());
    let handle = writer.handle();
    let start = Timestamp::parse("2026-03-01T00:00:00Z").unwrap();
    let (mut hours, mut requests) = (0i64, 0u8);
    let send = |mut value: Value, hours: i64| {
        value["at"] = json!(start
            .plus(keyledger_core::Span::seconds(hours * 3600))
            .to_string());
        if value.get("actor").is_none() {
            value["actor"] = json!("olga");
        }
        let command = wire::command_from_value(value).unwrap();
        handle.submit_blocking(vec![command], false).unwrap();
    };
    for value in catalog() {
        send(value, 0);
    }
    for op in ops {
        match (op, command(op, &mut requests)) {
            (Op::Advance { hours: more }, _) => hours += i64::from(*more),
            (_, Some(value)) => send(value, hours),
            (_, None) => {}
        }
    }
    let mut table = StreamTable::default();
    let now = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
    let seq = commitments::commit(&handle, store, &mut table, now).unwrap();
    // The writer stops once its last handle is gone.
    drop(handle);
    writer.stop().unwrap();
    seq.expect("the log is not empty")
}

/// The whole log folded up to `seq`: what `report --at-seq` reads.
fn full_projections(store: &Store, seq: u64) -> Projections {
    let mut p = Projections::default();
    keyledger_ledger::walk(store, 1, |record| {
        if record.seq > seq {
            return Ok(std::ops::ControlFlow::Break(()));
        }
        p.apply(record.seq, &record.event);
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap();
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_statements_report_is_the_whole_logs_for_every_license_id(
        ops in prop::collection::vec(op(), 10..70)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _database) = fresh_store(dir.path());
        let commitment = run(&store, &ops);
        let full = full_projections(&store, commitment);
        let key = LedgerKey::from_seed(&[7; 32]);
        let at = full.last_at.unwrap();
        for license in LICENSES {
            let license = LicenseId::new(license).unwrap();
            let built = statement::build(&store, &key, &license, None, None, at).unwrap();
            let file = serde_json::to_string(&built).unwrap();
            let read: Statement = serde_json::from_str(&file).unwrap();
            let verified = statement::verify(&read, &key.verifier_key())
                .unwrap_or_else(|e| panic!("{license}: {e}"));
            prop_assert_eq!(verified.checkpoint.size, commitment);
            let replayed = subset_report(&verified.events, &license).unwrap();
            let whole = license_report(&full, &license, at).unwrap();
            prop_assert_eq!(replayed.render(Format::Json), whole.render(Format::Json), "{}", license);
        }
    }
}
