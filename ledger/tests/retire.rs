//! Retiring a key's text (issue 19, item 5; docs/rules.md, "Key text"): `retire_key_text` erases the text
//! from the secrets in the same commit that records why; the chain, exports and proofs stay
//! valid, `verify` accepts the missing text for that key only (and refuses a retired text
//! that is still stored), and on redb the text is gone from the ledger's files once they
//! are compacted. On either store (`support::Place`).

use crate::support;

use keyledger_core::KeyId;
use keyledger_ledger::{export, verify, Corruption, Error, Store};
use serde_json::json;
use support::*;

fn retire(key_id: u64) -> keyledger_core::Command {
    cmd(
        json!({"type": "retire_key_text", "at": AT, "actor": OPERATOR, "key_id": key_id,
               "reason": "posted publicly"}),
    )
}

#[test]
fn a_retired_text_is_erased_and_the_ledger_still_verifies() {
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    assert!(run(&mut engine, vec![activation("pc-1")])[0].ok);
    let mut before = Vec::new();
    export::export(engine.store(), &mut before, |_| {}).unwrap();
    assert_eq!(engine.store().secret(1).unwrap().as_deref(), Some(MAK_TEXT));
    let answers = run(&mut engine, vec![retire(1)]);
    assert!(answers[0].ok, "{answers:?}");
    assert_eq!(
        engine.store().secret(1).unwrap(),
        None,
        "erased with the event"
    );
    assert!(engine.state().key(KeyId(1)).unwrap().text_retired);
    let report = verify(engine.store()).unwrap();
    assert_eq!((report.secrets, report.retired), (0, 1));
    // The key still activates; its history and an export made before still verify.
    assert!(run(&mut engine, vec![activation("pc-2")])[0].ok);
    assert!(export::verify_export(std::io::BufReader::new(&before[..])).is_ok());
    let mut after = Vec::new();
    export::export(engine.store(), &mut after, |_| {}).unwrap();
    assert!(export::verify_export(std::io::BufReader::new(&after[..])).is_ok());
    assert!(after.starts_with(&before), "the log only grew");
    // A retired text put back by someone with write access is caught.
    engine.store().tamper_secret(1, Some(MAK_TEXT)).unwrap();
    match verify(engine.store()) {
        Err(Error::Corrupt(Corruption::Secret { key_id: 1, why, .. })) => {
            assert_eq!(why, "its text was retired but is still stored")
        }
        other => panic!("{other:?}"),
    }
    engine.store().tamper_secret(1, None).unwrap();
    // Reopened: the state knows, the text stays gone.
    drop(engine);
    let engine = keyledger_ledger::open(place.location()).unwrap();
    assert!(engine.state().key(KeyId(1)).unwrap().text_retired);
    assert_eq!(engine.store().secret(1).unwrap(), None);
}

#[test]
fn a_key_issued_and_retired_in_one_batch_never_stores_its_text() {
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    let issue = cmd(json!({"type": "issue_key", "at": AT, "actor": OPERATOR,
                           "license_id": "V100", "product": "win11-pro", "kind": "mak",
                           "limit": 5, "product_key": "CDFGH-JKMPQ-RTVWX-Y2346-789BC"}));
    let answers = run(&mut engine, vec![issue, retire(2)]);
    assert!(answers.iter().all(|a| a.ok), "{answers:?}");
    assert_eq!(engine.store().secret(2).unwrap(), None);
    assert_eq!(verify(engine.store()).unwrap().retired, 1);
}

#[test]
fn on_redb_the_text_is_gone_from_the_files_bytes_after_compaction() {
    // On PostgreSQL the bytes are the server's to keep (VACUUM and its write-ahead log
    // decide when they go).
    if skip_unless_redb("a retired text's bytes in the file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut engine = new_ledger_file(dir.path(), 10);
    assert!(run(&mut engine, vec![retire(1)])[0].ok);
    drop(engine);
    let path = dir.path().join("ledger.redb");
    let store = Store::open(&path).unwrap().compact().unwrap();
    drop(store);
    for file in [
        path.clone(),
        keyledger_ledger::store::redb::wal::path_for(&path),
    ] {
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes
            .windows(MAK_TEXT.len())
            .any(|w| w == MAK_TEXT.as_bytes());
        assert!(!found, "{} still holds the retired text", file.display());
    }
}
