//! Business time: the `at` of every command and event.
//!
//! Decisions read time only from the command, never from a clock, so replaying the log gives
//! the same answers forever. Time is kept as whole microseconds since the Unix epoch (UTC),
//! which is what RFC 3339 text with up to six fractional digits can express exactly.
//!
//! The RFC 3339 parser is written here rather than taken from a date crate because `core`
//! depends on serde alone (see ARCHITECTURE.md); it is small, strict and fully tested.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// An instant of business time, microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// A span of business time in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(i64);

impl Span {
    /// A span of `days` days.
    pub const fn days(days: i64) -> Span {
        Span(days * SECONDS_PER_DAY * MICROS_PER_SECOND)
    }

    /// A span of `seconds` seconds.
    pub const fn seconds(seconds: i64) -> Span {
        Span(seconds * MICROS_PER_SECOND)
    }

    /// A span of `micros` microseconds.
    pub const fn micros(micros: i64) -> Span {
        Span(micros)
    }

    /// The span in microseconds.
    pub const fn as_micros(self) -> i64 {
        self.0
    }
}

/// Why a text is not an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad RFC 3339 timestamp {text:?}: {reason}")]
pub struct TimestampError {
    /// The text that was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The earliest instant text may name: 0000-01-01T00:00:00Z. Every timestamp a command,
    /// a flag or a query carries lies in `MIN..=MAX`, so its UTC form always prints with a
    /// four-digit year and parses back to itself.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200 * MICROS_PER_SECOND);
    /// The latest: 9999-12-31T23:59:59.999999Z.
    pub const MAX: Timestamp = Timestamp(253_402_300_800 * MICROS_PER_SECOND - 1);

    /// The moment `micros` microseconds after the Unix epoch.
    pub const fn from_unix_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// `self + span`, saturating at the ends of the representable range.
    pub const fn plus(self, span: Span) -> Timestamp {
        Timestamp(self.0.saturating_add(span.0))
    }

    /// `self - span`, saturating at the ends of the representable range.
    pub const fn minus(self, span: Span) -> Timestamp {
        Timestamp(self.0.saturating_sub(span.0))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)` (RFC 3339 §5.6). The instant, once
    /// its offset is folded into UTC, must lie in [`Timestamp::MIN`]`..=`[`Timestamp::MAX`].
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        parse_rfc3339(text).map_err(|reason| TimestampError {
            text: text.to_owned(),
            reason,
        })
    }

    /// Whole days since the epoch, rounding towards the past (used by forecasts).
    pub const fn unix_day(self) -> i64 {
        self.0.div_euclid(SECONDS_PER_DAY * MICROS_PER_SECOND)
    }

    /// Midnight UTC at the start of a day counted since the epoch.
    pub const fn start_of_unix_day(day: i64) -> Timestamp {
        Timestamp(day * SECONDS_PER_DAY * MICROS_PER_SECOND)
    }
}

/// The proleptic Gregorian date `(year, month, day)` of a day counted since 1970-01-01.
pub fn date_of_unix_day(day: i64) -> (i64, u32, u32) {
    let (year, month, day) = civil_from_days(day);
    (year, month as u32, day as u32)
}

/// The day since 1970-01-01 of a proleptic Gregorian date (`month` 1..=12, `day` as the
/// month has it; a later day runs on into the next month).
pub fn unix_day_of_date(year: i64, month: u32, day: u32) -> i64 {
    days_from_civil(year, i64::from(month), i64::from(day))
}

fn parse_rfc3339(text: &str) -> Result<Timestamp, &'static str> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err("too short; expected YYYY-MM-DDTHH:MM:SSZ");
    }
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b[10], b'T' | b't') {
        return Err("expected 'T' between date and time");
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month) {
        return Err("month out of range 01..12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("day out of range for the month");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err("time of day out of range (leap seconds are not accepted)");
    }
    let (micros, rest) = fraction(&b[19..])?;
    let offset_seconds = offset(rest)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - offset_seconds;
    let at = Timestamp(seconds * MICROS_PER_SECOND + micros);
    if !(Timestamp::MIN..=Timestamp::MAX).contains(&at) {
        return Err("outside years 0000..9999 once the offset is applied (UTC)");
    }
    Ok(at)
}

fn digits(b: &[u8], at: usize, len: usize) -> Result<i64, &'static str> {
    let field = b.get(at..at + len).ok_or("truncated")?;
    field.iter().try_fold(0i64, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + i64::from(c - b'0'))
        } else {
            Err("expected a digit")
        }
    })
}

fn expect(b: &[u8], at: usize, want: u8) -> Result<(), &'static str> {
    match b.get(at) {
        Some(&c) if c == want => Ok(()),
        _ if want == b'-' => Err("expected '-' in the date"),
        _ => Err("expected ':' in the time"),
    }
}

/// Reads an optional `.fff…` fraction; digits past the sixth must be zero.
fn fraction(b: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    if b.first() != Some(&b'.') {
        return Ok((0, b));
    }
    let len = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if len == 0 {
        return Err("expected digits after '.'");
    }
    if len > 9 {
        return Err("more than 9 fractional digits");
    }
    let frac = &b[1..1 + len];
    let mut micros = 0i64;
    for (i, &c) in frac.iter().enumerate() {
        let d = i64::from(c - b'0');
        if i < 6 {
            micros = micros * 10 + d;
        } else if d != 0 {
            return Err("sub-microsecond precision is not supported");
        }
    }
    for _ in len..6 {
        micros *= 10;
    }
    Ok((micros, &b[1 + len..]))
}

fn offset(b: &[u8]) -> Result<i64, &'static str> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let hours = digits(b, 1, 2)?;
            let minutes = digits(b, 4, 2)?;
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let seconds = hours * 3600 + minutes * 60;
            Ok(if *sign == b'-' { -seconds } else { seconds })
        }
        [] => Err("missing time zone offset (Z or ±HH:MM)"),
        _ => Err("bad time zone offset; expected Z or ±HH:MM"),
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC; the fraction is printed only when it is not zero, without trailing
    /// zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.0.div_euclid(MICROS_PER_SECOND);
        let micros = self.0.rem_euclid(MICROS_PER_SECOND);
        let days = seconds.div_euclid(SECONDS_PER_DAY);
        let sod = seconds.rem_euclid(SECONDS_PER_DAY);
        let (y, mo, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )?;
        if micros != 0 {
            let digits = format!("{micros:06}");
            write!(f, ".{}", digits.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

crate::string_schema!(Timestamp, "an RFC 3339 time, UTC", Some("date-time"));

/// Human-readable formats (JSON) carry RFC 3339 text; binary formats carry the `i64`.
impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Timestamp::parse(&text).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn parses_epoch_and_known_instants() {
        assert_eq!(ts("1970-01-01T00:00:00Z").unix_micros(), 0);
        assert_eq!(
            ts("2000-03-01T00:00:00Z").unix_micros(),
            951_868_800_000_000
        );
        assert_eq!(
            ts("2024-02-29T12:30:45.25Z").unix_micros(),
            1_709_209_845_250_000
        );
        assert_eq!(ts("1969-12-31T23:59:59Z").unix_micros(), -1_000_000);
    }

    #[test]
    fn offsets_are_folded_into_utc() {
        assert_eq!(ts("2026-01-01T09:00:00+09:00"), ts("2026-01-01T00:00:00Z"));
        assert_eq!(ts("2025-12-31T19:30:00-04:30"), ts("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "2026-11-28T16:17:58Z",
            "2024-02-29T23:59:59.000001Z",
            "1900-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-03-01T09:30:00.5Z",
        ] {
            assert_eq!(ts(text).to_string(), text);
        }
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        let cases = [
            ("2026-02-30T00:00:00Z", "day out of range for the month"),
            ("2025-02-29T00:00:00Z", "day out of range for the month"),
            ("2026-13-01T00:00:00Z", "month out of range 01..12"),
            (
                "2026-01-01T24:00:00Z",
                "time of day out of range (leap seconds are not accepted)",
            ),
            ("2026-01-01 00:00:00Z", "expected 'T' between date and time"),
            (
                "2026-01-01T00:00:00",
                "too short; expected YYYY-MM-DDTHH:MM:SSZ",
            ),
            (
                "2026-01-01T00:00:00+0900",
                "bad time zone offset; expected Z or ±HH:MM",
            ),
            ("2026-01-01T00:00:00.Z", "expected digits after '.'"),
            (
                "2026-01-01T00:00:00.0000001Z",
                "sub-microsecond precision is not supported",
            ),
            ("20x6-01-01T00:00:00Z", "expected a digit"),
        ];
        for (text, reason) in cases {
            assert_eq!(Timestamp::parse(text).unwrap_err().reason, reason, "{text}");
        }
    }

    #[test]
    fn timestamps_outside_years_0000_to_9999_are_malformed() {
        let reason = "outside years 0000..9999 once the offset is applied (UTC)";
        for text in [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:00:00-01:00",
            "0000-01-01T00:00:00+23:59",
            "0000-01-01T00:59:59+01:00",
        ] {
            assert_eq!(Timestamp::parse(text).unwrap_err().reason, reason, "{text}");
        }
        assert_eq!(ts("0000-01-01T00:00:00Z"), Timestamp::MIN);
        assert_eq!(ts("9999-12-31T23:59:59.999999Z"), Timestamp::MAX);
        assert_eq!(ts("0000-01-01T01:00:00+01:00"), Timestamp::MIN);
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00Z");
        assert_eq!(Timestamp::MAX.to_string(), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn trailing_zero_nanoseconds_are_accepted() {
        assert_eq!(
            ts("2026-01-01T00:00:00.123456000Z"),
            ts("2026-01-01T00:00:00.123456Z")
        );
    }
}
