//! Purpose: Merkle proof generation on a large ledger (inclusion and consistency, O(log n)
//! reads), and what growing the tree costs per batch of 1,000 records. The ledger size is
//! `KEYLEDGER_PROOF_EVENTS` (default 1,000,000; the README's figure uses 10,000,000).

mod support;

/// The benches measure with the allocator the `keyledger` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keyledger_ledger::merkle;
use keyledger_ledger::tree::{Frontier, LedgerTree};
use keyledger_ledger::Submission;

fn proofs(c: &mut Criterion) {
    let events: u64 = std::env::var("KEYLEDGER_PROOF_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = support::ledger(dir.path());
    while engine.head().seq < events {
        engine
            .run_batch(&[Submission::new(support::activations(10_000))])
            .remove(0)
            .unwrap();
    }
    let store = engine.store().clone();
    let size = engine.head().seq;
    eprintln!("proofs: ledger of {size} events");
    let mut group = c.benchmark_group("proofs");
    group.sample_size(50);
    let mut seq = 1u64;
    group.bench_function("inclusion_path", |b| {
        b.iter(|| {
            // Spread the leaves asked for over the whole log.
            seq = (seq * 7_919 + 12_345) % size + 1;
            let tree = LedgerTree::new(&store, size);
            merkle::inclusion_path(&tree, seq - 1, size).unwrap()
        })
    });
    let mut from = 1u64;
    group.bench_function("consistency_path", |b| {
        b.iter(|| {
            from = (from * 6_007 + 777) % size + 1;
            let tree = LedgerTree::new(&store, size);
            merkle::consistency_path(&tree, from, size).unwrap()
        })
    });
    let records = store.records(size - 999, 1000).unwrap();
    group.throughput(Throughput::Elements(1000));
    group.bench_function("frontier_push_1000", |b| {
        b.iter_batched(
            Frontier::default,
            |mut frontier| {
                let mut nodes = Vec::new();
                for record in &records {
                    frontier.push(record, &mut nodes);
                }
                nodes
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
