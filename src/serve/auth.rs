//! Bearer tokens: a random token is shown once; only its BLAKE3 digest is stored.

use keyledger_core::Principal;
use keyledger_ledger::Store;
use rand::RngCore;

/// The prefix every keyledger token starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "klt_";

pub fn digest(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Creates a token for `principal`, stores its digest, and returns the token itself.
pub fn create(store: &Store, principal: &Principal) -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    store.put_token(&digest(&token), principal.as_str())?;
    Ok(token)
}

/// Why a request is not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Unknown,
    /// The token table cannot be read now (a storage failure being recovered): the token
    /// may well be valid, so this is never answered as 401.
    Unreadable(String),
}

impl AuthError {
    pub fn message(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing Authorization: Bearer token",
            AuthError::Malformed => "the Authorization header is not `Bearer <token>`",
            AuthError::Unknown => "unknown or revoked token",
            AuthError::Unreadable(_) => "the token table cannot be read now",
        }
    }
}

/// The principal an `Authorization` header authenticates.
pub fn principal(store: &Store, header: Option<&str>) -> Result<Principal, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let token = bearer(Some(header)).ok_or(AuthError::Malformed)?;
    principal_of_token(store, token)
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    Some(header?.strip_prefix("Bearer ")?.trim())
}

/// The principal a token (from a header or the console's session cookie) authenticates.
pub fn principal_of_token(store: &Store, token: &str) -> Result<Principal, AuthError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Err(AuthError::Unknown);
    }
    match store.token_principal(&digest(token)) {
        Ok(Some(name)) => Principal::new(name).map_err(|_| AuthError::Unknown),
        Ok(None) => Err(AuthError::Unknown),
        Err(err) => Err(AuthError::Unreadable(err.to_string())),
    }
}
