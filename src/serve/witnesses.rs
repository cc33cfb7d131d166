//! `serve --witness URL=KEY`: every `--witness-every` seconds, when the log grew, the
//! streams are committed (`streams.rs`) and the checkpoint at the commitment is signed and
//! submitted to each witness (C2SP tlog-witness
//! `add-checkpoint`, with a consistency proof from the size that witness last cosigned);
//! the cosignatures that verify are kept on it, served at `GET /v1/checkpoint/cosigned`,
//! and inclusion proofs can be asked against it (`?cosigned=true`).
//!
//! What a witness last cosigned is learnt from the witness itself: the first submission
//! says old size 0, and a witness that knows the log answers 409 with its size, which the
//! next attempt starts from. So nothing needs to be stored here: after a restart the
//! checkpoint of the head is submitted again (a witness cosigns the same tree again).
//!
//! A witness that did not cosign the head (down, or refusing) is asked again without
//! waiting for the log to grow, with the same note, so that its cosignature joins the
//! others on it; after each failure in a row it waits twice as long, up to
//! [`RETRY_CAP`].

use std::time::Duration;

use base64::Engine as _;
use keyledger_ledger::witness::WitnessVerifier;

use super::App;

/// The longest wait before asking a failing witness again.
const RETRY_CAP: Duration = Duration::from_secs(600);

/// One witness as `--witness URL=KEY` names it, the size it last cosigned, and when to ask
/// it again after failures.
struct Submission {
    url: String,
    /// The HTTP client (shared by every witness: one pool of keep-alive connections, as
    /// the protocol asks).
    agent: ureq::Agent,
    verifier: WitnessVerifier,
    cosigned: u64,
    failures: u32,
    retry_at: std::time::Instant,
}

impl Submission {
    /// Whether it should be asked to cosign `size` now.
    fn due(&self, size: u64) -> bool {
        self.cosigned < size && std::time::Instant::now() >= self.retry_at
    }

    fn failed(&mut self, every: Duration) {
        self.failures = self.failures.saturating_add(1);
        let wait = every
            .saturating_mul(1 << self.failures.min(16))
            .min(RETRY_CAP);
        self.retry_at = std::time::Instant::now() + wait;
    }
}

/// Parses `--witness URL=KEY` (the key's form checked now).
pub fn parse(witnesses: &[String]) -> anyhow::Result<Vec<(String, WitnessVerifier)>> {
    witnesses
        .iter()
        .map(|pair| {
            let (url, key) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--witness {pair:?}: expected URL=KEY"))?;
            let verifier =
                WitnessVerifier::parse(key).map_err(|e| anyhow::anyhow!("--witness {url}: {e}"))?;
            Ok((url.trim_end_matches('/').to_owned(), verifier))
        })
        .collect()
}

/// Submits the head's checkpoint to the witnesses whenever the log grew, until shutdown.
pub async fn run(app: App, witnesses: Vec<(String, WitnessVerifier)>, every: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut witnesses: Vec<Submission> = witnesses
        .into_iter()
        .map(|(url, verifier)| Submission {
            url,
            agent: agent.clone(),
            verifier,
            cosigned: 0,
            failures: 0,
            retry_at: std::time::Instant::now(),
        })
        .collect();
    let mut closing = app.closing.subscribe();
    loop {
        let head = *app.head.borrow();
        if witnesses.iter().any(|w| w.due(head)) {
            // The checkpoint witnesses cosign sits at a streams commitment, so that
            // statements can be made against it.
            let committed = super::streams::commit(&app).await;
            let outcome = match committed {
                Ok(Some(size)) => round(&app, &mut witnesses, size, every).await,
                Ok(None) => Ok(()),
                Err(why) => Err(format!("no streams commitment: {why}")),
            };
            if let Err(why) = outcome {
                tracing::warn!(event = "witness_round_failed", why = %why, "keyledger: witnesses: {why}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = closing.changed() => return,
        }
    }
}

/// The checkpoint of `size` (the note kept for it already, with the cosignatures it has,
/// or a new one), submitted to every witness that is due; what came back kept on it.
async fn round(
    app: &App,
    witnesses: &mut [Submission],
    size: u64,
    every: Duration,
) -> Result<(), String> {
    let kept = app
        .witnessed
        .latest()
        .filter(|(s, _)| *s == size)
        .map(|(_, note)| note);
    let note = match kept {
        Some(note) => note,
        None => {
            let (store, key) = (app.store.clone(), app.key.clone());
            let now = crate::view::wall_clock();
            tokio::task::spawn_blocking(move || {
                keyledger_ledger::proof::checkpoint(&store, &key, size, now)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
        }
    };
    let mut lines = String::new();
    for witness in witnesses.iter_mut().filter(|w| w.due(size)) {
        match submit(app, witness, &note, size).await {
            Ok(line) => {
                witness.cosigned = size;
                witness.failures = 0;
                lines.push_str(&line);
            }
            Err(why) => {
                witness.failed(every);
                tracing::warn!(
                    event = "witness_refused",
                    witness = witness.verifier.name(),
                    why = %why,
                    "keyledger: witness {} did not cosign size {size}: {why}",
                    witness.verifier.name()
                );
            }
        }
    }
    if lines.is_empty() {
        return Err(format!("no witness cosigned size {size}"));
    }
    app.witnessed.set(size, format!("{note}{lines}"));
    Ok(())
}

/// One witness's cosignature line of `note`: once from the size it last cosigned, and
/// again from the size it says it holds if that was not it (409).
async fn submit(
    app: &App,
    witness: &mut Submission,
    note: &str,
    size: u64,
) -> Result<String, String> {
    for _ in 0..2 {
        let old = witness.cosigned.min(size);
        let store = app.store.clone();
        let proof = match old {
            0 => Vec::new(),
            old if old == size => Vec::new(),
            old => tokio::task::spawn_blocking(move || {
                keyledger_ledger::proof::consistency_hashes(&store, old, size)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?,
        };
        let mut body = format!("old {old}\n");
        for hash in &proof {
            body.push_str(&base64::engine::general_purpose::STANDARD.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let url = format!("{}/add-checkpoint", witness.url);
        let agent = witness.agent.clone();
        let answered = tokio::task::spawn_blocking(move || post(&agent, &url, body))
            .await
            .map_err(|e| e.to_string())??;
        match answered {
            (200, text) => {
                // Only this witness's own valid line is kept, each checked once.
                let valid: String = text
                    .lines()
                    .filter(|l| {
                        let alone = format!("{note}{l}\n");
                        witness.verifier.cosigned_at(&alone).is_some()
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                if valid.is_empty() {
                    return Err("its answer holds no cosignature of its key".to_owned());
                }
                return Ok(valid);
            }
            (409, text) if text.trim().parse::<u64>().is_ok() => {
                let held: u64 = text.trim().parse().unwrap_or(0);
                if held > size {
                    return Err(format!(
                        "it holds size {held}, larger than this log's {size}"
                    ));
                }
                witness.cosigned = held;
            }
            (status, text) => return Err(format!("{status}: {}", text.trim())),
        }
    }
    Err("it answered 409 twice".to_owned())
}

fn post(agent: &ureq::Agent, url: &str, body: String) -> Result<(u16, String), String> {
    let mut response = agent
        .post(url)
        .send(body)
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, text))
}
