//! The configured provider: its settings, its discovery document and signing keys (cached,
//! fetched again when a token names a key not among them), and the principal a verified
//! token's claims name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyledger_core::Principal;
use keyledger_ledger::store::error::with_causes;
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::IssuerUrl;
use serde_json::{Map, Value};

use super::fetch::Fetcher;
use super::pending::Pending;

/// How long a key id that the provider did not publish is not looked for again.
pub const KEY_MISS_REMEMBERED: Duration = Duration::from_secs(60);

/// Fetches of the provider's keys a minute, at most.
pub const KEY_FETCHES_MAX: usize = 6;

/// What `serve --oidc-*` says.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The provider's issuer URL (`--oidc-issuer`); its discovery document is at
    /// `/.well-known/openid-configuration` under it.
    pub issuer: String,
    /// This service's client id at the provider.
    pub client_id: String,
    /// Its secret, if the provider made it a confidential client.
    pub client_secret: Option<String>,
    /// The claim that names the principal; `None`: `preferred_username`, else `sub`.
    pub principal_claim: Option<String>,
    /// The `aud` an API access token must carry.
    pub audience: String,
    /// Where the provider sends the browser back (`…/ui/oidc/callback`); `None`: this
    /// service's own address, known once it listens ([`Oidc::listening_on`]).
    pub redirect_url: Option<String>,
    /// CA certificates to trust for the provider instead of the web's roots.
    pub cacert: Option<PathBuf>,
}

/// Why a sign-in or an access token was refused, or the provider could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider did not answer, or answered with something that is not OpenID
    /// Connect: keyledger cannot decide, so this is never a 401.
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    /// The token or the sign-in is not acceptable: said why.
    #[error("{0}")]
    Refused(String),
}

/// The provider as discovered: its metadata, and its keys as fetched at `fetched`.
#[derive(Debug)]
pub struct Discovered {
    pub(super) metadata: CoreProviderMetadata,
    pub(super) keys: CoreJsonWebKeySet,
    /// The same keys as jsonwebtoken reads them (those it can read).
    pub(super) api_keys: jsonwebtoken::jwk::JwkSet,
    fetched: Instant,
}

impl Discovered {
    fn has_key(&self, kid: &str) -> bool {
        self.api_keys.find(kid).is_some()
    }
}

/// The configured provider, its discovery and keys cached.
#[derive(Debug)]
pub struct Oidc {
    pub(super) settings: OidcSettings,
    pub(super) fetcher: Fetcher,
    pub(super) issuer: IssuerUrl,
    discovered: tokio::sync::RwLock<Option<Arc<Discovered>>>,
    pub(super) login: Pending,
    redirect_url: std::sync::OnceLock<String>,
    fetches: std::sync::Mutex<KeyFetches>,
}

/// When the keys were fetched lately, and which key ids were looked for in vain.
#[derive(Debug, Default)]
struct KeyFetches {
    at: std::collections::VecDeque<Instant>,
    missed: std::collections::HashMap<String, Instant>,
}

impl KeyFetches {
    /// Whether the keys may be fetched for `kid` now (and counts the fetch if so).
    fn allow(&mut self, kid: &str) -> bool {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        self.at.retain(|t| now.duration_since(*t) < minute);
        self.missed
            .retain(|_, t| now.duration_since(*t) < KEY_MISS_REMEMBERED);
        if self.missed.contains_key(kid) || self.at.len() >= KEY_FETCHES_MAX {
            return false;
        }
        self.at.push_back(now);
        if self.missed.len() < 1_000 {
            self.missed.insert(kid.to_owned(), now);
        }
        true
    }
}

impl Oidc {
    /// Checks the settings; nothing is fetched yet. An issuer must be `https://`, or
    /// `http://` on a loopback address (a provider on the same machine, as in the tests).
    pub fn new(settings: OidcSettings) -> anyhow::Result<Oidc> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| anyhow::anyhow!("--oidc-issuer {}: {e}", settings.issuer))?;
        let url = issuer.url();
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            anyhow::bail!(
                "--oidc-issuer {}: must be https:// (http:// only on a loopback address)",
                settings.issuer
            );
        }
        let fetcher = Fetcher::new(settings.cacert.as_deref())?;
        Ok(Oidc {
            settings,
            fetcher,
            issuer,
            redirect_url: std::sync::OnceLock::new(),
            discovered: tokio::sync::RwLock::new(None),
            login: Pending::default(),
            fetches: std::sync::Mutex::default(),
        })
    }

    /// The settings of `serve --oidc-*`, or `None` without `--oidc-issuer`.
    pub fn from_args(args: &crate::cli::ServeArgs) -> anyhow::Result<Option<Oidc>> {
        let (Some(issuer), Some(client_id)) = (&args.oidc_issuer, &args.oidc_client_id) else {
            return Ok(None);
        };
        let client_secret = match &args.oidc_client_secret_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        anyhow::anyhow!("--oidc-client-secret-file {}: {e}", file.display())
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Oidc::new(OidcSettings {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret,
            principal_claim: args.oidc_principal_claim.clone(),
            audience: args
                .oidc_audience
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            redirect_url: args.oidc_redirect_url.clone(),
            cacert: args.oidc_cacert.clone(),
        })
        .map(Some)
    }

    /// The service listens at `base` (`http://127.0.0.1:8080`): the redirect URL, unless
    /// one was given, is its `/ui/oidc/callback`.
    pub fn listening_on(&self, base: &str) {
        let url = match &self.settings.redirect_url {
            Some(url) => url.clone(),
            None => format!("{base}/ui/oidc/callback"),
        };
        let _ = self.redirect_url.set(url);
    }

    /// Where the provider sends browsers back.
    pub fn redirect_url(&self) -> &str {
        self.redirect_url.get().map_or("", String::as_str)
    }

    /// The issuer, as configured.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The provider's metadata and keys: cached, or fetched now.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(found) = self.discovered.read().await.clone() {
            return Ok(found);
        }
        let mut slot = self.discovered.write().await;
        if let Some(found) = slot.clone() {
            return Ok(found);
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.fetcher)
            .await
            .map_err(|e| OidcError::Unreachable(with_causes(&e)))?;
        let keys = metadata.jwks().clone();
        let found = Arc::new(discovered(metadata, keys)?);
        *slot = Some(found.clone());
        Ok(found)
    }

    /// The provider with a key `kid` if it publishes one: the cached keys, fetched again
    /// when `kid` is not among them (see the module's doc for the bounds).
    pub async fn with_key(&self, kid: Option<&str>) -> Result<Arc<Discovered>, OidcError> {
        let current = self.discovered().await?;
        let Some(kid) = kid else {
            return Ok(current);
        };
        if current.has_key(kid) {
            return Ok(current);
        }
        let mut slot = self.discovered.write().await;
        if let Some(newer) = slot.clone().filter(|d| d.fetched > current.fetched) {
            return Ok(newer);
        }
        let allowed = self
            .fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(kid);
        if !allowed {
            return Ok(current);
        }
        let keys = CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.fetcher)
            .await
            .map_err(|e| OidcError::Unreachable(with_causes(&e)))?;
        let found = Arc::new(discovered(current.metadata.clone(), keys)?);
        tracing::info!(
            event = "oidc_keys_fetched",
            keys = found.api_keys.keys.len(),
            "keyledger: the identity provider's signing keys were fetched again (a token named key {kid})"
        );
        *slot = Some(found.clone());
        Ok(found)
    }

    /// The principal a verified token's claims name: the configured claim, or
    /// `preferred_username`, else `sub`.
    pub(super) fn principal_of(&self, claims: &Map<String, Value>) -> Result<Principal, OidcError> {
        let names: Vec<&str> = match &self.settings.principal_claim {
            Some(claim) => vec![claim.as_str()],
            None => vec!["preferred_username", "sub"],
        };
        let value = names
            .iter()
            .find_map(|name| claims.get(*name).and_then(Value::as_str))
            .ok_or_else(|| {
                OidcError::Refused(format!(
                    "the token has no {} claim to name a principal by",
                    names.join(" or ")
                ))
            })?;
        Principal::new(value)
            .map_err(|e| OidcError::Refused(format!("the token's principal {value:?}: {e}")))
    }
}

fn discovered(
    metadata: CoreProviderMetadata,
    keys: CoreJsonWebKeySet,
) -> Result<Discovered, OidcError> {
    let text = serde_json::to_value(&keys)
        .map_err(|e| OidcError::Unreachable(format!("the provider's keys: {e}")))?;
    // Keys jsonwebtoken cannot read (an encryption key, an unknown type) are left out:
    // a token signed with one is refused as signed by an unknown key.
    let api_keys = jsonwebtoken::jwk::JwkSet {
        keys: text["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|key| serde_json::from_value(key.clone()).ok())
            .collect(),
    };
    Ok(Discovered {
        metadata,
        keys,
        api_keys,
        fetched: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(claim: Option<&str>, issuer: &str) -> anyhow::Result<Oidc> {
        Oidc::new(OidcSettings {
            issuer: issuer.to_owned(),
            client_id: "keyledger".to_owned(),
            client_secret: None,
            principal_claim: claim.map(str::to_owned),
            audience: "keyledger".to_owned(),
            redirect_url: None,
            cacert: None,
        })
    }

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_principal_is_the_chosen_claim_else_preferred_username_else_sub() {
        let default = oidc(None, "https://login.example.com/t").unwrap();
        let both = claims(serde_json::json!({"sub": "0f3a", "preferred_username": "rita"}));
        assert_eq!(default.principal_of(&both).unwrap().as_str(), "rita");
        let sub_only = claims(serde_json::json!({"sub": "0f3a"}));
        assert_eq!(default.principal_of(&sub_only).unwrap().as_str(), "0f3a");
        let email = oidc(Some("email"), "https://login.example.com/t").unwrap();
        let with_email = claims(serde_json::json!({"sub": "0f3a", "email": "rita@example.com"}));
        assert_eq!(
            email.principal_of(&with_email).unwrap().as_str(),
            "rita@example.com"
        );
        let err = email.principal_of(&both).unwrap_err().to_string();
        assert_eq!(err, "the token has no email claim to name a principal by");
        let bad = claims(serde_json::json!({"preferred_username": "ri\nta"}));
        assert!(default.principal_of(&bad).is_err(), "a control character");
    }

    #[test]
    fn an_issuer_is_https_or_loopback_http() {
        assert!(oidc(None, "https://login.example.com/t").is_ok());
        assert!(oidc(None, "http://127.0.0.1:9000").is_ok());
        assert!(oidc(None, "http://localhost:9000").is_ok());
        let err = oidc(None, "http://login.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be https://"), "{err}");
        assert!(oidc(None, "not a url").is_err());
    }
}
