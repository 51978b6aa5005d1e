//! Certificates for a local control plane: one CA that signs the apiserver's serving
//! certificate and the admin client certificate, the service-account signing key, and the
//! client certificate (with a CA of its own) kube-apiserver presents to svcplane's webhook.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate (or, for the service-account key, the public key) and its private key,
/// PEM-encoded.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Everything the apiserver and its clients need to trust each other.
pub struct ClusterCerts {
    pub ca_cert: String,
    /// Serving certificate for 127.0.0.1, ::1 and localhost.
    pub serving: Pem,
    /// Client certificate in `system:masters`.
    pub admin: Pem,
    /// ECDSA key pair that signs and verifies service-account tokens.
    pub service_account: Pem,
    /// The CA svcplane's webhook trusts for its callers (`--client-ca-file`): apart from
    /// the cluster's, so that no other client certificate of the cluster passes.
    pub webhook_client_ca: String,
    /// The client certificate kube-apiserver presents to webhooks, CN
    /// [`WEBHOOK_CLIENT_NAME`], signed by [`Self::webhook_client_ca`].
    pub webhook_client: Pem,
}

/// The Common Name of the client certificate kube-apiserver presents to webhooks.
pub const WEBHOOK_CLIENT_NAME: &str = "kube-apiserver-webhook-client";

impl ClusterCerts {
    pub fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "svcplane-local-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let serving = serving_cert(&ca, "kube-apiserver")?;

        let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "svcplane-admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin = Pem {
            cert: admin_params.signed_by(&admin_key, &ca)?.pem(),
            key: admin_key.serialize_pem(),
        };

        let webhook_client_ca = ca_issuer("svcplane-webhook-client-ca")?;
        let webhook_client = client_cert(&webhook_client_ca, WEBHOOK_CLIENT_NAME)?;

        Ok(Self {
            webhook_client_ca: webhook_client_ca.pem(),
            webhook_client,
            ca_cert: ca.pem(),
            serving,
            admin,
            service_account: {
                let key = KeyPair::generate()?;
                Pem {
                    cert: key.public_key_pem(),
                    key: key.serialize_pem(),
                }
            },
        })
    }
}

/// A CA of its own: `common_name`.
pub fn ca_issuer(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A client certificate `common_name`, signed by `ca`.
pub fn client_cert(ca: &CertifiedIssuer<'_, KeyPair>, common_name: &str) -> Result<Pem> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    Ok(Pem {
        cert: params.signed_by(&key, ca)?.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for loopback, signed by `ca`.
fn serving_cert(ca: &CertifiedIssuer<'_, KeyPair>, common_name: &str) -> Result<Pem> {
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.subject_alt_names.extend([
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    Ok(Pem {
        cert: params.signed_by(&key, ca)?.pem(),
        key: key.serialize_pem(),
    })
}
