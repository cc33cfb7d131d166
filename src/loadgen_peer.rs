//! The contender of `keyledger bench http --peer`: a trivial axum handler that parses the
//! activation body keyledger parses and answers from memory, served on a loopback port of the
//! load generator's process with the same HTTP stack (axum, hyper, tokio). Loaded by the same
//! client with the same settings, it measures what HTTP and loopback TCP alone cost on this
//! machine, so a run reports keyledger as a ratio of it (docs/performance.md).

use anyhow::{Context, Result};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The activation body as keyledger reads it (`POST /v1/activations`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activation {
    product_key: String,
    org: String,
    method: String,
    machines: Vec<String>,
}

/// An answer shaped like keyledger's, from memory: nothing is decided or kept.
async fn activate(Json(activation): Json<Activation>) -> Json<Value> {
    let named = activation.product_key.len() + activation.org.len() + activation.method.len();
    Json(json!({
        "ok": true,
        "status": "activated",
        "consumed": activation.machines.len(),
        "already_active": 0,
        "remaining": named,
    }))
}

/// The peer, serving until dropped.
pub struct Peer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    /// Starts the handler on `127.0.0.1:0`, on a runtime of its own (as `serve` has).
    pub fn start() -> Result<Peer> {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-peer".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build();
                let Ok(runtime) = runtime else { return };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
                        return;
                    };
                    let _ = bound_tx.send(listener.local_addr());
                    let router = Router::new().route("/v1/activations", post(activate));
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .context("cannot start the peer's thread")?;
        let address = bound_rx
            .recv()
            .context("the peer could not listen on a loopback port")??;
        Ok(Peer {
            url: format!("http://{address}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
