//! The serving certificate, reloaded when its files change.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink, so the files are
//! re-read by path on every poll and compared by content: a swap, an in-place write and a
//! cert-manager renewal all look the same. A pair that does not parse (say, the certificate
//! written before its key) is logged and the previous certificate stays in use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::client_auth::ReloadingClientVerifier;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate and key read from files, swapped atomically when the files change.
pub struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    loaded_bytes: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Loads the PEM certificate chain and private key; fails if either is unusable.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let (cert_bytes, key_bytes) = read_pair(cert_path, key_path)?;
        let key = certified_key(cert_path, &cert_bytes, key_path, &key_bytes)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            loaded_bytes: Mutex::new((cert_bytes, key_bytes)),
        }))
    }

    /// Re-reads the files; swaps in the new certificate when their content changed.
    /// Returns whether it swapped.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert_bytes, key_bytes) = read_pair(&self.cert_path, &self.key_path)?;
        let mut loaded = self.loaded_bytes.lock().expect("certificate lock poisoned");
        if loaded.0 == cert_bytes && loaded.1 == key_bytes {
            return Ok(false);
        }
        let key = certified_key(&self.cert_path, &cert_bytes, &self.key_path, &key_bytes)?;
        self.current.store(Arc::new(key));
        *loaded = (cert_bytes, key_bytes);
        Ok(true)
    }

    /// Polls the files every `interval` for as long as the returned task runs.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        spawn_poller(
            "serving certificate",
            self.cert_path.clone(),
            interval,
            move || this.reload_if_changed(),
        )
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

/// Calls `reload` every `interval` and logs what it did: `what` (at `path`) reloaded, or
/// kept as it was because the new files are unusable.
pub(crate) fn spawn_poller(
    what: &'static str,
    path: PathBuf,
    interval: Duration,
    reload: impl Fn() -> Result<bool, TlsError> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match reload() {
                Ok(true) => tracing::info!(path = %path.display(), "{what} reloaded"),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "{what} not reloaded; still using the previous one")
                }
            }
        }
    })
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The crypto provider of every TLS configuration svcplane builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A rustls server configuration serving `certificate` over HTTP/2 and HTTP/1.1, requiring
/// a client certificate `clients` accepts when given.
pub fn server_config(
    certificate: Arc<ReloadingCertificate>,
    clients: Option<Arc<ReloadingClientVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(cert_path, format!("malformed certificate PEM: {error}")))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE block".to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| pem_error(key_path, format!("no usable private key: {error}")))?;
    let signing_key = ring::sign::any_supported_type(&key)
        .map_err(|error| pem_error(key_path, format!("unsupported private key: {error}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|error| {
        pem_error(
            key_path,
            format!(
                "the key does not match the certificate {}: {error}",
                cert_path.display()
            ),
        )
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn leaf(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].to_vec()
    }

    /// Lays the files out as a kubelet mounts a Secret: `tls.crt -> ..data/tls.crt`,
    /// `..data -> ..<timestamp>`.
    fn mount_secret(dir: &Path, version: &str, (cert, key): &(String, String)) {
        let target = dir.join(format!("..{version}"));
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("tls.crt"), cert).unwrap();
        std::fs::write(target.join("tls.key"), key).unwrap();
        let staging = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{version}"), &staging).unwrap();
        std::fs::rename(&staging, dir.join("..data")).unwrap();
        for file in ["tls.crt", "tls.key"] {
            let link = dir.join(file);
            if !link.exists() {
                std::os::unix::fs::symlink(format!("..data/{file}"), link).unwrap();
            }
        }
    }

    #[test]
    fn a_secret_symlink_swap_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate("first.svcplane.test");
        mount_secret(dir.path(), "2026_01", &first);
        let cert =
            ReloadingCertificate::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
                .unwrap();
        let served = leaf(&cert.current());
        assert!(
            !cert.reload_if_changed().unwrap(),
            "unchanged files must not swap"
        );

        let second = generate("second.svcplane.test");
        mount_secret(dir.path(), "2026_02", &second);
        assert!(cert.reload_if_changed().unwrap());
        assert_ne!(leaf(&cert.current()), served);
    }

    #[test]
    fn a_half_written_pair_keeps_the_previous_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (cert_pem, key_pem) = generate("first.svcplane.test");
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        let cert = ReloadingCertificate::load(&cert_path, &key_path).unwrap();
        let served = leaf(&cert.current());

        let (new_cert, _) = generate("second.svcplane.test");
        std::fs::write(&cert_path, new_cert).unwrap();
        let error = cert.reload_if_changed().unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");
        assert_eq!(leaf(&cert.current()), served);
    }

    #[test]
    fn unusable_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, "not a certificate").unwrap();
        std::fs::write(&key_path, "not a key").unwrap();
        let error = ReloadingCertificate::load(&cert_path, &key_path).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&cert_path.display().to_string()),
            "{error}"
        );
        let missing =
            ReloadingCertificate::load(&dir.path().join("absent.crt"), &key_path).unwrap_err();
        assert!(matches!(missing, TlsError::Read { .. }));
    }
}
