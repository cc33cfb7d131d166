//! The simulated clients: commands over the real command types, drawn from the seed.
//!
//! One license ID with three MAKs of small limits (so refusals and grants race), a KMS host
//! key, and a pool of machine names a few times larger than the limits (so activations
//! repeat machines, already active or not). Every command carries a `command_id`, so any
//! of them can be resent; a resend is the same command again, byte for byte.

use keyledger_core::time::Span;
use keyledger_core::{Command, ProductKeyText, Timestamp};
use keyledger_ledger::{wire, Submission};
use rand::Rng;
use serde_json::{json, Value};

/// Who runs the ledger.
pub const OPERATOR: &str = "olga";
const LICENSE: &str = "V1";
/// The MAKs' activation limits, in key id order after the KMS host key (key 1). The last
/// one (key 5) is the one blocked and retired now and then.
const MAK_LIMITS: [u64; 4] = [3, 5, 8, 6];
const SPARE_KEY: u64 = 5;
/// The license ID's administrator (R17): requests and disclosures.
const ADMIN: &str = "rita";
const MACHINES: u32 = 40;
const HOSTS: u32 = 3;
const CLIENTS: u32 = 60;

/// The clients' side of a run: the keys they know and every command they sent.
#[derive(Debug)]
pub struct Clients {
    start: Timestamp,
    mak_texts: Vec<String>,
    kms_text: String,
    next_command: u64,
    next_request: u64,
    /// Commands sent so far with an id (resend candidates).
    sent: Vec<Command>,
}

/// Every machine name the clients activate.
pub fn machine_pool() -> Vec<keyledger_core::MachineId> {
    (0..MACHINES)
        .map(|i| keyledger_core::MachineId::new(format!("m{i}")).expect("a valid machine name"))
        .collect()
}

/// Key text drawn from the seed (the engine would draw it from the OS otherwise).
fn key_text(rng: &mut impl Rng) -> String {
    let indices: [u8; 25] = std::array::from_fn(|_| rng.random_range(0..24u8));
    ProductKeyText::from_alphabet_indices(&indices)
        .reveal()
        .to_owned()
}

impl Clients {
    pub fn new(rng: &mut impl Rng) -> Clients {
        Clients {
            start: Timestamp::parse("2026-03-01T00:00:00Z").expect("a valid time"),
            mak_texts: MAK_LIMITS.iter().map(|_| key_text(rng)).collect(),
            kms_text: key_text(rng),
            next_command: 0,
            next_request: 0,
            sent: Vec::new(),
        }
    }

    /// The catalog every run starts from (first operator, org, license ID, products, keys).
    pub fn catalog(&mut self) -> Vec<Command> {
        let mut values = vec![
            json!({"type": "add_operator", "principal": OPERATOR}),
            json!({"type": "register_org", "org": "contoso", "name": "Contoso"}),
            json!({"type": "register_license_id", "license_id": LICENSE, "org": "contoso",
                   "program": "open_license", "agreement_number": "A-1",
                   "authorization_number": "AUTH", "purchase_account": "PA"}),
            json!({"type": "register_product", "product": "win11-pro", "name": "Windows 11 Pro",
                   "family": "windows_client", "version": "11", "edition": "pro",
                   "key_requirement": "vl_key"}),
            json!({"type": "register_product", "product": "ws2022", "name": "WS 2022",
                   "family": "windows_server", "version": "2022", "edition": "standard",
                   "key_requirement": "vl_key"}),
            json!({"type": "issue_key", "license_id": LICENSE, "product": "ws2022",
                   "kind": "kms_host", "hosts": 2, "per_host": 10,
                   "product_key": self.kms_text}),
            json!({"type": "assign_role", "principal": ADMIN, "license_id": LICENSE,
                   "role": "administrator"}),
        ];
        for (limit, text) in MAK_LIMITS.iter().zip(&self.mak_texts) {
            values.push(json!({"type": "issue_key", "license_id": LICENSE,
                "product": "win11-pro", "kind": "mak", "limit": limit, "product_key": text}));
        }
        values.into_iter().map(|v| self.command(v, 0)).collect()
    }

    /// Builds a command at `clock` seconds into the run, with the next command id.
    fn command(&mut self, mut value: Value, clock: i64) -> Command {
        self.next_command += 1;
        value["at"] = json!(self.start.plus(Span::seconds(clock)).to_string());
        value["command_id"] = json!(format!("c{}", self.next_command));
        if value.get("actor").is_none() {
            value["actor"] = json!(OPERATOR);
        }
        let command = wire::command_from_value(value).expect("simulated commands are well-formed");
        self.sent.push(command.clone());
        command
    }

    /// One client's submission: a few commands, sometimes all-or-nothing, sometimes a
    /// command sent before.
    pub fn submission(&mut self, rng: &mut impl Rng, clock: i64) -> Submission {
        let commands = (0..rng.random_range(1..=3))
            .map(|_| self.next(rng, clock))
            .collect();
        let mut submission = Submission::new(commands);
        submission.atomic = rng.random_ratio(1, 5);
        submission
    }

    fn next(&mut self, rng: &mut impl Rng, clock: i64) -> Command {
        if !self.sent.is_empty() && rng.random_ratio(1, 8) {
            let index = rng.random_range(0..self.sent.len());
            return self.sent[index].clone();
        }
        let value = match rng.random_range(0..100u32) {
            0..55 => self.activation(rng),
            55..63 => json!({"type": "activate_kms_host", "actor": "kms-admin",
                "product_key": self.kms_text, "org": "contoso",
                "host": format!("h{}", rng.random_range(0..HOSTS))}),
            63..78 => json!({"type": "activate_kms_client", "actor": "kms",
                "host": format!("h{}", rng.random_range(0..HOSTS)),
                "client": format!("pc{}", rng.random_range(0..CLIENTS)),
                "family": if rng.random_bool(0.7) { "windows_client" } else { "windows_server" }}),
            78..86 => self.request(rng),
            86..94 => self.decision(rng),
            94..98 => json!({"type": "disclose_keys", "actor": ADMIN,
                "key_ids": [rng.random_range(1..=SPARE_KEY)],
                "channel": "export", "export_digest": "ab".repeat(32)}),
            98 => json!({"type": "block_key", "key_id": SPARE_KEY}),
            _ => json!({"type": "retire_key_text", "key_id": SPARE_KEY,
                "reason": "posted publicly"}),
        };
        self.command(value, clock)
    }

    /// An activation of one machine, or a proxy batch that may name a machine twice.
    fn activation(&self, rng: &mut impl Rng) -> Value {
        let key = &self.mak_texts[rng.random_range(0..self.mak_texts.len())];
        let count = if rng.random_ratio(3, 4) {
            1
        } else {
            rng.random_range(2..=5)
        };
        let machines: Vec<String> = (0..count)
            .map(|_| format!("m{}", rng.random_range(0..MACHINES)))
            .collect();
        let method = if count == 1 { "online" } else { "proxy" };
        json!({"type": "activate", "actor": "vamt", "product_key": key, "org": "contoso",
               "method": method, "machines": machines})
    }

    fn request(&mut self, rng: &mut impl Rng) -> Value {
        self.next_request += 1;
        let key = &self.mak_texts[rng.random_range(0..self.mak_texts.len())];
        json!({"type": "request_mak_increase", "actor": ADMIN, "request_id": format!("r{}", self.next_request),
               "license_id": LICENSE, "authorization_number": "AUTH", "product": "win11-pro",
               "key_last5": &key[key.len() - 5..], "activations_needed": rng.random_range(1..=4),
               "justification": "growth"})
    }

    /// A grant or a denial of a request made so far (or of one never made).
    fn decision(&self, rng: &mut impl Rng) -> Value {
        let request = format!("r{}", rng.random_range(1..=self.next_request + 1));
        if rng.random_ratio(3, 4) {
            json!({"type": "grant_request", "request_id": request,
                   "amount": rng.random_range(1..=4)})
        } else {
            json!({"type": "deny_request", "request_id": request, "reason": "not now"})
        }
    }

    /// Up to `n` commands sent before, drawn from the seed.
    pub fn resends(&self, rng: &mut impl Rng, n: usize) -> Vec<Command> {
        if self.sent.is_empty() {
            return Vec::new();
        }
        (0..n)
            .map(|_| self.sent[rng.random_range(0..self.sent.len())].clone())
            .collect()
    }

    /// Every command sent, once each, in the order first sent.
    pub fn all_sent(&self) -> Vec<Command> {
        let mut seen = std::collections::HashSet::new();
        self.sent
            .iter()
            .filter(|c| seen.insert(c.command_id.clone()))
            .cloned()
            .collect()
    }
}
