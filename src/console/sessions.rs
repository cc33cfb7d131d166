//! The console's signed-in sessions, kept in this process. The session cookie carries a
//! random id, never the token pasted at sign-in: the token is an API credential that
//! automation may share, so signing out must end the browser's session without revoking
//! it, and a cookie copied from a signed-out browser must be worth nothing. A session ends
//! at sign-out, after [`SESSION_LIFETIME`], when its token is revoked (checked at every
//! request), or when the service restarts (everyone signs in again). A session begun by
//! single sign-on ends, besides, when the provider's ID token expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// How long a session lasts from sign-in, however busy.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at once; signing in beyond it ends the oldest.
pub const SESSIONS_MAX: usize = 10_000;

/// What a session was begun with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A pasted `klt_` token, checked again at every request (it may be revoked).
    Token(String),
    /// A sign-in at the identity provider: the principal its ID token named.
    SignOn(keyledger_core::Principal),
}

#[derive(Debug)]
struct Session {
    credential: Credential,
    started: Instant,
    /// [`SESSION_LIFETIME`] after `started`, or sooner when an ID token expires sooner.
    until: Instant,
}

/// Session id (by its BLAKE3 digest: the map never holds a usable cookie) to session.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<[u8; 32], Session>>);

fn key(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

impl Sessions {
    /// Starts a session for `credential` (already checked), to last at most `lifetime`;
    /// answers the cookie's value.
    pub fn start(&self, credential: Credential, lifetime: Duration) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = hex::encode(bytes);
        let now = Instant::now();
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= SESSIONS_MAX {
            sessions.retain(|_, s| now < s.until);
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
                credential,
                started: now,
                until: now + lifetime.min(SESSION_LIFETIME),
            },
        );
        id
    }

    /// The credential of a live session (an expired one is ended here).
    pub fn credential(&self, id: &str) -> Option<Credential> {
        let mut sessions = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = key(id);
        let session = sessions.get(&key)?;
        if Instant::now() >= session.until {
            sessions.remove(&key);
            return None;
        }
        Some(session.credential.clone())
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
        let token = |t: &str| Credential::Token(t.to_owned());
        let id = sessions.start(token("klt_a"), SESSION_LIFETIME);
        assert_eq!(sessions.credential(&id), Some(token("klt_a")));
        assert_eq!(
            sessions.credential("klt_a"),
            None,
            "the token is no session id"
        );
        sessions.end(&id);
        assert_eq!(sessions.credential(&id), None);
        // An ID token that expires at once ends its session at once.
        let rita = Credential::SignOn(keyledger_core::Principal::new("rita").unwrap());
        let gone = sessions.start(rita, Duration::ZERO);
        assert_eq!(sessions.credential(&gone), None);
        let first = sessions.start(token("klt_first"), SESSION_LIFETIME);
        for i in 0..SESSIONS_MAX {
            sessions.start(token(&format!("klt_{i}")), SESSION_LIFETIME);
        }
        assert_eq!(sessions.credential(&first), None, "the oldest went");
        assert_eq!(sessions.0.lock().unwrap().len(), SESSIONS_MAX);
    }
}
