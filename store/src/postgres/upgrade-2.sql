-- Schema version 2: the machine index (docs/format.md, "PostgreSQL"). Idempotent: a new
-- database runs it after schema.sql; a version-1 database runs it when this build first
-- writes to it, before its rows are built from the blocks and the schema is marked 2.

-- The index entries (16 bytes each: u64 LE hash of a machine, KMS host or client name under
-- meta.machine_hash_key, u64 LE seq of an event naming it), by the hash's top 12 bits: a
-- writer adds one row a bucket for every 64 batches, and merges each bucket's rows under
-- 64 KiB every 1,024. Derived data (rebuildable from the blocks), so rows are deleted by merges.
CREATE TABLE IF NOT EXISTS keyledger.machine_buckets (
    bucket   integer NOT NULL CHECK (bucket >= 0 AND bucket < 4096),
    last_seq bigint NOT NULL,
    bytes    bytea NOT NULL,
    PRIMARY KEY (bucket, last_seq)
);
-- Hashes do not compress.
ALTER TABLE keyledger.machine_buckets ALTER COLUMN bytes SET STORAGE EXTERNAL;
-- The last seq whose rows are in `machine_buckets` (u64 LE).
INSERT INTO keyledger.meta VALUES ('machine_index_through', '\x0000000000000000')
    ON CONFLICT (key) DO NOTHING;
