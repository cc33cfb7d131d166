-- Schema version 5: the saved filter of activated pairs (docs/format.md, "Saved filter").
-- Idempotent: a new database runs it after upgrade-3.sql; an older one when this build first
-- writes to it. Derived data a writer saves now and then and reads at open (its bytes are
-- bound to a seq, a chain hash and the machine hash key, and checksummed: a stale or damaged
-- one is refused). A save writes the chunks of a new generation one by one, then names it
-- whole in `meta` (`saved_filter`: u64 LE generation, u32 LE chunks) and deletes every
-- other generation's rows, in one transaction.
CREATE TABLE IF NOT EXISTS keyledger.saved_filter (
    generation bigint NOT NULL CHECK (generation >= 1),
    chunk      integer NOT NULL CHECK (chunk >= 0),
    bytes      bytea NOT NULL,
    PRIMARY KEY (generation, chunk)
);
-- Filter bits do not compress.
ALTER TABLE keyledger.saved_filter ALTER COLUMN bytes SET STORAGE EXTERNAL;
