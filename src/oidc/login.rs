//! The console's sign-in with the provider: the authorization code flow with PKCE, a
//! `state` that is good for one callback from the browser that started it, and a `nonce`
//! the ID token must carry. The ID token's signature, issuer, audience, expiry and nonce
//! are checked by openidconnect against the provider's published keys (fetched again once
//! when a token names a key not among them: the provider rotated its keys).

use std::time::SystemTime;

use keyledger_core::Principal;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, Nonce, PkceCodeChallenge, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};

use super::pending::PendingSignIn;
use keyledger_ledger::store::error::with_causes;

use super::provider::{Discovered, Oidc, OidcError};

/// A client made from the provider's metadata (its authorization endpoint known, its token
/// endpoint maybe).
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A finished sign-in: who, and until when the ID token vouches for it.
#[derive(Debug)]
pub struct SignedIn {
    pub principal: Principal,
    pub until: SystemTime,
}

impl Oidc {
    /// This service as the provider's client, sending browsers back to the redirect URL.
    fn client(&self, provider: &Discovered) -> Result<Client, OidcError> {
        Ok(CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect_url(self.redirect_url())?))
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and the
    /// `state` the callback must bring back (the console binds it to the browser too).
    pub async fn start_sign_in(&self) -> Result<(String, String), OidcError> {
        let provider = self.discovered().await?;
        let client = self.client(&provider)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".to_owned()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingSignIn::new(nonce, verifier);
        self.login.put(state.secret().clone(), pending);
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Finishes the sign-in `state` started: the code exchanged (with the PKCE verifier),
    /// the ID token checked. A state not started here, used already or too old is refused.
    pub async fn finish_sign_in(&self, state: &str, code: &str) -> Result<SignedIn, OidcError> {
        let pending = self.login.take(state).ok_or_else(|| {
            OidcError::Refused(
                "this sign-in was not started here, was used already, or took longer than \
                 10 minutes"
                    .to_owned(),
            )
        })?;
        let provider = self.discovered().await?;
        let client = self.client(&provider)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| {
                OidcError::Unreachable(format!("the provider has no token endpoint: {e}"))
            })?
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.fetcher)
            .await
            .map_err(|e| {
                OidcError::Refused(format!(
                    "the provider refused the code: {}",
                    with_causes(&e)
                ))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::Refused("the provider sent no ID token".to_owned()))?;
        let kid = id_token_kid(&id_token.to_string());
        let provider = self.with_key(kid.as_deref()).await?;
        let verifier = self.id_token_verifier(&provider);
        let claims = id_token.claims(&verifier, &pending.nonce).map_err(|e| {
            tracing::debug!("ID token refused: {e:?}");
            OidcError::Refused(describe(&e))
        })?;
        let until = claims.expiration().into();
        let payload = payload_of(&id_token.to_string())?;
        Ok(SignedIn {
            principal: self.principal_of(&payload)?,
            until,
        })
    }

    /// The ID token's checks: the provider's keys, public-key algorithms only (a shared
    /// secret would let anyone who knows the client secret mint tokens).
    fn id_token_verifier<'a>(&self, provider: &'a Discovered) -> CoreIdTokenVerifier<'a> {
        use openidconnect::core::CoreJwsSigningAlgorithm as Alg;
        let client_id = ClientId::new(self.settings.client_id.clone());
        let verifier = match &self.settings.client_secret {
            Some(secret) => CoreIdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.clone()),
                self.issuer.clone(),
                provider.keys.clone(),
            ),
            None => CoreIdTokenVerifier::new_public_client(
                client_id,
                self.issuer.clone(),
                provider.keys.clone(),
            ),
        };
        verifier.set_allowed_algs([
            Alg::RsaSsaPkcs1V15Sha256,
            Alg::RsaSsaPkcs1V15Sha384,
            Alg::RsaSsaPkcs1V15Sha512,
            Alg::RsaSsaPssSha256,
            Alg::RsaSsaPssSha384,
            Alg::RsaSsaPssSha512,
            Alg::EcdsaP256Sha256,
            Alg::EcdsaP384Sha384,
            Alg::EcdsaP521Sha512,
            Alg::EdDsa,
        ])
    }
}

fn redirect_url(url: &str) -> Result<RedirectUrl, OidcError> {
    RedirectUrl::new(url.to_owned())
        .map_err(|e| OidcError::Refused(format!("the redirect URL {url}: {e}")))
}

/// The `kid` of a JWT's header, if it names one.
fn id_token_kid(jwt: &str) -> Option<String> {
    jsonwebtoken::decode_header(jwt).ok()?.kid
}

/// A verified JWT's claims as JSON (to read the principal claim the operator chose, which
/// openidconnect's typed claims do not carry). Only called after the signature checked.
fn payload_of(jwt: &str) -> Result<Map<String, Value>, OidcError> {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| OidcError::Refused(format!("the ID token's claims: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| OidcError::Refused(format!("the ID token's claims: {e}")))
}

/// An ID token's refusal in words for the sign-in page.
fn describe(err: &ClaimsVerificationError) -> String {
    let why = match err {
        ClaimsVerificationError::Expired(_) => "it has expired".to_owned(),
        ClaimsVerificationError::InvalidAudience(_) => {
            "it was issued for another client (audience)".to_owned()
        }
        ClaimsVerificationError::InvalidIssuer(_) => "another issuer made it".to_owned(),
        ClaimsVerificationError::InvalidNonce(_) => {
            "its nonce is not this sign-in's (a replayed token)".to_owned()
        }
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "it is signed by a key the provider does not publish".to_owned(),
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(alg),
        ) => format!("its signature algorithm is not accepted ({alg})"),
        ClaimsVerificationError::SignatureVerification(_) => {
            "its signature does not verify (the token was altered)".to_owned()
        }
        other => other.to_string(),
    };
    format!("the ID token was refused: {why}")
}
