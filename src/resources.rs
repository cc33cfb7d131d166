//! What a bench run says of memory and disk: resident bytes per key and per activated
//! machine, and, at the planned rate, how long until this node's memory and disk are full.
//! Memory, not throughput, is what runs out first on a node that keeps anything per machine
//! in RAM, so the capacity plan measures it rather than assuming it.

use std::path::Path;

use serde::Serialize;

/// The memory and disk part of the capacity plan (docs/api.md).
#[derive(Clone, Debug, Serialize)]
pub struct ResourcePlan {
    /// Resident bytes the set-up added per key issued (with its share of license IDs).
    pub rss_bytes_per_key: f64,
    /// Resident bytes each activated machine added: the least-squares slope of resident
    /// memory outside the page cache over machines activated, in the second half of the
    /// run (the cache fills up to its bound, then stays).
    pub rss_bytes_per_machine: f64,
    /// The redb page cache at the end of the run, and its bound (`--cache-mib`); 0 on
    /// PostgreSQL.
    pub page_cache_bytes: u64,
    pub page_cache_bound_bytes: u64,
    /// Bytes of the writer's filter of activated pairs at the end (it grows with machines;
    /// everything else the writer keeps is bounded).
    pub filter_bytes: u64,
    /// This machine's memory (`MemTotal`).
    pub memory_total_bytes: u64,
    /// Free space where the ledger would live (`--data`'s directory); absent on PostgreSQL.
    pub disk_free_bytes: Option<u64>,
    /// Days until resident memory (the peak, with the page cache at its bound) reaches
    /// `memory_total_bytes` at the planned rate, each activation a new machine; absent when
    /// memory did not grow with machines.
    pub memory_full_days: Option<f64>,
    /// Days until the disk is full at the planned rate; absent on PostgreSQL.
    pub disk_full_days: Option<f64>,
}

/// Resident memory samples taken as the load runs: `(machines activated, RSS bytes outside
/// the page cache)`.
pub type Samples = Vec<(u64, u64)>;

/// What the run measured, for [`ResourcePlan::new`].
pub struct Measured<'a> {
    pub rss_before_setup: u64,
    pub rss_after_setup: u64,
    pub keys: u64,
    pub samples: &'a Samples,
    pub filter_bytes: u64,
    /// Where the ledger would live (its directory's free space is the disk's room).
    pub data_dir: Option<&'a Path>,
    pub activations_per_day: u64,
    pub disk_bytes_per_day: f64,
    pub peak_rss: u64,
    pub page_cache: u64,
    pub page_cache_bound: u64,
}

impl ResourcePlan {
    pub fn new(m: &Measured<'_>) -> ResourcePlan {
        let per_machine = slope(&m.samples[m.samples.len() / 2..]);
        let memory_total = memory_total();
        let at_bound = m.peak_rss.saturating_sub(m.page_cache) + m.page_cache_bound;
        let room = memory_total.saturating_sub(at_bound.max(m.peak_rss)) as f64;
        let disk_free = m.data_dir.and_then(disk_free);
        ResourcePlan {
            rss_bytes_per_key: m.rss_after_setup.saturating_sub(m.rss_before_setup) as f64
                / m.keys.max(1) as f64,
            rss_bytes_per_machine: per_machine,
            page_cache_bytes: m.page_cache,
            page_cache_bound_bytes: m.page_cache_bound,
            filter_bytes: m.filter_bytes,
            memory_total_bytes: memory_total,
            disk_free_bytes: disk_free,
            memory_full_days: (per_machine > 0.0 && m.activations_per_day > 0)
                .then(|| room / (per_machine * m.activations_per_day as f64)),
            disk_full_days: disk_free
                .filter(|_| m.disk_bytes_per_day > 0.0)
                .map(|free| free as f64 / m.disk_bytes_per_day),
        }
    }
}

/// The least-squares slope of y over x (0 with fewer than two distinct x).
pub fn slope(points: &[(u64, u64)]) -> f64 {
    let n = points.len() as f64;
    let mean = |f: fn(&(u64, u64)) -> f64| points.iter().map(f).sum::<f64>() / n;
    let (mx, my) = (mean(|p| p.0 as f64), mean(|p| p.1 as f64));
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        let dx = *x as f64 - mx;
        sxy += dx * (*y as f64 - my);
        sxx += dx * dx;
    }
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// A `kB` field of a /proc file, in bytes (0 where /proc is not there).
fn proc_kb(file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The process's resident set now (VmRSS), in bytes.
pub fn rss_now() -> u64 {
    proc_kb("/proc/self/status", "VmRSS:")
}

/// The process's peak resident set (VmHWM), in bytes.
pub fn peak_rss() -> u64 {
    proc_kb("/proc/self/status", "VmHWM:")
}

fn memory_total() -> u64 {
    proc_kb("/proc/meminfo", "MemTotal:")
}

/// Bytes free to an unprivileged writer on the file system holding `dir`.
fn disk_free(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_bytes_per_machine() {
        let points: Vec<(u64, u64)> = (0..10).map(|i| (i * 1000, 5_000 + i * 1000 * 3)).collect();
        assert!((slope(&points) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(5, 1), (5, 9)]), 0.0);
        assert_eq!(slope(&[]), 0.0);
    }

    #[test]
    fn memory_and_disk_last_as_long_as_the_room_over_the_daily_growth() {
        let samples: Samples = vec![(0, 100), (1_000, 1_100), (2_000, 2_100), (3_000, 3_100)];
        let plan = ResourcePlan::new(&Measured {
            rss_before_setup: 1_000,
            rss_after_setup: 3_000,
            keys: 10,
            samples: &samples,
            filter_bytes: 7,
            data_dir: Some(Path::new("/")),
            activations_per_day: 1_000,
            disk_bytes_per_day: 1_000.0,
            peak_rss: 500,
            page_cache: 100,
            page_cache_bound: 400,
        });
        assert_eq!(plan.rss_bytes_per_key, 200.0);
        assert!((plan.rss_bytes_per_machine - 1.0).abs() < 1e-9);
        // The peak with the cache at its bound: 500 - 100 + 400.
        let total = memory_total() as f64 - 800.0;
        assert!((plan.memory_full_days.unwrap() - total / 1_000.0).abs() < 1e-6);
        let free = plan.disk_free_bytes.unwrap() as f64;
        assert!((plan.disk_full_days.unwrap() - free / 1_000.0).abs() < 1e-6);
    }
}
