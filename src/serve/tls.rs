//! TLS on the service's port (rustls, ring): the certificate chain and private key read from
//! PEM files, and read again on SIGHUP so that a renewed certificate needs no restart (a
//! reload that fails keeps the certificate in use and says why). Connections that do not
//! speak TLS are refused at the handshake, never answered in clear text.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The service's certificate, as last read from its files.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().expect("no reload panics holding it"),
        ))
    }
}

impl Tls {
    /// Reads the certificate chain (`cert`, PEM, leaf first) and its private key (`key`,
    /// PEM: PKCS#8, PKCS#1 or SEC1), and checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Tls>> {
        let current = certified_key(cert, key)?;
        Ok(Arc::new(Tls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<()> {
        let fresh = certified_key(&self.cert, &self.key)?;
        *self.current.write().expect("no reload panics holding it") = Arc::new(fresh);
        Ok(())
    }

    /// The acceptor every connection's handshake goes through (HTTP/1.1 only, TLS 1.2 and
    /// 1.3).
    pub fn acceptor(self: &Arc<Tls>) -> Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reloads the certificate each time the process gets SIGHUP, until the runtime ends.
    pub async fn reload_on_hangup(self: Arc<Tls>) {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!(
                "keyledger: SIGHUP cannot be caught here: the TLS certificate is not reloaded"
            );
            return;
        };
        while hangups.recv().await.is_some() {
            match self.reload() {
                Ok(()) => tracing::info!(
                    "keyledger: TLS certificate reloaded from {}",
                    self.cert.display()
                ),
                Err(err) => tracing::warn!(
                    "keyledger: TLS certificate not reloaded (the one in use stays): {err:#}"
                ),
            }
        }
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not PEM certificates", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: no PEM private key in it", key.display()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| anyhow!("--tls-key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        anyhow!(
            "--tls-key {} is not the key of --tls-cert {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}
