//! The CLI's side of TLS (`tail`, `bench http`): an `https://` server's certificate is
//! checked against the web's roots, or, with `--cacert FILE`, against the CA certificates in
//! that PEM file alone (a private CA, or the test CA of docs/operations.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The CA certificates of a `--cacert` file.
fn ca_certificates(cacert: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cacert)
        .with_context(|| format!("--cacert {}", cacert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--cacert {}: not PEM certificates", cacert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "--cacert {}: no certificate in it",
            cacert.display()
        ));
    }
    Ok(certs)
}

/// A rustls client configuration that trusts `cacert`'s CAs, or the web's roots.
pub fn client_config(cacert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match cacert {
        Some(file) => {
            for cert in ca_certificates(file)? {
                roots
                    .add(cert)
                    .map_err(|e| anyhow!("--cacert {}: {e}", file.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP agent (non-2xx statuses are answers, not errors) that trusts `cacert`'s CAs, or
/// the web's roots.
pub fn agent(cacert: Option<&Path>) -> Result<ureq::Agent> {
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(ureq_tls(cacert)?)
        .build()
        .into())
}

/// ureq's TLS settings: `cacert`'s CAs alone, or the web's roots.
pub fn ureq_tls(cacert: Option<&Path>) -> Result<ureq::tls::TlsConfig> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(file) = cacert {
        let certs = ca_certificates(file)?
            .into_iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect::<Vec<_>>();
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    Ok(tls.build())
}
