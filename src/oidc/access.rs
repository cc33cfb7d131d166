//! The provider's JWT access tokens on the API (RFC 9068): signed by a key the provider
//! publishes, issued by it, for this service's audience, not expired, and typed `at+jwt`,
//! so that an ID token (whose audience may be the same client id) is not taken as one.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use keyledger_core::Principal;
use serde_json::{Map, Value};

use super::provider::{Oidc, OidcError};

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// Whether a bearer token has a JWT's shape (three base64url parts): the API tries it as an
/// access token only then, and `klt_` tokens never.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Oidc {
    /// The principal an access token names, and when the token expires (Unix seconds).
    pub async fn access_principal(&self, token: &str) -> Result<(Principal, u64), OidcError> {
        let refused = |why: String| OidcError::Refused(format!("access token refused: {why}"));
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| refused(format!("its header: {e}")))?;
        if !matches!(header.typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            let typ = header.typ.as_deref().unwrap_or("absent");
            return Err(refused(format!(
                "it is not typed at+jwt (its typ is {typ}): an ID token is not an access token"
            )));
        }
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(refused(format!(
                "{:?} is a shared-secret algorithm; the provider's keys are public keys",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refused("it names no signing key (kid)".to_owned()))?;
        let provider = self.with_key(Some(kid)).await?;
        let jwk = provider.api_keys.find(kid).ok_or_else(|| {
            refused(format!(
                "signed by key {kid}, which the provider does not publish"
            ))
        })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| refused(format!("key {kid}: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[self.settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| refused(describe(&e, &self.settings.audience)))?;
        let expires = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok((self.principal_of(&data.claims)?, expires))
    }
}

/// jsonwebtoken's error in words an operator reads in a 401's message.
fn describe(err: &jsonwebtoken::errors::Error, audience: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::InvalidSignature => "its signature does not verify".to_owned(),
        ErrorKind::ExpiredSignature => "it has expired".to_owned(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidAudience => format!("its audience is not {audience}"),
        ErrorKind::InvalidIssuer => "another issuer made it".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no {claim} claim"),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_base64url_parts_look_like_a_jwt() {
        assert!(looks_like_jwt(
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJyaXRhIn0.c2ln"
        ));
        assert!(!looks_like_jwt("klt_0123abcd"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c d"));
    }
}
