//! Chain and Merkle hashing of a batch, beside its decisions rather than after them.
//!
//! Every record costs about five BLAKE3 compressions (two for its chain link, one for its
//! Merkle leaf, two for the tree nodes it completes), as much CPU as deciding it. None of
//! that depends on the decision state, so a large batch hands its records, in segments, to
//! a hashing thread while the engine goes on deciding; the engine waits for the thread
//! only for the last segment. Small batches (below one segment) are hashed inline: waking
//! a thread would cost more than it saves.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use crate::block::body_records;
use crate::chain::link;
use crate::merkle::Hash;
use crate::store::Head;
use crate::tree::Frontier;

/// Records handed over at once: small enough that the last segment, hashed after the
/// engine has finished deciding, adds little latency; large enough that a hand-over
/// (one channel send) is noise beside it.
pub const SEGMENT_RECORDS: u32 = 64;

/// The chain head, the Merkle frontier and the subtree hashes completed so far.
#[derive(Clone, Debug)]
pub struct ChainState {
    pub head: Head,
    pub frontier: Frontier,
    pub nodes: Vec<(u8, u64, Hash)>,
}

impl ChainState {
    pub fn new(head: Head, frontier: Frontier) -> ChainState {
        ChainState {
            head,
            frontier,
            nodes: Vec::new(),
        }
    }

    /// Links and adds to the tree each record of `segment`, a block body (length-prefixed
    /// records) that continues the log right after `self.head`.
    pub fn absorb(&mut self, segment: &[u8]) {
        for record in body_records(segment) {
            let seq = self.head.seq + 1;
            self.head = Head {
                seq,
                hash: link(&self.head.hash, seq, record),
            };
            self.frontier.push(record, &mut self.nodes);
        }
    }
}

enum Job {
    Begin(ChainState),
    Absorb(Vec<u8>),
    End,
}

/// A thread that absorbs segments into a [`ChainState`], one batch at a time.
#[derive(Debug)]
pub struct HashingThread {
    jobs: SyncSender<Job>,
    done: Receiver<ChainState>,
}

impl HashingThread {
    pub fn spawn() -> std::io::Result<HashingThread> {
        // A batch of 10,000 records is 157 segments: the bound only stops a runaway.
        let (jobs, inbox) = sync_channel::<Job>(1024);
        let (outbox, done) = channel();
        std::thread::Builder::new()
            .name("keyledger-hashing".into())
            .spawn(move || serve(inbox, outbox))?;
        Ok(HashingThread { jobs, done })
    }
}

fn serve(inbox: Receiver<Job>, outbox: Sender<ChainState>) {
    let mut state = None;
    for job in inbox {
        match (job, state.as_mut()) {
            (Job::Begin(begin), _) => state = Some(begin),
            (Job::Absorb(segment), Some(chain)) => chain.absorb(&segment),
            (Job::End, Some(_)) => {
                if outbox.send(state.take().expect("matched Some")).is_err() {
                    return;
                }
            }
            // Out of order: the engine never does this; dropping the state makes its End
            // fail, and the engine then hashes the batch inline.
            (_, None) => {}
        }
    }
}

/// One batch's hashing: inline until the batch is worth a thread, then on the thread.
#[derive(Debug)]
pub struct BatchHashing {
    start: ChainState,
    /// Bytes and records of the block body already handed to the thread.
    sent: usize,
    sent_records: u32,
    engaged: bool,
}

impl BatchHashing {
    pub fn new(start: ChainState) -> BatchHashing {
        BatchHashing {
            start,
            sent: 0,
            sent_records: 0,
            engaged: false,
        }
    }

    /// Hands the records of `body` (holding `records` records) not yet sent to the
    /// thread, if there are enough of them. Only records that can no longer be rolled back
    /// may be offered.
    pub fn offer(&mut self, thread: Option<&HashingThread>, body: &[u8], records: u32) -> bool {
        let Some(thread) = thread else {
            return false;
        };
        if records - self.sent_records < SEGMENT_RECORDS {
            return false;
        }
        if !self.engaged {
            if thread.jobs.send(Job::Begin(self.start.clone())).is_err() {
                return false;
            }
            self.engaged = true;
        }
        if thread
            .jobs
            .send(Job::Absorb(body[self.sent..].to_vec()))
            .is_err()
        {
            return false;
        }
        self.sent = body.len();
        self.sent_records = records;
        true
    }

    /// The chain state after the whole body. Falls back to hashing inline if the thread
    /// is gone, so a hashing failure can never lose or corrupt a batch.
    pub fn finish(self, thread: Option<&HashingThread>, body: &[u8]) -> ChainState {
        if self.engaged {
            if let Some(thread) = thread {
                let handed = thread.jobs.send(Job::Absorb(body[self.sent..].to_vec()));
                if handed.is_ok() && thread.jobs.send(Job::End).is_ok() {
                    if let Ok(state) = thread.done.recv() {
                        return state;
                    }
                }
            }
        }
        let mut state = self.start;
        state.absorb(body);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockWriter;

    fn body(records: usize) -> BlockWriter {
        let mut writer = BlockWriter::new(1);
        for i in 0..records {
            writer.push(format!("record {i}").as_bytes());
        }
        writer
    }

    #[test]
    fn the_thread_and_inline_hashing_agree_whatever_the_segments() {
        let thread = HashingThread::spawn().unwrap();
        for records in [1usize, 63, 64, 65, 300, 1000] {
            let writer = body(records);
            let bytes = writer.body();
            let inline = {
                let mut s = ChainState::new(Head::EMPTY, Frontier::default());
                s.absorb(bytes);
                s
            };
            // Offer after every record, as a long non-atomic submission would.
            let mut batch = BatchHashing::new(ChainState::new(Head::EMPTY, Frontier::default()));
            let mut offsets = Vec::new();
            let mut at = 0;
            for record in body_records(bytes) {
                at += 4 + record.len();
                offsets.push(at);
            }
            let mut handed = 0;
            for (count, end) in offsets.into_iter().enumerate() {
                handed += batch.offer(Some(&thread), &bytes[..end], count as u32 + 1) as usize;
            }
            assert_eq!(
                handed,
                records / SEGMENT_RECORDS as usize,
                "{records} records"
            );
            let threaded = batch.finish(Some(&thread), bytes);
            assert_eq!(threaded.head, inline.head, "{records} records");
            assert_eq!(threaded.nodes, inline.nodes, "{records} records");
            assert_eq!(threaded.head.seq, records as u64);
        }
    }

    #[test]
    fn without_a_thread_the_batch_is_hashed_inline() {
        let writer = body(200);
        let mut batch = BatchHashing::new(ChainState::new(Head::EMPTY, Frontier::default()));
        assert!(!batch.offer(None, writer.body(), 200));
        let state = batch.finish(None, writer.body());
        assert_eq!(state.head.seq, 200);
    }
}
