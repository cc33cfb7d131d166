//! Purpose: the auditor's questions on a large ledger. `machine NAME` — the
//! machine index lookup and the events it names — on a ledger of
//! `KEYLEDGER_MACHINE_BENCH_MACHINES` activated machines (default 1,000,000; the README's
//! figure uses 10,000,000), and `usage` by month over a year of one license ID with that many
//! activations spread evenly over 365 days.

mod support;

/// The benches measure with the allocator the `keyledger` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion};
use keyledger_core::command::Activate;
use keyledger_core::{ActivationMethod, Command, CommandBody, MachineId, Span, Timestamp};
use keyledger_ledger::Submission;
use keyledger_projections::usage::{scope_keys, usage, Period, UsageScope};
use keyledger_projections::Projections;

const PER_COMMAND: u64 = 1_000;

fn name(i: u64) -> String {
    format!("ent-pc-{i:010}")
}

/// One proxy activation of machines `from..from + PER_COMMAND`, at its share of the year.
fn proxy(from: u64, total: u64) -> Command {
    let start: Timestamp = support::AT.parse().unwrap();
    let at = start.plus(Span::seconds((from * 365 * 86_400 / total) as i64));
    Command {
        at,
        actor: keyledger_core::Principal::new("vamt").unwrap(),
        command_id: None,
        body: CommandBody::Activate(Activate {
            product_key: keyledger_core::ProductKeyText::parse(support::MAK).unwrap(),
            org: keyledger_core::OrgId::new("contoso").unwrap(),
            method: ActivationMethod::Proxy,
            machines: (from..from + PER_COMMAND)
                .map(|i| MachineId::new(name(i)).unwrap())
                .collect(),
        }),
    }
}

fn insight(c: &mut Criterion) {
    let machines: u64 = std::env::var("KEYLEDGER_MACHINE_BENCH_MACHINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = support::ledger(dir.path());
    let mut next = 0;
    while next < machines {
        let commands: Vec<Command> = (0..10)
            .map(|k| proxy(next + k * PER_COMMAND, machines))
            .collect();
        next += 10 * PER_COMMAND;
        let answers = engine
            .run_batch(&[Submission::new(commands)])
            .remove(0)
            .unwrap();
        assert!(answers.iter().all(|a| a.ok), "{:?}", answers[0]);
    }
    let store = engine.store().clone();
    let mut p = Projections::default();
    keyledger_ledger::walk(&store, 1, |r| {
        p.apply(r.seq, &r.event);
        Ok(std::ops::ControlFlow::Continue(()))
    })
    .unwrap();
    eprintln!("insight: {next} machines in {} events", p.last_seq);
    let mut group = c.benchmark_group("insight");
    group.sample_size(50);
    let mut i = 1u64;
    group.bench_function("machine_history", |b| {
        b.iter(|| {
            i = (i * 7_919 + 12_345) % next;
            let (events, _) = store.machine_events(&name(i), 0, 1_000).unwrap();
            assert_eq!(events.len(), 1);
            events
        })
    });
    let scope = UsageScope::LicenseId(keyledger_core::LicenseId::new("V100").unwrap());
    let keys = scope_keys(&p, &scope).unwrap();
    group.bench_function("usage_by_month_one_year", |b| {
        b.iter(|| {
            let report = usage(&p, &scope, &keys, Period::Month, None, None).unwrap();
            assert_eq!(report.periods.last().unwrap().used_end, next);
            report
        })
    });
    group.finish();
}

criterion_group!(benches, insight);
criterion_main!(benches);
