//! TLS on the main listener: WSS and HTTPS with certificate files, renewals
//! picked up by new connections, a broken renewal that changes nothing, the
//! self-signed certificate of `--lan`, and the health check against it all.
//! Every client here is a real rustls client that verifies what it is shown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation should stop the test with its message"
)]

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use vc_signaling::startup::Application;

use common::{http_get, spawn_node, test_settings, Client, TestNode};

/// A certificate authority of the test's own, as an organisation would have.
struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// One certificate and key written to disk.
struct Issued {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Video Caller test CA");
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn issue(&self, names: &[&str]) -> Issued {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Issued {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client that trusts this authority only.
    fn client(&self) -> Arc<ClientConfig> {
        trusting(self.issuer.der().clone())
    }
}

/// A client whose only trust anchor is `root`, with full verification.
fn trusting(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("trust anchor");
    Arc::new(
        ClientConfig::builder_with_provider(vc_signaling::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vc-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            dir,
        }
    }

    /// Writes both files the way a renewal does: each one replaced whole, by a
    /// rename, so that the node never reads half a file.
    fn write(&self, cert_pem: &str, key_pem: &str) {
        replace(&self.cert, cert_pem);
        replace(&self.key, key_pem);
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn replace(path: &Path, contents: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, contents).expect("write");
    std::fs::rename(&next, path).expect("rename");
}

async fn tls_node(files: &Files, reload: Duration) -> TestNode {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    spawn_node(move |s| {
        s.tls.cert_file = cert.display().to_string();
        s.tls.key_file = key.display().to_string();
        s.tls.reload_interval = reload;
        s.server.metrics_address = "127.0.0.1:0".into();
    })
    .await
}

/// Opens a TLS connection to `port` on loopback, verifying the certificate for
/// `name`; returns the certificate the node served, or the handshake's error.
async fn served_certificate(
    port: u16,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<CertificateDer<'static>, std::io::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let server = ServerName::try_from(name.to_owned()).expect("server name");
    let tls = TlsConnector::from(config).connect(server, tcp).await?;
    let (_, connection) = tls.get_ref();
    Ok(connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the node presents a certificate")
        .clone()
        .into_owned())
}

/// `GET path` over HTTPS, verified for `name`: status and body.
async fn https_get(
    addr: (IpAddr, u16),
    name: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.expect("connects");
    let server = ServerName::try_from(name.to_owned()).expect("server name");
    let mut tls = TlsConnector::from(config)
        .connect(server, tcp)
        .await
        .expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    // The node may close without close_notify once the response is out.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

async fn reload_failing(metrics_port: u16) -> u64 {
    let (status, text) = http_get(metrics_port, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find(|line| line.starts_with("vc_tls_reload_failing{"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no vc_tls_reload_failing in:\n{text}"))
}

async fn reloads(metrics_port: u16, result: &str) -> u64 {
    let (status, text) = http_get(metrics_port, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let label = format!("result=\"{result}\"");
    text.lines()
        .find(|line| line.starts_with("vc_tls_reloads_total{") && line.contains(&label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no vc_tls_reloads_total with {label} in:\n{text}"))
}

/// Polls `check` every 50 ms for up to 5 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metrics_port(node: &TestNode) -> u16 {
    node.metrics_port.expect("a separate metrics listener")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_serve_wss_https_and_plain_metrics() {
    let authority = Authority::new();
    let files = Files::new("serve");
    let issued = authority.issue(&["localhost", "127.0.0.1"]);
    files.write(&issued.cert_pem, &issued.key_pem);
    let node = tls_node(&files, Duration::from_secs(10)).await;
    let client = authority.client();

    // Two people join over wss:// and an offer crosses between them.
    let url = format!("wss://localhost:{}/ws", node.port);
    let mut alice = Client::connect_tls(&url, Arc::clone(&client)).await;
    alice.join("tls-room", "alice").await;
    let mut bob = Client::connect_tls(&url, Arc::clone(&client)).await;
    let joined = bob.join("tls-room", "bob").await;
    assert_eq!(common::member_ids(&joined), vec![alice.peer.clone()]);
    alice.recv_type("peer-joined").await;
    bob.send(json!({"type": "offer", "to": alice.peer, "sdp": "v=0 over tls"}))
        .await;
    let offer = alice.recv_type("offer").await;
    assert_eq!(offer["from"], bob.peer.as_str());
    assert_eq!(offer["sdp"], "v=0 over tls");

    // The page and the health checks come over HTTPS, verified for an address.
    let loopback = (IpAddr::from([127, 0, 0, 1]), node.port);
    let (status, body) = https_get(loopback, "127.0.0.1", Arc::clone(&client), "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    let (status, page) = https_get(loopback, "localhost", Arc::clone(&client), "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    // A certificate for other names is refused by a verifying client.
    assert!(served_certificate(node.port, "elsewhere.test", client)
        .await
        .is_err());

    // /metrics stays plain HTTP on its own listener, with the reload counters.
    assert_eq!(reloads(metrics_port(&node), "ok").await, 0);
    assert_eq!(reloads(metrics_port(&node), "error").await, 0);
    assert_eq!(reload_failing(metrics_port(&node)).await, 0);
    node.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_files_reach_new_connections_and_open_ones_stay() {
    let authority = Authority::new();
    let files = Files::new("renew");
    let first = authority.issue(&["localhost"]);
    files.write(&first.cert_pem, &first.key_pem);
    let node = tls_node(&files, Duration::from_millis(100)).await;
    let client = authority.client();
    let url = format!("wss://localhost:{}/ws", node.port);
    let mut before = Client::connect_tls(&url, Arc::clone(&client)).await;
    before.join("renewal", "before").await;
    let served = served_certificate(node.port, "localhost", Arc::clone(&client))
        .await
        .expect("handshake");
    assert_eq!(served, first.der);

    let second = authority.issue(&["localhost"]);
    files.write(&second.cert_pem, &second.key_pem);
    eventually("the renewed certificate to be served", || {
        let client = Arc::clone(&client);
        let expected = second.der.clone();
        async move {
            served_certificate(node.port, "localhost", client)
                .await
                .is_ok_and(|served| served == expected)
        }
    })
    .await;
    assert_eq!(reloads(metrics_port(&node), "ok").await, 1);
    assert_eq!(reloads(metrics_port(&node), "error").await, 0);

    // The socket opened under the old certificate still relays to a new one.
    let mut after = Client::connect_tls(&url, Arc::clone(&client)).await;
    after.join("renewal", "after").await;
    before.recv_type("peer-joined").await;
    after
        .send(json!({"type": "offer", "to": before.peer, "sdp": "v=0 after renewal"}))
        .await;
    assert_eq!(before.recv_type("offer").await["sdp"], "v=0 after renewal");
    node.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_renewal_keeps_the_certificate_served_so_far() {
    let authority = Authority::new();
    let files = Files::new("broken");
    let good = authority.issue(&["localhost"]);
    files.write(&good.cert_pem, &good.key_pem);
    let node = tls_node(&files, Duration::from_millis(100)).await;
    let client = authority.client();
    let metrics = metrics_port(&node);

    // Not a certificate at all.
    replace(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    eventually("the broken certificate to be counted", || async {
        reloads(metrics, "error").await == 1
    })
    .await;
    let served = served_certificate(node.port, "localhost", Arc::clone(&client))
        .await
        .expect("handshake with the previous certificate");
    assert_eq!(served, good.der);

    // A certificate with somebody else's key.
    let other = authority.issue(&["localhost"]);
    files.write(&other.cert_pem, &good.key_pem);
    eventually("the mismatched key to be counted", || async {
        reloads(metrics, "error").await == 2
    })
    .await;
    let served = served_certificate(node.port, "localhost", Arc::clone(&client))
        .await
        .expect("handshake with the previous certificate");
    assert_eq!(served, good.der);
    assert_eq!(reloads(metrics, "ok").await, 0);
    assert_eq!(reload_failing(metrics).await, 1, "the stale files show");
    let url = format!("wss://localhost:{}/ws", node.port);
    let mut client_now = Client::connect_tls(&url, Arc::clone(&client)).await;
    client_now.join("still-serving", "carol").await;

    // Fixing the files is picked up like any renewal.
    files.write(&other.cert_pem, &other.key_pem);
    eventually("the repaired pair to be served", || {
        let client = Arc::clone(&client);
        let expected = other.der.clone();
        async move {
            served_certificate(node.port, "localhost", client)
                .await
                .is_ok_and(|served| served == expected)
        }
    })
    .await;
    assert_eq!(reloads(metrics, "ok").await, 1);
    assert_eq!(reload_failing(metrics).await, 0);
    node.shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_start_with_unusable_files() {
    let authority = Authority::new();
    let files = Files::new("refuse");
    let one = authority.issue(&["localhost"]);
    let two = authority.issue(&["localhost"]);
    files.write(&one.cert_pem, &two.key_pem);
    let mut settings = test_settings();
    settings.tls.cert_file = files.cert.display().to_string();
    settings.tls.key_file = files.key.display().to_string();
    let err = Application::build(settings.clone())
        .await
        .err()
        .expect("a key that is not the certificate's is refused");
    assert!(err.to_string().contains("tls.key"), "{err}");
    settings.tls.key_file = files.dir.join("missing.key").display().to_string();
    let err = Application::build(settings)
        .await
        .err()
        .expect("a missing key is refused");
    assert!(err.to_string().contains("missing.key"), "{err}");
}

/// Every address of this machine, as the operating system lists them.
fn machine_addresses() -> Vec<IpAddr> {
    let output = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .expect("ip addr runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            let addr: IpAddr = words.next()?.split('/').next()?.parse().ok()?;
            let link_local = matches!(addr, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            (!link_local).then_some(addr)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_signed_certificate_covers_every_address_of_the_machine() {
    let mut settings = test_settings();
    settings.server.host = "0.0.0.0".into();
    settings.tls.self_signed = true;
    settings.tls.self_signed_names = vec!["call.test".into()];
    let app = Application::build(settings).await.expect("node builds");
    let port = app.port();
    let cert = app.self_signed().expect("a self-signed certificate");
    let (der, authority) = (cert.key.cert[0].clone(), cert.key.cert[1].clone());
    let shutdown = app.shutdown_handle();
    tokio::spawn(app.run_until_stopped());
    // Trusting the authority that came with it, as a browser told to would.
    let client = trusting(authority);

    let addresses = machine_addresses();
    assert!(
        addresses.contains(&IpAddr::from([127, 0, 0, 1])),
        "{addresses:?}"
    );
    let mut names: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    names.extend(["localhost".to_owned(), "call.test".to_owned()]);
    for name in &names {
        let served = served_certificate(port, name, Arc::clone(&client))
            .await
            .unwrap_or_else(|e| panic!("the certificate does not cover {name}: {e}"));
        assert_eq!(served, der);
    }
    assert!(
        served_certificate(port, "not-this-machine.test", Arc::clone(&client))
            .await
            .is_err(),
        "a verifying client accepts any name"
    );

    // Listening on every interface: each IPv4 address answers, verified for itself.
    for addr in addresses.iter().filter(|a| a.is_ipv4()) {
        let (status, body) = https_get(
            (*addr, port),
            &addr.to_string(),
            Arc::clone(&client),
            "/healthz",
        )
        .await;
        assert_eq!(status, 200, "{addr}: {body}");
    }
    shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_speaks_tls_to_a_tls_node() {
    let authority = Authority::new();
    let files = Files::new("health");
    let issued = authority.issue(&["node.example.org"]);
    files.write(&issued.cert_pem, &issued.key_pem);
    let node = tls_node(&files, Duration::from_secs(10)).await;
    let check = |settings: bool, flag: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vc-signaling"));
        command
            .args(["health-check", "--port", &node.port.to_string()])
            .env_remove("VC_CONFIG_FILE");
        if flag {
            command.arg("--https");
        }
        if settings {
            command
                .env("VC_TLS__CERT_FILE", &files.cert)
                .env("VC_TLS__KEY_FILE", &files.key);
        }
        command.output().expect("health-check runs")
    };
    for (settings, flag) in [(true, false), (false, true)] {
        let output = check(settings, flag);
        assert!(
            output.status.success(),
            "settings {settings}, --https {flag}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // Plain HTTP to a TLS listener gets no answer it could take for a 200.
    assert!(!check(false, false).status.success());
    node.shutdown.shutdown();
}
