//! Sign-ins started at the provider and not finished yet, by their `state`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::{Nonce, PkceCodeVerifier};

/// How long a started sign-in may take at the provider.
pub const SIGN_IN_WITHIN: Duration = Duration::from_secs(10 * 60);

/// Started sign-ins kept at once (the oldest go first beyond it).
const PENDING_MAX: usize = 10_000;

/// A sign-in started here and not finished: what the callback must match.
#[derive(Debug)]
pub struct PendingSignIn {
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
    started: Instant,
}

impl PendingSignIn {
    pub fn new(nonce: Nonce, verifier: PkceCodeVerifier) -> PendingSignIn {
        PendingSignIn {
            nonce,
            verifier,
            started: Instant::now(),
        }
    }
}

/// The started sign-ins by `state`. A state is taken out by its callback, so a replayed
/// callback finds nothing.
#[derive(Debug, Default)]
pub struct Pending(Mutex<HashMap<String, PendingSignIn>>);

impl Pending {
    pub fn put(&self, state: String, pending: PendingSignIn) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| p.started.elapsed() < SIGN_IN_WITHIN);
        if map.len() >= PENDING_MAX {
            let oldest = map
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(state, pending);
    }

    pub fn take(&self, state: &str) -> Option<PendingSignIn> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(state)
            .filter(|p| p.started.elapsed() < SIGN_IN_WITHIN)
    }
}
