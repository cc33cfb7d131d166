//! What the service remembers of its newest batches: when each was folded (the delivery
//! lag the metrics report), and the change feed's JSON of the newest events (written once,
//! read by every stream and consumer near the head).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use keyledger_ledger::wire::write_logged_event;
use keyledger_ledger::LoggedRecord;

/// The largest feed JSON of one event [`EncodedEvents`] keeps: larger ones (proxy
/// activations of many machines) are written afresh each time, so the shared slots hold
/// at most `ENCODED_KEPT` times this.
const ENCODED_EVENT_BYTES_MAX: usize = 4 * 1024;

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

/// The feed's JSON of recently read events, by seq: the event stream and every consumer
/// reading near the head write each event's JSON once between them, not once each.
#[derive(Debug)]
pub struct EncodedEvents(Mutex<Vec<Option<Encoded>>>);

/// A seq and its feed JSON.
type Encoded = (u64, Arc<[u8]>);

/// Slots of [`EncodedEvents`] (a seq's slot is `seq % ENCODED_KEPT`): a few pages of the
/// newest events, about 3 MiB of activations.
const ENCODED_KEPT: usize = 8192;

impl Default for EncodedEvents {
    fn default() -> EncodedEvents {
        EncodedEvents(Mutex::new(vec![None; ENCODED_KEPT]))
    }
}

impl EncodedEvents {
    /// Appends `record`'s feed JSON (`wire::write_logged_event`) to `out`, written once.
    pub fn write(&self, out: &mut Vec<u8>, record: &LoggedRecord<'_>) {
        let slot = (record.seq % ENCODED_KEPT as u64) as usize;
        let cached = self.0.lock().expect("no holder panics")[slot].clone();
        if let Some((seq, json)) = cached {
            if seq == record.seq {
                out.extend_from_slice(&json);
                return;
            }
        }
        let start = out.len();
        write_logged_event(out, record.seq, &record.prev, &record.hash, &record.event);
        if out.len() - start > ENCODED_EVENT_BYTES_MAX {
            return;
        }
        let json: Arc<[u8]> = Arc::from(&out[start..]);
        self.0.lock().expect("no holder panics")[slot] = Some((record.seq, json));
    }
}
