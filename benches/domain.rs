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
criterion_main!(benches, reports);

/// A report for one license ID among 100,000, each with a MAK and some activations.
fn report_among_many(c: &mut Criterion) {
    let mut p = Projections::default();
    let mut seq = 0;
    let mut push = |p: &mut Projections, body: keyledger_core::EventBody| {
        seq += 1;
        let event = keyledger_core::Event {
            at: support::AT.parse().unwrap(),
            actor: keyledger_core::Principal::new("olga").unwrap(),
            body,
        };
        p.apply(seq, &event);
    };
    for event in setup_events() {
        push(&mut p, event.body);
    }
    for i in 0..100_000u64 {
        let license_id = keyledger_core::LicenseId::new(format!("V{i:07}")).unwrap();
        push(
            &mut p,
            keyledger_core::EventBody::LicenseIdRegistered {
                license_id: license_id.clone(),
                org: keyledger_core::OrgId::new("contoso").unwrap(),
                program: keyledger_core::Program::Select,
                agreement_number: format!("S-{i}"),
                authorization_number: None,
                purchase_account: None,
            },
        );
        push(
            &mut p,
            keyledger_core::EventBody::KeyIssued {
                key_id: keyledger_core::KeyId(i + 2),
                license_id,
                product: keyledger_core::ProductId::new("win11-pro").unwrap(),
                kind: keyledger_core::KeyKind::Mak,
                limit: 100,
                hosts_max: 0,
                per_host_max: 0,
                coverage: None,
                fingerprint: keyledger_core::Fingerprint([0; 32]),
                last5: keyledger_core::Last5::parse("BCDFG").unwrap(),
            },
        );
    }
    let target = keyledger_core::LicenseId::new("V0054321").unwrap();
    let at: keyledger_core::Timestamp = support::AT.parse().unwrap();
    c.bench_function("report_one_license_id_among_100000", |b| {
        b.iter(|| {
            keyledger_projections::license_report(&p, &target, at)
                .unwrap()
                .render(keyledger_projections::Format::Json)
        })
    });
}

/// Resident memory of the decision state and the projections per 1,000,000 activated
/// machines, printed once (not a timing).
fn memory_per_million_machines(_: &mut Criterion) {
    let rss = || -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0)
            * 4096
    };
    let events = support::activation_events(1_000_000);
    let before = rss();
    let mut state = keyledger_core::State::default();
    for event in setup_events().iter().chain(&events) {
        state.apply(event);
    }
    let after_state = rss();
    let mut p = Projections::default();
    for (i, event) in setup_events().iter().chain(&events).enumerate() {
        p.apply(i as u64 + 1, event);
    }
    let after_projections = rss();
    eprintln!(
        "memory: 1,000,000 activated machines: decision state {:.0} MiB ({} B/machine); projections {:.1} MiB",
        (after_state - before) as f64 / 1048576.0,
        (after_state - before) / 1_000_000,
        after_projections.saturating_sub(after_state) as f64 / 1048576.0
    );
    drop(std::hint::black_box((state, p)));
}

criterion_group!(reports, report_among_many, memory_per_million_machines);
