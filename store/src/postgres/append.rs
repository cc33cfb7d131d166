//! The one statement that appends a batch, and the values it (and every query) takes.

use crate::backend::BatchWrite;
use crate::error::{Error, Result};

/// A seq or key id as PostgreSQL's `bigint`; the log never reaches 2^63.
pub(super) fn int8(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| Error::Storage(format!("{value} does not fit PostgreSQL's bigint")))
}

pub(super) fn uint8(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Storage(format!("negative {what} {value} stored")))
}

pub(super) fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::Storage(format!("{what} of {} bytes stored", bytes.len())))
}

/// A query parameter, owned so the query can run on the store's runtime.
#[derive(Debug)]
pub(super) enum Param {
    Int8(i64),
    Int4(i32),
    Int2(i16),
    Text(String),
    Bytes(Vec<u8>),
    OptText(Option<String>),
    OptBytes(Option<Vec<u8>>),
    Int4s(Vec<i32>),
    Int8s(Vec<i64>),
    Int2s(Vec<i16>),
    Texts(Vec<String>),
    Byteses(Vec<Vec<u8>>),
}

impl Param {
    pub(super) fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::Int8(v) => v,
            Param::Int4(v) => v,
            Param::Int2(v) => v,
            Param::Text(v) => v,
            Param::Bytes(v) => v,
            Param::OptText(v) => v,
            Param::OptBytes(v) => v,
            Param::Int4s(v) => v,
            Param::Int8s(v) => v,
            Param::Int2s(v) => v,
            Param::Texts(v) => v,
            Param::Byteses(v) => v,
        }
    }
}

/// One batch, one statement: moving the head row (only from the head the batch starts at,
/// only for the writer's epoch) gates every insert, so a refused batch writes nothing. The
/// last line reads the row as it was before the statement, to say why when nothing moved.
pub(super) const APPEND: &str = "\
WITH moved AS (
    UPDATE keyledger.head SET seq = $5, hash = $6
    WHERE epoch = $1 AND seq = $2 AND hash = $3
    RETURNING 1
), block AS (
    INSERT INTO keyledger.blocks (first_seq, last_seq, head, bytes, epoch)
    SELECT $4, $5, $6, $7, $1 FROM moved WHERE $4::bigint > 0
    RETURNING 1
), secret AS (
    INSERT INTO keyledger.secrets (key_id, text)
    SELECT * FROM unnest($8::bigint[], $9::text[]) WHERE EXISTS (SELECT 1 FROM moved)
    ON CONFLICT (key_id) DO NOTHING
    RETURNING 1
), answer AS (
    INSERT INTO keyledger.first_answers (key, value)
    SELECT * FROM unnest($10::text[], $11::bytea[]) WHERE EXISTS (SELECT 1 FROM moved)
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
), node AS (
    INSERT INTO keyledger.merkle (level, idx, hash)
    SELECT * FROM unnest($12::smallint[], $13::bigint[], $14::bytea[])
    WHERE EXISTS (SELECT 1 FROM moved)
    RETURNING 1
), erased AS (
    DELETE FROM keyledger.secrets
    WHERE key_id = ANY($15::bigint[]) AND EXISTS (SELECT 1 FROM moved)
    RETURNING 1
), bucket AS (
    INSERT INTO keyledger.machine_buckets (bucket, last_seq, bytes)
    SELECT * FROM unnest($16::integer[], $17::bigint[], $18::bytea[])
    WHERE EXISTS (SELECT 1 FROM moved)
    RETURNING 1
), through AS (
    UPDATE keyledger.meta SET value = $19
    WHERE key = 'machine_index_through' AND $19::bytea IS NOT NULL AND EXISTS (SELECT 1 FROM moved)
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), epoch, seq FROM keyledger.head";

/// The params of [`APPEND`]; `index`: the machine index rows written with this batch (the
/// writer's pending ones and its own) and the watermark they bring the index to.
pub(super) fn append_params(
    epoch: i64,
    batch: &BatchWrite,
    index: Option<(&[crate::machines::MachineRow], u64)>,
) -> Result<Vec<Param>> {
    let head = batch.head.unwrap_or(batch.start);
    let (first, bytes) = match &batch.block {
        Some((first, bytes)) => (int8(*first)?, bytes.clone()),
        None => (0, Vec::new()),
    };
    // A key issued and retired in one batch: its text is not written at all (the statement's
    // DELETE cannot see rows its own INSERT adds).
    let secrets: Vec<&(u64, String)> = batch
        .secrets
        .iter()
        .filter(|(key_id, _)| !batch.retired.contains(key_id))
        .collect();
    let answers = &batch.answers;
    let merkle = &batch.merkle;
    Ok(vec![
        Param::Int8(epoch),
        Param::Int8(int8(batch.start.seq)?),
        Param::Bytes(batch.start.hash.to_vec()),
        Param::Int8(first),
        Param::Int8(int8(head.seq)?),
        Param::Bytes(head.hash.to_vec()),
        Param::Bytes(bytes),
        Param::Int8s(
            secrets
                .iter()
                .map(|(k, _)| int8(*k))
                .collect::<Result<_>>()?,
        ),
        Param::Texts(secrets.iter().map(|(_, t)| t.clone()).collect()),
        Param::Texts(answers.iter().map(|(k, _)| k.clone()).collect()),
        Param::Byteses(answers.iter().map(|(_, v)| v.clone()).collect()),
        Param::Int2s(merkle.iter().map(|(l, _, _)| i16::from(*l)).collect()),
        Param::Int8s(
            merkle
                .iter()
                .map(|(_, i, _)| int8(*i))
                .collect::<Result<_>>()?,
        ),
        Param::Byteses(merkle.iter().map(|(_, _, h)| h.to_vec()).collect()),
        Param::Int8s(
            batch
                .retired
                .iter()
                .map(|k| int8(*k))
                .collect::<Result<_>>()?,
        ),
    ]
    .into_iter()
    .chain(bucket_params(
        index.map_or(&[][..], |(rows, _)| rows),
        index.map(|i| i.1),
    )?)
    .chain([Param::OptBytes(
        index.map(|(_, to)| to.to_le_bytes().to_vec()),
    )])
    .collect())
}

/// Machine index rows as the bucket rows that hold them: bucket (the hash's top 12 bits),
/// `last_seq` (the watermark they bring the index to, which keys the row), entries.
pub(super) fn bucket_params(
    rows: &[crate::machines::MachineRow],
    last_seq: Option<u64>,
) -> Result<[Param; 3]> {
    let mut buckets: std::collections::BTreeMap<i32, Vec<u8>> = Default::default();
    for (h, seq) in rows {
        let bytes = buckets.entry((h >> 52) as i32).or_default();
        bytes.extend_from_slice(&h.to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
    }
    let last = int8(last_seq.unwrap_or(0))?;
    Ok([
        Param::Int4s(buckets.keys().copied().collect()),
        Param::Int8s(vec![last; buckets.len()]),
        Param::Byteses(buckets.into_values().collect()),
    ])
}
