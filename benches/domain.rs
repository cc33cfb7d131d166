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
            .map(keyledger_ledger::secrets::fingerprint),
        new_key: None,
        ..Default::default()
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
criterion_main!(benches, reports, more);

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
        push(&mut p, mak_issued(i + 2, license_id));
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
/// machines, printed once (not a timing). Measured as RSS growth, so this bench keeps the
/// system allocator: mimalloc reuses memory committed by earlier benches and hides it.
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

/// decide + apply for more command types: a proxy activation of 100 machines, a KMS client
/// contact, a key issue.
fn per_command_type(c: &mut Criterion) {
    let mut state = keyledger_core::State::default();
    for event in setup_events() {
        state.apply(&event);
    }
    let mut group = c.benchmark_group("decide_apply");
    group.sample_size(20);
    let key = keyledger_core::ProductKeyText::parse(support::MAK).unwrap();
    let at: keyledger_core::Timestamp = support::AT.parse().unwrap();
    let principal = |p: &str| keyledger_core::Principal::new(p).unwrap();
    let mut next = 0u64;
    group.bench_function("activate_proxy_100", |b| {
        b.iter_batched(
            || {
                next += 1;
                let machines = (0..100)
                    .map(|i| keyledger_core::MachineId::new(format!("px-{next}-{i}")).unwrap())
                    .collect();
                keyledger_core::Command {
                    at,
                    actor: principal("vamt"),
                    command_id: None,
                    body: keyledger_core::CommandBody::Activate(
                        keyledger_core::command::Activate {
                            product_key: key.clone(),
                            org: keyledger_core::OrgId::new("contoso").unwrap(),
                            method: keyledger_core::ActivationMethod::Proxy,
                            machines,
                        },
                    ),
                }
            },
            |command| {
                for event in keyledger_core::decide(&state, &command, &context(&command)).unwrap() {
                    state.apply(&event);
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut issued = 0u64;
    let mut issuing = state.clone();
    group.bench_function("issue_key", |b| {
        b.iter_batched(
            || {
                issued += 1;
                let mut indices = [0u8; 25];
                let mut n = issued + 1_000_000;
                for slot in indices.iter_mut().rev() {
                    *slot = (n % 24) as u8;
                    n /= 24;
                }
                let text = keyledger_core::ProductKeyText::from_alphabet_indices(&indices);
                keyledger_core::Command {
                    at,
                    actor: principal("olga"),
                    command_id: None,
                    body: keyledger_core::CommandBody::IssueKey(
                        keyledger_core::command::IssueKey {
                            license_id: keyledger_core::LicenseId::new("V100").unwrap(),
                            product: keyledger_core::ProductId::new("win11-pro").unwrap(),
                            kind: keyledger_core::KeyKind::Mak,
                            limit: Some(10),
                            hosts: None,
                            per_host: None,
                            coverage_start: None,
                            coverage_end: None,
                            product_key: Some(text),
                        },
                    ),
                }
            },
            |command| {
                for event in keyledger_core::decide(&issuing, &command, &context(&command)).unwrap()
                {
                    issuing.apply(&event);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The R2 export of 10,000 keys for a reader.
fn key_export(c: &mut Criterion) {
    let mut p = Projections::default();
    let mut seq = 0;
    for event in setup_events() {
        seq += 1;
        p.apply(seq, &event);
    }
    let reader = keyledger_core::Principal::new("rita").unwrap();
    let mut push = |p: &mut Projections, body| {
        seq += 1;
        let event = keyledger_core::Event {
            at: support::AT.parse().unwrap(),
            actor: keyledger_core::Principal::new("olga").unwrap(),
            body,
        };
        p.apply(seq, &event);
    };
    push(
        &mut p,
        keyledger_core::EventBody::RoleAssigned {
            principal: reader.clone(),
            license_id: keyledger_core::LicenseId::new("V100").unwrap(),
            role: keyledger_core::Role::ProductKeyReader,
        },
    );
    for i in 0..10_000u64 {
        push(
            &mut p,
            mak_issued(i + 2, keyledger_core::LicenseId::new("V100").unwrap()),
        );
    }
    let scope = keyledger_projections::keys::ExportScope::All;
    c.bench_function("key_export_10000_keys", |b| {
        b.iter(|| {
            keyledger_projections::keys::export_keys(&p, &scope, &reader, |_, _| {
                Ok(Some(support::MAK.to_owned()))
            })
            .expect("the bench's key text is given")
            .rows
            .len()
        })
    });
}

criterion_group!(more, per_command_type, key_export);

/// A MAK of limit 100 for win11-pro, as the report and export benches issue thousands.
fn mak_issued(key_id: u64, license_id: keyledger_core::LicenseId) -> keyledger_core::EventBody {
    keyledger_core::EventBody::KeyIssued {
        key_id: keyledger_core::KeyId(key_id),
        license_id,
        product: keyledger_core::ProductId::new("win11-pro").unwrap(),
        kind: keyledger_core::KeyKind::Mak,
        limit: 100,
        hosts_max: 0,
        per_host_max: 0,
        coverage: None,
        fingerprint: keyledger_core::Fingerprint([0; 32]),
        last5: keyledger_core::Last5::parse("BCDFG").unwrap(),
    }
}
