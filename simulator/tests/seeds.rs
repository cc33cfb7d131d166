//! The simulator in `cargo test`: a fixed set of seeds must run clean, the seeds that
//! found bugs stay as regressions, a seed replays exactly, and each planted bug is found
//! within a bounded number of seeds (the search can fail: docs/testing.md).

use keyledger_simulator::{run, Bug, Config, Outcome};

const STEPS: u64 = 300;

fn config(seed: u64, plant: Option<Bug>) -> Config {
    Config {
        seed,
        steps: STEPS,
        trace: false,
        plant,
    }
}

fn clean(seed: u64) -> Outcome {
    run(config(seed, None)).unwrap_or_else(|violation| panic!("{violation}"))
}

#[test]
fn fixed_seeds_keep_every_invariant() {
    let mut total = Outcome::default();
    for seed in 1000..1006 {
        let outcome = clean(seed);
        assert_eq!(outcome.steps, STEPS);
        total.absorb(&outcome);
    }
    // The runs did what they are for: faults struck, power went mid-write, resends came.
    assert!(total.acknowledged > 1000, "{total:?}");
    assert!(total.faults_injected > 20, "{total:?}");
    assert!(total.power_losses > 20, "{total:?}");
    assert!(total.writes_torn > 0, "{total:?}");
    assert!(total.resends_checked > 1000, "{total:?}");
}

/// Seeds that found bugs (each fixed; the commit says which):
/// - 32, 35: a command repeated inside one atomic submission was decided twice;
/// - 58, 88: after a failed commit reopened the file, the pair view kept a filter for a run
///   id handed out again, and an active machine looked new (counted twice).
/// - 21406768660864 (step 385), 21406768660884 (step 400): a resend answered `storage` while
///   redb refused reads after a swallowed I/O error was taken for a changed first answer (a
///   bug of the simulator: an explicit storage failure is a failure, not a decision).
/// - 26379166129623 (step 9), found with the writer's filter rebuilt in the background: a
///   reopen published the file before replaying the frames redb had lost, so the rebuild
///   read a shorter log and dropped an active pair (counted twice). It depends on the rebuild
///   thread's timing: the seed does not replay it reliably.
/// - 26379166129581 (400 steps: the end's checks): a merge after a commit failed on an I/O
///   error, the batch stood (durable), and redb refused every read until the next commit
///   failed. The store now reopens itself at once after such a failure.
#[test]
fn seeds_that_found_bugs_stay_clean() {
    for seed in [32, 35, 58, 88] {
        clean(seed);
    }
    for (seed, steps) in [
        (21_406_768_660_864, 401),
        (21_406_768_660_884, 401),
        (26_379_166_129_623, 10),
        (26_379_166_129_581, 400),
    ] {
        let long = Config {
            steps,
            ..config(seed, None)
        };
        run(long).unwrap_or_else(|violation| panic!("{violation}"));
    }
}

#[test]
fn a_seed_replays_exactly() {
    let first = clean(7);
    let again = clean(7);
    assert_eq!(first, again);
    assert_ne!(first, clean(8), "another seed is another run");
}

/// Each planted bug is found, by the invariant meant to find it, within 5 seeds.
#[test]
fn every_planted_bug_is_found() {
    let expected = [
        (Bug::SkipLimitCheck, "over its limit"),
        (
            Bug::AckBeforeCommit,
            "but what was acknowledged ends at seq",
        ),
        (Bug::SkipIdempotency, "was resent and answered"),
    ];
    for (bug, says) in expected {
        let found = (0..5).find_map(|seed| run(config(seed, Some(bug))).err());
        let violation = found.unwrap_or_else(|| panic!("{bug:?} was not found in 5 seeds"));
        assert!(
            violation.what.contains(says),
            "{bug:?} was found by another invariant: {violation}"
        );
    }
    // The switch is per run: the same seeds are clean without it.
    clean(0);
}
