//! When does a key run out? Activations per day over a trailing window, projected forward.

use keyledger_core::{KeyId, Span, Timestamp};
use serde::Serialize;

use crate::model::{KeyView, Projections};

/// The default trailing window, in days.
pub const WINDOW_DAYS_DEFAULT: u32 = 30;

/// When a key runs out at the rate it was consumed lately.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forecast {
    /// The key forecast.
    pub key_id: u64,
    /// Its license ID.
    pub license_id: String,
    /// Its product.
    pub product: String,
    /// Activations consumed so far (R9).
    pub used: u64,
    /// Its limit plus grants.
    pub total: u64,
    /// Activations left.
    pub remaining: u64,
    /// The days of consumption the rate is measured over.
    pub window_days: u32,
    /// Activations per day over the window ending at `at`.
    pub rate_per_day: f64,
    /// When `remaining` runs out at that rate; absent while idle. Equal to `at` when the key
    /// is exhausted already.
    pub exhaustion: Option<Timestamp>,
}

/// What a forecast says of when a key runs out, in the words every surface shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outlook {
    /// Nothing is left.
    Exhausted,
    /// At the recent rate, it runs out at this moment.
    RunsOutAt(Timestamp),
    /// No activations in the window: no date can be forecast.
    Idle,
}

impl Forecast {
    /// When the key runs out: exhausted, at a moment, or idle.
    pub fn outlook(&self) -> Outlook {
        Outlook::of(self.remaining, self.exhaustion)
    }
}

impl Outlook {
    /// The outlook of a key with `remaining` left and a forecast `exhaustion` (a report's
    /// key row carries both).
    pub fn of(remaining: u64, exhaustion: Option<Timestamp>) -> Outlook {
        match exhaustion {
            _ if remaining == 0 => Outlook::Exhausted,
            Some(at) => Outlook::RunsOutAt(at),
            None => Outlook::Idle,
        }
    }

    /// The outlook in words, the moment written by `moment` (the CLI prints it whole, the
    /// console as a date).
    pub fn words(self, moment: impl Fn(Timestamp) -> String) -> String {
        match self {
            Outlook::Exhausted => "exhausted".to_owned(),
            Outlook::RunsOutAt(at) => moment(at),
            Outlook::Idle => "idle: no recent activations".to_owned(),
        }
    }
}

/// Forecast for one MAK or ESU MAK at business time `at`.
pub fn forecast(key_id: KeyId, key: &KeyView, at: Timestamp, window_days: u32) -> Forecast {
    assert!(window_days > 0, "a forecast window has at least one day");
    let today = at.unix_day();
    let first = today - i64::from(window_days) + 1;
    let consumed: u64 = key
        .daily
        .range(first..=today)
        .map(|(_, d)| d.consumed)
        .sum();
    let rate_per_day = consumed as f64 / f64::from(window_days);
    let remaining = key.remaining();
    let exhaustion = if remaining == 0 {
        Some(at)
    } else if consumed == 0 {
        None
    } else {
        // Whole seconds are precise enough for a date a planner reads; saturate far out.
        let seconds = (remaining as f64 / rate_per_day * 86_400.0).min(1e15) as i64;
        Some(at.plus(Span::seconds(seconds)))
    };
    Forecast {
        key_id: key_id.0,
        license_id: key.license_id.to_string(),
        product: key.product.to_string(),
        used: key.used,
        total: key.total(),
        remaining,
        window_days,
        rate_per_day,
        exhaustion,
    }
}

/// Forecasts for every MAK and ESU MAK, optionally of one license ID, soonest exhaustion first.
pub fn forecasts(
    p: &Projections,
    license: Option<&str>,
    at: Timestamp,
    window_days: u32,
) -> Vec<Forecast> {
    let mut all: Vec<Forecast> = p
        .books
        .keys
        .iter()
        .filter(|(_, k)| k.kind.is_mak())
        .filter(|(_, k)| license.is_none_or(|l| k.license_id.as_str() == l))
        .map(|(id, k)| forecast(id, k, at, window_days))
        .collect();
    all.sort_by_key(|f| (f.exhaustion.is_none(), f.exhaustion, f.key_id));
    all
}
