-- Schema version 2: the machine index (docs/format.md, "PostgreSQL"). Idempotent: a new
-- database runs it after schema.sql; a version-1 database runs it when this build first
-- writes to it, before its rows are built from the blocks and the schema is marked 2.

-- One row per (machine, KMS host or client name; seq of an event naming it).
CREATE TABLE IF NOT EXISTS keyledger.machines (
    machine text NOT NULL,
    seq     bigint NOT NULL CHECK (seq >= 1),
    PRIMARY KEY (machine, seq)
);
CREATE OR REPLACE TRIGGER machines_append_only BEFORE UPDATE OR DELETE ON keyledger.machines
    FOR EACH ROW EXECUTE FUNCTION keyledger.refuse_change();
CREATE OR REPLACE TRIGGER machines_no_truncate BEFORE TRUNCATE ON keyledger.machines
    FOR EACH STATEMENT EXECUTE FUNCTION keyledger.refuse_change();
