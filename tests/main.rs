//! keyledger's system tests, one binary: the real `keyledger` binary, real HTTP, real PostgreSQL
//! (clusters started by `support::pg`), a module a subject; one shared fixture (`support`).

mod support;

mod cli;
mod console;
mod consumers;
mod crash;
mod http;
mod http_hardening;
mod layers;
mod logs;
mod openapi;
mod pg_cluster;
mod pg_failover;
mod pg_history;
mod proofs;
mod readme;
mod statement_histories;
mod statements;
mod stream;
mod tls;
mod webhooks;
mod witnesses;
