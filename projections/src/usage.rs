//! Usage over time: per day, ISO week or calendar month (UTC), what a set of keys consumed,
//! what was refused and why, KMS contacts, and where the count stood at each period's end
//! (FlexNet's usage and denial reports). Sums of the keys' day buckets
//! ([`DayUsage`]), so periods are exact at their edges: an event at midnight UTC is in
//! the day (and week, and month) that starts then.

use std::collections::BTreeMap;

use keyledger_core::time::{date_of_unix_day, unix_day_of_date};
use keyledger_core::{KeyId, LicenseId, ProductId, Span, Timestamp};
use serde::Serialize;

use crate::model::{DayUsage, Projections};
use crate::report::ACTIVATION_NOTE;

/// The most periods one answer holds (e.g. 27 years of days).
pub const PERIODS_MAX: i64 = 10_000;

/// How usage is bucketed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Calendar days (UTC).
    Day,
    /// ISO weeks: Monday to Monday.
    Week,
    /// Calendar months (UTC).
    Month,
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(text: &str) -> Result<Period, String> {
        match text {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            "month" => Ok(Period::Month),
            other => Err(format!(
                "unknown period {other:?}; expected day, week or month"
            )),
        }
    }
}

impl Period {
    /// The first day of the period holding `day` (days since the epoch).
    pub fn start(self, day: i64) -> i64 {
        match self {
            Period::Day => day,
            // 1970-01-01 was a Thursday: Monday is 3 days before.
            Period::Week => day - (day + 3).rem_euclid(7),
            Period::Month => {
                let (year, month, _) = date_of_unix_day(day);
                unix_day_of_date(year, month, 1)
            }
        }
    }

    /// The first day of the period after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Period::Day => start + 1,
            Period::Week => start + 7,
            Period::Month => {
                let (year, month, _) = date_of_unix_day(start);
                if month == 12 {
                    unix_day_of_date(year + 1, 1, 1)
                } else {
                    unix_day_of_date(year, month + 1, 1)
                }
            }
        }
    }

    fn label(self, start: i64) -> String {
        // A week that starts before 0000-01-01 is labelled by the first day it shows.
        let (year, month, day) = date_of_unix_day(start.max(Timestamp::MIN.unix_day()));
        match self {
            Period::Day | Period::Week => format!("{year:04}-{month:02}-{day:02}"),
            Period::Month => format!("{year:04}-{month:02}"),
        }
    }
}

/// Which keys a usage report adds up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageScope {
    /// Every key of a license ID.
    LicenseId(LicenseId),
    /// One key.
    Key(KeyId),
    /// Every key of a product, under the license IDs the reader may read.
    Product(ProductId),
}

impl std::fmt::Display for UsageScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UsageScope::LicenseId(id) => write!(f, "license ID {id}"),
            UsageScope::Key(id) => write!(f, "key {id}"),
            UsageScope::Product(id) => write!(f, "product {id}"),
        }
    }
}

/// Why a usage report cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The license ID, key or product is unknown.
    #[error("{0}: not in the ledger")]
    Unknown(String),
    /// The scope holds no key the reader may read.
    #[error("{0}: no keys to report on")]
    NoKeys(String),
    /// The range ends at or before its start.
    #[error("--to {to} is not after --from {from}")]
    EmptyRange {
        /// The range's start.
        from: Timestamp,
        /// The range's end, not after its start.
        to: Timestamp,
    },
    /// The range holds more periods than a report may.
    #[error("{periods} periods from {from} to {to}; at most {PERIODS_MAX} in one report (use a longer period or a shorter range)")]
    TooManyPeriods {
        /// The periods the range would hold.
        periods: i64,
        /// The range's start.
        from: Timestamp,
        /// The range's end.
        to: Timestamp,
    },
}

impl UsageError {
    /// A stable code for answers over HTTP.
    pub fn code(&self) -> &'static str {
        match self {
            UsageError::Unknown(_) | UsageError::NoKeys(_) => "not_found",
            UsageError::EmptyRange { .. } | UsageError::TooManyPeriods { .. } => "malformed",
        }
    }
}

/// The keys of a scope, in id order.
pub fn scope_keys(p: &Projections, scope: &UsageScope) -> Result<Vec<KeyId>, UsageError> {
    let keys: Vec<KeyId> = match scope {
        UsageScope::LicenseId(id) => {
            let view = p
                .license_views
                .get(id)
                .ok_or_else(|| UsageError::Unknown(scope.to_string()))?;
            view.keys.clone()
        }
        UsageScope::Key(id) => {
            p.books
                .keys
                .get(*id)
                .ok_or_else(|| UsageError::Unknown(scope.to_string()))?;
            vec![*id]
        }
        UsageScope::Product(id) => {
            if !p.books.products.contains_key(id) {
                return Err(UsageError::Unknown(scope.to_string()));
            }
            p.books
                .keys
                .iter()
                .filter(|(_, k)| &k.product == id)
                .map(|(key_id, _)| key_id)
                .collect()
        }
    };
    Ok(keys)
}

/// Consumption over time (`keyledger usage`, `GET /v1/usage`).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// `license_id`, `key` or `product`, and its id.
    pub scope: &'static str,
    /// The license ID, key id or product reported on.
    pub id: String,
    /// The length of a period: day, week or month.
    pub by: Period,
    /// The start of the first period and the end of the last (exclusive).
    pub from: Timestamp,
    /// The end of the last period (exclusive).
    pub to: Timestamp,
    /// The keys counted.
    pub keys: Vec<u64>,
    /// The last seq folded into this report.
    pub at_seq: u64,
    /// One row a period, oldest first.
    pub periods: Vec<PeriodRow>,
    /// What the counts are not (R7, R24).
    pub note: &'static str,
}

/// One period's counts.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PeriodRow {
    /// `YYYY-MM-DD` for days and weeks (the Monday), `YYYY-MM` for months.
    pub period: String,
    /// The period's first moment.
    pub start: Timestamp,
    /// The period's end (exclusive).
    pub end: Timestamp,
    /// Activations consumed (R9).
    pub consumed: u64,
    /// Machines named again that were already active (R9: nothing consumed).
    pub already_active: u64,
    /// R10: refused attempts by code, and their sum.
    pub refusals: BTreeMap<String, u64>,
    /// Refused attempts in all.
    pub refused: u64,
    /// R14: KMS client contacts; R13: KMS host activations.
    pub kms_contacts: u64,
    /// KMS host activations (R13).
    pub kms_host_activations: u64,
    /// R19: activations granted.
    pub granted: u64,
    /// MAK and ESU MAK activations used, their total and what was left at the period's end.
    /// Consumption is never given back (R9), so the high-water mark of `used` in a period is
    /// its end.
    pub used_end: u64,
    /// Their total (limits and grants) at the period's end.
    pub total_end: u64,
    /// What was left at the period's end.
    pub remaining_end: u64,
    /// The day of the period that consumed the most (the first such), and how many.
    pub peak_day: Option<String>,
    /// Activations consumed on that day.
    pub peak_day_consumed: u64,
}

impl Period {
    /// How many periods run from the one starting on `first` to the one starting on `last`.
    fn count(self, first: i64, last: i64) -> i64 {
        match self {
            Period::Day => last - first + 1,
            Period::Week => (last - first) / 7 + 1,
            Period::Month => {
                let (y0, m0, _) = date_of_unix_day(first);
                let (y1, m1, _) = date_of_unix_day(last);
                (y1 - y0) * 12 + i64::from(m1) - i64::from(m0) + 1
            }
        }
    }
}

/// Usage of `keys` by `by`, over the periods that overlap `[from, to)` (defaults: the keys'
/// first day, the newest event).
pub fn usage(
    p: &Projections,
    scope: &UsageScope,
    keys: &[KeyId],
    by: Period,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<UsageReport, UsageError> {
    let (days, limits) = day_totals(p, keys);
    let first_day = limits
        .keys()
        .next()
        .copied()
        .ok_or_else(|| UsageError::NoKeys(scope.to_string()))?;
    let from_day = by.start(from.map_or(first_day, Timestamp::unix_day));
    let newest = p.last_at.unwrap_or(Timestamp::EPOCH);
    let to = to.unwrap_or_else(|| newest.plus(Span::micros(1)));
    let from_at = edge_of_day(from_day);
    if to <= from_at {
        return Err(UsageError::EmptyRange { from: from_at, to });
    }
    // The last period is the one holding the last microsecond before `to`.
    let last_start = by.start(to.minus(Span::micros(1)).unix_day());
    let periods = by.count(from_day, last_start);
    if periods > PERIODS_MAX {
        return Err(UsageError::TooManyPeriods {
            periods,
            from: from_at,
            to,
        });
    }
    let mut rows = Vec::with_capacity(periods as usize);
    let (mut used, mut total) = (0u64, 0u64);
    // Everything before the first period counts towards where the counts stood.
    for (_, day) in days.range(..from_day) {
        used = used.saturating_add(day.consumed);
        total = total.saturating_add(day.granted);
    }
    total = limits
        .range(..from_day)
        .fold(total, |t, (_, l)| t.saturating_add(*l));
    let mut start = from_day;
    while start <= last_start {
        let end = by.next(start);
        let mut row = period_row(by, start, end, &days);
        used = used.saturating_add(row.consumed);
        total = limits
            .range(start..end)
            .fold(total.saturating_add(row.granted), |t, (_, l)| {
                t.saturating_add(*l)
            });
        row.used_end = used;
        row.total_end = total;
        row.remaining_end = total.saturating_sub(used);
        rows.push(row);
        start = end;
    }
    let (scope_name, id) = match scope {
        UsageScope::LicenseId(id) => ("license_id", id.to_string()),
        UsageScope::Key(id) => ("key", id.0.to_string()),
        UsageScope::Product(id) => ("product", id.to_string()),
    };
    Ok(UsageReport {
        scope: scope_name,
        id,
        by,
        from: from_at,
        to: edge_of_day(start),
        keys: keys.iter().map(|k| k.0).collect(),
        at_seq: p.last_seq,
        periods: rows,
        note: ACTIVATION_NOTE,
    })
}

/// The start of `day` (days since the epoch), kept inside the years every answer may show
/// (0000..=9999, what the API accepts as input): a period running past either edge ends
/// there (F12).
fn edge_of_day(day: i64) -> Timestamp {
    Timestamp::start_of_unix_day(day).clamp(Timestamp::MIN, Timestamp::MAX)
}

/// The period `[start, end)` (days since the epoch): its days added up, and its peak day.
fn period_row(by: Period, start: i64, end: i64, days: &BTreeMap<i64, DayUsage>) -> PeriodRow {
    let mut row = PeriodRow {
        period: by.label(start),
        start: edge_of_day(start),
        end: edge_of_day(end),
        consumed: 0,
        already_active: 0,
        refusals: BTreeMap::new(),
        refused: 0,
        kms_contacts: 0,
        kms_host_activations: 0,
        granted: 0,
        used_end: 0,
        total_end: 0,
        remaining_end: 0,
        peak_day: None,
        peak_day_consumed: 0,
    };
    for (day, d) in days.range(start..end) {
        add_day(&mut row, d);
        if d.consumed > row.peak_day_consumed {
            row.peak_day_consumed = d.consumed;
            row.peak_day = Some(Period::Day.label(*day));
        }
    }
    row
}

fn add_day(row: &mut PeriodRow, d: &DayUsage) {
    row.consumed += d.consumed;
    row.already_active += d.already_active;
    for (code, n) in &d.refused {
        *row.refusals.entry(code.as_str().to_owned()).or_default() += n;
        row.refused += n;
    }
    row.kms_contacts += d.kms_contacts;
    row.kms_host_activations += d.kms_host_activations;
    row.granted += d.granted;
}

/// The keys' day buckets added up, and the MAK limits they started with by issue day (every
/// key is in the second map, so its first day is the keys' first day).
fn day_totals(p: &Projections, keys: &[KeyId]) -> (BTreeMap<i64, DayUsage>, BTreeMap<i64, u64>) {
    let mut days: BTreeMap<i64, DayUsage> = BTreeMap::new();
    let mut limits: BTreeMap<i64, u64> = BTreeMap::new();
    for key_id in keys {
        let key = &p.books.keys[*key_id];
        let mak = key.kind.is_mak();
        let limit = if mak { key.limit } else { 0 };
        *limits.entry(key.issued_at.unix_day()).or_default() += limit;
        for (day, d) in &key.daily {
            let sum = days.entry(*day).or_default();
            if mak {
                sum.consumed += d.consumed;
                sum.granted += d.granted;
            }
            sum.already_active += d.already_active;
            for (code, n) in &d.refused {
                *sum.refused.entry(*code).or_default() += n;
            }
            sum.kms_contacts += d.kms_contacts;
            sum.kms_host_activations += d.kms_host_activations;
        }
    }
    (days, limits)
}

impl UsageReport {
    /// The report as `format` (table, TSV or JSON).
    pub fn render(&self, format: crate::table::Format) -> String {
        use crate::table::Format;
        match format {
            Format::Json => serde_json::to_string_pretty(self).expect("reports serialize") + "\n",
            Format::Tsv => self.to_tsv(),
            Format::Table => self.to_table(),
        }
    }

    const COLUMNS: [&'static str; 12] = [
        "period",
        "consumed",
        "already_active",
        "refused",
        "refusals",
        "kms_contacts",
        "kms_host_activations",
        "granted",
        "used_end",
        "total_end",
        "remaining_end",
        "peak_day",
    ];

    fn cells(row: &PeriodRow) -> [String; 12] {
        let refusals: Vec<String> = row
            .refusals
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        [
            row.period.clone(),
            row.consumed.to_string(),
            row.already_active.to_string(),
            row.refused.to_string(),
            refusals.join(","),
            row.kms_contacts.to_string(),
            row.kms_host_activations.to_string(),
            row.granted.to_string(),
            row.used_end.to_string(),
            row.total_end.to_string(),
            row.remaining_end.to_string(),
            row.peak_day
                .as_ref()
                .map_or_else(String::new, |d| format!("{d} ({})", row.peak_day_consumed)),
        ]
    }

    /// One header row, then one row a period.
    pub fn to_tsv(&self) -> String {
        crate::table::tsv(&Self::COLUMNS, self.periods.iter().map(Self::cells))
    }

    fn to_table(&self) -> String {
        let table = crate::table::grid(
            &Self::COLUMNS,
            self.periods.iter().map(|r| Self::cells(r).to_vec()),
        );
        let keys: Vec<String> = self.keys.iter().map(u64::to_string).collect();
        format!(
            "Usage of {} {} by {} from {} to {} (keys {}) · as of seq {}\n{table}\nNote: {}\n",
            self.scope.replace('_', " "),
            self.id,
            match self.by {
                Period::Day => "day",
                Period::Week => "week",
                Period::Month => "month",
            },
            self.from,
            self.to,
            keys.join(" "),
            self.at_seq,
            self.note
        )
    }
}
