-- keyledger's PostgreSQL schema, version 2 (docs/format.md, "PostgreSQL"). Run once, in one
-- transaction, by `keyledger init`. Block, record and Merkle bytes are those of the redb
-- store; only the containers differ.
CREATE SCHEMA keyledger;

-- `format_version`: one byte, the schema version (2: this file, then upgrade-2.sql).
CREATE TABLE keyledger.meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- The head of the log and the writer fence, in one row. A writer takes the next epoch when
-- it starts (after taking the session advisory lock that keeps a second writer waiting).
-- Every append is one statement that moves this row from the head the batch starts at to
-- the batch's head, only if the epoch is still the writer's: a stale writer, or one whose
-- state no longer ends where the log does, changes nothing.
CREATE TABLE keyledger.head (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        bigint NOT NULL CHECK (seq >= 0),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    epoch      bigint NOT NULL CHECK (epoch >= 0),
    holder     text NOT NULL,
    claimed_at timestamptz NOT NULL
);
INSERT INTO keyledger.head VALUES (true, 0, '\x0000000000000000000000000000000000000000000000000000000000000000', 0, '', now());

-- One row a block: its first seq (the key), its last seq and the chain hash after it (a proof
-- finds the hash before any block in one lookup), the block bytes, and the epoch of the
-- writer that appended it.
CREATE TABLE keyledger.blocks (
    first_seq bigint PRIMARY KEY CHECK (first_seq >= 1),
    last_seq  bigint NOT NULL CHECK (last_seq >= first_seq),
    head      bytea NOT NULL CHECK (length(head) = 32),
    bytes     bytea NOT NULL,
    epoch     bigint NOT NULL
);
-- Blocks are LZ4 already: keep PostgreSQL from compressing them again.
ALTER TABLE keyledger.blocks ALTER COLUMN bytes SET STORAGE EXTERNAL;

CREATE TABLE keyledger.merkle (
    level smallint NOT NULL,
    idx   bigint NOT NULL,
    hash  bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE keyledger.secrets (
    key_id bigint PRIMARY KEY,
    text   text NOT NULL
);

-- key: scope, 0x1f, command id; value: 32-byte command digest, then the answer's JSON.
CREATE TABLE keyledger.first_answers (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- Unscoped first answers copied from a redb ledger of format 2; read, never written.
CREATE TABLE keyledger.answers (
    command_id text PRIMARY KEY,
    value      bytea NOT NULL
);

CREATE TABLE keyledger.snapshots (
    seq   bigint PRIMARY KEY,
    bytes bytea NOT NULL
);

CREATE TABLE keyledger.tokens (
    digest    text PRIMARY KEY,
    principal text NOT NULL
);

-- Append-only in the database too: no UPDATE, DELETE or TRUNCATE of the log or its tree.
CREATE FUNCTION keyledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'keyledger: % on %.% refused: the log is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'KL001';
END
$$;
CREATE TRIGGER blocks_append_only BEFORE UPDATE OR DELETE ON keyledger.blocks
    FOR EACH ROW EXECUTE FUNCTION keyledger.refuse_change();
CREATE TRIGGER blocks_no_truncate BEFORE TRUNCATE ON keyledger.blocks
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger.refuse_change();
CREATE TRIGGER merkle_append_only BEFORE UPDATE OR DELETE ON keyledger.merkle
    FOR EACH ROW EXECUTE FUNCTION keyledger.refuse_change();
CREATE TRIGGER merkle_no_truncate BEFORE TRUNCATE ON keyledger.merkle
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger.refuse_change();

-- Version 1 ends here: a new database then runs `upgrade-2.sql` and is marked 2, in the same
-- transaction, exactly as an existing version-1 database is upgraded.
INSERT INTO keyledger.meta VALUES ('format_version', '\x01');
