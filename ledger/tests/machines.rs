//! The machine index (issue 19, item 1): what the store holds equals what a fold of the log
//! derives, for random histories of activations, repeats, refusals (whose machines the log
//! names since then) and atomic batches refused half way; after a copy; and for a database
//! written before the index existed. On either store (`support::Place`).
//! Method: commands go through the real engine; the expectation is computed by walking the
//! log and asking each event which machines it names (`EventBody::machine_names`), the one
//! definition, and compared name by name with `Store::machine_seqs`.

use crate::support;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use keyledger_ledger::store::postgres::PG_SCHEMA_VERSION;
use keyledger_ledger::{Engine, Store, Submission};
use proptest::prelude::*;
use serde_json::json;
use support::*;

/// name → seqs, by walking the log.
fn derived(store: &Store) -> BTreeMap<String, Vec<u64>> {
    let mut index: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    keyledger_ledger::walk(store, 1, |r| {
        let mut names = r.event.body.machine_names();
        names.sort_unstable();
        names.dedup();
        for name in names {
            index.entry(name.to_owned()).or_default().push(r.seq);
        }
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    index
}

fn assert_index_matches(store: &Store, names: &[String]) {
    let expected = derived(store);
    for name in names {
        let stored = store.machine_seqs(name, 0, 100_000).unwrap();
        let want = expected.get(name).cloned().unwrap_or_default();
        assert_eq!(stored, want, "machine {name}");
        // Paging: after the first seq, the rest.
        if let Some(first) = want.first() {
            assert_eq!(
                store.machine_seqs(name, *first, 100_000).unwrap(),
                want[1..]
            );
            assert_eq!(store.machine_seqs(name, 0, 1).unwrap(), want[..1]);
        }
    }
}

fn proxy(machines: &[String], org: &str) -> keyledger_core::Command {
    cmd(
        json!({"type": "activate", "at": AT, "actor": "vamt", "product_key": MAK_TEXT,
               "org": org, "method": "proxy", "machines": machines}),
    )
}

fn names() -> Vec<String> {
    (0..12).map(|i| format!("m{i}")).collect()
}

/// One step: a proxy activation of some names (maybe repeated, maybe from an org outside
/// the structure: refused and recorded), or an atomic pair whose second command is refused.
fn step(engine: &mut Engine, (kind, picks): (u8, Vec<u8>)) {
    let names = names();
    let machines: Vec<String> = picks
        .iter()
        .map(|p| names[usize::from(*p) % 12].clone())
        .collect();
    match kind % 3 {
        0 => drop(run(engine, vec![proxy(&machines, "contoso")])),
        1 => drop(run(engine, vec![proxy(&machines, "fabrikam")])),
        _ => {
            let refused = proxy(&machines, "fabrikam");
            let submission = Submission::atomic(vec![proxy(&machines, "contoso"), refused]);
            engine.run_batch(&[submission]).remove(0).expect("commits");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if on_postgres() { 6 } else { 32 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_index_equals_what_the_log_names(
        steps in proptest::collection::vec((0u8..3, proptest::collection::vec(0u8..12, 1..6)), 1..12)
    ) {
        let place = Place::new();
        let mut engine = new_ledger(&place, 8);
        for s in steps {
            step(&mut engine, s);
        }
        assert_index_matches(engine.store(), &names());
        assert_histories_match(engine.store());
    }
}

#[test]
fn a_copy_and_a_reopened_ledger_hold_the_same_index() {
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    let names = names();
    run(
        &mut engine,
        vec![
            proxy(&names[..2], "contoso"),
            proxy(&names[1..5], "contoso"),
        ],
    );
    run(&mut engine, vec![proxy(&names[1..2], "fabrikam")]);
    let seqs = engine.store().machine_seqs("m1", 0, 10).unwrap();
    assert_eq!(
        seqs.len(),
        3,
        "activated, already active, named by a refusal: {seqs:?}"
    );
    assert_index_matches(engine.store(), &names);
    drop(engine);
    let engine = keyledger_ledger::open(place.location()).unwrap();
    assert_index_matches(engine.store(), &names);
    let target = Place::named("copy");
    let copy = Store::create(target.location()).unwrap();
    engine.store().copy_to(&copy, |_| {}).unwrap();
    assert_index_matches(&copy, &names);
    assert_histories_match(&copy);
    assert_eq!(copy.machine_seqs("m1", 0, 10).unwrap(), seqs);
}

/// A schema-2 database (before durable consumers) gets their table when this build first
/// writes, and says 4; a consumer stored by another process before that upgrades it too.
#[test]
fn a_schema_2_database_gets_the_consumers_table() {
    if skip_unless_postgres("a schema-2 PostgreSQL database") {
        return;
    }
    let consumer = |name: &str| {
        keyledger_ledger::consumer::Consumer::new(name, None, &[], keyledger_core::Timestamp::EPOCH)
            .unwrap()
    };
    for first_by_writer in [true, false] {
        let place = Place::new();
        let engine = new_ledger(&place, 10);
        drop(engine);
        place.sql("DROP TABLE keyledger.consumers");
        place.sql("UPDATE keyledger.meta SET value = '\\x02' WHERE key = 'format_version'");
        let store = if first_by_writer {
            let engine = keyledger_ledger::open(place.location()).unwrap();
            engine.store().clone()
        } else {
            Store::open(place.location()).unwrap()
        };
        assert!(store.consumers().unwrap().is_empty());
        assert!(store.create_consumer(&consumer("c")).unwrap());
        assert_eq!(store.format_version().unwrap(), PG_SCHEMA_VERSION);
        assert_eq!(store.consumers().unwrap(), [consumer("c")]);
    }
}

/// A schema-3 database (before the history rows) gets the rows of every block up to its
/// watermark when this build first writes, and says 5. Made here by dropping every bucket
/// row of a ledger past its first flush: what the upgrade builds is then all there is below
/// the watermark.
#[test]
fn a_schema_3_database_gets_its_history_rows_when_first_written() {
    if skip_unless_postgres("a schema-3 PostgreSQL database") {
        return;
    }
    let place = Place::new();
    let mut engine = new_ledger(&place, 100);
    for i in 0..70 {
        run(&mut engine, vec![activation(&format!("h{i}"))]);
    }
    drop(engine);
    let through = "SELECT get_byte(value, 0) + 256 * get_byte(value, 1) FROM keyledger.meta \
                   WHERE key = 'machine_index_through'";
    assert_ne!(place.sql(through), ["0"], "the index was flushed");
    place.sql("DELETE FROM keyledger.machine_buckets");
    place.sql("UPDATE keyledger.meta SET value = '\\x03' WHERE key = 'format_version'");
    let engine = keyledger_ledger::open(place.location()).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), PG_SCHEMA_VERSION);
    assert_histories_match(engine.store());
}

/// A schema-4 database (before the saved filter) gets the saved filter's table when this
/// build first writes, says 5, and a writer saves its filter there; the next start reads it.
#[test]
fn a_schema_4_database_gets_the_saved_filter_table_when_first_written() {
    if skip_unless_postgres("a schema-4 PostgreSQL database") {
        return;
    }
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    run(&mut engine, vec![activation("s4")]);
    drop(engine);
    place.sql("DROP TABLE keyledger.saved_filter");
    place.sql("UPDATE keyledger.meta SET value = '\\x04' WHERE key = 'format_version'");
    let store = Store::open(place.location()).unwrap();
    assert_eq!(store.saved_filter().unwrap(), None, "schema 4 has none");
    let engine = keyledger_ledger::open(place.location()).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), PG_SCHEMA_VERSION);
    let mut engine = engine;
    engine.save_filter().unwrap();
    drop(engine);
    let generations = "SELECT count(DISTINCT generation) FROM keyledger.saved_filter";
    assert_eq!(place.sql(generations), ["1"], "one whole generation");
    let engine = keyledger_ledger::open(place.location()).unwrap();
    let head = engine.head().seq;
    let saved = keyledger_ledger::resume::FilterStart::Saved { seq: head };
    assert_eq!(engine.filter_start(), &saved);
}

/// A schema-1 database (as the build before the index wrote it: no `machines` table) gets
/// the table and its rows from the blocks when this build first writes, then says 5 (2 is
/// the machine index, 3 the consumers' table, 4 the history rows, 5 the saved filter).
#[test]
fn a_schema_1_database_is_indexed_when_first_written() {
    if skip_unless_postgres("a schema-1 PostgreSQL database") {
        return;
    }
    let place = Place::new();
    let mut engine = new_ledger(&place, 10);
    let names = names();
    run(&mut engine, vec![proxy(&names[..4], "contoso")]);
    run(&mut engine, vec![proxy(&names[2..6], "fabrikam")]);
    drop(engine);
    place.sql("DROP TABLE keyledger.machine_buckets");
    place.sql("DELETE FROM keyledger.meta WHERE key = 'machine_index_through'");
    place.sql("DROP TABLE IF EXISTS keyledger.consumers");
    place.sql("UPDATE keyledger.meta SET value = '\\x01' WHERE key = 'format_version'");
    let engine = keyledger_ledger::open(place.location()).unwrap();
    assert_eq!(engine.store().format_version().unwrap(), PG_SCHEMA_VERSION);
    assert_histories_match(engine.store());
    let consumer = keyledger_ledger::consumer::Consumer::new(
        "after-upgrade",
        None,
        &[],
        keyledger_core::Timestamp::EPOCH,
    )
    .unwrap();
    assert!(
        engine.store().create_consumer(&consumer).unwrap(),
        "the table is there"
    );
    assert_index_matches(engine.store(), &names);
    // 8 machine rows, and 5 history rows: the license ID's registration, the key's issue
    // (its license ID and the key) and the two activations (the key).
    let entries = "SELECT sum(length(bytes)) / 16 FROM keyledger.machine_buckets";
    assert_eq!(place.sql(entries), ["13"]);
}

/// Enough batches that the index is merged: on redb, runs of 16 batches merged 16 to a level;
/// on PostgreSQL, small bucket rows merged every 16 flushes of 64 batches (1,024 batches). Every row is
/// still found, and paging walks them all.
#[test]
fn hundreds_of_batches_merge_into_levels_and_lose_no_row() {
    let place = Place::new();
    let mut engine = new_ledger(&place, 100_000);
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    for b in 0..1100usize {
        let pick: Vec<String> = (0..3)
            .map(|k| names[(b * 7 + k * 13) % 40].clone())
            .collect();
        let org = if b % 5 == 0 { "fabrikam" } else { "contoso" };
        run(&mut engine, vec![proxy(&pick, org)]);
    }
    assert_index_matches(engine.store(), &names);
    let all = engine.store().machine_seqs("n0", 0, 100_000).unwrap();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = engine.store().machine_seqs("n0", after, 7).unwrap();
        let Some(last) = page.last() else { break };
        after = *last;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(all.len() > 40, "{}", all.len());
    // One key's history over more than a chunk of a run (4,064 entries): a page starts at
    // the chunk found by halving, and pages walk it all.
    for b in 0..5 {
        let batch = (0..1000)
            .map(|i| activation(&format!("k{b}-{i}")))
            .collect();
        run(&mut engine, batch);
    }
    // Then a flush (every 16 batches): those rows become one run, the key's over two chunks.
    for b in 0..16 {
        run(&mut engine, vec![activation(&format!("f{b}"))]);
    }
    assert_histories_match(engine.store());
    let key = keyledger_core::Named::Key(keyledger_core::KeyId(1));
    let whole = engine.store().named_seqs(&key, 0, 1_000_000).unwrap();
    assert!(whole.len() > 6000, "{}", whole.len());
    for limit in [7, 1000] {
        let (mut paged, mut after) = (Vec::new(), 0);
        loop {
            let page = engine.store().named_seqs(&key, after, limit).unwrap();
            let Some(last) = page.last() else { break };
            after = *last;
            paged.extend(page);
        }
        assert_eq!(paged, whole, "pages of {limit}");
    }
    if on_postgres() {
        // 17 flushes, merged once at the 16th: a few rows a bucket, not one a flush.
        let most = "SELECT max(n) FROM (SELECT count(*) n FROM keyledger.machine_buckets \
                    GROUP BY bucket) c";
        let rows: u64 = place.sql(most)[0].parse().unwrap();
        assert!(rows <= 3, "{rows} rows in one bucket");
    }
}
