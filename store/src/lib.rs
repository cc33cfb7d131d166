//! keyledger's storage layer, under the engine: the bytes of the log (record codec, blocks,
//! the hash chain, the Merkle tree's stored nodes) and where they live.
//!
//! The storage boundary: everything the engine, the writer, the walks, proofs, snapshots,
//! tokens, secrets and answers keep goes through [`Store`], and a store is one of two
//! [`Backend`]s: [`redb`] (an embedded file, the default) or [`postgres`] (a replicated
//! PostgreSQL database). Both keep the same block bytes under the same keys, so the chain,
//! the Merkle tree, exports and proofs are identical whichever holds them.
//!
//! Which one a `--data` value names is [`Location`]'s business: a path is a redb file, a
//! `postgres://…` URL is PostgreSQL.

#![forbid(unsafe_code)]
// Functions fit on a screen (clippy.toml: 70 lines); a flat dispatch match may say why not.
#![warn(clippy::too_many_lines)]

pub mod backend;
pub mod block;
pub mod chain;
pub mod codec;
pub mod consumer;
mod copy;
pub mod error;
pub mod location;
pub mod machine_lookup;
pub mod machines;
pub mod merkle;
pub mod pair_filter;
pub mod postgres;
pub mod redb;
pub mod secrets;
pub mod tree;

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::chain::ChainHash;

pub use error::{Corruption, Error, Result};
pub use location::Location;

pub use self::redb::{
    cache_bytes, set_cache_bytes, DB_FORMAT_OLDEST, DB_FORMAT_VERSION, DEFAULT_CACHE_BYTES,
};

pub use backend::{
    Backend, BatchWrite, BlockVisitor, Head, Recovery, Row, StoredAnswer, SNAPSHOTS_KEPT,
};

/// An open ledger store. Clones share it: the writer commits through one, readers (reports,
/// the HTTP service) read through others.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Creates a new, empty ledger; refuses a place that holds one already.
    pub fn create(at: impl Into<Location>) -> Result<Store> {
        match at.into() {
            Location::File(path) => Ok(Store::from(redb::RedbStore::create(&path)?)),
            Location::Postgres(url) => Ok(Store::from(postgres::PgStore::create(&url)?)),
        }
    }

    /// Opens an existing ledger and checks its format version.
    pub fn open(at: impl Into<Location>) -> Result<Store> {
        match at.into() {
            Location::File(path) => Ok(Store::from(redb::RedbStore::open(&path)?)),
            Location::Postgres(url) => Ok(Store::from(postgres::PgStore::open(&url)?)),
        }
    }

    /// Opens (creating if empty) a ledger on any redb backend; used by fault-injection tests.
    /// `backend` is called again by [`Store::reopen`] for a fresh backend on the same file.
    pub fn with_backend<B: ::redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        label: &str,
    ) -> Result<Store> {
        Ok(Store::from(redb::RedbStore::with_backend(backend, label)?))
    }

    /// [`Store::with_backend`] with the write-ahead file beside `ledger` and failures
    /// injected into its steps (see [`redb::RedbStore::with_backend_and_wal`]).
    pub fn with_backend_and_wal<B: ::redb::StorageBackend>(
        backend: impl Fn() -> B + Send + Sync + 'static,
        ledger: &std::path::Path,
        checkpoint_every: u64,
        faults: redb::wal::WalFaults,
        hash_key: Option<[u8; 16]>,
    ) -> Result<Store> {
        Ok(Store::from(redb::RedbStore::with_backend_and_wal(
            backend,
            ledger,
            checkpoint_every,
            faults,
            hash_key,
        )?))
    }

    pub fn label(&self) -> &str {
        self.backend.label()
    }

    pub fn format_version(&self) -> Result<u8> {
        self.backend.format_version()
    }

    /// Brings an older store to this build's format: builds the machine index from the
    /// blocks if the store predates it (in chunks; an interrupted build is redone, rows
    /// present are kept), then marks the format.
    pub fn upgrade_format(&self) -> Result<()> {
        if self.backend.machine_index_missing()? {
            let hasher = self.backend.machine_hasher()?;
            let mut rows = crate::machines::IndexRows::default();
            self.for_each_block(0, |first, bytes| {
                let more = hasher.rows_of_block(first, bytes)?;
                rows.extend(&more);
                if rows.len() >= 100_000 {
                    self.backend.put_machine_rows(&std::mem::take(&mut rows))?;
                }
                Ok(ControlFlow::Continue(()))
            })?;
            self.backend.put_machine_rows(&rows)?;
        }
        self.backend.upgrade_format()
    }

    /// Candidates for the events that name `named` ([`keyledger_core::EventBody::named`])
    /// after seq `after`: ascending, at most `limit`, every such event among them; a reader
    /// keeps those that do name it (a 64-bit hash may be shared). A store whose index
    /// predates the history rows is upgraded first.
    pub fn named_seqs(
        &self,
        named: &keyledger_core::Named<'_>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        if self.backend.history_index_missing()? {
            self.upgrade_format()?;
        }
        let h = self.backend.machine_hasher()?.named(named);
        self.backend.machine_seqs(h, after, limit)
    }

    /// The key machine names are hashed with in this ledger's index.
    pub fn machine_hasher(&self) -> Result<crate::machines::MachineHasher> {
        self.backend.machine_hasher()
    }

    /// See [`Backend::pair_active`].
    pub fn pair_active(&self, pair: crate::machines::PairRow) -> Result<Option<bool>> {
        self.backend.pair_active(pair)
    }

    /// See [`Backend::pair_count`].
    pub fn pair_count(&self) -> Result<Option<u64>> {
        self.backend.pair_count()
    }

    /// See [`Backend::for_each_pair`].
    pub fn for_each_pair(&self, visit: &mut dyn FnMut(crate::machines::PairRow)) -> Result<bool> {
        self.backend.for_each_pair(visit)
    }

    /// Makes this store the ledger's only writer before the engine folds the log: a redb
    /// file is locked by the process that opened it already; on PostgreSQL the writer takes
    /// the ledger's writer lock and a new epoch, which fences every earlier writer out.
    /// With `wait` it waits for a running writer to stop, else it refuses at once.
    pub fn claim_writer(&self, wait: bool) -> Result<()> {
        self.backend.claim_writer(wait)
    }

    /// Writes one batch durably: the block, the new head, secrets and answers commit
    /// together or not at all.
    pub fn commit(&self, batch: &BatchWrite) -> Result<()> {
        self.backend.commit(batch)
    }

    /// See [`Backend::reopen`].
    pub fn reopen(&self) -> Result<()> {
        self.backend.reopen()
    }

    /// Compacts the store to its live data (redb grows files ahead of need).
    pub fn compact(self) -> Result<Store> {
        self.backend.compact()?;
        Ok(self)
    }

    /// The stored head. A head that does not parse is corruption at seq 0.
    pub fn head(&self) -> Result<Head> {
        self.backend.head()
    }

    /// See [`Backend::durability_warning`]; `serve` prints it at start.
    pub fn durability_warning(&self) -> Result<Option<String>> {
        self.backend.durability_warning()
    }

    /// Calls `visit(first_seq_key, block_bytes)` for each block whose key is `>= from_key`,
    /// in seq order, as one consistent read.
    pub fn for_each_block(
        &self,
        from_key: u64,
        visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<()> {
        self.for_each_block_with_head(from_key, visit).map(|_| ())
    }

    /// [`Store::for_each_block`], and the head as the same read sees it.
    pub fn for_each_block_with_head(
        &self,
        from_key: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<Head> {
        self.backend.for_each_block_with_head(from_key, &mut visit)
    }

    /// The key of the block holding `seq` (the greatest first seq `<= seq`), and the chain
    /// hash before that block (the previous block's head, or genesis).
    pub fn block_containing(&self, seq: u64) -> Result<Option<(u64, ChainHash)>> {
        self.backend.block_containing(seq)
    }

    /// The bytes of the block stored under `key` (its first seq), as stored.
    pub fn block_bytes(&self, key: u64) -> Result<Option<Vec<u8>>> {
        self.backend.block_bytes(key)
    }

    /// The last block's bytes, for the tail check at open.
    pub fn last_block(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.backend.last_block()
    }

    pub fn secret(&self, key_id: u64) -> Result<Option<String>> {
        self.backend.secret(key_id)
    }

    /// Calls `visit(key_id, text)` for every stored key text, in key id order.
    pub fn for_each_secret(&self, mut visit: impl FnMut(u64, &str) -> Result<()>) -> Result<()> {
        self.backend.for_each_secret(&mut visit)
    }

    /// A key's stored text, checked against the fingerprint its `key_issued` event recorded:
    /// `None` if it was erased, an error if it does not match (never handed out then).
    pub fn checked_secret(
        &self,
        key_id: u64,
        fingerprint: &keyledger_core::Fingerprint,
    ) -> Result<Option<String>> {
        let Some(text) = self.secret(key_id)? else {
            return Ok(None);
        };
        match crate::secrets::check_fingerprint(&text, fingerprint) {
            Ok(_) => Ok(Some(text)),
            Err(why) => Err(crate::error::Corruption::Secret {
                key_id,
                seq: 0,
                why: why.to_string(),
            }
            .into()),
        }
    }

    /// Erases a key's text; the chain is untouched (docs/rules.md, "Key text").
    pub fn erase_secret(&self, key_id: u64) -> Result<bool> {
        self.backend.erase_secret(key_id)
    }

    /// The stored first answer of a command, in one read: under its idempotency `key`
    /// (digest + JSON), else under its bare `command_id` (redb format 2: JSON).
    pub fn first_answer(&self, key: &str, command_id: &str) -> Result<Option<StoredAnswer>> {
        self.backend.first_answer(key, command_id)
    }

    /// Stores a projection snapshot taken at `seq`, keeping the newest [`SNAPSHOTS_KEPT`].
    pub fn put_snapshot(&self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.backend.put_snapshot(seq, bytes)
    }

    /// The saved filter of activated pairs, if one was saved (see `keyledger_ledger::saved_filter`),
    /// in the chunks the store keeps it in, all read (tests; a start reads a chunk at a time).
    pub fn saved_filter(&self) -> Result<Option<Vec<Vec<u8>>>> {
        let Some((generation, chunks)) = self.saved_filter_whole()? else {
            return Ok(None);
        };
        let read = (0..chunks).map(|index| self.saved_filter_chunk(generation, index));
        Ok(Some(
            read.collect::<Result<Option<Vec<_>>>>()?
                .unwrap_or_default(),
        ))
    }

    /// See [`Backend::saved_filter_whole`].
    pub fn saved_filter_whole(&self) -> Result<Option<(u64, u32)>> {
        self.backend.saved_filter_whole()
    }

    /// See [`Backend::saved_filter_chunk`].
    pub fn saved_filter_chunk(&self, generation: u64, index: u32) -> Result<Option<Vec<u8>>> {
        self.backend.saved_filter_chunk(generation, index)
    }

    /// The generation of the saved filter that is whole (0: none).
    pub fn saved_filter_generation(&self) -> Result<u64> {
        Ok(self.saved_filter_whole()?.map_or(0, |(g, _)| g))
    }

    /// See [`Backend::put_saved_filter_chunk`].
    pub fn put_saved_filter_chunk(&self, generation: u64, index: u32, bytes: &[u8]) -> Result<()> {
        self.backend
            .put_saved_filter_chunk(generation, index, bytes)
    }

    /// See [`Backend::finish_saved_filter`].
    pub fn finish_saved_filter(&self, generation: u64, chunks: u32) -> Result<()> {
        self.backend.finish_saved_filter(generation, chunks)
    }

    /// Replaces the saved filter with `bytes`, as a new generation (tests put damaged bytes
    /// here to see them refused; a writer saves `keyledger_ledger::saved_filter::SaveCursor`'s pieces).
    pub fn put_saved_filter(&self, bytes: &[u8]) -> Result<()> {
        let pieces = bytes.chunks(crate::pair_filter::PIECE_BYTES);
        self.put_saved_filter_pieces(pieces.map(|piece| Ok(piece.to_vec())))
    }

    /// Writes `pieces` as the chunks of a new generation, then names it whole: the saved
    /// filter is replaced, or (on an error) the one before stays.
    pub fn put_saved_filter_pieces(
        &self,
        pieces: impl IntoIterator<Item = Result<Vec<u8>>>,
    ) -> Result<()> {
        let generation = self.saved_filter_generation()? + 1;
        let mut chunks = 0;
        for piece in pieces {
            self.put_saved_filter_chunk(generation, chunks, &piece?)?;
            chunks += 1;
        }
        self.finish_saved_filter(generation, chunks)
    }

    /// The newest snapshot taken at or below `seq`.
    pub fn snapshot_at_or_below(&self, seq: u64) -> Result<Option<(u64, Vec<u8>)>> {
        self.backend.snapshot_at_or_below(seq)
    }

    /// A stored Merkle subtree hash.
    pub fn merkle_node(&self, level: u8, index: u64) -> Result<Option<[u8; 32]>> {
        self.backend.merkle_node(level, index)
    }

    /// The raw bytes of `count` records from `first_seq` (no decoding, no chain check: the
    /// Merkle proofs that read them are checked against a signed root instead).
    pub fn records(&self, first_seq: u64, count: u64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(count.min(1 << 16) as usize);
        let Some((start_key, _)) = self.block_containing(first_seq)? else {
            return Ok(out);
        };
        let end = first_seq.saturating_add(count);
        self.for_each_block(start_key, |key, bytes| {
            let block = crate::block::Block::parse(bytes).map_err(|e| {
                crate::error::Corruption::Undecodable {
                    seq: key,
                    why: e.to_string(),
                }
            })?;
            for (i, record) in block.records().enumerate() {
                let seq = key + i as u64;
                if seq >= first_seq && seq < end {
                    out.push(record.to_vec());
                }
            }
            Ok(if block.last_seq() + 1 >= end {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })?;
        Ok(out)
    }

    /// Stores a new durable consumer; `false` when one of that name exists.
    pub fn create_consumer(&self, consumer: &crate::consumer::Consumer) -> Result<bool> {
        // A PostgreSQL schema from before consumers gets their table (schema 3) first.
        self.upgrade_format()?;
        self.backend
            .insert_consumer(&consumer.name, &consumer.to_bytes())
    }

    /// Every durable consumer, in name order.
    pub fn consumers(&self) -> Result<Vec<crate::consumer::Consumer>> {
        self.backend
            .consumer_records()?
            .iter()
            .map(|(name, bytes)| crate::consumer::Consumer::from_bytes(name, bytes))
            .collect()
    }

    pub fn consumer(&self, name: &str) -> Result<Option<crate::consumer::Consumer>> {
        self.backend
            .consumer_record(name)?
            .map(|bytes| crate::consumer::Consumer::from_bytes(name, &bytes))
            .transpose()
    }

    /// Changes a consumer with `change` (read, changed, compared and set; retried when
    /// another process changed it in between); `None` when there is no such consumer.
    pub fn update_consumer(
        &self,
        name: &str,
        change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        self.change_consumer(name, true, change)
    }

    /// `update_consumer` for a webhook's progress, which a crash may take back to the last
    /// durable commit: the events after it are delivered again (at least once), and no
    /// delivery costs the writer an fsync of its own.
    pub fn advance_consumer(
        &self,
        name: &str,
        change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        self.change_consumer(name, false, change)
    }

    fn change_consumer(
        &self,
        name: &str,
        durable: bool,
        mut change: impl FnMut(&mut crate::consumer::Consumer),
    ) -> Result<Option<crate::consumer::Consumer>> {
        for _ in 0..64 {
            let Some(old) = self.backend.consumer_record(name)? else {
                return Ok(None);
            };
            let mut consumer = crate::consumer::Consumer::from_bytes(name, &old)?;
            change(&mut consumer);
            let new = consumer.to_bytes();
            if new == old || self.backend.replace_consumer(name, &old, &new, durable)? {
                return Ok(Some(consumer));
            }
        }
        Err(crate::error::Error::Storage(format!(
            "consumer {name:?} kept changing under 64 updates in a row"
        )))
    }

    pub fn delete_consumer(&self, name: &str) -> Result<bool> {
        self.backend.delete_consumer(name)
    }

    /// Stores an API token's digest for `principal`.
    pub fn put_token(&self, digest_hex: &str, principal: &str) -> Result<()> {
        self.backend.put_token(digest_hex, principal)
    }

    /// The principal a token digest stands for, if it is known and not revoked.
    pub fn token_principal(&self, digest_hex: &str) -> Result<Option<String>> {
        self.backend.token_principal(digest_hex)
    }

    /// Revokes one token (by digest) or every token of a principal; answers how many.
    pub fn revoke_tokens(
        &self,
        digest_hex: Option<&str>,
        principal: Option<&str>,
    ) -> Result<usize> {
        self.backend.revoke_tokens(digest_hex, principal)
    }

    #[cfg(feature = "tamper")]
    /// Overwrites a block's bytes in place. Only tamper tests use this: it is how an
    /// attacker with write access to the store would alter history.
    #[doc(hidden)]
    pub fn tamper_block(&self, key: u64, bytes: Option<&[u8]>) -> Result<()> {
        self.backend.tamper_block(key, bytes)
    }

    #[cfg(feature = "tamper")]
    /// Sets (or, with `None`, removes) a key's stored text outside any command. Only tamper
    /// tests use this: it is how someone with write access would alter a secret.
    #[doc(hidden)]
    pub fn tamper_secret(&self, key_id: u64, text: Option<&str>) -> Result<()> {
        self.backend.tamper_secret(key_id, text)
    }

    /// BLAKE3 over the ledger's content, read through this API and so the same on either
    /// store for the same ledger: every block, the head, every row `copy` moves (key texts,
    /// first answers, snapshots, tokens), the durable consumers and every stored Merkle node.
    /// Derived data (the indexes, the saved filter, format bytes) is left out. Equal digests
    /// mean the same ledger: a refused batch left it as it was, a copy is the ledger.
    pub fn content_digest(&self) -> Result<[u8; 32]> {
        let mut hasher = blake3::Hasher::new();
        let mut feed = |name: &str, key: &[u8], value: &[u8]| {
            for part in [name.as_bytes(), key, value] {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        };
        let head = self.for_each_block_with_head(0, |key, bytes| {
            feed("blocks", &key.to_le_bytes(), bytes);
            Ok(ControlFlow::Continue(()))
        })?;
        feed("head", b"head", &head.to_bytes());
        self.backend.for_each_row(&mut |row| {
            match &row {
                Row::Secret(k, v) => feed("secrets", &k.to_le_bytes(), v.as_bytes()),
                Row::FirstAnswer(k, v) => feed("first_answers", k.as_bytes(), v),
                Row::LegacyAnswer(k, v) => feed("answers", k.as_bytes(), v),
                Row::Snapshot(k, v) => feed("snapshots", &k.to_le_bytes(), v),
                Row::Token(k, v) => feed("tokens", k.as_bytes(), v.as_bytes()),
            }
            Ok(())
        })?;
        for (name, record) in self.backend.consumer_records()? {
            feed("consumers", name.as_bytes(), &record);
        }
        // Stored nodes are the perfect subtrees of 2^level leaves, level 8 up (`crate::tree`).
        for level in (8u8..64).take_while(|level| head.seq >> level > 0) {
            for index in 0..head.seq >> level {
                // An absent node is content too (it differs from any hash).
                let node = self.merkle_node(level, index)?;
                let key = [&[level][..], &index.to_le_bytes()].concat();
                feed("merkle", &key, node.as_ref().map_or(&[][..], |n| &n[..]));
            }
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// See [`Backend::recovery`].
    pub fn recovery(&self) -> Recovery {
        self.backend.recovery()
    }

    /// See [`Backend::stored_bytes`] (capacity planning).
    pub fn stored_bytes(&self) -> Result<u64> {
        self.backend.stored_bytes()
    }

    /// See [`Backend::page_cache_bytes`] (capacity planning, metrics).
    pub fn page_cache_bytes(&self) -> u64 {
        self.backend.page_cache_bytes()
    }

    /// All block keys, in order (tamper tests and verification reports).
    pub fn block_keys(&self) -> Result<Vec<u64>> {
        let mut keys = Vec::new();
        self.for_each_block(0, |key, _| {
            keys.push(key);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(keys)
    }
}

impl<B: Backend + 'static> From<B> for Store {
    fn from(backend: B) -> Store {
        Store {
            backend: Arc::new(backend),
        }
    }
}
