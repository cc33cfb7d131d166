//! What durable consumers are delivered (issue 18): the page of events after a consumer's
//! position, the same for a consumer that pulls it (`GET /v1/consumers/{name}/events`) and
//! one the service pushes to (`webhooks`); and when each seq was folded, for the delivery
//! lag the metrics report.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::Instant;

use keyledger_core::LicenseId;
use keyledger_ledger::consumer::Consumer;
use keyledger_ledger::wire::event_to_json;
use keyledger_ledger::Store;
use serde_json::{json, Value};

use super::App;

/// One page of a consumer's events: `body` is the JSON both deliveries send.
#[derive(Debug)]
pub struct Page {
    pub body: Value,
    /// The last seq the page covers: acknowledging it moves past the events the
    /// consumer's filter skipped.
    pub through: u64,
    /// The first seq the page carries, and how many events it carries.
    pub first: Option<u64>,
    pub events: usize,
}

/// The events after `consumer`'s position that its filter takes, at most `limit`, up to the
/// folded head.
pub async fn next_page(
    app: &App,
    consumer: &Consumer,
    limit: usize,
) -> keyledger_ledger::Result<Page> {
    let head = *app.head.borrow();
    let from = consumer.position + 1;
    let wanted: Option<Vec<u64>> = consumer.license_id.as_deref().map(|id| {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        LicenseId::new(id)
            .ok()
            .and_then(|l| p.license_history(&l))
            .unwrap_or_default()
            .into_iter()
            .filter(|s| (from..=head).contains(s))
            .collect()
    });
    let (store, consumer) = (app.store.clone(), consumer.clone());
    tokio::task::spawn_blocking(move || {
        read_page(&store, &consumer, head, limit, wanted.as_deref())
    })
    .await
    .unwrap_or_else(|_| {
        Err(keyledger_ledger::Error::Storage(
            "the read did not finish".into(),
        ))
    })
}

fn read_page(
    store: &Store,
    consumer: &Consumer,
    head: u64,
    limit: usize,
    wanted: Option<&[u64]>,
) -> keyledger_ledger::Result<Page> {
    let from = consumer.position + 1;
    let mut events = Vec::new();
    let mut through = consumer.position;
    let start = match wanted {
        Some([]) => None,
        Some(seqs) => Some(seqs[0]),
        None => (from <= head).then_some(from),
    };
    let mut first = None;
    if let Some(start) = start {
        keyledger_ledger::walk(store, start, |record| {
            if record.seq > head || events.len() == limit {
                return Ok(ControlFlow::Break(()));
            }
            through = record.seq;
            let in_license = wanted.is_none_or(|w| w.binary_search(&record.seq).is_ok());
            if in_license && consumer.takes(record.event.body.kind()) {
                first.get_or_insert(record.seq);
                events.push(json!({
                    "seq": record.seq,
                    "prev": hex::encode(record.prev),
                    "hash": hex::encode(record.hash),
                    "event": event_to_json(&record.event),
                }));
            }
            Ok(ControlFlow::Continue(()))
        })?;
    }
    // Nothing left below the head that this consumer takes: the whole range is covered.
    if events.len() < limit {
        through = through.max(head);
    }
    let count = events.len();
    Ok(Page {
        body: json!({
            "consumer": consumer.name,
            "position": consumer.position,
            "events": events,
            "through": through,
        }),
        through,
        first,
        events: count,
    })
}

/// When the newest batches were folded: (last seq of the batch, instant), oldest first.
#[derive(Debug, Default)]
pub struct FoldTimes(Mutex<VecDeque<(u64, Instant)>>);

/// Batches remembered; a delivery further behind than this many batches reports the oldest
/// remembered instant (its lag is then at least what it reports).
const FOLD_TIMES_KEPT: usize = 1 << 14;

impl FoldTimes {
    pub fn folded(&self, last_seq: u64) {
        let mut times = self.0.lock().expect("no holder panics");
        if times.len() == FOLD_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back((last_seq, Instant::now()));
    }

    /// When `seq` was folded (the first batch that reached it), if remembered.
    pub fn of(&self, seq: u64) -> Option<Instant> {
        let times = self.0.lock().expect("no holder panics");
        let i = times.partition_point(|&(last, _)| last < seq);
        times.get(i).map(|&(_, at)| at)
    }
}
