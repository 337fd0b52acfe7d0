//! TLS: rustls with the ring provider, TLS 1.2 and 1.3 only, the certificate and key read from
//! files and swapped in place when the files change (cert-manager rotates them), no restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tracing::{info, warn};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("TLS: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("TLS: {0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file holds no key.
    #[error("TLS: {0} holds no PEM private key")]
    NoKey(PathBuf),
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds a certified key from PEM bytes.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert_path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| TlsError::Read {
            path: key_path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key_path.to_path_buf()))?;
    let signing = ring::default_provider()
        .key_provider
        .load_private_key(key)?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()?;
    Ok(ck)
}

/// A certificate resolver that always answers the current certificate, and reloads it from its
/// files when their content changes.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the files once; fails when they cannot be used.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ReloadingCert, TlsError> {
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        let ck = certified_key(&cert, &key, cert_path, key_path)?;
        Ok(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(ck)),
            seen: Mutex::new((cert, key)),
        })
    }

    /// Reads the files again; swaps the certificate when they changed and are usable.
    /// Returns whether a new certificate is in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let cert = read(&self.cert_path)?;
        let key = read(&self.key_path)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0 == cert && seen.1 == key {
            return Ok(false);
        }
        // A rotation writes two files: until both are written the pair may not match; keep
        // the old certificate and look again next time.
        let ck = certified_key(&cert, &key, &self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
        *seen = (cert, key);
        Ok(true)
    }

    /// Polls the files every `interval` until the task is dropped.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                match me.reload_if_changed() {
                    Ok(true) => {
                        info!(cert = %me.cert_path.display(), "serving certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "certificate files changed but cannot be used yet; keeping the current certificate")
                    }
                }
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The server configuration: ring, TLS 1.3 and 1.2 only, HTTP/2 and HTTP/1.1.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
