//! Purpose: the costs under the append path — decide + apply of an activation, record
//! encode/decode, chain hashing — and the projection fold rate.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keyledger_ledger::chain::{link, GENESIS};
use keyledger_ledger::codec::{decode_record, encode_record};
use keyledger_projections::Projections;

fn domain(c: &mut Criterion) {
    let events = support::activation_events(10_000);
    let records: Vec<Vec<u8>> = events.iter().map(encode_record).collect();
    let mut group = c.benchmark_group("domain");
    group
        .sample_size(20)
        .throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("encode_record", |b| {
        b.iter(|| events.iter().map(|e| encode_record(e).len()).sum::<usize>())
    });
    group.bench_function("decode_record", |b| {
        b.iter(|| {
            records
                .iter()
                .for_each(|r| drop(std::hint::black_box(decode_record(r).unwrap())))
        })
    });
    group.bench_function("chain_link", |b| {
        b.iter(|| {
            records
                .iter()
                .enumerate()
                .fold(GENESIS, |h, (i, r)| link(&h, i as u64 + 1, r))
        })
    });
    group.bench_function("decide_apply_activation", |b| {
        let mut state = keyledger_core::State::default();
        let mut setup = support::catalog();
        setup.insert(0, operator());
        for command in &setup {
            let ctx = context(command);
            for event in keyledger_core::decide(&state, command, &ctx).unwrap() {
                state.apply(&event);
            }
        }
        b.iter_batched(
            || support::activations(10_000),
            |commands| {
                for command in &commands {
                    let ctx = context(command);
                    for event in keyledger_core::decide(&state, command, &ctx).unwrap() {
                        state.apply(&event);
                    }
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("projection_fold", |b| {
        b.iter_batched(
            Projections::default,
            |mut p| {
                // The activations need their key: fold a catalog prefix first.
                let mut seq = 0;
                for event in setup_events() {
                    seq += 1;
                    p.apply(seq, &event);
                }
                for event in &events {
                    seq += 1;
                    p.apply(seq, event);
                }
                p
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn operator() -> keyledger_core::Command {
    keyledger_core::Command {
        at: support::AT.parse().unwrap(),
        actor: keyledger_core::Principal::new("olga").unwrap(),
        command_id: None,
        body: keyledger_core::CommandBody::AddOperator(keyledger_core::command::AddOperator {
            principal: keyledger_core::Principal::new("olga").unwrap(),
        }),
    }
}

fn context(command: &keyledger_core::Command) -> keyledger_core::Context {
    keyledger_core::Context {
        presented: command
            .body
            .presented_key()
            .map(keyledger_ledger::engine::fingerprint),
        new_key: None,
    }
}

fn setup_events() -> Vec<keyledger_core::Event> {
    let mut state = keyledger_core::State::default();
    let mut events = Vec::new();
    let mut setup = support::catalog();
    setup.insert(0, operator());
    for command in &setup {
        for event in keyledger_core::decide(&state, command, &context(command)).unwrap() {
            state.apply(&event);
            events.push(event);
        }
    }
    events
}

criterion_group!(benches, domain);
criterion_main!(benches);
