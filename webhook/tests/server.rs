//! The admission server over real TLS on loopback: who may call (client certificates) and
//! how long and how many (timeouts, the connection limit, the body limit). Timeouts are
//! short here; the tests assert that connections end, never how fast, beyond a generous
//! overall timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kube::core::admission::AdmissionResponse;
use prometheus_client::registry::Registry;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use webhook::review::{InternalError, Request};
use webhook::server::client_auth::{ClientAuth, ReloadingClientVerifier};
use webhook::server::metrics::AdmissionMetrics;
use webhook::server::tls::{ReloadingCertificate, provider, server_config};
use webhook::server::{Admission, MAX_REVIEW_BYTES, ServerLimits, paths, router, serve};

/// Allows everything; mutation waits `delay` first.
struct AllowAll {
    delay: Duration,
}

impl Admission for AllowAll {
    async fn mutate_service(&self, request: &Request) -> Result<AdmissionResponse, InternalError> {
        tokio::time::sleep(self.delay).await;
        Ok(AdmissionResponse::from(request))
    }

    fn validate_service(&self, request: &Request) -> AdmissionResponse {
        AdmissionResponse::from(request)
    }

    fn validate_endpoints(&self, request: &Request) -> AdmissionResponse {
        AdmissionResponse::from(request)
    }
}

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn issue(&self, cn: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

struct Server {
    addr: SocketAddr,
    ca: Ca,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"0c9a8d74-9cb7-44dd-b98e-09fd62def2f4","kind":{"group":"","version":"v1","kind":"Service"},"resource":{"group":"","version":"v1","resource":"services"},"operation":"CREATE","userInfo":{},"object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}}}"#;

async fn start(limits: ServerLimits, allowed_names: &[&str], delay: Duration) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("svcplane-test-ca");
    let (cert, key) = ca.issue("svcplane-webhook", ExtendedKeyUsagePurpose::ServerAuth);
    let file = |name: &str, contents: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    };
    let certificate =
        ReloadingCertificate::load(&file("tls.crt", &cert), &file("tls.key", &key)).unwrap();
    let clients = ReloadingClientVerifier::load(
        &ClientAuth {
            ca_file: file("client-ca.crt", &ca.0.pem()),
            allowed_names: allowed_names.iter().map(ToString::to_string).collect(),
        },
        provider(),
    )
    .unwrap();
    let tls = server_config(certificate, Some(clients)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = AdmissionMetrics::register(&mut Registry::default());
    let router = router(Arc::new(AllowAll { delay }), metrics);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        Some(Arc::new(tls)),
        router,
        limits,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    Server {
        addr,
        ca,
        _stop: stop,
        _dir: dir,
    }
}

fn short_limits() -> ServerLimits {
    ServerLimits {
        tls_handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        max_connections: 64,
        max_pending_handshakes: 16,
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects with `client` (PEM certificate and key) or without a certificate.
async fn connect(server: &Server, client: Option<(String, String)>) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server.ca.0.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Sends one HTTP/1.1 POST and returns the response's status.
async fn post(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    path: &str,
    body: &[u8],
) -> std::io::Result<u16> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    // A refused body may be cut short by the server: its answer is what counts.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if rest.len() >= length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return Ok(status);
            }
        }
    }
}

/// Whether the server closes `stream`: reads until EOF or an error.
async fn closed_by_server(mut stream: impl AsyncRead + Unpin) -> bool {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_to_end)
        .await
        .is_ok()
}

async fn review_status(server: &Server, client: Option<(String, String)>) -> std::io::Result<u16> {
    let mut stream = connect(server, client).await?;
    post(&mut stream, paths::MUTATE_SERVICES, REVIEW.as_bytes()).await
}

fn apiserver_cert(server: &Server) -> (String, String) {
    server
        .ca
        .issue("kube-apiserver", ExtendedKeyUsagePurpose::ClientAuth)
}

#[tokio::test]
async fn only_callers_with_a_certificate_of_the_ca_and_an_allowed_name_are_answered() {
    let server = start(short_limits(), &["kube-apiserver"], Duration::ZERO).await;
    assert_eq!(
        review_status(&server, Some(apiserver_cert(&server)))
            .await
            .unwrap(),
        200
    );
    assert!(
        review_status(&server, None).await.is_err(),
        "a caller without a certificate was answered"
    );
    let other = Ca::new("another-ca").issue("kube-apiserver", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        review_status(&server, Some(other)).await.is_err(),
        "a certificate of another CA was accepted"
    );
    let stranger = server
        .ca
        .issue("mallory", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(
        review_status(&server, Some(stranger)).await.is_err(),
        "a name outside the allowed list was accepted"
    );
}

#[tokio::test]
async fn silent_and_half_sent_connections_are_closed() {
    let server = start(short_limits(), &[], Duration::ZERO).await;
    // TCP only, nothing sent: the TLS handshake timeout.
    let silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(silent).await);

    // A request whose headers never end: the header-read timeout.
    let mut partial = connect(&server, Some(apiserver_cert(&server)))
        .await
        .unwrap();
    partial
        .write_all(b"POST /mutate/services HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    assert!(closed_by_server(partial).await);

    // A keep-alive connection left idle after an answer.
    let mut idle = connect(&server, Some(apiserver_cert(&server)))
        .await
        .unwrap();
    assert_eq!(
        post(&mut idle, paths::MUTATE_SERVICES, REVIEW.as_bytes())
            .await
            .unwrap(),
        200
    );
    assert!(closed_by_server(idle).await);
}

/// At the connection limit, a new connection closes the one that has waited longest for a
/// request: connections held open without requests cannot keep kube-apiserver out, even
/// with a valid certificate.
#[tokio::test]
async fn at_the_limit_the_connection_waiting_longest_makes_room() {
    let limits = ServerLimits {
        idle_timeout: Duration::from_secs(3600),
        header_read_timeout: Duration::from_secs(3600),
        max_connections: 2,
        ..short_limits()
    };
    let server = start(limits, &[], Duration::ZERO).await;
    let cert = apiserver_cert(&server);
    let mut first = connect(&server, Some(cert.clone())).await.unwrap();
    let mut second = connect(&server, Some(cert.clone())).await.unwrap();
    for stream in [&mut first, &mut second] {
        assert_eq!(
            post(stream, paths::MUTATE_SERVICES, REVIEW.as_bytes())
                .await
                .unwrap(),
            200
        );
    }
    // The second's request headers never end.
    second
        .write_all(b"POST /mutate/services HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The first's wait starts again after this answer.
    assert_eq!(
        post(&mut first, paths::MUTATE_SERVICES, REVIEW.as_bytes())
            .await
            .unwrap(),
        200
    );
    assert_eq!(review_status(&server, Some(cert)).await.unwrap(), 200);
    assert!(
        closed_by_server(second).await,
        "the longest wait was the second's"
    );
    assert_eq!(
        post(&mut first, paths::MUTATE_SERVICES, REVIEW.as_bytes())
            .await
            .unwrap(),
        200
    );
}

/// A connection with a request in flight is never closed to make room: the new one is.
#[tokio::test]
async fn at_the_limit_busy_connections_are_kept_and_the_new_one_closed() {
    let limits = ServerLimits {
        max_connections: 2,
        ..short_limits()
    };
    let server = Arc::new(start(limits, &[], Duration::from_secs(3)).await);
    let cert = apiserver_cert(&server);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let (server, cert) = (Arc::clone(&server), cert.clone());
            tokio::spawn(async move { review_status(&server, Some(cert)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(third).await);
    for request in busy {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    // A slot freed is a slot served again.
    assert_eq!(review_status(&server, Some(cert)).await.unwrap(), 200);
}

/// Callers that open connections and never start their handshake hold at most the
/// pending-handshake cap, and only until someone else connects: with the connection limit
/// taken by them and a handshake timeout far beyond the test, a caller with the apiserver's
/// certificate is still answered.
#[tokio::test]
async fn connections_that_never_finish_their_handshake_cannot_keep_the_apiserver_out() {
    let limits = ServerLimits {
        tls_handshake_timeout: Duration::from_secs(3600),
        max_connections: 8,
        max_pending_handshakes: 4,
        ..short_limits()
    };
    let server = start(limits, &[], Duration::ZERO).await;
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The first 28 were closed for newer ones; the last 4 wait in their handshake.
    let mut closed = 0;
    for stream in silent.drain(..28) {
        if closed_by_server(stream).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 28);
    let cert = apiserver_cert(&server);
    let mut known = connect(&server, Some(cert)).await.unwrap();
    assert_eq!(
        post(&mut known, paths::MUTATE_SERVICES, REVIEW.as_bytes())
            .await
            .unwrap(),
        200
    );
}

#[tokio::test]
async fn a_body_over_three_mebibytes_gets_413_and_the_server_keeps_answering() {
    let server = start(short_limits(), &[], Duration::ZERO).await;
    assert_eq!(MAX_REVIEW_BYTES, 3 * 1024 * 1024);
    let cert = apiserver_cert(&server);
    let mut stream = connect(&server, Some(cert.clone())).await.unwrap();
    let body = vec![b' '; MAX_REVIEW_BYTES + 1];
    assert_eq!(
        post(&mut stream, paths::MUTATE_SERVICES, &body)
            .await
            .unwrap(),
        413
    );
    assert_eq!(review_status(&server, Some(cert)).await.unwrap(), 200);
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let limits = ServerLimits {
        request_timeout: Duration::from_millis(200),
        ..short_limits()
    };
    let server = start(limits, &[], Duration::from_secs(30)).await;
    assert_eq!(
        review_status(&server, Some(apiserver_cert(&server)))
            .await
            .unwrap(),
        504
    );
}
