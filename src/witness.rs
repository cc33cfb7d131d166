//! `keyledger witness`: a witness's key (`init`) and its HTTP service (`serve`), C2SP
//! `tlog-witness`'s `POST /add-checkpoint` over `keyledger_ledger::witness::Witness`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use keyledger_ledger::witness::{Witness, WitnessKey, WitnessRefusal};
use rand::RngCore;

use crate::cli::WitnessAction;
use crate::output::outln;

/// The largest request a witness reads: a checkpoint, its signatures and 63 proof lines.
const REQUEST_BYTES_MAX: usize = 64 * 1024;

pub fn run(action: &WitnessAction) -> Result<ExitCode> {
    match action {
        WitnessAction::Init { name, key } => init(name, key),
        WitnessAction::Serve {
            listen,
            key,
            state,
            logs,
        } => serve(listen, key, state, logs),
    }
}

/// A key file: the witness's name, then its 32-byte seed in hex.
fn init(name: &str, path: &Path) -> Result<ExitCode> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
        return Err(anyhow!(
            "--name {name:?}: a witness name has no spaces and no '+'"
        ));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    let mut file = file.open(path).with_context(|| {
        format!(
            "--key {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    writeln!(file, "{name}\n{}", hex::encode(seed))?;
    file.sync_all()?;
    let key = WitnessKey::from_seed(name, &seed);
    outln!(
        "witness key {}; verifier key {}",
        path.display(),
        key.verifier_key()
    );
    Ok(ExitCode::SUCCESS)
}

fn load_key(path: &Path) -> Result<WitnessKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--key {}", path.display()))?;
    let mut lines = text.lines();
    let (Some(name), Some(seed)) = (lines.next(), lines.next()) else {
        return Err(anyhow!(
            "--key {}: expected a name line and a seed line",
            path.display()
        ));
    };
    let seed: [u8; 32] = hex::decode(seed.trim())
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| anyhow!("--key {}: the seed is not 64 hex digits", path.display()))?;
    Ok(WitnessKey::from_seed(name.trim(), &seed))
}

/// `ORIGIN=KEY` pairs; each key must parse as a ledger's verifier key.
fn parse_logs(logs: &[String]) -> Result<BTreeMap<String, String>> {
    logs.iter()
        .map(|pair| {
            let (origin, key) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--log {pair:?}: expected ORIGIN=KEY"))?;
            // The key is checked now (its form), not at the first request.
            keyledger_ledger::checkpoint::check_verifier_key(key)
                .map_err(|e| anyhow!("--log {origin}: {e}"))?;
            Ok((origin.to_owned(), key.to_owned()))
        })
        .collect()
}

fn serve(listen: &str, key: &Path, state: &Path, logs: &[String]) -> Result<ExitCode> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?}: expected IP:PORT"))?;
    let witness =
        Witness::open(load_key(key)?, parse_logs(logs)?, state).map_err(|e| anyhow!(e))?;
    let verifier = witness.key().verifier_key();
    let witness = Arc::new(witness);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        outln!("listening on http://{}", listener.local_addr()?);
        std::io::stdout().flush()?;
        tracing::info!(
            event = "witness_started",
            "keyledger witness: verifier key {verifier}"
        );
        let app = axum::Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BYTES_MAX))
            .with_state(witness);
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: String) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let answered = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match answered {
        Ok(Ok(cosignature)) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            cosignature,
        )
            .into_response(),
        Ok(Err(WitnessRefusal::Conflict(size))) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Ok(Err(refusal)) => {
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::warn!(
                event = "witness_refused",
                status = status.as_u16(),
                why = %refusal,
                "keyledger witness: refused ({}): {refusal}",
                status.as_u16()
            );
            (status, format!("{refusal}\n")).into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the witness task failed\n",
        )
            .into_response(),
    }
}
