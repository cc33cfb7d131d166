-- Schema version 5: the saved filter of activated pairs (docs/format.md, "Saved filter").
-- Idempotent: a new database runs it after upgrade-3.sql; an older one when this build first
-- writes to it. Derived data a writer saves now and then and reads at open (its bytes are
-- bound to a seq and chain hash and checksummed: a stale or damaged one is refused). Its
-- chunks are replaced whole in one transaction.
CREATE TABLE IF NOT EXISTS keyledger.saved_filter (
    chunk integer PRIMARY KEY CHECK (chunk >= 0),
    bytes bytea NOT NULL
);
-- Filter bits do not compress.
ALTER TABLE keyledger.saved_filter ALTER COLUMN bytes SET STORAGE EXTERNAL;
