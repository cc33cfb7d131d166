//! Durable consumers: a named reader of the log whose acknowledged
//! position the ledger's database keeps, so delivery survives restarts. Delivery is at
//! least once and in seq order; the seq is the receiver's idempotency key.
//!
//! A consumer is stored as one JSON document keyed by its name (docs/format.md,
//! "consumers"); its fields are a public contract (docs/api.md, "Durable consumers").
//! Updates are compare-and-set on the stored bytes, so the service's acknowledgements and an
//! operator's `consumer reset` from another process never overwrite each other unseen.

use keyledger_core::{EventKind, LicenseId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest consumer name, in bytes.
pub const CONSUMER_NAME_MAX: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub name: String,
    /// Only events in this license ID's history (its keys' included); all when absent.
    pub license_id: Option<String>,
    /// Only events of these types (their JSON `type`); all when empty.
    pub types: Vec<String>,
    /// The last seq the consumer acknowledged: delivery resumes after it.
    pub position: u64,
    pub created_at: Timestamp,
    /// When an operator last moved the position back (`consumer reset`).
    pub reset_at: Option<Timestamp>,
    /// Where the service pushes this consumer's events; a pull consumer has none. Absent
    /// from records written before webhooks, which read as pull consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// Present for a consumer of alerts rather than events (delivered by its webhook):
    /// what its receiver was last told is raised. Absent from every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertFeed>,
}

/// An alert feed's acknowledged state: the ids of the alerts its receiver was told are
/// raised (docs/api.md, "Alerts through a webhook"), sorted. The next delivery carries the
/// difference from the alerts evaluated then.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertFeed {
    pub raised: Vec<String>,
}

/// The most attempts a webhook's record keeps (the newest; older ones are counted only).
pub const ATTEMPTS_KEPT: usize = 50;

/// The most events one webhook delivery carries, and the default.
pub const WEBHOOK_BATCH_MAX: u32 = 10_000;
pub const WEBHOOK_BATCH_DEFAULT: u32 = 1_000;

/// The longest webhook URL, in bytes.
pub const WEBHOOK_URL_MAX: usize = 2048;

/// A consumer's push endpoint and the state of delivery to it (docs/api.md, "Webhooks").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://` or `https://`.
    pub url: String,
    pub signing: Signing,
    /// The HMAC key text (`klwh_` and 64 hex digits), with `hmac-sha256` only. The service
    /// shows it once, when the consumer is made; listings leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The most events one delivery carries.
    pub batch: u32,
    pub state: DeliveryState,
    /// Failed attempts since the last delivery that succeeded.
    pub failures: u32,
    /// Every attempt ever made, and those that were answered 2xx.
    pub attempts_total: u64,
    pub delivered_total: u64,
    /// The newest attempts, oldest first, at most `ATTEMPTS_KEPT`.
    pub attempts: Vec<Attempt>,
}

/// How a delivery is signed (the `Keyledger-Signature` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Signing {
    /// HMAC-SHA256 with the consumer's secret: `t=UNIX,v1=HEX`.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// Ed25519 with the ledger's checkpoint key: `t=UNIX,ed25519=BASE64`.
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl Signing {
    pub fn parse(text: &str) -> std::result::Result<Signing, String> {
        match text {
            "hmac-sha256" => Ok(Signing::HmacSha256),
            "ed25519" => Ok(Signing::Ed25519),
            other => Err(format!(
                "signing {other:?}: expected hmac-sha256 or ed25519"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Deliveries are made and retried.
    Active,
    /// The retry limit was reached: nothing is sent until `consumer redeliver`.
    Failing,
}

/// One POST of a batch to a webhook, as the service saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// Wall-clock time the request was sent.
    pub at: Timestamp,
    /// The seqs the batch covered: its events are those of `(after, through]` that the
    /// consumer takes.
    pub after: u64,
    pub through: u64,
    pub events: u32,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why the attempt failed (no answer, or a status other than 2xx).
    pub error: Option<String>,
}

impl Webhook {
    /// A new active webhook, its URL checked; `secret` is required for `hmac-sha256`.
    pub fn new(
        url: &str,
        signing: Signing,
        secret: Option<String>,
        batch: Option<u32>,
    ) -> std::result::Result<Webhook, String> {
        check_url(url)?;
        let batch = batch.unwrap_or(WEBHOOK_BATCH_DEFAULT);
        if !(1..=WEBHOOK_BATCH_MAX).contains(&batch) {
            return Err(format!("batch {batch}: expected 1..={WEBHOOK_BATCH_MAX}"));
        }
        let secret = match (signing, secret) {
            (Signing::HmacSha256, Some(secret)) => Some(secret),
            (Signing::HmacSha256, None) => return Err("hmac-sha256 needs a secret".into()),
            (Signing::Ed25519, _) => None,
        };
        Ok(Webhook {
            url: url.to_owned(),
            signing,
            secret,
            batch,
            state: DeliveryState::Active,
            failures: 0,
            attempts_total: 0,
            delivered_total: 0,
            attempts: Vec::new(),
        })
    }

    /// Notes an attempt, keeping the newest `ATTEMPTS_KEPT`.
    pub fn record(&mut self, attempt: Attempt) {
        self.attempts_total += 1;
        if attempt.error.is_none() {
            self.delivered_total += 1;
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        if self.attempts.len() == ATTEMPTS_KEPT {
            self.attempts.remove(0);
        }
        self.attempts.push(attempt);
    }
}

/// Why `url` cannot be a webhook's: only absolute `http://` and `https://` URLs with a host.
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let fine = host.is_some_and(|h| {
        !h.is_empty() && !h.contains('@') && h.bytes().all(|b| b.is_ascii_graphic())
    });
    if url.len() > WEBHOOK_URL_MAX || !fine || url.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "webhook URL {url:?}: expected http://HOST[:PORT]/PATH or https://…, \
             at most {WEBHOOK_URL_MAX} bytes, no spaces or credentials"
        ));
    }
    Ok(())
}

/// Why a consumer cannot be made as asked.
pub fn check_name(name: &str) -> std::result::Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > CONSUMER_NAME_MAX || !name.chars().all(fine) {
        return Err(format!(
            "consumer name {name:?}: 1 to {CONSUMER_NAME_MAX} of A-Z a-z 0-9 - _ ."
        ));
    }
    // `.` and `..` are path segments a URL resolves away: such a consumer could be made
    // and never reached.
    if name.chars().all(|c| c == '.') {
        return Err(format!(
            "consumer name {name:?}: a name of dots alone is no path segment"
        ));
    }
    Ok(())
}

impl Consumer {
    /// Makes this consumer one of alerts: it needs a webhook and takes no event types.
    pub fn feed_alerts(&mut self) -> std::result::Result<(), String> {
        if self.webhook.is_none() {
            return Err(
                "an alert feed is delivered by a webhook (poll GET /v1/alerts to pull)".into(),
            );
        }
        if !self.types.is_empty() {
            return Err("an alert feed takes no event types".into());
        }
        self.alerts = Some(AlertFeed::default());
        Ok(())
    }

    /// A new consumer at position 0 (it will receive the log from seq 1), its filter checked.
    pub fn new(
        name: &str,
        license_id: Option<&str>,
        types: &[String],
        created_at: Timestamp,
    ) -> std::result::Result<Consumer, String> {
        check_name(name)?;
        if let Some(id) = license_id {
            LicenseId::new(id).map_err(|e| format!("license ID {id:?}: {e}"))?;
        }
        for t in types {
            if !EventKind::ALL.iter().any(|k| k.name() == t) {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "event type {t:?} is not one of {}",
                    known.join(", ")
                ));
            }
        }
        let mut types = types.to_vec();
        types.sort();
        types.dedup();
        Ok(Consumer {
            name: name.to_owned(),
            license_id: license_id.map(str::to_owned),
            types,
            position: 0,
            created_at,
            reset_at: None,
            webhook: None,
            alerts: None,
        })
    }

    /// Whether an event of `kind` is one this consumer takes (its license filter is applied
    /// by the reader, which knows each license ID's history).
    pub fn takes(&self, kind: EventKind) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == kind.name())
    }

    /// This consumer as listings show it: a webhook's secret left out.
    pub fn redacted(&self) -> Consumer {
        let mut shown = self.clone();
        if let Some(webhook) = shown.webhook.as_mut() {
            webhook.secret = None;
        }
        shown
    }

    /// Delivery starts again after `to`; a failing webhook is active again; an alert feed
    /// tells every alert raised then as new.
    pub fn rewind(&mut self, to: u64, now: Timestamp) {
        self.position = to;
        self.reset_at = Some(now);
        if let Some(feed) = self.alerts.as_mut() {
            feed.raised.clear();
        }
        if let Some(webhook) = self.webhook.as_mut() {
            webhook.state = DeliveryState::Active;
            webhook.failures = 0;
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("consumers serialize")
    }

    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Consumer> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Storage(format!("consumer {name:?}: its record is damaged: {e}")))
    }
}
