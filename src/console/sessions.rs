//! The console's signed-in sessions, kept in this process. The session cookie carries a
//! random id, never the token pasted at sign-in: the token is an API credential that
//! automation may share, so signing out must end the browser's session without revoking
//! it, and a cookie copied from a signed-out browser must be worth nothing. A session ends
//! at sign-out, after [`SESSION_LIFETIME`], when its token is revoked (checked at every
//! request), or when the service restarts (everyone signs in again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// How long a session lasts from sign-in, however busy.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at once; signing in beyond it ends the oldest.
pub const SESSIONS_MAX: usize = 10_000;

#[derive(Debug)]
struct Session {
    token: String,
    started: Instant,
}

/// Session id (by its BLAKE3 digest: the map never holds a usable cookie) to session.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn key(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

impl Sessions {
    /// Starts a session for `token` (already checked); answers the cookie's value.
    pub fn start(&self, token: String) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= SESSIONS_MAX {
            sessions.retain(|_, s| now.duration_since(s.started) < SESSION_LIFETIME);
        }
        if sessions.len() >= SESSIONS_MAX {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            key(&id),
            Session {
                token,
                started: now,
            },
        );
        id
    }

    /// The token of a live session (an expired one is ended here).
    pub fn token(&self, id: &str) -> Option<String> {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = key(id);
        let session = sessions.get(&key)?;
        if session.started.elapsed() >= SESSION_LIFETIME {
            sessions.remove(&key);
            return None;
        }
        Some(session.token.clone())
    }

    /// Ends a session (signing out); an unknown id is no error.
    pub fn end(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_answers_its_token_until_it_ends_and_is_bounded_in_number() {
        let sessions = Sessions::default();
        let id = sessions.start("klt_a".to_owned());
        assert_eq!(sessions.token(&id).as_deref(), Some("klt_a"));
        assert_eq!(sessions.token("klt_a"), None, "the token is no session id");
        sessions.end(&id);
        assert_eq!(sessions.token(&id), None);
        let first = sessions.start("klt_first".to_owned());
        for i in 0..SESSIONS_MAX {
            sessions.start(format!("klt_{i}"));
        }
        assert_eq!(sessions.token(&first), None, "the oldest went");
        assert_eq!(sessions.0.lock().unwrap().len(), SESSIONS_MAX);
    }
}
