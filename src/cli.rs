//! The command line: what each subcommand takes. Behaviour lives in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "keyledger",
    version,
    about = "An event-sourced, hash-chained ledger for volume-license product keys",
    long_about = "keyledger records every key issuance, activation (and refusal), limit-increase request \
and grant in an append-only, BLAKE3-hash-chained log, and reports counts, OSA status, ESU coverage, \
KMS thresholds and rights per license ID, as of any moment.\n\nStart with: keyledger demo"
)]
pub struct Cli {
    /// The ledger: a redb file's path, or a PostgreSQL URL (`postgres://…`, libpq syntax;
    /// several hosts and `target_session_attrs=read-write` for a replicated pair).
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_DATA",
        default_value = "keyledger.redb"
    )]
    pub data: keyledger_ledger::Location,
    /// MiB of page cache for a redb ledger: the pages read and written lately stay in memory
    /// up to this size (it does not grow with history; the operating system caches the file
    /// as well).
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_CACHE_MIB",
        default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=1_048_576)
    )]
    pub cache_mib: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a ledger and its first operator (R3).
    ///
    /// Example: keyledger init --operator olga
    Init {
        /// The first operator's principal name.
        #[arg(long)]
        operator: String,
        /// Business time of the init event (RFC 3339); now by default.
        #[arg(long)]
        at: Option<String>,
    },
    /// Run commands from a JSON Lines file (or - for stdin), one answer per line, in order.
    ///
    /// A refusal is an answer. A malformed line is answered with code "malformed", its line
    /// number and field, and nothing from it is appended; the exit code is then 1.
    ///
    /// Example: keyledger apply commands.jsonl
    Apply {
        /// The .jsonl file, or - for standard input.
        file: PathBuf,
        /// Apply the whole file as one batch, or nothing of it.
        #[arg(long)]
        atomic: bool,
    },
    /// Build a realistic sample ledger and say what to try next.
    ///
    /// Example: keyledger demo --machines 1000000 --seed 7
    Demo {
        /// Machines activated on the demo's large enterprise MAK.
        #[arg(long, default_value_t = 20_000)]
        machines: u64,
        /// Seed of the generated workload (machine names, key texts, times).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Compliance report of one license ID.
    ///
    /// Example: keyledger report --license-id V3000003 --as-of 2026-06-30T00:00:00Z --format json
    Report {
        #[arg(long)]
        license_id: String,
        #[command(flatten)]
        moment: Moment,
        /// table, tsv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Export keys as tab-separated text (R2), role-checked (R1); the disclosure is recorded.
    ///
    /// Example: keyledger keys --license-id V3000003 --as rita --out keys.tsv
    Keys {
        #[command(flatten)]
        scope: KeyScope,
        /// The principal exporting: key text is shown only with administrator or
        /// product_key_reader on the key's license ID.
        #[arg(long = "as")]
        principal: String,
        /// Write the file here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show events, optionally of one license ID or one key.
    ///
    /// Example: keyledger log --license-id V3000003 --from 100
    Log {
        #[arg(long, conflicts_with = "key")]
        license_id: Option<String>,
        #[arg(long)]
        key: Option<u64>,
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// table or jsonl.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Follow a running server's event stream (`GET /v1/events/stream`): history from
    /// --from, then live events as they commit; reconnects where it left off.
    ///
    /// Example: keyledger tail --url http://127.0.0.1:8080 --token "$OLGA" --from 140
    Tail(TailArgs),
    /// Verify the chain, every block and the projection snapshot; exit 1 at the first bad seq.
    ///
    /// Example: keyledger verify
    Verify,
    /// Export the log as JSON Lines for auditors (no key text inside).
    ///
    /// Example: keyledger export --out ledger.jsonl
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Copy a whole ledger into a new one, between stores (redb file to PostgreSQL and
    /// back): the same blocks, key texts, answers, snapshots and tokens; both are verified
    /// and their heads compared. The checkpoint signing key is copied too when the target
    /// has none (same verifier key: old proofs and checkpoints stay valid).
    ///
    /// Example: keyledger copy --from keyledger.redb --to postgres://kl@db1,db2/ledger
    Copy {
        #[arg(long)]
        from: keyledger_ledger::Location,
        #[arg(long)]
        to: keyledger_ledger::Location,
    },
    /// Rewrite a redb ledger into a new file holding only its live data, verified, in the
    /// old file's place: retired key text is then gone from the file's bytes, and the file
    /// takes only what its data needs. Offline: stop `serve` first. (On PostgreSQL,
    /// `VACUUM FULL keyledger.secrets` does the same for key text.)
    ///
    /// Example: keyledger compact
    Compact,
    /// Check an export without the database: on its own (its chain), or, with
    /// --checkpoint and --pubkey, that its records are the log a signed checkpoint names
    /// (which also catches a truncated or rewritten export).
    ///
    /// Example: keyledger verify-export ledger.jsonl --checkpoint q1.txt --pubkey keyledger+…
    VerifyExport {
        file: PathBuf,
        /// A signed checkpoint (`keyledger checkpoint --out FILE`) the export must match.
        #[arg(long, requires = "pubkey")]
        checkpoint: Option<PathBuf>,
        /// The ledger's verifier key (`keyledger pubkey`), to check the checkpoint's signature.
        #[arg(long, requires = "checkpoint")]
        pubkey: Option<String>,
        /// A witness's verifier key (repeatable): the checkpoint must carry its cosignature
        /// (`GET /v1/checkpoint/cosigned`), up to `--quorum`.
        #[arg(long = "witness", value_name = "KEY", requires = "checkpoint")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned (default: all given).
        #[arg(long, requires = "witnesses")]
        quorum: Option<usize>,
    },
    /// Load keys from an admin-center style key export (the R2 columns).
    ///
    /// Example: keyledger import-keys keys.tsv --as olga --atomic
    ImportKeys {
        file: PathBuf,
        /// The operator issuing the keys.
        #[arg(long = "as")]
        operator: String,
        /// Apply every row or none.
        #[arg(long)]
        atomic: bool,
    },
    /// Print the ledger's checkpoint verifier key (Ed25519, signed-note format).
    ///
    /// Example: keyledger pubkey
    Pubkey,
    /// Print (or write) a signed checkpoint of the log (docs/proofs.md).
    ///
    /// Example: keyledger checkpoint --out checkpoint.txt
    Checkpoint {
        /// Tree size; the whole log by default.
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a Merkle proof file (JSON) for an auditor.
    ///
    /// Example: keyledger prove inclusion --seq 64 --out proof.json
    Prove {
        #[command(subcommand)]
        proof: ProveKind,
    },
    /// Check a proof file with the verifier key alone; no database needed.
    ///
    /// Example: keyledger verify-proof proof.json --pubkey "keyledger+…+…"
    VerifyProof {
        file: PathBuf,
        /// The verifier key printed by `keyledger pubkey`.
        #[arg(long)]
        pubkey: String,
        /// A checkpoint kept earlier: a consistency proof must start from it.
        #[arg(long)]
        old_checkpoint: Option<PathBuf>,
        /// A witness's verifier key (`name+keyid+base64`, repeatable): the proof's
        /// checkpoint must carry its cosignature, up to `--quorum`.
        #[arg(long = "witness", value_name = "KEY")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned (default: all given).
        #[arg(long, requires = "witnesses")]
        quorum: Option<usize>,
    },
    /// Commit the ledger to its streams: append a `streams_committed` event recording the
    /// root of every stream's entry (`serve` does it every --streams-every seconds).
    ///
    /// Example: keyledger commit-streams
    CommitStreams,
    /// Write one license ID's complete history, proven, for an auditor (docs/proofs.md,
    /// "Statements"): as of the latest streams commitment, or of the one a checkpoint
    /// (say, a cosigned one) sits at.
    ///
    /// Example: keyledger statement --license-id V1000001 --out statement.json
    Statement {
        #[arg(long)]
        license_id: String,
        /// A signed checkpoint (`keyledger checkpoint`, or a cosigned one from `serve`)
        /// whose size is a streams commitment's seq.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a statement with the verifier key alone and print the license ID's report as
    /// of its checkpoint; no database needed.
    ///
    /// Example: keyledger verify-statement statement.json --pubkey "keyledger+…+…"
    VerifyStatement {
        file: PathBuf,
        /// The verifier key printed by `keyledger pubkey`.
        #[arg(long)]
        pubkey: String,
        /// table, tsv or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// A witness's verifier key (`name+keyid+base64`, repeatable): the statement's
        /// checkpoint must carry its cosignature, up to `--quorum`.
        #[arg(long = "witness", value_name = "KEY")]
        witnesses: Vec<String>,
        /// How many of the witnesses must have cosigned (default: all given).
        #[arg(long, requires = "witnesses")]
        quorum: Option<usize>,
    },
    /// A witness (C2SP tlog-witness): cosigns a ledger's checkpoints only if each is
    /// consistent with the last it cosigned, so that a ledger cannot show two histories.
    ///
    /// Example: keyledger witness serve --key w1.key --state w1.json --log "ORIGIN=KEY"
    Witness {
        #[command(subcommand)]
        action: WitnessAction,
    },
    /// Serve the HTTP API (docs/api.md) on this machine.
    ///
    /// Example: keyledger serve --listen 127.0.0.1:8080
    Serve(ServeArgs),
    /// Create or revoke API tokens (only their BLAKE3 digest is stored).
    ///
    /// Example: keyledger token create --principal rita
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Durable consumers: named readers of the log whose acknowledged position the ledger's
    /// database keeps (pulled and acknowledged over HTTP, docs/api.md). On a redb file, run
    /// these while the service is stopped (or use POST /v1/consumers); on PostgreSQL, any time.
    ///
    /// Example: keyledger consumer create siem --types keys_disclosed,activation_refused
    Consumer {
        #[command(subcommand)]
        action: ConsumerAction,
    },
    /// A seeded activation workload through the full engine, and the capacity plan it
    /// implies; or `bench http` for the HTTP load generator.
    ///
    /// Example: keyledger bench --preset medium --svg bench.svg
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        target: Option<BenchTarget>,
        #[command(flatten)]
        workload: WorkloadArgs,
    },
    /// When each MAK runs out at its recent rate.
    ///
    /// Example: keyledger forecast --license-id V3000003
    Forecast(ForecastArgs),
    /// Machine history: every key a machine (or KMS host or client) was activated on,
    /// named again on, refused by or contacted, from the store's machine index.
    ///
    /// Example: keyledger machine ent-pc-00042
    Machine {
        name: String,
        /// Only events after this seq (the `next_after` of the page before).
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// table, tsv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// The machines a key activated, paged; optionally of one org, one method, a time range.
    ///
    /// Example: keyledger machines --key 7 --method proxy --from 2026-06-01T00:00:00Z
    Machines(MachinesArgs),
    /// Usage over time: per day, ISO week or month (UTC), activations consumed, machines
    /// already active, refusals by code, KMS contacts, and where the count stood at each
    /// period's end.
    ///
    /// Example: keyledger usage --license-id V3000003 --by month --from 2026-01-01T00:00:00Z
    Usage(UsageArgs),
    /// Alerts (derived, never in the log): MAKs low or running out soon, ESU coverage
    /// starting or ending soon, KMS hosts fallen below a threshold, requests pending long,
    /// bursts of refusals; each with its rule, value, threshold and seq.
    ///
    /// Example: keyledger alerts --license-id V3000003 --exhaustion-days 60
    Alerts(AlertArgs),
    /// The roll-up of an ownership structure: per product (or license ID) across every
    /// license ID of it, purchased (R24: not a compliance figure), keys by kind, used of
    /// total, remaining, refusals, pending requests, and outside counts beside the ledger's.
    ///
    /// Example: keyledger summary --org contoso --by license-id
    Summary {
        /// Any org of the structure; its root is summarised.
        #[arg(long)]
        org: String,
        /// product or license-id.
        #[arg(long, default_value = "product")]
        by: String,
        #[command(flatten)]
        moment: Moment,
        /// table, tsv or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// `alerts`: over which license IDs, at which moment, with which thresholds.
#[derive(Debug, Args)]
pub struct AlertArgs {
    /// One license ID (default: every one).
    #[arg(long)]
    pub license_id: Option<String>,
    #[command(flatten)]
    pub moment: Moment,
    /// `mak_low_remaining`: under this percentage of a MAK's total left.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub remaining_percent: u64,
    /// `mak_exhaustion_soon`: projected to run out within this many days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub exhaustion_days: i64,
    /// `esu_coverage_starting` / `esu_coverage_ending`: within this many days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub coverage_days: i64,
    /// `request_pending_long`: pending longer than this many days.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub pending_days: i64,
    /// `refusal_burst`: this many refusals of one code on one key in a UTC day.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub burst_refusals: u64,
    /// table, tsv or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

impl AlertArgs {
    pub fn rules(&self) -> keyledger_projections::alerts::AlertRules {
        keyledger_projections::alerts::AlertRules {
            remaining_percent: self.remaining_percent,
            exhaustion_days: self.exhaustion_days,
            coverage_days: self.coverage_days,
            pending_days: self.pending_days,
            burst_refusals: self.burst_refusals,
        }
    }
}

/// `forecast`: which license ID, over what window, at what moment, in what form.
#[derive(Debug, Args)]
pub struct ForecastArgs {
    #[arg(long)]
    pub license_id: Option<String>,
    /// Trailing window of the rate, in days.
    #[arg(long, default_value_t = 30)]
    pub window_days: u32,
    /// Business time of the forecast (RFC 3339); the newest event's by default.
    #[arg(long)]
    pub at: Option<String>,
    /// table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Also draw each key's consumption and projected exhaustion into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// `machines`: which key, filtered how, which page, in what form.
#[derive(Debug, Args)]
pub struct MachinesArgs {
    #[arg(long)]
    pub key: u64,
    #[arg(long)]
    pub org: Option<String>,
    /// online, phone or proxy.
    #[arg(long)]
    pub method: Option<String>,
    /// Activated at or after this instant (RFC 3339)…
    #[arg(long)]
    pub from: Option<String>,
    /// …and before this one.
    #[arg(long)]
    pub to: Option<String>,
    /// Only activations after this seq (the `next_after` of the page before).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// table, tsv or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// `usage`: which keys, by what period, over which range.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("usage_scope").required(true).multiple(false)))]
pub struct UsageArgs {
    /// Every key of a license ID.
    #[arg(long, group = "usage_scope")]
    pub license_id: Option<String>,
    /// One key, by id.
    #[arg(long, group = "usage_scope")]
    pub key: Option<u64>,
    /// Every key of a product, across license IDs.
    #[arg(long, group = "usage_scope")]
    pub product: Option<String>,
    /// day, week (ISO, from Monday) or month.
    #[arg(long, default_value = "month")]
    pub by: String,
    /// The first period is the one holding this instant (RFC 3339); the keys' first day by
    /// default.
    #[arg(long)]
    pub from: Option<String>,
    /// The last period is the one holding the instant just before this one (RFC 3339); the
    /// newest event by default.
    #[arg(long)]
    pub to: Option<String>,
    /// table, tsv or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Also draw consumption and refusals per period, stacked, into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProveKind {
    /// Record SEQ is in the tree of SIZE records (the whole log by default).
    Inclusion {
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The tree of FROM records is a prefix of the tree of TO records.
    Consistency {
        #[arg(long)]
        from: u64,
        /// The whole log by default.
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print a new token for a principal, once.
    Create {
        #[arg(long)]
        principal: String,
    },
    /// Revoke every token of a principal, or one token.
    Revoke {
        #[arg(long, required_unless_present = "token")]
        principal: Option<String>,
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WitnessAction {
    /// A new witness key in FILE (refused if FILE exists); prints its verifier key.
    Init {
        /// The witness's name: a schema-less URL that identifies it (witness.example/w1).
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Serve POST /add-checkpoint (C2SP tlog-witness) on this address.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// The key file `witness init` made.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where the witness keeps the latest checkpoint it cosigned per log (made if absent).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// A ledger to witness: its origin line and its verifier key (`keyledger pubkey`),
        /// as ORIGIN=KEY (repeatable).
        #[arg(long = "log", value_name = "ORIGIN=KEY", required = true)]
        logs: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsumerAction {
    /// A new consumer at position 0: it receives the log from seq 1.
    Create {
        name: String,
        /// Only the events of this license ID's history.
        #[arg(long)]
        license_id: Option<String>,
        /// Only events of these types (comma-separated JSON `type` names).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// Push the events to this URL (`serve` POSTs them, signed): a webhook consumer.
        #[arg(long)]
        webhook: Option<String>,
        /// How deliveries are signed: hmac-sha256 (a new secret, printed once) or ed25519
        /// (the ledger's checkpoint key).
        #[arg(long, default_value = "hmac-sha256", requires = "webhook")]
        signing: String,
        /// The most events one delivery carries (1..=10000).
        #[arg(long, requires = "webhook")]
        batch: Option<u32>,
        /// events, or alerts: the webhook is told which alerts are raised and cleared as
        /// events commit and time passes (docs/api.md, "Alerts through a webhook").
        #[arg(long, default_value = "events", value_parser = ["events", "alerts"])]
        feed: String,
    },
    /// One consumer: its filter, position, and a webhook's state and newest attempts.
    Show {
        name: String,
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Deliver again from SEQ on (a failing webhook is active again).
    Redeliver {
        name: String,
        #[arg(long)]
        from: u64,
    },
    /// Every consumer with its filter and position.
    List {
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Move a consumer's position: delivery starts again after SEQ.
    Reset {
        name: String,
        #[arg(long)]
        to: u64,
    },
    /// Remove a consumer and its position.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Activations over HTTP against a server on this machine: throughput and latency.
    ///
    /// Without --url it starts its own server on a temporary ledger and stops it after.
    ///
    /// Example: keyledger bench http --concurrency 64 --requests 50000
    Http(BenchHttp),
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// small (seconds), medium (about ten seconds) or large (100 million events; about eight
    /// minutes and 14 GB of memory on two cores).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Where the writer keeps which machines are active on which key (see `serve --help`).
    #[arg(long, value_enum, default_value_t = MachineFacts::Disk)]
    pub machine_facts: MachineFacts,
    /// The default now; kept so that older scripts still run.
    #[arg(long, hide = true)]
    pub machine_facts_on_disk: bool,
    #[arg(long)]
    pub license_ids: Option<u64>,
    #[arg(long)]
    pub keys_per_license: Option<u64>,
    /// Distinct machines the workload may activate.
    #[arg(long)]
    pub machines: Option<u64>,
    /// Fraction of requests that are proxy activations of 10..=100 machines.
    #[arg(long)]
    pub proxy_share: Option<f64>,
    /// Fraction of requests refused (from an org outside the ownership structure; recorded).
    #[arg(long)]
    pub refusal_share: Option<f64>,
    /// Commands per submission.
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds…
    #[arg(long)]
    pub duration: Option<u64>,
    /// …or after this many events, whichever comes first.
    #[arg(long)]
    pub events: Option<u64>,
    /// The planner's expected activations per day, for the extrapolation.
    #[arg(long, default_value_t = 1_000_000)]
    pub activations_per_day: u64,
    /// Print the capacity plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Draw throughput and latency over the run into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the ledger at `--data` (a path that does not exist yet) and keep it, instead of
    /// a temporary file: to time a start of `serve` on it, or run reports on it.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct BenchHttp {
    /// A running server (loopback only), e.g. http://127.0.0.1:8080 or https://localhost:8443.
    #[arg(long, requires_all = ["product_key", "org"])]
    pub url: Option<String>,
    /// Trust only the CA certificates in this PEM file for an `https://` server.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub cacert: Option<std::path::PathBuf>,
    /// A MAK with room for the requests (with --url).
    #[arg(long)]
    pub product_key: Option<String>,
    /// The org activating (with --url).
    #[arg(long)]
    pub org: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Stop after this many requests…
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// …or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Send at most this many requests a second in all (request i is sent no earlier than
    /// i/RATE seconds after the start); as fast as answers come when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Name request i's machine PREFIX-i (letters, digits, `.`, `_`, `-`; default
    /// `lg-` and a random hex run id, printed). A run with the prefix of an earlier one
    /// activates the same machines again: it measures re-activation (R9: already active,
    /// an index lookup once the pair has left the writer's cache).
    #[arg(long)]
    pub machine_prefix: Option<String>,
    /// Then load a trivial axum handler (it parses the same JSON and answers from memory,
    /// on a loopback port of this process) with the same client and settings, and report
    /// keyledger's throughput as a ratio of it: what HTTP alone costs on this machine.
    #[arg(long)]
    pub peer: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The moment a report describes.
#[derive(Debug, Args)]
pub struct Moment {
    /// Business time (RFC 3339): the report shows the ledger as it stood then.
    #[arg(long, conflicts_with = "at_seq")]
    pub as_of: Option<String>,
    /// Log position: the report shows the ledger after this seq.
    #[arg(long)]
    pub at_seq: Option<u64>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeyScope {
    /// Keys of these license IDs (repeatable).
    #[arg(long = "license-id")]
    pub license_ids: Vec<String>,
    /// All keys of one product.
    #[arg(long)]
    pub product: Option<String>,
    /// Every key the principal may see.
    #[arg(long)]
    pub all: bool,
}

/// `serve`: where to listen, and the bounds every connection gets.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Seconds a client has to send a request's line and headers; then it is cut.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may sit with no request before it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Connections open at once; more wait to be accepted until one closes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Where the writer keeps which machines are active on which key. `disk`: the pair
    /// index beside the log, behind a filter of about 1.2 bytes a machine and a cache of
    /// recent pairs, so memory stays bounded however long the history (a machine activated
    /// again after it left the cache costs one index lookup). `memory`: all of them, about
    /// 100 bytes a machine ever activated, for a short-lived ledger.
    #[arg(long, value_enum, env = "KEYLEDGER_MACHINE_FACTS", default_value_t = MachineFacts::Disk)]
    pub machine_facts: MachineFacts,
    /// The default now; kept so that older scripts still run.
    #[arg(long, hide = true)]
    pub machine_facts_on_disk: bool,
    /// On PostgreSQL, when another `serve` holds the ledger: wait as a standby writer and
    /// take over when it stops (default: refuse at once, saying who holds it).
    #[arg(long)]
    pub wait_for_writer: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); read again on SIGHUP, so a
    /// renewed certificate needs no restart. Plain HTTP is then refused on the port.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Single sign-on: the OpenID Connect provider's issuer URL (its discovery document is
    /// under it at /.well-known/openid-configuration). The console then offers "Sign in
    /// with single sign-on", and the API takes the provider's JWT access tokens.
    #[arg(long, requires = "oidc_client_id", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// This service's client id at the provider.
    #[arg(long, requires = "oidc_issuer", value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client's secret (a confidential client); without it the client is
    /// public, protected by PKCE alone.
    #[arg(long, requires = "oidc_issuer", value_name = "FILE")]
    pub oidc_client_secret_file: Option<std::path::PathBuf>,
    /// The claim that names the principal (default: `preferred_username`, else `sub`).
    #[arg(long, requires = "oidc_issuer", value_name = "CLAIM")]
    pub oidc_principal_claim: Option<String>,
    /// The audience (`aud`) an API access token must be for (default: the client id).
    #[arg(long, requires = "oidc_issuer", value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// Where the provider sends browsers back (default: this service's own address,
    /// `/ui/oidc/callback`); set it behind a reverse proxy. Register it at the provider.
    #[arg(long, requires = "oidc_issuer", value_name = "URL")]
    pub oidc_redirect_url: Option<String>,
    /// Trust only the CA certificates in this PEM file for the provider (default: the web's
    /// roots).
    #[arg(long, requires = "oidc_issuer", value_name = "FILE")]
    pub oidc_cacert: Option<std::path::PathBuf>,
    /// How diagnostics are written to stderr: `text` (lines for a person) or `json` (one
    /// object a line for a log pipeline, with a line a request). Levels from `RUST_LOG`.
    #[arg(long, value_enum, default_value_t = crate::logs::LogFormat::Text)]
    pub log_format: crate::logs::LogFormat,
    /// Milliseconds before a webhook's first retry; each failure in a row doubles it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_retry_base_ms: u64,
    /// The longest wait between two attempts, in milliseconds.
    #[arg(long, default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_retry_cap_ms: u64,
    /// Failed attempts in a row after which a webhook consumer is marked failing.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_attempts_max: u32,
    /// Let webhooks reach loopback, private and link-local addresses (a receiver on this
    /// host or network). Without it such a target's delivery fails, saying why: the service
    /// must not reach, for its operators, what their own machines may not.
    #[arg(long)]
    pub webhook_private_targets: bool,
    /// Seconds one webhook attempt may take, connecting included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub webhook_timeout: u64,
    /// A witness to submit every new checkpoint to (C2SP tlog-witness), as URL=KEY: its
    /// address (the prefix of /add-checkpoint) and its verifier key (repeatable). Their
    /// cosignatures are kept on the checkpoint (`GET /v1/checkpoint/cosigned`).
    #[arg(long = "witness", value_name = "URL=KEY")]
    pub witnesses: Vec<String>,
    /// Seconds between streams commitments (when the log grew): what statements are made
    /// against; each witness round commits too.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub streams_every: u64,
    /// Seconds between submissions to the witnesses (when the log grew).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub witness_every: u64,
    /// Milliseconds between evaluations of an alert feed when no event comes (business time
    /// passes: coverage comes near, requests wait longer).
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub alerts_every_ms: u64,
    /// Refused activations a second allowed from one client address before its activations
    /// are answered 429 for a while (0: no limit; behind a reverse proxy every client shares
    /// its address). Accepted activations are never counted.
    #[arg(long, default_value_t = 50)]
    pub refusals_per_address: u32,
    /// Refused activations a second allowed for one presented key, from any address (0: no
    /// limit).
    #[arg(long, default_value_t = 50)]
    pub refusals_per_key: u32,
    /// Refusals allowed at once before those rates apply.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub refusals_burst: u32,
    /// Event streams open at once; the other connections stay for API calls.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub streams_max: u32,
    /// Event streams one principal may hold open at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub streams_per_principal: u32,
    /// Create the checkpoint signing key if it is missing (by default `serve` refuses to
    /// start without the key `init` made: proofs signed by a new key match no pinned one).
    #[arg(long)]
    pub create_signing_key: bool,
}

/// `tail`: the server and token, where to start, what to show.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The server, `http://HOST:PORT` or `https://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Trust only the CA certificates in this PEM file for an `https://` server (default:
    /// the web's roots).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// A bearer token (`keyledger token create`).
    #[arg(long, env = "KEYLEDGER_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Only the events of this license ID (the only way for a non-operator).
    #[arg(long)]
    pub license_id: Option<String>,
    /// How to show each event.
    #[arg(long, value_enum, default_value_t = TailFormat::Table)]
    pub format: TailFormat,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// Where the writer keeps its machine facts (`keyledger_ledger::Limits::machine_facts_on_disk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineFacts {
    Disk,
    Memory,
}

impl MachineFacts {
    /// Whether the facts are on disk, `--machine-facts-on-disk` (the old spelling) or not.
    pub fn on_disk(self, old_flag: bool) -> bool {
        old_flag || self == MachineFacts::Disk
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TailFormat {
    /// The columns of `keyledger log`.
    Table,
    /// One `{seq, prev, hash, event}` a line, as the server sent it.
    Jsonl,
}
