-- Schema version 2: the machine index (docs/format.md, "PostgreSQL"). Idempotent: a new
-- database runs it after schema.sql; a version-1 database runs it when this build first
-- writes to it, before its rows are built from the blocks and the schema is marked 2.

-- One row per (hash of a machine, KMS host or client name; seq of an event naming it). `h`
-- is the SipHash-1-3 of the name under the key `meta.machine_hash_key`, as the bigint of its
-- 64 bits: a reader keeps the events that do name the machine (docs/format.md).
CREATE TABLE IF NOT EXISTS keyledger.machines (
    h   bigint NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    PRIMARY KEY (h, seq)
);
CREATE OR REPLACE TRIGGER machines_append_only BEFORE UPDATE OR DELETE ON keyledger.machines
    FOR EACH ROW EXECUTE FUNCTION keyledger.refuse_change();
CREATE OR REPLACE TRIGGER machines_no_truncate BEFORE TRUNCATE ON keyledger.machines
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger.refuse_change();
