//! `keyledger-sim`: runs the deterministic simulator.
//!
//!   keyledger-sim --seed S [--steps N] [--plant BUG] [--trace]   one seed (a replay)
//!   keyledger-sim --seeds K [--minutes M] [--steps N] [--from S] [--plant BUG]
//!                                                        a sweep: seeds S, S+1, ... until
//!                                                        K seeds or M minutes
//! Prints what ran (seeds, steps, steps/s, faults, power losses) and every violation with
//! its seed and step; exits 1 when there was one, 2 on bad arguments.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use keyledger_simulator::{run, Bug, Config, Outcome};

#[derive(Debug)]
struct Args {
    seed: Option<u64>,
    seeds: u64,
    from: u64,
    minutes: Option<f64>,
    steps: u64,
    plant: Option<Bug>,
    trace: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seed: None,
        seeds: 1,
        from: 0,
        minutes: None,
        steps: 400,
        plant: None,
        trace: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        match flag.as_str() {
            "--seed" => args.seed = Some(number(value()?)?),
            "--seeds" => args.seeds = number(value()?)?,
            "--from" => args.from = number(value()?)?,
            "--steps" => args.steps = number(value()?)?,
            "--minutes" => {
                let v = value()?;
                args.minutes = Some(v.parse().map_err(|e| format!("--minutes {v:?}: {e}"))?);
            }
            "--trace" => args.trace = true,
            "--plant" => {
                let v = value()?;
                let names: Vec<_> = Bug::ALL.iter().map(|b| b.name()).collect();
                let bug = Bug::from_name(&v)
                    .ok_or_else(|| format!("--plant {v:?}: not one of {}", names.join(", ")))?;
                args.plant = Some(bug);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the source's header)"
                ))
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(why) => {
            eprintln!("keyledger-sim: {why}");
            return ExitCode::from(2);
        }
    };
    let (first, count) = match args.seed {
        Some(seed) => (seed, 1),
        None => (args.from, args.seeds),
    };
    let budget = args.minutes.map(|m| Duration::from_secs_f64(m * 60.0));
    let started = Instant::now();
    let (mut total, mut seeds, mut violations) = (Outcome::default(), 0u64, 0u64);
    for seed in first..first.saturating_add(count) {
        if budget.is_some_and(|b| started.elapsed() >= b) {
            break;
        }
        seeds += 1;
        match run(Config {
            seed,
            steps: args.steps,
            plant: args.plant,
            trace: args.trace,
        }) {
            Ok(outcome) => total.absorb(&outcome),
            Err(violation) => {
                violations += 1;
                println!("VIOLATION {violation}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds {seeds} (from {first}), steps {}, {:.0} steps/s, commands {}, acknowledged {}, \
         refused {}, failed {}, resends checked {}, faults injected {}, power losses {} \
         (unsynced writes lost {}, torn {}), restarts {}, opens failed {}, saved filters read {}, \
         unknown outcomes resolved {}, violations {violations}, {secs:.1} s",
        total.steps,
        total.steps as f64 / secs.max(1e-9),
        total.commands,
        total.acknowledged,
        total.refused,
        total.failed,
        total.resends_checked,
        total.faults_injected,
        total.power_losses,
        total.writes_lost,
        total.writes_torn,
        total.restarts,
        total.opens_failed,
        total.saved_filters_read,
        total.unknown_resolved
    );
    let refusals: Vec<String> = total
        .refusals
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!("refusals: {}", refusals.join(", "));
    if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
