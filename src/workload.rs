//! `keyledger bench`: a seeded activation workload through the full engine (single writer,
//! group commit, hash chain, redb) on a temporary ledger, and the capacity plan it implies.
//!
//! Everything the workload appends is derived from the seed — key texts, machine names,
//! business times — so two runs with one seed write the same log (same chain head).

use crate::output::outln;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keyledger_core::command::{
    Activate, AddOperator, IssueKey, RegisterLicenseId, RegisterOrg, RegisterProduct,
};
use keyledger_core::*;
use keyledger_ledger::Location;
use keyledger_ledger::{AnswerReceiver, Writer, WriterHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::cli::WorkloadArgs;
use crate::progress::Progress;
use crate::resources::{peak_rss, rss_now, Measured, ResourcePlan};

/// Submissions in flight at once: enough to keep the writer busy while answers return.
const IN_FLIGHT: usize = 4;

/// The shape of a workload, from a preset and the flags that override it.
#[derive(Clone, Debug, Serialize)]
pub struct Shape {
    pub preset: String,
    pub license_ids: u64,
    pub keys_per_license: u64,
    pub machines: u64,
    pub proxy_share: f64,
    pub refusal_share: f64,
    pub batch: usize,
    pub seed: u64,
    pub events: u64,
    pub duration_s: u64,
}

impl Shape {
    pub fn from_args(args: &WorkloadArgs) -> Result<Shape> {
        // Machines budget ≈ 4 per event: 5% proxy requests of 10..=100 machines average
        // ~3.7 machines per event. The large preset keeps proxies rarer: its decision state
        // holds every machine (~52 bytes each).
        let (license_ids, keys, machines, events, duration, proxy) = match args.preset.as_str() {
            "small" => (200, 2, 250_000, 50_000, 120, 0.05),
            "medium" => (10_000, 3, 8_000_000, 2_000_000, 900, 0.05),
            "large" => (100_000, 3, 160_000_000, 100_000_000, 86_400, 0.01),
            other => bail!("--preset {other:?}: expected small, medium or large"),
        };
        let shape = Shape {
            preset: args.preset.clone(),
            license_ids: args.license_ids.unwrap_or(license_ids),
            keys_per_license: args.keys_per_license.unwrap_or(keys),
            machines: args.machines.unwrap_or(machines),
            proxy_share: args.proxy_share.unwrap_or(proxy),
            refusal_share: args.refusal_share.unwrap_or(0.02),
            batch: args.batch.unwrap_or(1000),
            seed: args.seed,
            events: args.events.unwrap_or(events),
            duration_s: args.duration.unwrap_or(duration),
        };
        if shape.license_ids == 0 || shape.keys_per_license == 0 || shape.machines == 0 {
            bail!("--license-ids, --keys-per-license and --machines must be at least 1");
        }
        if !(0.0..=1.0).contains(&shape.proxy_share) || !(0.0..=1.0).contains(&shape.refusal_share)
        {
            bail!("--proxy-share and --refusal-share are fractions between 0 and 1");
        }
        if shape.batch == 0 || shape.batch > 4096 {
            bail!("--batch must be 1..=4096 (the writer's batch limit)");
        }
        Ok(shape)
    }

    fn keys(&self) -> u64 {
        self.license_ids * self.keys_per_license
    }
}

/// The capacity plan (docs/api.md): what one machine sustained and what it implies.
#[derive(Clone, Debug, Serialize)]
pub struct CapacityPlan {
    pub shape: Shape,
    pub events: u64,
    pub machines_activated: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub commit_latency_ms_p50: f64,
    pub commit_latency_ms_p99: f64,
    /// The redb file as the run left it (redb grows files ahead of need).
    pub disk_bytes: u64,
    /// The same file after compaction: the data itself.
    pub disk_bytes_compacted: u64,
    /// Compacted bytes per event.
    pub bytes_per_event: f64,
    pub replay_verify_events_per_second: f64,
    pub projection_rebuild_seconds: f64,
    /// Folding alone (events already decoded), one core.
    pub projection_fold_events_per_second: f64,
    pub peak_rss_bytes: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub activations_per_day: u64,
    pub growth_gb_per_year: f64,
    pub headroom_x: f64,
    pub replay_one_year_seconds: f64,
    /// Memory and disk: per key, per machine, and how long until each is full.
    pub resources: crate::resources::ResourcePlan,
    /// Throughput and p99 latency per quarter second, for plots: `[seconds, events/s, p99 ms]`.
    pub timeline: Vec<[f64; 3]>,
}

/// The seeded generator of workload commands.
pub struct Generator {
    shape: Shape,
    rng: StdRng,
    keys: Vec<ProductKeyText>,
    next_machine: u64,
    at: Timestamp,
}

impl Generator {
    pub fn new(shape: &Shape) -> Generator {
        let mut rng = StdRng::seed_from_u64(shape.seed);
        let keys = (0..shape.keys())
            .map(|_| {
                let indices: [u8; 25] = std::array::from_fn(|_| rng.random_range(0..24u8));
                ProductKeyText::from_alphabet_indices(&indices)
            })
            .collect();
        Generator {
            shape: shape.clone(),
            rng,
            keys,
            next_machine: 0,
            at: "2026-01-01T00:00:00Z".parse().expect("valid"),
        }
    }

    /// The catalog: an org tree, an outsider, one product, the license IDs and their MAKs.
    pub fn setup(&self) -> Vec<Command> {
        let at = self.at;
        let op = || Principal::new("bench-operator").expect("valid");
        let cmd = |body| Command {
            at,
            actor: op(),
            command_id: None,
            body,
        };
        let org = |id: &str| OrgId::new(id).expect("valid");
        let mut commands = vec![
            cmd(CommandBody::AddOperator(AddOperator { principal: op() })),
            cmd(CommandBody::RegisterOrg(RegisterOrg {
                org: org("bench-root"),
                name: "Bench Root".into(),
                parent: None,
            })),
            cmd(CommandBody::RegisterOrg(RegisterOrg {
                org: org("bench-child"),
                name: "Bench Child".into(),
                parent: Some(org("bench-root")),
            })),
            cmd(CommandBody::RegisterOrg(RegisterOrg {
                org: org("bench-outsider"),
                name: "Outsider".into(),
                parent: None,
            })),
            cmd(CommandBody::RegisterProduct(RegisterProduct {
                product: ProductId::new("win11-pro").expect("valid"),
                name: "Windows 11 Pro".into(),
                family: Family::WindowsClient,
                version: "11".into(),
                edition: "pro".into(),
                key_requirement: KeyRequirement::VlKey,
            })),
        ];
        // Room for every machine on whichever key the generator picks, with slack.
        let limit = ((self.shape.machines / self.shape.keys()).max(1) * 2 + 1000)
            .min(keyledger_core::decide::COUNT_MAX);
        for l in 0..self.shape.license_ids {
            let license_id = LicenseId::new(format!("L{l:07}")).expect("valid");
            commands.push(cmd(CommandBody::RegisterLicenseId(RegisterLicenseId {
                license_id: license_id.clone(),
                org: org("bench-root"),
                program: Program::EnterpriseAgreement,
                agreement_number: format!("EA-{l}"),
                authorization_number: None,
                purchase_account: None,
            })));
            for k in 0..self.shape.keys_per_license {
                let text = self.keys[(l * self.shape.keys_per_license + k) as usize].clone();
                commands.push(cmd(CommandBody::IssueKey(IssueKey {
                    license_id: license_id.clone(),
                    product: ProductId::new("win11-pro").expect("valid"),
                    kind: KeyKind::Mak,
                    limit: Some(limit),
                    hosts: None,
                    per_host: None,
                    coverage_start: None,
                    coverage_end: None,
                    product_key: Some(text),
                })));
            }
        }
        commands
    }

    /// The next batch of activation commands, or none once the machines are used up.
    pub fn batch(&mut self) -> Option<Vec<Command>> {
        if self.next_machine >= self.shape.machines {
            return None;
        }
        self.at = self.at.plus(Span::seconds(1));
        let mut commands = Vec::with_capacity(self.shape.batch);
        while commands.len() < self.shape.batch && self.next_machine < self.shape.machines {
            commands.push(self.activation());
        }
        Some(commands)
    }

    fn activation(&mut self) -> Command {
        let key = self.keys[self.rng.random_range(0..self.keys.len())].clone();
        let roll: f64 = self.rng.random();
        let refused = roll < self.shape.refusal_share;
        let proxy = !refused && roll < self.shape.refusal_share + self.shape.proxy_share;
        let count = if proxy {
            self.rng.random_range(10..=100u64)
        } else {
            1
        };
        let count = count.min(self.shape.machines - self.next_machine).max(1);
        let machines = (0..count)
            .map(|i| MachineId::new(format!("bm-{:010}", self.next_machine + i)).expect("valid"))
            .collect();
        self.next_machine += count;
        let org = match (refused, self.rng.random_bool(0.5)) {
            (true, _) => "bench-outsider",
            (false, true) => "bench-root",
            (false, false) => "bench-child",
        };
        Command {
            at: self.at,
            actor: Principal::new("bench-vamt").expect("valid"),
            command_id: None,
            body: CommandBody::Activate(Activate {
                product_key: key,
                org: OrgId::new(org).expect("valid"),
                method: if proxy {
                    ActivationMethod::Proxy
                } else {
                    ActivationMethod::Online
                },
                machines,
            }),
        }
    }

    pub fn machines_used(&self) -> u64 {
        self.next_machine
    }
}

/// Runs the workload on a temporary redb file, or, when `data` is a PostgreSQL URL, on that
/// database (which must hold no ledger yet: use a scratch database), and answers its plan.
pub fn run(args: &WorkloadArgs, data: &Location) -> Result<CapacityPlan> {
    let shape = Shape::from_args(args)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let location = match data {
        Location::Postgres(_) => data.clone(),
        Location::File(path) if args.keep => {
            anyhow::ensure!(
                !path.exists(),
                "--keep writes a new ledger at --data {}, which exists already",
                path.display()
            );
            data.clone()
        }
        Location::File(_) => Location::File(dir.path().join("bench.redb")),
    };
    let limits = keyledger_ledger::Limits {
        machine_facts_on_disk: args.machine_facts.on_disk(args.machine_facts_on_disk),
        ..Default::default()
    };
    let data_dir = match data {
        Location::File(path) => Some(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new(".")),
        ),
        Location::Postgres(_) => None,
    };
    let plan = measure(
        &shape,
        &location,
        args.activations_per_day,
        limits,
        data_dir,
    )?;
    Ok(plan)
}

fn measure(
    shape: &Shape,
    path: &Location,
    activations_per_day: u64,
    limits: keyledger_ledger::Limits,
    data_dir: Option<&std::path::Path>,
) -> Result<CapacityPlan> {
    let mut generator = Generator::new(shape);
    let mut setup = generator.setup();
    let init = setup.remove(0);
    let engine = keyledger_ledger::init_with(path, init.actor.clone(), init.at, limits)?;
    let store = engine.store().clone();
    let writer = Writer::spawn(engine);
    let handle = writer.handle();
    let rss_before_setup = rss_now();
    for chunk in setup.chunks(4096) {
        let answers = handle.submit_blocking(chunk.to_vec(), false)?;
        anyhow::ensure!(answers.iter().all(|a| a.ok), "workload set-up was refused");
    }
    let rss_after_setup = rss_now();
    let load = drive(&handle, &mut generator, shape, &store)?;
    let page_cache = store.page_cache_bytes();
    drop(handle);
    let engine = writer.stop()?;
    let filter_bytes = engine.activated_filter_bytes() as u64;
    drop(engine);
    let verify_started = Instant::now();
    let report = keyledger_ledger::verify(&store)?;
    let replay_rate = report.events as f64 / verify_started.elapsed().as_secs_f64();
    let (projection_rebuild_seconds, fold_seconds) = rebuild_projections(&store)?;
    let disk_bytes = store.stored_bytes()?;
    let store = store.compact()?;
    let disk_bytes_compacted = store.stored_bytes()?;
    drop(store);
    // Growth is extrapolated from the compacted size: a long-running ledger reuses the
    // pages redb frees, so its file tracks the data, not the pre-grown slack.
    let bytes_per_event = disk_bytes_compacted as f64 / report.events as f64;
    let events_per_second = load.events as f64 / load.seconds;
    let per_year = activations_per_day as f64 * 365.0;
    let resources = ResourcePlan::new(&Measured {
        rss_before_setup,
        rss_after_setup,
        keys: shape.keys(),
        samples: &load.memory,
        filter_bytes,
        data_dir,
        activations_per_day,
        disk_bytes_per_day: activations_per_day as f64 * bytes_per_event,
        peak_rss: peak_rss(),
        page_cache,
        page_cache_bound: match path {
            Location::File(_) => keyledger_ledger::store::cache_bytes() as u64,
            Location::Postgres(_) => 0,
        },
    });
    Ok(CapacityPlan {
        shape: shape.clone(),
        events: load.events,
        machines_activated: generator.machines_used(),
        seconds: load.seconds,
        events_per_second,
        commit_latency_ms_p50: load.latencies.value_at_quantile(0.5) as f64 / 1000.0,
        commit_latency_ms_p99: load.latencies.value_at_quantile(0.99) as f64 / 1000.0,
        disk_bytes,
        disk_bytes_compacted,
        bytes_per_event,
        replay_verify_events_per_second: replay_rate,
        projection_rebuild_seconds,
        projection_fold_events_per_second: report.events as f64 / fold_seconds,
        peak_rss_bytes: peak_rss(),
        head_seq: report.head.seq,
        head_hash: hex::encode(report.head.hash),
        activations_per_day,
        growth_gb_per_year: per_year * bytes_per_event / 1e9,
        headroom_x: events_per_second * 86_400.0 / activations_per_day.max(1) as f64,
        replay_one_year_seconds: per_year / replay_rate,
        resources,
        timeline: load.timeline,
    })
}

/// What the timed part of a bench saw.
struct Load {
    events: u64,
    seconds: f64,
    /// Send to durable answer, per batch, in microseconds.
    latencies: hdrhistogram::Histogram<u64>,
    /// `[seconds since start, events/s, p99 ms]` every quarter second.
    timeline: Vec<[f64; 3]>,
    /// `(machines activated, resident bytes)` at the same moments.
    memory: crate::resources::Samples,
}

/// Sends the generator's batches, [`IN_FLIGHT`] at a time, until the shape's events or
/// duration are reached, and measures what comes back.
fn drive(
    handle: &WriterHandle,
    generator: &mut Generator,
    shape: &Shape,
    store: &keyledger_ledger::Store,
) -> Result<Load> {
    let progress = Progress::new("bench", shape.events);
    let deadline = Instant::now() + Duration::from_secs(shape.duration_s);
    let started = Instant::now();
    let mut load = Load {
        events: 0,
        seconds: 0.0,
        latencies: latency_histogram(),
        timeline: Vec::new(),
        memory: Vec::new(),
    };
    let mut window = (started, 0u64, latency_histogram());
    let mut in_flight: std::collections::VecDeque<(Instant, AnswerReceiver)> = Default::default();
    let sample = |window: &mut (Instant, u64, hdrhistogram::Histogram<u64>)| {
        let span = window.0.elapsed().as_secs_f64();
        let point = [
            started.elapsed().as_secs_f64(),
            window.1 as f64 / span,
            window.2.value_at_quantile(0.99) as f64 / 1000.0,
        ];
        *window = (Instant::now(), 0, latency_histogram());
        point
    };
    loop {
        let more = load.events < shape.events && Instant::now() < deadline;
        if more && in_flight.len() < IN_FLIGHT {
            if let Some(commands) = generator.batch() {
                in_flight.push_back((Instant::now(), handle.send_blocking(commands, false)?));
                continue;
            }
        }
        let Some((sent, rx)) = in_flight.pop_front() else {
            break;
        };
        let answers = rx.blocking_recv().context("the writer stopped")??;
        let appended = answers.iter().filter(|a| a.seq.is_some()).count() as u64;
        let micros = (sent.elapsed().as_micros() as u64).max(1);
        load.latencies.saturating_record(micros);
        window.2.saturating_record(micros);
        load.events += appended;
        window.1 += appended;
        progress.add(appended);
        if window.0.elapsed().as_secs_f64() >= 0.25 {
            load.timeline.push(sample(&mut window));
            let outside_cache = rss_now().saturating_sub(store.page_cache_bytes());
            load.memory.push((generator.machines_used(), outside_cache));
        }
    }
    load.seconds = started.elapsed().as_secs_f64();
    if window.1 > 0 && window.0.elapsed().as_secs_f64() > 0.0 {
        load.timeline.push(sample(&mut window));
    }
    progress.finish();
    Ok(load)
}

/// Rebuilds the projections from zero: the whole time (read, decode, fold) and the time
/// spent folding alone, measured over decoded chunks so memory stays bounded.
fn rebuild_projections(store: &keyledger_ledger::Store) -> Result<(f64, f64)> {
    const CHUNK: usize = 65_536;
    let started = Instant::now();
    let mut projections = keyledger_projections::Projections::default();
    let mut chunk: Vec<(u64, Event)> = Vec::with_capacity(CHUNK);
    let mut folding = Duration::ZERO;
    let mut fold = |chunk: &mut Vec<(u64, Event)>, p: &mut keyledger_projections::Projections| {
        let t = Instant::now();
        for (seq, event) in chunk.iter() {
            p.apply(*seq, event);
        }
        folding += t.elapsed();
        // Freeing the decoded events is the decoder's cost, not the fold's.
        chunk.clear();
    };
    keyledger_ledger::walk(store, 1, |r| {
        chunk.push((r.seq, r.event));
        if chunk.len() == CHUNK {
            fold(&mut chunk, &mut projections);
        }
        Ok(std::ops::ControlFlow::Continue(()))
    })?;
    fold(&mut chunk, &mut projections);
    Ok((started.elapsed().as_secs_f64(), folding.as_secs_f64()))
}

fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("the bounds are valid")
}

pub fn print_plan(p: &CapacityPlan) -> Result<()> {
    let s = &p.shape;
    outln!(
        "workload {}: {} license IDs x {} keys, {} machines, {:.0}% proxy, {:.0}% refused, batch {}, seed {}",
        s.preset, s.license_ids, s.keys_per_license, p.machines_activated, s.proxy_share * 100.0, s.refusal_share * 100.0, s.batch, s.seed
    );
    outln!(
        "sustained        {:.0} events/s over {:.1} s ({} events)",
        p.events_per_second,
        p.seconds,
        p.events
    );
    outln!(
        "commit latency   p50 {:.2} ms, p99 {:.2} ms (per batch, send to durable answer)",
        p.commit_latency_ms_p50,
        p.commit_latency_ms_p99
    );
    outln!(
        "disk             {:.1} bytes/event compacted ({} bytes for {} events; {} bytes before compaction)",
        p.bytes_per_event, p.disk_bytes_compacted, p.head_seq, p.disk_bytes
    );
    outln!(
        "replay + verify  {:.0} events/s; projection rebuild {:.2} s (fold alone {:.0} events/s)",
        p.replay_verify_events_per_second,
        p.projection_rebuild_seconds,
        p.projection_fold_events_per_second
    );
    let r = &p.resources;
    outln!(
        "memory           peak RSS {:.0} MiB (page cache {:.0} of {:.0} MiB); {:.1} bytes per activated machine (filter of activated pairs {:.1} MiB), {:.0} bytes per key",
        p.peak_rss_bytes as f64 / 1048576.0,
        r.page_cache_bytes as f64 / 1048576.0,
        r.page_cache_bound_bytes as f64 / 1048576.0,
        r.rss_bytes_per_machine,
        r.filter_bytes as f64 / 1048576.0,
        r.rss_bytes_per_key
    );
    outln!(
        "plan: at {} activations/day the ledger grows {:.1} GB/year; one machine of this kind sustains {:.0}x that rate; a full replay of one year takes {:.0} s",
        p.activations_per_day, p.growth_gb_per_year, p.headroom_x, p.replay_one_year_seconds
    );
    outln!(
        "      memory ({:.1} GiB) lasts {}; disk ({}) lasts {}",
        r.memory_total_bytes as f64 / 1073741824.0,
        lasts(r.memory_full_days),
        r.disk_free_bytes
            .map_or("PostgreSQL: see its server".to_owned(), |b| format!(
                "{:.1} GB free",
                b as f64 / 1e9
            )),
        lasts(r.disk_full_days)
    );
    Ok(())
}

/// "12.3 years" / "45 days", or why not.
fn lasts(days: Option<f64>) -> String {
    match days {
        None => "indefinitely by this measure (it did not grow with machines)".to_owned(),
        Some(d) if d >= 730.0 => format!("{:.1} years", d / 365.0),
        Some(d) => format!("{d:.0} days"),
    }
}
