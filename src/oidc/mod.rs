//! OpenID Connect: people sign in to the console with the company's identity provider
//! (`login.rs`: the authorization code flow with PKCE, `state` and `nonce`, the ID token
//! checked by openidconnect), and the API takes the provider's JWT access tokens
//! (`access.rs`, checked by jsonwebtoken). Both name a principal by one claim the operator
//! chooses; what a principal may do still comes from the ledger's own roles (R17–R19), so
//! who may do what stays in the log.
//!
//! The provider's discovery document and signing keys are fetched once and kept; a token
//! signed with a key not among them makes the keys be fetched again (the provider rotated
//! them): once per key id in [`provider::KEY_MISS_REMEMBERED`], and at most [`provider::KEY_FETCHES_MAX`]
//! times a minute in all, so tokens with made-up key ids cannot make keyledger hammer the
//! provider.

mod access;
mod fetch;
mod login;
mod pending;
mod provider;

pub use access::looks_like_jwt;
pub use provider::{Oidc, OidcError};
