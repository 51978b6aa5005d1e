//! Known callers: the client certificate a caller of the admission port must present.
//!
//! Without it, anyone who reaches the port can send AdmissionReviews and have values
//! reserved. kube-apiserver presents a client certificate to webhooks when its
//! AdmissionConfiguration names a kubeconfig for the webhook's host (`svcplane manifests
//! --admission-config` prints one). The CA bundle is reloaded like the serving certificate,
//! so a Secret or ConfigMap update (a `..data` symlink swap) takes effect without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::tls::{TlsError, spawn_poller};

/// Who may call: certificates chaining to a CA bundle, optionally only some names.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub ca_file: PathBuf,
    /// When not empty, the client certificate's Common Name or one of its DNS names must
    /// be one of these.
    pub allowed_names: Vec<String>,
}

/// Verifies client certificates against a CA bundle read from a file and swapped when the
/// file changes, then checks the certificate's names.
pub struct ReloadingClientVerifier {
    ca_file: PathBuf,
    allowed_names: Vec<String>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<LoadedCa>,
}

struct LoadedCa {
    pem: Vec<u8>,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_file", &self.ca_file)
            .field("allowed_names", &self.allowed_names)
            .finish_non_exhaustive()
    }
}

impl ReloadingClientVerifier {
    /// Loads the CA bundle; fails if it holds no usable certificate.
    pub fn load(auth: &ClientAuth, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, TlsError> {
        let pem = read(&auth.ca_file)?;
        let verifier = verifier(&auth.ca_file, &pem, &provider)?;
        Ok(Arc::new(Self {
            ca_file: auth.ca_file.clone(),
            allowed_names: auth.allowed_names.clone(),
            provider,
            current: ArcSwap::from_pointee(LoadedCa { pem, verifier }),
        }))
    }

    /// Re-reads the bundle; swaps it in when its content changed. Returns whether it did.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let pem = read(&self.ca_file)?;
        if self.current.load().pem == pem {
            return Ok(false);
        }
        let verifier = verifier(&self.ca_file, &pem, &self.provider)?;
        self.current.store(Arc::new(LoadedCa { pem, verifier }));
        Ok(true)
    }

    /// Polls the bundle every `interval` for as long as the returned task runs.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        spawn_poller(
            "client CA bundle",
            self.ca_file.clone(),
            interval,
            move || this.reload_if_changed(),
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn verifier(
    path: &Path,
    pem: &[u8],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert =
            cert.map_err(|error| pem_error(format!("malformed certificate PEM: {error}")))?;
        roots
            .add(cert)
            .map_err(|error| pem_error(format!("not a usable CA certificate: {error}")))?;
    }
    if roots.is_empty() {
        return Err(pem_error("no CERTIFICATE block".to_string()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|error| pem_error(format!("no client verifier from this bundle: {error}")))
}

/// The names a client certificate is known by: its Common Name (first), then its DNS
/// subject alternative names.
pub fn certificate_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("unparsable certificate: {error}"))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_string)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        names.extend(
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                }),
        );
    }
    Ok(names)
}

/// Whether a certificate known by `names` may call: any of them in `allowed`, or `allowed`
/// empty (any certificate from the CA).
pub fn is_allowed(names: &[String], allowed: &[String]) -> bool {
    allowed.is_empty() || names.iter().any(|name| allowed.contains(name))
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    // The CA names are hints a client may use to pick among its certificates; the bundle
    // can be swapped, so none are sent and a client sends the certificate it has.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified =
            self.current
                .load()
                .verifier
                .verify_client_cert(end_entity, intermediates, now)?;
        if self.allowed_names.is_empty() {
            return Ok(verified);
        }
        let names = certificate_names(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if is_allowed(&names, &self.allowed_names) {
            Ok(verified)
        } else {
            tracing::debug!(
                ?names,
                "refused a client certificate whose names are not allowed"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().verifier.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    };

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn client(
        ca: &CertifiedIssuer<'_, KeyPair>,
        cn: &str,
        dns: &[&str],
    ) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, ca).unwrap().der().clone()
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn names_are_the_common_name_then_dns_names() {
        let ca = ca("ca");
        let cert = client(&ca, "kube-apiserver", &["apiserver.example", "b.example"]);
        assert_eq!(
            certificate_names(&cert).unwrap(),
            ["kube-apiserver", "apiserver.example", "b.example"]
        );
    }

    #[test]
    fn an_empty_allow_list_takes_any_name() {
        let names = vec!["kube-apiserver".to_string()];
        assert!(is_allowed(&names, &[]));
        assert!(is_allowed(&names, &["x".into(), "kube-apiserver".into()]));
        assert!(!is_allowed(&names, &["x".into()]));
        assert!(!is_allowed(&[], &["x".into()]));
    }

    #[test]
    fn certificates_of_another_ca_or_name_are_refused_and_a_swap_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (ca("ours"), ca("theirs"));
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ours.pem()).unwrap();
        let verifier = ReloadingClientVerifier::load(
            &ClientAuth {
                ca_file: ca_file.clone(),
                allowed_names: vec!["kube-apiserver".to_string()],
            },
            provider(),
        )
        .unwrap();
        let now = UnixTime::now();
        let verify = |cert: &CertificateDer<'_>| verifier.verify_client_cert(cert, &[], now);
        assert!(verify(&client(&ours, "kube-apiserver", &[])).is_ok());
        assert!(verify(&client(&ours, "x", &["kube-apiserver"])).is_ok());
        assert!(verify(&client(&ours, "mallory", &[])).is_err());
        assert!(verify(&client(&theirs, "kube-apiserver", &[])).is_err());

        assert!(!verifier.reload_if_changed().unwrap());
        std::fs::write(&ca_file, theirs.pem()).unwrap();
        assert!(verifier.reload_if_changed().unwrap());
        assert!(verify(&client(&theirs, "kube-apiserver", &[])).is_ok());
        assert!(verify(&client(&ours, "kube-apiserver", &[])).is_err());

        std::fs::write(&ca_file, "not a certificate").unwrap();
        assert!(verifier.reload_if_changed().is_err());
        assert!(
            verify(&client(&theirs, "kube-apiserver", &[])).is_ok(),
            "an unusable bundle keeps the previous one"
        );
    }
}
