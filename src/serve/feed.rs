//! What durable consumers are delivered: the page of events after a consumer's
//! position, the same for a consumer that pulls it (`GET /v1/consumers/{name}/events`) and
//! one the service pushes to (`webhooks`); and when each seq was folded, for the delivery
//! lag the metrics report.

use std::ops::ControlFlow;
use std::sync::Arc;

use keyledger_core::LicenseId;
use keyledger_ledger::consumer::Consumer;
use keyledger_ledger::Store;

use super::app::App;

/// How long a reader caught up with the head waits after a commit before it reads: live
/// events then come in pages of every batch of that moment (the delivery lag grows by at
/// most this much; the writer is spared a read and a write per batch for each reader).
pub const LIVE_COALESCE: std::time::Duration = std::time::Duration::from_millis(10);

/// A feed page (a stream's read, a consumer's page, a webhook's body, `/v1/log`) ends with
/// the event that brings it to this many bytes, whatever its event limit: a reader's memory
/// is bounded in bytes (one page and one event), not by how large the events it reads are.
pub const PAGE_BYTES_MAX: usize = 512 * 1024;

/// The most events one page reads, taken or passed over by its filters: a filtered
/// reader's page costs at most this many event reads, however sparse its events are in the
/// log (it then ends short of the head, and the next page goes on from there).
pub const PAGE_SCAN_MAX: usize = 65_536;

/// Bytes to reserve for the feed's JSON of the events `from..=until` (a page at most):
/// about what an activation takes, so a page's buffer is not grown and copied as it fills.
pub fn capacity_for(from: u64, until: u64) -> usize {
    let events = until.saturating_sub(from).saturating_add(1).min(1_000) as usize;
    events * 448 + 128
}

/// One page of a consumer's events: `body` is the JSON both deliveries send,
/// `{"consumer","events":[…],"position","through"}`.
#[derive(Debug)]
pub struct Page {
    pub body: Vec<u8>,
    /// The last seq the page covers: acknowledging it moves past the events the
    /// consumer's filter skipped.
    pub through: u64,
    /// The first seq the page carries, and how many events it carries.
    pub first: Option<u64>,
    pub events: usize,
}

/// The events after `consumer`'s position that its filter takes, at most `limit`, up to the
/// folded head, written into `buffer` (a delivery task hands back the last page's, so its
/// pages reuse memory rather than fault in fresh pages each time).
pub async fn next_page(
    app: &App,
    consumer: &Consumer,
    limit: usize,
    buffer: Vec<u8>,
) -> keyledger_ledger::Result<Page> {
    let head = *app.head.borrow();
    let from = consumer.position + 1;
    let (store, consumer) = (app.store.clone(), consumer.clone());
    let (encoded, projections) = (Arc::clone(&app.encoded_events), app.projections.clone());
    tokio::task::spawn_blocking(move || {
        let wanted = match consumer.license_id.as_deref().map(LicenseId::new) {
            Some(Ok(license)) => {
                let p = projections
                    .read()
                    .expect("no writer panics holding the lock");
                let of = keyledger_projections::history::Of::License(&license);
                let seqs = crate::view::history_seqs(&store, &p, of, (from, head), limit)?;
                Some(seqs.unwrap_or_default())
            }
            Some(Err(_)) => Some(Vec::new()),
            None => None,
        };
        read_page(
            &store,
            &encoded,
            &consumer,
            head,
            limit,
            wanted.as_deref(),
            buffer,
        )
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
    encoded: &super::recent::EncodedEvents,
    consumer: &Consumer,
    head: u64,
    limit: usize,
    wanted: Option<&[u64]>,
    mut body: Vec<u8>,
) -> keyledger_ledger::Result<Page> {
    let from = consumer.position + 1;
    // Each event is written straight into the body (the bytes `serde_json` would write for
    // the page as a `Value`, keys in order), so a page of a thousand costs no tree.
    body.clear();
    body.reserve(capacity_for(from, head.min(from + limit as u64)));
    body.extend_from_slice(br#"{"consumer":"#);
    serde_json::to_writer(&mut body, &consumer.name).expect("names serialize");
    body.extend_from_slice(br#","events":["#);
    let mut events = 0;
    let mut through = consumer.position;
    let start = match wanted {
        Some([]) => None,
        Some(seqs) => Some(seqs[0]),
        None => (from <= head).then_some(from),
    };
    let mut first = None;
    // Where the page stopped short of the head (a limit reached): its last seq read.
    let mut short = None;
    let mut scanned = 0;
    if let Some(start) = start {
        keyledger_ledger::walk(store, start, |record| {
            if record.seq > head {
                return Ok(ControlFlow::Break(()));
            }
            if events == limit || body.len() >= PAGE_BYTES_MAX || scanned == PAGE_SCAN_MAX {
                short = Some(through);
                return Ok(ControlFlow::Break(()));
            }
            through = record.seq;
            scanned += 1;
            let in_license = wanted.is_none_or(|w| w.binary_search(&record.seq).is_ok());
            if in_license && consumer.takes(record.event.body.kind()) {
                match first {
                    Some(_) => body.push(b','),
                    None => first = Some(record.seq),
                }
                encoded.write(&mut body, &record);
                events += 1;
            }
            match wanted {
                // The history page was whole: nothing of the license ID follows below the head.
                Some(w) if w.last() == Some(&record.seq) && w.len() < limit => {
                    Ok(ControlFlow::Break(()))
                }
                Some(w) if w.last() == Some(&record.seq) => {
                    short = Some(record.seq);
                    Ok(ControlFlow::Break(()))
                }
                _ => Ok(ControlFlow::Continue(())),
            }
        })?;
    }
    // Nothing left below the head that this consumer takes: the whole range is covered.
    through = short.unwrap_or(through.max(head));
    body.extend_from_slice(
        format!(
            r#"],"position":{},"through":{through}}}"#,
            consumer.position
        )
        .as_bytes(),
    );
    Ok(Page {
        body,
        through,
        first,
        events,
    })
}
