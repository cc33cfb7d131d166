//! The HTTP client that talks to the identity provider (discovery, keys, the token
//! endpoint): ureq on a blocking thread, bounded in time and size, and never following a
//! redirect (a provider's answer comes from the address it published, or not at all).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

/// How long one call to the provider may take.
const CALL_BOUND: Duration = Duration::from_secs(10);

/// The largest answer read from the provider (a discovery document or a key set is a few
/// KiB).
const ANSWER_BYTES_MAX: u64 = 1 << 20;

/// A failed call to the provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

/// The provider's HTTP client.
#[derive(Clone)]
pub struct Fetcher(Arc<ureq::Agent>);

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fetcher")
    }
}

impl Fetcher {
    /// A client trusting the web's roots, or only the CAs of `cacert`.
    pub fn new(cacert: Option<&Path>) -> anyhow::Result<Fetcher> {
        let config = crate::tls_client::ureq_tls(cacert)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(CALL_BOUND))
            .tls_config(config)
            .build();
        Ok(Fetcher(Arc::new(agent.into())))
    }

    /// One request, on a blocking thread.
    fn fetch(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, FetchError>> + Send + 'static {
        let agent = self.0.clone();
        let target = request.uri().to_string();
        async move {
            let answered = tokio::task::spawn_blocking(move || {
                let response = agent.run(request).map_err(|e| e.to_string())?;
                let (parts, mut body) = response.into_parts();
                let bytes = body
                    .with_config()
                    .limit(ANSWER_BYTES_MAX)
                    .read_to_vec()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(HttpResponse::from_parts(parts, bytes))
            })
            .await
            .map_err(|e| FetchError(format!("{target}: {e}")))?;
            answered.map_err(|e| FetchError(format!("{target}: {e}")))
        }
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Fetcher {
    type Error = FetchError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.fetch(request))
    }
}
