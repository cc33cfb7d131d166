//! Streams and their commitment (docs/format.md, "Streams"). A stream is the events of one
//! entity in log order ([`EventBody::streams`]); its entry is how many events it holds, the
//! seq of the last, and a running hash over their Merkle leaf hashes. The streams tree is the
//! RFC 6962 tree over every entry, sorted by stream id; a `streams_committed` event records
//! its root in the log itself, so a checkpoint that covers the event — and every witness
//! that cosigns it — vouches for every stream's entry.
//!
//! Nothing here is on the writer's path: the table is folded from committed records by
//! whoever commits (`crate::commitments`: `serve`, `keyledger commit-streams`) and by
//! `verify`.

use std::collections::BTreeMap;

use keyledger_core::{Command, CommandBody, EventBody, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Corruption, Error, Result};
use crate::merkle::{self, Hash, MemoryTree};

/// A stream's running hash before its first event.
pub const START: Hash = [0; 32];

/// The running hash after one more event: `BLAKE3(previous ‖ leaf hash of its record)`.
pub fn next_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(previous);
    hasher.update(leaf);
    *hasher.finalize().as_bytes()
}

/// One stream's entry in the streams tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    /// The stream's id ([`keyledger_core::Stream::id`]).
    pub stream: String,
    /// How many events the stream holds.
    pub count: u64,
    /// The seq of its last event.
    pub last_seq: u64,
    /// The running hash over its events' leaf hashes, hex.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl StreamEntry {
    /// The entry's leaf in the streams tree: the RFC 6962 leaf hash of
    /// `u16 LE id length ‖ id ‖ u64 LE count ‖ u64 LE last seq ‖ running hash`.
    pub fn leaf(&self) -> Hash {
        let id = self.stream.as_bytes();
        let mut bytes = Vec::with_capacity(2 + id.len() + 16 + 32);
        bytes.extend_from_slice(&(id.len() as u16).to_le_bytes());
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&self.count.to_le_bytes());
        bytes.extend_from_slice(&self.last_seq.to_le_bytes());
        bytes.extend_from_slice(&self.hash);
        merkle::leaf_hash(&bytes)
    }
}

/// Where a stream stands: `(count, last seq, running hash)`.
type Standing = (u64, u64, Hash);

/// Every stream's entry after the first `size` events.
#[derive(Clone, Debug, Default)]
pub struct StreamTable {
    size: u64,
    streams: BTreeMap<String, Standing>,
    /// The newest business time of the events covered.
    newest_at: Option<Timestamp>,
    /// The seq of the last `streams_committed` covered.
    last_commitment: Option<u64>,
}

impl StreamTable {
    /// The events the table covers: seqs `1..=size`.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many streams it holds.
    pub fn len(&self) -> u64 {
        self.streams.len() as u64
    }

    /// The newest business time of the events covered.
    pub fn newest_at(&self) -> Option<Timestamp> {
        self.newest_at
    }

    /// The seq of the last `streams_committed` the table covers.
    pub fn last_commitment(&self) -> Option<u64> {
        self.last_commitment
    }

    /// Whether it holds no stream.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Folds the record at `seq` (the one after the table's size) into its streams.
    pub fn absorb(&mut self, seq: u64, record: &[u8], event: &keyledger_core::Event) {
        assert_eq!(seq, self.size + 1, "streams absorb records in order");
        self.size = seq;
        self.newest_at = self.newest_at.max(Some(event.at));
        let body = &event.body;
        if matches!(body, EventBody::StreamsCommitted { .. }) {
            self.last_commitment = Some(seq);
        }
        let streams = body.streams();
        if streams.is_empty() {
            return;
        }
        let leaf = merkle::leaf_hash(record);
        for stream in streams {
            let standing = self.streams.entry(stream.id()).or_insert((0, 0, START));
            *standing = (standing.0 + 1, seq, next_hash(&standing.2, &leaf));
        }
    }

    /// The entry of `stream`, if it has events.
    pub fn entry(&self, stream: &str) -> Option<StreamEntry> {
        let (count, last_seq, hash) = *self.streams.get(stream)?;
        Some(StreamEntry {
            stream: stream.to_owned(),
            count,
            last_seq,
            hash,
        })
    }

    fn tree(&self) -> MemoryTree {
        MemoryTree {
            leaves: self
                .streams
                .iter()
                .map(|(id, &(count, last_seq, hash))| {
                    StreamEntry {
                        stream: id.clone(),
                        count,
                        last_seq,
                        hash,
                    }
                    .leaf()
                })
                .collect(),
        }
    }

    /// The root of the streams tree.
    pub fn root(&self) -> Hash {
        let tree = self.tree();
        merkle::root(&tree, tree.leaves.len() as u64).expect("a tree in memory has every leaf")
    }

    /// The entries of `streams` (each must be in the table) with their positions in the
    /// streams tree and one multi-proof for all of them.
    pub fn prove(&self, streams: &[String]) -> Result<(Vec<StreamEntry>, Vec<u64>, Vec<Hash>)> {
        let mut wanted: Vec<(u64, StreamEntry)> = Vec::with_capacity(streams.len());
        for stream in streams {
            let index = self.streams.keys().position(|id| id == stream);
            let (Some(index), Some(entry)) = (index, self.entry(stream)) else {
                return Err(Error::Storage(format!("no stream {stream}")));
            };
            wanted.push((index as u64, entry));
        }
        wanted.sort_by_key(|(index, _)| *index);
        wanted.dedup_by_key(|(index, _)| *index);
        let indices: Vec<u64> = wanted.iter().map(|(index, _)| *index).collect();
        let tree = self.tree();
        let path = merkle::multi_inclusion_path(&tree, &indices, self.len())
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok((wanted.into_iter().map(|(_, e)| e).collect(), indices, path))
    }

    /// The command that commits this table, appended at seq `size + 1` (no later than `at`'s
    /// business time, which must not be before the log's newest).
    pub fn commit_command(&self, at: Timestamp) -> Command {
        Command {
            at,
            actor: keyledger_core::Principal::new(keyledger_core::decide::LEDGER_ACTOR)
                .expect("the ledger's own actor is a valid principal"),
            command_id: None,
            body: CommandBody::CommitStreams(keyledger_core::command::CommitStreams {
                size: self.size,
                streams: self.len(),
                root: keyledger_core::Digest(self.root()),
            }),
        }
    }

    /// Checks a `streams_committed` event at `seq` against this table, which must cover the
    /// events before it.
    pub fn check_commitment(&self, seq: u64, body: &EventBody) -> Result<()> {
        let EventBody::StreamsCommitted {
            size,
            streams,
            root,
        } = body
        else {
            return Ok(());
        };
        let why = if *size != self.size || seq != self.size + 1 {
            Some(format!(
                "it covers seqs 1..={size} but sits at seq {seq}, after {} events",
                self.size
            ))
        } else if *streams != self.len() || root.0 != self.root() {
            Some(format!(
                "it records {streams} streams with root {}, the events before it make {} with \
                 root {}",
                hex::encode(root.0),
                self.len(),
                hex::encode(self.root())
            ))
        } else {
            None
        };
        match why {
            Some(why) => Err(Corruption::Streams { seq, why }.into()),
            None => Ok(()),
        }
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&text, &mut hash)
            .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))?;
        Ok(hash)
    }
}
