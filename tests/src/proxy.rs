//! A loopback TCP round-robin proxy: what a Service in front of several webhook replicas
//! does, for a local control plane that has no Service network.
//!
//! kube-apiserver calls one URL per webhook, and it talks HTTP/1.1 to webhooks precisely so
//! that concurrent calls spread over connections (kubernetes issue 75791); this proxy sends
//! each new connection to the next backend and splices the bytes unchanged. TLS passes
//! through: replicas serving the same certificate look like one server to the apiserver.
//!
//! The URL to register names the host `0.0.0.0`, which the kernel connects to this host
//! over loopback. For `localhost` or a loopback IP, kube-apiserver allows HTTP/2
//! (`isLocalHost` in k8s.io/apiserver/pkg/util/webhook/client.go) and multiplexes every
//! call over one connection, which a TCP proxy cannot spread; any other host gets HTTP/1.1,
//! as a webhook behind a Service does. The backends then need a certificate valid for
//! `0.0.0.0`: [`ProxyCerts`]. (An `HTTPS_PROXY` in the control plane's environment would
//! capture that host; local control planes run without one.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy, stopped (with every connection it carries) when dropped.
pub struct RoundRobinProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

struct Shared {
    backends: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    connections: Mutex<Vec<usize>>,
    /// Bumped to cut every open connection to a backend.
    cuts: Vec<watch::Sender<u64>>,
}

impl RoundRobinProxy {
    /// Listens on a free loopback port and forwards to `backends` in turn. A backend that
    /// refuses the connection is skipped for the next one, as a load balancer with health
    /// checks would; connections already open to a backend that dies break with it.
    pub async fn start(backends: Vec<SocketAddr>) -> Result<Self> {
        anyhow::ensure!(!backends.is_empty(), "a proxy needs a backend");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            connections: Mutex::new(vec![0; backends.len()]),
            cuts: backends.iter().map(|_| watch::Sender::new(0)).collect(),
            backends: Mutex::new(backends),
            next: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// `https://0.0.0.0:<port>`: the URL to register (see the module's docs).
    pub fn url(&self) -> String {
        format!("https://0.0.0.0:{}", self.addr.port())
    }

    /// Replaces backend `index` (a replica restarted on another port).
    pub fn set_backend(&self, index: usize, addr: SocketAddr) {
        self.shared.backends.lock().unwrap()[index] = addr;
    }

    /// Closes every open connection to backend `index`, as the death of its process would.
    pub fn cut(&self, index: usize) {
        self.shared.cuts[index].send_modify(|cuts| *cuts += 1);
    }

    /// Connections sent to each backend so far.
    pub fn connections(&self) -> Vec<usize> {
        self.shared.connections.lock().unwrap().clone()
    }
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Owned here so that aborting the loop closes every spliced connection too.
    let mut connections = JoinSet::new();
    loop {
        let (inbound, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "proxy accept failed");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let Some((index, mut outbound)) = connect_next(&shared).await else {
                tracing::debug!("no backend accepted the connection; closing it");
                return;
            };
            let mut cut = shared.cuts[index].subscribe();
            let mut inbound = inbound;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

async fn connect_next(shared: &Shared) -> Option<(usize, TcpStream)> {
    let backends = shared.backends.lock().unwrap().clone();
    let first = shared.next.fetch_add(1, Ordering::Relaxed);
    for step in 0..backends.len() {
        let index = (first + step) % backends.len();
        if let Ok(stream) = TcpStream::connect(backends[index]).await {
            let _ = stream.set_nodelay(true);
            shared.connections.lock().unwrap()[index] += 1;
            return Some((index, stream));
        }
    }
    None
}

/// A CA and a serving certificate valid for the proxy's URL (`0.0.0.0`) and for loopback,
/// for the backends to serve; removed when dropped.
pub struct ProxyCerts {
    /// PEM of the CA: the webhook configurations' `caBundle`.
    pub ca: Vec<u8>,
    /// Serving certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProxyCerts {
    pub fn generate() -> Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "svcplane-proxy-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "svcplane-webhook");
        params.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let dir = tempfile::Builder::new()
            .prefix("svcplane-proxy-certs-")
            .tempdir()?;
        let cert_file = dir.path().join("tls.crt");
        let key_file = dir.path().join("tls.key");
        std::fs::write(&cert_file, cert.pem())?;
        std::fs::write(&key_file, key.serialize_pem())?;
        Ok(Self {
            ca: ca.pem().into_bytes(),
            cert_file,
            key_file,
            _dir: dir,
        })
    }
}
