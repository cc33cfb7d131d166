//! Reading the ledger for reports: projections from the newest usable snapshot plus the
//! events after it, up to a seq or a business time.

use std::ops::ControlFlow;

use anyhow::{Context, Result};
use keyledger_core::books::KeyRecord;
use keyledger_core::state::Key;
use keyledger_core::{OrgId, Timestamp};
use keyledger_ledger::resume::{chain_hash_at, Resume, Resumer};
use keyledger_ledger::{walk, Engine, Head, Limits, Store};
use keyledger_projections::history::{HistorySource, Of};
use keyledger_projections::machine::KeyMachineFilter;
use keyledger_projections::{snapshot, Projections};

use crate::progress::Progress;

/// Write a new snapshot when a full fold went this many events past the last one.
pub const SNAPSHOT_EVERY_EVENTS: u64 = 50_000;

/// Where a fold stops.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    Head,
    Seq(u64),
    /// Every event whose business time is at or before this instant.
    Time(Timestamp),
}

pub fn open_store(data: &keyledger_ledger::Location) -> Result<Store> {
    Store::open(data).with_context(|| format!("cannot open ledger {data}"))
}

/// The projections at the moment `--as-of` / `--at-seq` name (the head by default), and the
/// business time a report at that moment is evaluated at.
pub fn at_moment(store: &Store, moment: &crate::cli::Moment) -> Result<(Projections, Timestamp)> {
    let (until, at) = match (&moment.as_of, moment.at_seq) {
        (Some(text), _) => {
            let at = parse_time(text, "as-of")?;
            (Until::Time(at), Some(at))
        }
        (None, Some(seq)) => (Until::Seq(seq), None),
        (None, None) => (Until::Head, None),
    };
    let p = projections(store, until)?;
    if let Until::Seq(seq) = until {
        if seq > p.last_seq {
            anyhow::bail!(
                "--at-seq {seq} is past the end of the log (seq {})",
                p.last_seq
            );
        }
    }
    let at = match (at, until) {
        (Some(at), _) => at,
        (None, Until::Seq(_)) => p.last_at.unwrap_or_default(),
        _ => now_at_least(p.last_at),
    };
    Ok((p, at))
}

/// Projections up to `until`, from the newest snapshot at or below it when one is usable.
pub fn projections(store: &Store, until: Until) -> Result<Projections> {
    let limit = match until {
        Until::Seq(seq) => seq,
        Until::Head | Until::Time(_) => u64::MAX,
    };
    let mut projections = load_snapshot(store, limit, until)?;
    let head = store.head()?.seq;
    let progress = Progress::new(
        "folding",
        head.min(limit).saturating_sub(projections.last_seq),
    );
    let loaded_at = projections.last_seq;
    walk(store, loaded_at + 1, |record| {
        let past_time = matches!(until, Until::Time(t) if record.event.at > t);
        if record.seq > limit || past_time {
            return Ok(ControlFlow::Break(()));
        }
        projections.apply(record.seq, &record.event);
        progress.inc();
        Ok(ControlFlow::Continue(()))
    })?;
    progress.finish();
    // Only a fold to the head is worth keeping: as-of folds are partial on purpose.
    if matches!(until, Until::Head) && projections.last_seq >= loaded_at + SNAPSHOT_EVERY_EVENTS {
        write_snapshot(store, &projections)?;
    }
    Ok(projections)
}

/// A snapshot's projections, if they were folded from this log: its header's chain hash is
/// the log's at its seq (else a note on stderr says why it is not used).
fn bound_snapshot(store: &Store, seq: u64, bytes: &[u8]) -> Result<Option<Projections>> {
    let (projections, chain) = match snapshot::decode_bound(bytes) {
        Ok(decoded) => decoded,
        Err(err) => {
            eprintln!(
                "note: the projection snapshot at seq {seq} is unusable ({err}); not using it"
            );
            return Ok(None);
        }
    };
    if chain_hash_at(store, seq)? != Some(chain) {
        eprintln!(
            "note: the projection snapshot at seq {seq} was not folded from this log (its chain \
             hash differs); not using it"
        );
        return Ok(None);
    }
    Ok(Some(projections))
}

/// The newest usable snapshot at or below `limit` (and, for a time-bounded fold, taken no
/// later than that time), or empty projections. A snapshot that exists but cannot be used is
/// reported on stderr and skipped.
fn load_snapshot(store: &Store, limit: u64, until: Until) -> Result<Projections> {
    let mut below = limit;
    while let Some((seq, bytes)) = store.snapshot_at_or_below(below)? {
        if let Some(projections) = bound_snapshot(store, seq, &bytes)? {
            let too_late =
                matches!(until, Until::Time(t) if projections.last_at.is_some_and(|at| at > t));
            if !too_late {
                return Ok(projections);
            }
        }
        let Some(next) = seq.checked_sub(1) else {
            break;
        };
        below = next;
    }
    Ok(Projections::default())
}

/// Writes a snapshot of projections folded to the head (demo, clean shutdown), bound to the
/// log's chain hash at their last seq.
pub fn write_snapshot(store: &Store, projections: &Projections) -> Result<()> {
    let seq = projections.last_seq;
    let chain = chain_hash_at(store, seq)?
        .with_context(|| format!("a snapshot at seq {seq}: the log ends before it"))?;
    store.put_snapshot(seq, &snapshot::encode(projections, &chain))?;
    Ok(())
}

/// Where a writer resumes: the newest snapshot's books, with the chain hash its header
/// carries (the writer checks it against the log; see `keyledger_ledger::resume`). A
/// snapshot that does not decode is no resume point: the writer folds the log.
pub fn resumer() -> Resumer {
    Resumer(std::sync::Arc::new(|store: &Store| {
        let Some((_, bytes)) = store.snapshot_at_or_below(u64::MAX)? else {
            return Ok(None);
        };
        let Ok((p, chain)) = snapshot::decode_bound(&bytes) else {
            return Ok(None);
        };
        Ok(Some(resume_of(&p, chain)))
    }))
}

/// The resume point of projections whose last seq has chain hash `hash`: their books.
fn resume_of(p: &Projections, hash: keyledger_ledger::chain::ChainHash) -> Resume {
    let books = p.books.map_keys(|k| Key::from(k.terms().clone()));
    let head = Head {
        seq: p.last_seq,
        hash,
    };
    Resume { head, books }
}

/// A resume point from projections folded from `store` (their books, the chain hash at their
/// last seq); `None` for projections of nothing.
pub fn resume_point(store: &Store, p: &Projections) -> Result<Option<Resume>> {
    if p.last_seq == 0 {
        return Ok(None);
    }
    let hash = chain_hash_at(store, p.last_seq)?;
    Ok(hash.map(|hash| resume_of(p, hash)))
}

/// A resumer that hands out `first` at the first ask (a start that already holds it), then
/// the newest snapshot's, as [`resumer`] does.
pub fn resumer_from(first: Option<Resume>) -> Resumer {
    let first = std::sync::Mutex::new(first);
    let later = resumer();
    Resumer(std::sync::Arc::new(move |store: &Store| {
        match first.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(resume) => Ok(Some(resume)),
            None => (later.0)(store),
        }
    }))
}

/// Opens the ledger at `data` as its writer, resuming from the newest snapshot when it is
/// bound to this log (a command that writes: only the events after it are folded).
pub fn open_writer(data: &keyledger_ledger::Location) -> Result<Engine> {
    let store = open_store(data)?;
    Engine::open_resuming(store, Limits::default(), Some(resumer()))
        .with_context(|| format!("cannot open ledger {data}"))
}

/// The current business time for reports: the wall clock, never earlier than the newest
/// event (business time never runs backwards).
pub fn now_at_least(newest: Option<Timestamp>) -> Timestamp {
    let now = wall_clock();
    newest.map_or(now, |n| n.max(now))
}

pub fn wall_clock() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    Timestamp::from_unix_micros(i64::try_from(since.as_micros()).expect("micros fit in i64"))
}

/// A principal named by the flag `--flag`.
pub fn principal(name: &str, flag: &str) -> Result<keyledger_core::Principal> {
    keyledger_core::Principal::new(name).with_context(|| format!("--{flag}"))
}

pub fn parse_time(text: &str, what: &str) -> Result<Timestamp> {
    Timestamp::parse(text).with_context(|| format!("--{what}"))
}

/// Reads key text for an export, each checked against the fingerprint its `key_issued`
/// event recorded: an altered text fails the export, naming the key.
pub fn checked_secrets(
    store: &Store,
) -> impl FnMut(
    keyledger_core::KeyId,
    &keyledger_core::Fingerprint,
) -> std::result::Result<Option<String>, keyledger_projections::keys::SecretUnavailable>
       + '_ {
    move |key_id, fingerprint| {
        store.checked_secret(key_id.0, fingerprint).map_err(|err| {
            let why = match err {
                keyledger_ledger::Error::Corrupt(keyledger_ledger::Corruption::Secret {
                    why,
                    ..
                }) => why,
                other => other.to_string(),
            };
            keyledger_projections::keys::SecretUnavailable { key_id, why }
        })
    }
}

/// The most rows one page of a machine's history or of a key's machines holds.
pub const MACHINE_PAGE_MAX: usize = 10_000;

/// One page of machine `name`'s history: the events the store's machine index names after
/// seq `after`, as rows the read rule lets through.
pub fn machine_history(
    store: &Store,
    p: &Projections,
    name: &str,
    after: u64,
    limit: usize,
    may_read: impl Fn(Option<&keyledger_core::LicenseId>) -> bool,
) -> Result<keyledger_projections::machine::MachineHistory> {
    let limit = limit.clamp(1, MACHINE_PAGE_MAX);
    let (mut events, next_after) = store.machine_events(name, after, limit)?;
    // Events past the projections' fold (committed a moment ago) wait for the next read.
    events.retain(|(seq, _)| *seq <= p.last_seq);
    Ok(keyledger_projections::machine::MachineHistory {
        machine: name.to_owned(),
        at_seq: p.last_seq,
        rows: keyledger_projections::machine::history(p, &events, may_read),
        next_after,
    })
}

/// The first seq in `1..=last` whose event is at or after business time `at` (`last + 1`:
/// none). Business time never runs backwards in the log: a bisection, one event a step.
fn first_seq_at_or_after(store: &Store, last: u64, at: Timestamp) -> Result<u64> {
    let (mut low, mut high) = (1, last + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        let events = keyledger_ledger::store::machine_lookup::events_at(store, &[mid])?;
        if events.first().is_some_and(|(_, e)| e.at < at) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// The store's history index, as the read models' history pages read it.
#[derive(Clone, Copy, Debug)]
pub struct LogIndex<'a>(pub &'a Store);

impl HistorySource for LogIndex<'_> {
    type Error = keyledger_ledger::Error;

    fn named_seqs(
        &self,
        named: &keyledger_core::Named<'_>,
        after: u64,
        limit: usize,
    ) -> keyledger_ledger::Result<Vec<u64>> {
        self.0.named_seqs(named, after, limit)
    }

    fn events(&self, seqs: &[u64]) -> keyledger_ledger::Result<Vec<(u64, keyledger_core::Event)>> {
        keyledger_ledger::store::machine_lookup::events_at(self.0, seqs)
    }
}

/// The seqs of `of`'s history in `from..=until`, at most `limit` (`None`: no such license
/// ID or key): every surface that reads a history (the log, the stream, consumers, the
/// console's audit log, the CLI) reads it here.
pub fn history_seqs(
    store: &Store,
    p: &Projections,
    of: Of<'_>,
    (from, until): (u64, u64),
    limit: usize,
) -> keyledger_ledger::Result<Option<Vec<u64>>> {
    let page = p.history_page(&LogIndex(store), of, from, until, limit)?;
    Ok(page.map(|events| events.into_iter().map(|(seq, _)| seq).collect()))
}

/// Whether `principal` may read the event at `seq` (the read rule,
/// `Projections::may_read_event`, asked of the event itself; a seq the read models have not
/// folded yet is the operators' alone until they have).
pub fn may_read_seq(
    store: &Store,
    p: &Projections,
    principal: &keyledger_core::Principal,
    seq: u64,
) -> keyledger_ledger::Result<bool> {
    if p.is_operator(principal) {
        return Ok(true);
    }
    if seq == 0 || seq > p.last_seq {
        return Ok(false);
    }
    let events = keyledger_ledger::store::machine_lookup::events_at(store, &[seq])?;
    Ok(events
        .first()
        .is_some_and(|(seq, event)| p.may_read_event(principal, *seq, &event.body)))
}

/// One page of the machines key `key_id` activated, after seq `after`, as `filter` selects.
pub fn key_machines(
    store: &Store,
    p: &Projections,
    key_id: keyledger_core::KeyId,
    filter: &keyledger_projections::machine::KeyMachineFilter,
    after: u64,
    limit: usize,
) -> Result<Option<keyledger_projections::machine::KeyMachines>> {
    use keyledger_projections::machine::{key_machines as select, KeyMachines};
    let Some(key) = p.books.keys.get(key_id) else {
        return Ok(None);
    };
    let limit = limit.clamp(1, MACHINE_PAGE_MAX);
    let mut from = after + 1;
    if let Some(at) = filter.from {
        from = from.max(first_seq_at_or_after(store, p.last_seq, at)?);
    }
    let mut machines = Vec::new();
    let mut next_after = None;
    // The key's history, read a block-sized page at a time until the machines' page is full.
    // A page ends at an event boundary, so it may hold a little more than `limit` (a proxy
    // activation's machines stay together).
    'pages: loop {
        let events = p
            .history_page(&LogIndex(store), Of::Key(key_id), from, p.last_seq, 1024)?
            .unwrap_or_default();
        for (seq, event) in &events {
            if filter.to.is_some_and(|to| event.at >= to) {
                break 'pages;
            }
            select(key_id, *seq, event, filter, &mut machines);
            if machines.len() >= limit {
                next_after = Some(*seq);
                break 'pages;
            }
        }
        match events.last() {
            Some((last, _)) if events.len() == 1024 => from = last + 1,
            _ => break,
        }
    }
    // A full page on the key's last event has nothing after it.
    if let Some(after) = next_after {
        let more = p.history_page(&LogIndex(store), Of::Key(key_id), after + 1, p.last_seq, 1)?;
        if more.is_none_or(|events| events.is_empty()) {
            next_after = None;
        }
    }
    Ok(Some(KeyMachines {
        key_id: key_id.0,
        license_id: key.license_id.to_string(),
        at_seq: p.last_seq,
        machines,
        next_after,
    }))
}

/// A key's machines filters as typed (`machines` flags, the API's query parameters).
pub struct MachineQuery {
    pub org: Option<String>,
    pub method: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl MachineQuery {
    pub fn parse(&self) -> Result<KeyMachineFilter> {
        Ok(KeyMachineFilter {
            org: self
                .org
                .as_deref()
                .map(OrgId::new)
                .transpose()
                .context("--org")?,
            method: self
                .method
                .as_deref()
                .map(|m| serde_json::from_value(serde_json::Value::String(m.to_owned())))
                .transpose()
                .map_err(|_| anyhow::anyhow!("--method: expected online, phone or proxy"))?,
            from: self
                .from
                .as_deref()
                .map(|t| parse_time(t, "from"))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .map(|t| parse_time(t, "to"))
                .transpose()?,
        })
    }
}
