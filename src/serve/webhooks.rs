//! Webhooks (docs/api.md, "Webhooks"): the service POSTs each webhook
//! consumer's events after its position as the page a pulling consumer would read, signed,
//! and moves the position when the receiver answers 2xx. A failed attempt is retried after
//! an exponential backoff with jitter; after `attempts_max` failures in a row the consumer
//! is marked failing and nothing more is sent until `consumer redeliver`. Every attempt is
//! written to the consumer's record (the newest `ATTEMPTS_KEPT` are kept there).
//!
//! One task a webhook consumer, at most one delivery in flight each: events reach a
//! receiver in seq order, at least once; the seq is its idempotency key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use keyledger_ledger::consumer::{Attempt, Consumer, DeliveryState, Signing, Webhook};
use tokio::task::JoinHandle;

use super::feed::next_page;
use super::App;
use crate::view::wall_clock;

/// How deliveries are retried and how long one may take (`serve --webhook-*`).
#[derive(Clone, Debug)]
pub struct Policy {
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Failed attempts in a row after which a consumer is marked failing.
    pub attempts_max: u32,
    /// The longest one attempt may take, connecting included.
    pub timeout: Duration,
    /// How often an alert feed is evaluated with no new events (business time passes).
    pub alerts_every: Duration,
    /// Whether deliveries may reach loopback, private and link-local addresses (see
    /// [`super::targets`]).
    pub private_targets: bool,
}

impl From<&crate::cli::ServeArgs> for Policy {
    fn from(args: &crate::cli::ServeArgs) -> Policy {
        Policy {
            retry_base: Duration::from_millis(args.webhook_retry_base_ms),
            retry_cap: Duration::from_millis(args.webhook_retry_cap_ms),
            attempts_max: args.webhook_attempts_max,
            timeout: Duration::from_secs(args.webhook_timeout),
            alerts_every: Duration::from_millis(args.alerts_every_ms),
            private_targets: args.webhook_private_targets,
        }
    }
}

impl Policy {
    /// The wait after `failures` failed attempts in a row: `retry_base × 2^(failures−1)`, at
    /// most `retry_cap`, of which the upper half is drawn at random (`unit` in [0, 1)), so
    /// receivers that fail together are not retried together.
    pub fn backoff(&self, failures: u32, unit: f64) -> Duration {
        let doubled = self
            .retry_base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(30));
        let full = doubled.min(self.retry_cap);
        full / 2 + full.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// A new HMAC secret: `klwh_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    format!("klwh_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The `Keyledger-Signature` header of a delivery of `body` at unix second `t`: the
/// signed bytes are `"{t}."` followed by the body.
pub fn signature(
    webhook: &Webhook,
    key: &keyledger_ledger::checkpoint::LedgerKey,
    t: i64,
    body: &[u8],
) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    match webhook.signing {
        Signing::HmacSha256 => {
            let secret = webhook.secret.as_deref().unwrap_or_default();
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(&signed);
            format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
        }
        Signing::Ed25519 => {
            use base64::Engine;
            let signature = key.sign_bytes(&signed);
            format!(
                "t={t},ed25519={}",
                base64::engine::general_purpose::STANDARD.encode(signature)
            )
        }
    }
}

/// Starts a delivery task for every webhook consumer, as consumers are made (this
/// service's `POST /v1/consumers` wakes it; a consumer made by another process is found
/// within a second), until the service closes.
pub async fn supervise(app: App, policy: Arc<Policy>) {
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut closing = app.closing.subscribe();
    let mut said = None::<String>;
    loop {
        running.retain(|_, task| !task.is_finished());
        let store = app.store.clone();
        match tokio::task::spawn_blocking(move || store.consumers()).await {
            Ok(Ok(all)) => {
                said = None;
                for consumer in all.into_iter().filter(|c| c.webhook.is_some()) {
                    running.entry(consumer.name.clone()).or_insert_with(|| {
                        tokio::spawn(deliver(app.clone(), consumer.name, Arc::clone(&policy)))
                    });
                }
            }
            Ok(Err(err)) if said.as_deref() != Some(&err.to_string()) => {
                tracing::warn!("keyledger: webhooks: cannot list consumers: {err}");
                said = Some(err.to_string());
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = app.consumers_changed.notified() => {}
            _ = closing.wait_for(|closed| *closed) => break,
        }
    }
    for task in running.into_values() {
        let _ = task.await;
    }
}

/// What the delivery loop does next.
enum Step {
    /// Look again at once.
    Again,
    /// Wait for new events, a change of the record or the close, at most this long.
    Idle(Duration),
    /// Wait this long (a retry's backoff, or a failing consumer's next look at its record).
    Pause(Duration),
    /// The consumer is gone or no longer has a webhook.
    Stop,
}

/// How long an idle delivery task waits before it looks at its record again (a reset or a
/// redeliver made by another process).
const IDLE_LOOK: Duration = Duration::from_secs(1);

async fn deliver(app: App, name: String, policy: Arc<Policy>) {
    let mut head = app.head.subscribe();
    let mut closing = app.closing.subscribe();
    let agent = agent(&policy);
    let mut evaluated = None;
    let mut spare = Vec::new();
    while !*closing.borrow() {
        head.borrow_and_update();
        let step = match step(&app, &name, &policy, &agent, &mut evaluated, &mut spare).await {
            Ok(step) => step,
            Err(err) => {
                tracing::warn!("keyledger: webhook {name}: {err}");
                Step::Pause(IDLE_LOOK)
            }
        };
        let (wait, on_head) = match step {
            Step::Again => continue,
            Step::Stop => return,
            Step::Idle(wait) => (wait, true),
            Step::Pause(wait) => (wait, false),
        };
        let woken = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = head.changed(), if on_head => true,
            _ = closing.wait_for(|closed| *closed) => return,
        };
        if woken {
            tokio::time::sleep(super::feed::LIVE_COALESCE).await;
        }
    }
}

/// What one POST carries: an events page, or an alert feed's changes.
struct Outbound {
    body: Vec<u8>,
    through: u64,
    /// The first event's seq (the delivery lag is measured from its fold).
    first: Option<u64>,
    items: usize,
    /// For an alert feed, the ids raised once this is delivered.
    raised: Option<Vec<String>>,
}

/// One turn: read the record, send what is due if anything is, and note the outcome.
async fn step(
    app: &App,
    name: &str,
    policy: &Policy,
    agent: &ureq::Agent,
    evaluated: &mut Option<(u64, Instant)>,
    spare: &mut Vec<u8>,
) -> keyledger_ledger::Result<Step> {
    let store = app.store.clone();
    let owned = name.to_owned();
    let consumer = tokio::task::spawn_blocking(move || store.consumer(&owned))
        .await
        .unwrap_or(Ok(None))?;
    let Some(consumer) = consumer else {
        return Ok(Step::Stop);
    };
    let Some(webhook) = consumer.webhook.clone() else {
        return Ok(Step::Stop);
    };
    if webhook.state == DeliveryState::Failing {
        return Ok(Step::Pause(IDLE_LOOK));
    }
    let outbound = if consumer.alerts.is_some() {
        alert_changes(app, &consumer, policy, evaluated).map_err(Step::Idle)
    } else {
        events_outbound(app, &consumer, &webhook, spare).await?
    };
    let mut outbound = match outbound {
        Ok(outbound) => outbound,
        Err(step) => return Ok(step),
    };
    let attempt = post(app, agent, &consumer, &webhook, &mut outbound).await;
    *spare = std::mem::take(&mut outbound.body);
    settle(
        app, policy, &consumer, &webhook, outbound, attempt, evaluated,
    )
}

/// The next page of events to POST, or what to do when there is none to send.
async fn events_outbound(
    app: &App,
    consumer: &Consumer,
    webhook: &Webhook,
    spare: &mut Vec<u8>,
) -> keyledger_ledger::Result<Result<Outbound, Step>> {
    if consumer.position >= *app.head.borrow() {
        return Ok(Err(Step::Idle(IDLE_LOOK)));
    }
    let batch = webhook.batch as usize;
    let page = next_page(app, consumer, batch, std::mem::take(spare)).await?;
    if page.events == 0 {
        // Nothing this consumer takes up to `through`: move past it without a request.
        advance(app, consumer, None, page.through, None)?;
        return Ok(Err(Step::Again));
    }
    Ok(Ok(Outbound {
        body: page.body,
        through: page.through,
        first: page.first,
        items: page.events,
        raised: None,
    }))
}

/// Notes how an attempt went: the position moves on a 2xx, a failure is counted and backs
/// off; what the loop does next.
fn settle(
    app: &App,
    policy: &Policy,
    consumer: &Consumer,
    webhook: &Webhook,
    outbound: Outbound,
    attempt: Attempt,
    evaluated: &mut Option<(u64, Instant)>,
) -> keyledger_ledger::Result<Step> {
    let name = &consumer.name;
    let delivered = attempt.error.is_none();
    app.metrics.webhook_attempt(delivered);
    if delivered {
        if let Some(folded) = outbound.first.and_then(|seq| app.fold_times.of(seq)) {
            app.metrics.webhook_lag(folded.elapsed());
        }
        let caught_up = outbound.items < webhook.batch as usize && outbound.first.is_some();
        advance(
            app,
            consumer,
            Some(attempt),
            outbound.through,
            outbound.raised,
        )?;
        // A full page: more are waiting. Otherwise the receiver has caught up with the head,
        // and the next delivery gathers what commits meanwhile.
        return Ok(if caught_up {
            Step::Pause(super::feed::LIVE_COALESCE)
        } else {
            Step::Again
        });
    }
    tracing::warn!(
        event = "webhook_failed",
        consumer = %name,
        "keyledger: webhook {name}: seqs {}..={} not delivered: {}",
        consumer.position + 1,
        outbound.through,
        attempt.error.as_deref().unwrap_or_default()
    );
    // An alert feed evaluates afresh for its retry.
    *evaluated = None;
    let failures = fail(app, name, attempt, policy)?;
    Ok(match failures {
        Some(failures) => Step::Pause(policy.backoff(failures, rand::random())),
        None => Step::Pause(IDLE_LOOK),
    })
}

/// An alert feed's changes since what its receiver was told: the alerts evaluated now
/// (`now_at_least` the newest event's time, as `GET /v1/alerts`) over the consumer's
/// license ID or all, raised ones new to the receiver and ids no longer raised. Evaluated
/// when events were folded since the last evaluation, and every `alerts_every` as time
/// passes; `Err(wait)` when nothing is due or nothing changed.
fn alert_changes(
    app: &App,
    consumer: &Consumer,
    policy: &Policy,
    evaluated: &mut Option<(u64, Instant)>,
) -> Result<Outbound, Duration> {
    let head = *app.head.borrow();
    if let Some((seq, when)) = *evaluated {
        let due = when + policy.alerts_every;
        if seq == head && Instant::now() < due {
            return Err(due - Instant::now());
        }
        // Events came: at most one evaluation each ALERTS_GAP under a steady stream.
        let gap = when + ALERTS_GAP;
        if Instant::now() < gap {
            return Err(gap - Instant::now());
        }
    }
    let license = consumer
        .license_id
        .as_deref()
        .and_then(|id| keyledger_core::LicenseId::new(id).ok());
    let (at, seq, current) = {
        let p = app
            .projections
            .read()
            .expect("no writer panics holding the lock");
        let at = crate::view::now_at_least(p.last_at);
        let rules = keyledger_projections::alerts::AlertRules::default();
        let all = keyledger_projections::alerts::alerts(&p, license.as_ref(), at, &rules);
        (at, p.last_seq, all)
    };
    *evaluated = Some((seq, Instant::now()));
    let told = &consumer.alerts.as_ref().expect("an alert feed").raised;
    let ids: Vec<String> = current.iter().map(|a| a.id()).collect();
    let raised: Vec<serde_json::Value> = current
        .iter()
        .zip(&ids)
        .filter(|(_, id)| told.binary_search(id).is_err())
        .map(|(alert, id)| {
            let mut shown = serde_json::to_value(alert).expect("alerts serialize");
            shown["id"] = serde_json::Value::String(id.clone());
            shown
        })
        .collect();
    let mut now_raised = ids.clone();
    now_raised.sort();
    now_raised.dedup();
    let cleared: Vec<&String> = told
        .iter()
        .filter(|id| now_raised.binary_search(id).is_err())
        .collect();
    if raised.is_empty() && cleared.is_empty() {
        return Err(policy.alerts_every.min(IDLE_LOOK));
    }
    let items = raised.len() + cleared.len();
    Ok(Outbound {
        body: serde_json::to_vec(&serde_json::json!({
            "consumer": consumer.name,
            "feed": "alerts",
            "evaluated_at": at,
            "at_seq": seq,
            "raised": raised,
            "cleared": cleared,
            "position": consumer.position,
            "through": seq,
        }))
        .expect("alerts serialize"),
        through: seq,
        first: None,
        items,
        raised: Some(now_raised),
    })
}

/// The shortest time between two evaluations of one alert feed while events stream in.
const ALERTS_GAP: Duration = Duration::from_millis(250);

/// Moves the position to `through` (and keeps the delivery's attempt), unless an operator
/// moved the position since the page was read: a reset is never undone by a delivery.
fn advance(
    app: &App,
    read: &Consumer,
    attempt: Option<Attempt>,
    through: u64,
    raised: Option<Vec<String>>,
) -> keyledger_ledger::Result<()> {
    app.store.advance_consumer(&read.name, |c| {
        let unmoved = c.position == read.position && c.reset_at == read.reset_at;
        if unmoved {
            c.position = through;
            if let (Some(feed), Some(raised)) = (c.alerts.as_mut(), raised.clone()) {
                feed.raised = raised;
            }
        }
        if let (Some(webhook), Some(attempt)) = (c.webhook.as_mut(), attempt.clone()) {
            webhook.record(attempt);
        }
    })?;
    Ok(())
}

/// Keeps a failed attempt (durably: the failure count decides the backoff after a
/// restart too) and marks the consumer failing at the limit; the failures in a row, or
/// `None` when the consumer is failing now.
fn fail(
    app: &App,
    name: &str,
    attempt: Attempt,
    policy: &Policy,
) -> keyledger_ledger::Result<Option<u32>> {
    let changed = app.store.update_consumer(name, |c| {
        if let Some(webhook) = c.webhook.as_mut() {
            webhook.record(attempt.clone());
            if webhook.failures >= policy.attempts_max {
                webhook.state = DeliveryState::Failing;
            }
        }
    })?;
    let webhook = changed.and_then(|c| c.webhook);
    Ok(match webhook {
        Some(w) if w.state == DeliveryState::Active => Some(w.failures),
        Some(w) => {
            tracing::warn!(
                event = "webhook_failing",
                consumer = %name,
                "keyledger: webhook {name}: {} failed attempts in a row: marked failing; \
                 `keyledger consumer redeliver {name} --from SEQ` starts it again",
                w.failures
            );
            None
        }
        None => None,
    })
}

fn agent(policy: &Policy) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(policy.timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("keyledger/", env!("CARGO_PKG_VERSION")))
        .build();
    if policy.private_targets {
        return config.into();
    }
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        super::targets::PublicOnly::default(),
    )
}

/// The longest part of a receiver's answer kept with a failed attempt.
const ANSWER_KEPT: usize = 200;

/// POSTs `page` to the webhook and says how it went.
async fn post(
    app: &App,
    agent: &ureq::Agent,
    consumer: &Consumer,
    webhook: &Webhook,
    page: &mut Outbound,
) -> Attempt {
    let body = std::mem::take(&mut page.body);
    let sent = wall_clock();
    let header = signature(
        webhook,
        &app.key,
        sent.unix_micros().div_euclid(1_000_000),
        &body,
    );
    let delivery = format!("{}/{}-{}", consumer.name, consumer.position, page.through);
    let attempt_no = (webhook.failures + 1).to_string();
    let (agent, url, name) = (agent.clone(), webhook.url.clone(), consumer.name.clone());
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        let outcome = send(
            &agent,
            &url,
            &body,
            [&header, &name, &delivery, &attempt_no],
        );
        (outcome, body)
    })
    .await
    .map(|(outcome, body)| {
        page.body = body;
        outcome
    });
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, error) = match answer {
        Ok(Ok((status, _))) if (200..300).contains(&status) => (Some(status), None),
        Ok(Ok((status, said))) => {
            let said: String = said.chars().filter(|c| !c.is_control()).collect();
            (
                Some(status),
                Some(
                    format!("HTTP {status}: {said}")
                        .trim_end_matches([':', ' '])
                        .to_owned(),
                ),
            )
        }
        Ok(Err(err)) => (None, Some(err.to_string())),
        Err(_) => (None, Some("the request task did not finish".to_owned())),
    };
    Attempt {
        at: sent,
        after: consumer.position,
        through: page.through,
        events: u32::try_from(page.items).unwrap_or(u32::MAX),
        status,
        latency_ms,
        error,
    }
}

/// One POST: the status and the start of the answer.
fn send(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    [signature, consumer, delivery, attempt]: [&str; 4],
) -> Result<(u16, String), ureq::Error> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("Keyledger-Signature", signature)
        .header("Keyledger-Consumer", consumer)
        .header("Keyledger-Delivery", delivery)
        .header("Keyledger-Attempt", attempt)
        .send(body)?;
    let status = response.status().as_u16();
    let said = response
        .body_mut()
        .with_config()
        .limit(ANSWER_KEPT as u64)
        .read_to_string()
        .unwrap_or_default();
    Ok((status, said))
}
