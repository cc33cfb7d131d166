-- Schema version 3: durable consumers (docs/format.md, "PostgreSQL"). Idempotent: a new
-- database runs it after upgrade-2.sql; an older one when this build first writes to it
-- (or first stores a consumer).

-- One record a consumer: its JSON (ledger/src/consumer.rs), replaced compare-and-set.
CREATE TABLE IF NOT EXISTS keyledger.consumers (
    name   text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    record bytea NOT NULL
);
