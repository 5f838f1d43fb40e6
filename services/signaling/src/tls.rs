//! TLS on the main listener: the certificate it serves, reloaded when its files
//! change, or made at start for development and calls on a LAN.
//!
//! Browsers give a page the camera and microphone only in a secure context:
//! `localhost`, or HTTPS. A node reached by another machine must therefore speak
//! TLS itself or sit behind a proxy that does. The listener asks [`CertStore`]
//! for the certificate at every handshake; the store holds the current one in an
//! [`ArcSwap`], so that [`Reloader`] can swap in a renewed pair without a
//! restart. Connections already open keep the certificate they began with.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use thiserror::Error;
use tokio::sync::watch;
use tracing::{error, info};

use crate::config::TlsSettings;
use crate::lifecycle::Phase;
use crate::metrics::Metrics;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {source}")]
    Key {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS set-up: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("making the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The cryptography behind every TLS connection of the node: *ring*.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate the listener serves, swapped whole when it is renewed.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// What the next handshake will get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.load();
        f.debug_struct("CertStore")
            .field("chain_len", &current.cert.len())
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS configuration: HTTP/1.1 only (WebSockets need it), the
/// certificate from `store` at every handshake.
pub fn server_config(
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store))
}

/// The certificate and key files of `tls.cert_file` and `tls.key_file`.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Both files as read once: what [`Reloader`] compares to notice a change.
#[derive(Debug, PartialEq, Eq)]
enum Snapshot {
    Read { cert: Vec<u8>, key: Vec<u8> },
    Unreadable(String),
}

impl KeyPairFiles {
    pub fn from_settings(settings: &TlsSettings) -> Self {
        Self {
            cert: PathBuf::from(&settings.cert_file),
            key: PathBuf::from(&settings.key_file),
        }
    }

    /// Reads and checks both files: the chain must parse, and the key must be
    /// one the provider supports and belong to the first certificate.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        self.parse(&cert, &key, provider)
    }

    fn snapshot(&self) -> Snapshot {
        match (read(&self.cert), read(&self.key)) {
            (Ok(cert), Ok(key)) => Snapshot::Read { cert, key },
            (Err(e), _) | (_, Err(e)) => Snapshot::Unreadable(e.to_string()),
        }
    }

    fn parse(
        &self,
        cert: &[u8],
        key: &[u8],
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                path: self.cert.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|source| TlsError::Pem {
            path: self.key.clone(),
            source,
        })?;
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
            path: self.key.clone(),
            source,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads the certificate files every `tls.reload_interval` and swaps a changed,
/// valid pair into the store. A pair that fails to load (a half-written
/// renewal, a key that does not match) is logged and counted once, and the
/// certificate served so far stays.
pub struct Reloader {
    files: KeyPairFiles,
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
    seen: Snapshot,
}

/// What one look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Unchanged,
    Reloaded,
    Failed,
}

impl Reloader {
    /// Loads the pair for the first time; the node does not start without it.
    pub fn start(
        files: KeyPairFiles,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let seen = files.snapshot();
        let key = match &seen {
            Snapshot::Read { cert, key } => files.parse(cert, key, &provider)?,
            Snapshot::Unreadable(_) => files.load(&provider)?,
        };
        Ok(Self {
            store: Arc::new(CertStore::new(key)),
            files,
            provider,
            metrics,
            seen,
        })
    }

    pub fn store(&self) -> Arc<CertStore> {
        Arc::clone(&self.store)
    }

    /// Reads both files and acts on a change.
    pub fn check(&mut self) -> ReloadOutcome {
        let now = self.files.snapshot();
        if now == self.seen {
            return ReloadOutcome::Unchanged;
        }
        let result = match &now {
            Snapshot::Read { cert, key } => self.files.parse(cert, key, &self.provider),
            Snapshot::Unreadable(_) => self.files.load(&self.provider),
        };
        self.seen = now;
        match result {
            Ok(key) => {
                self.store.replace(key);
                self.metrics.tls_reloads.with_label_values(&["ok"]).inc();
                self.metrics.tls_reload_failing.set(0);
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                ReloadOutcome::Reloaded
            }
            Err(e) => {
                self.metrics.tls_reloads.with_label_values(&["error"]).inc();
                self.metrics.tls_reload_failing.set(1);
                error!(error = %e, "TLS certificate not reloaded; the previous one stays");
                ReloadOutcome::Failed
            }
        }
    }

    /// Checks every `interval` until the node stops.
    pub async fn run(mut self, interval: Duration, mut phase: watch::Receiver<Phase>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        while crate::lifecycle::next_tick(&mut ticker, &mut phase).await {
            // Reading two small files; off the runtime's threads all the same,
            // since a network file system can stall.
            self = match tokio::task::spawn_blocking(move || {
                self.check();
                self
            })
            .await
            {
                Ok(reloader) => reloader,
                Err(e) => {
                    error!(error = %e, "TLS reload check did not finish; reloading stops");
                    return;
                }
            };
        }
    }
}

/// A certificate made at start for this machine, with the authority that signed
/// it: browsers (Firefox in particular) accept a certificate they were told to
/// trust only through an authority, never a server certificate signed by its
/// own key. The authority's key signs this one certificate and is dropped: it
/// can vouch for nothing else.
pub struct SelfSigned {
    /// The chain served: this machine's certificate, then the authority's.
    pub key: CertifiedKey,
    /// What it covers: DNS names, then IP addresses.
    pub names: Vec<String>,
    /// SHA-256 of this machine's certificate, as browsers show it (`AB:CD:…`).
    pub fingerprint: String,
    /// The authority's certificate in PEM, for a client that wants to trust it.
    pub authority_pem: String,
}

impl SelfSigned {
    /// A certificate for `names`, valid from an hour ago for a year.
    pub fn generate(names: Vec<String>, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let (not_before, not_after) = (
            now - time::Duration::hours(1),
            now + time::Duration::days(365),
        );

        let mut authority = rcgen::CertificateParams::default();
        authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        authority.distinguished_name = rcgen::DistinguishedName::new();
        authority.distinguished_name.push(
            rcgen::DnType::CommonName,
            "Video Caller LAN authority (self-signed)",
        );
        authority.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        authority.not_before = not_before;
        authority.not_after = not_after;
        let authority =
            rcgen::CertifiedIssuer::self_signed(authority, rcgen::KeyPair::generate()?)?;

        let mut params = rcgen::CertificateParams::new(names.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Video Caller (self-signed)");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let signing_key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&signing_key, &authority)?;
        let fingerprint = fingerprint(cert.der());
        let key = CertifiedKey::from_der(
            vec![cert.der().clone(), authority.der().clone()],
            PrivateKeyDer::Pkcs8(signing_key.serialize_der().into()),
            provider,
        )?;
        Ok(Self {
            key,
            names,
            fingerprint,
            authority_pem: authority.pem(),
        })
    }

    /// The `https://` addresses to open: from other machines (IP addresses, then
    /// host names), and on this machine only. `host` is the listen address:
    /// `0.0.0.0` means every IPv4 address, `::` every one.
    pub fn urls(&self, host: &str, port: u16) -> Urls {
        let listen: Option<IpAddr> = host.parse().ok();
        let reachable = |ip: &IpAddr| match listen {
            Some(IpAddr::V4(any)) if any.is_unspecified() => ip.is_ipv4(),
            Some(any) if any.is_unspecified() => true,
            Some(listen) => listen == *ip,
            None => true,
        };
        let (mut addresses, mut names, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for name in &self.names {
            match name.parse::<IpAddr>() {
                Ok(ip) if !reachable(&ip) => {}
                Ok(ip) => {
                    let url = match ip {
                        IpAddr::V6(v6) => format!("https://[{v6}]:{port}/"),
                        IpAddr::V4(v4) => format!("https://{v4}:{port}/"),
                    };
                    if ip.is_loopback() {
                        local.push(url);
                    } else {
                        addresses.push(url);
                    }
                }
                Err(_) if name == "localhost" => {
                    local.insert(0, format!("https://localhost:{port}/"))
                }
                Err(_) => names.push(format!("https://{name}:{port}/")),
            }
        }
        addresses.extend(names);
        Urls {
            remote: addresses,
            local,
        }
    }
}

/// Where a node with a self-signed certificate can be reached.
#[derive(Debug, PartialEq, Eq)]
pub struct Urls {
    /// From other machines.
    pub remote: Vec<String>,
    /// From this machine only (loopback).
    pub local: Vec<String>,
}

/// SHA-256 of a certificate, in the colon-separated hex browsers display.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What a self-signed certificate of this machine covers: `localhost`, the host
/// name, every address of every interface (link-local IPv6 addresses left out:
/// they need a zone to be reached), then `extra`. Duplicates are dropped.
pub fn machine_names(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = host_name() {
        names.push(host);
    }
    let mut addresses: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => addresses.extend(
            interfaces
                .iter()
                .map(if_addrs::Interface::ip)
                .filter(|ip| !is_link_local_v6(ip)),
        ),
        Err(e) => {
            error!(error = %e, "cannot list this machine's addresses; the self-signed certificate covers loopback only")
        }
    }
    names.extend(addresses.iter().map(IpAddr::to_string));
    names.extend(extra.iter().cloned());
    let mut unique = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    unique
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// The host name, if it is a DNS name a certificate can carry.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name == "localhost" || name.parse::<IpAddr>().is_ok() {
        return None;
    }
    DnsName::try_from(name.as_str()).ok()?;
    Some(name)
}

/// A client configuration that accepts whatever certificate the server shows,
/// for `vc-signaling health-check`: it asks the node on this very host whether
/// it is alive, and a certificate for the public name would not match
/// `127.0.0.1` anyway. The handshake signatures are still checked.
pub fn probe_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> SelfSigned {
        SelfSigned::generate(names.iter().map(|n| n.to_string()).collect(), &provider())
            .expect("generates")
    }

    #[test]
    fn urls_put_other_machines_first_and_follow_the_listen_address() {
        let cert = self_signed(&[
            "localhost",
            "desk",
            "127.0.0.1",
            "::1",
            "192.0.2.7",
            "2001:db8::7",
        ]);
        let urls = cert.urls("0.0.0.0", 8443);
        assert_eq!(
            urls.remote,
            vec!["https://192.0.2.7:8443/", "https://desk:8443/"]
        );
        assert_eq!(
            urls.local,
            vec!["https://localhost:8443/", "https://127.0.0.1:8443/"]
        );
        let urls = cert.urls("::", 1);
        assert_eq!(
            urls.remote,
            vec![
                "https://192.0.2.7:1/",
                "https://[2001:db8::7]:1/",
                "https://desk:1/"
            ]
        );
        assert_eq!(
            urls.local,
            vec![
                "https://localhost:1/",
                "https://127.0.0.1:1/",
                "https://[::1]:1/"
            ]
        );
        let urls = cert.urls("192.0.2.7", 2);
        assert_eq!(urls.remote, vec!["https://192.0.2.7:2/", "https://desk:2/"]);
        assert_eq!(urls.local, vec!["https://localhost:2/"]);
    }

    #[test]
    fn machine_names_cover_loopback_and_extras_once() {
        let names = machine_names(&["call.lan".into(), "localhost".into()]);
        assert_eq!(names[0], "localhost");
        assert!(names.contains(&"127.0.0.1".to_owned()), "{names:?}");
        assert!(names.contains(&"::1".to_owned()), "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("call.lan"));
        assert_eq!(names.iter().filter(|n| *n == "localhost").count(), 1);
        assert!(
            !names.iter().any(|n| n.starts_with("fe80")),
            "link-local: {names:?}"
        );
    }

    #[test]
    fn a_changed_pair_is_swapped_in_and_a_broken_one_counted_once() {
        let dir = std::env::temp_dir().join(format!("vc-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = KeyPairFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        let write = |names: &[&str]| {
            let key = rcgen::KeyPair::generate().expect("key");
            let params = rcgen::CertificateParams::new(
                names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
            .expect("params");
            let cert = params.self_signed(&key).expect("cert");
            std::fs::write(&files.cert, cert.pem()).expect("write cert");
            std::fs::write(&files.key, key.serialize_pem()).expect("write key");
            cert.der().clone()
        };
        let first = write(&["first.test"]);
        let metrics = Arc::new(Metrics::new("n"));
        let mut reloader =
            Reloader::start(files.clone(), provider(), Arc::clone(&metrics)).expect("starts");
        let served = |r: &Reloader| r.store().current().cert[0].clone();
        assert_eq!(served(&reloader), first);
        assert_eq!(reloader.check(), ReloadOutcome::Unchanged);

        std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
        assert_eq!(reloader.check(), ReloadOutcome::Failed);
        assert_eq!(reloader.check(), ReloadOutcome::Unchanged);
        std::fs::remove_file(&files.key).expect("remove");
        assert_eq!(reloader.check(), ReloadOutcome::Failed);
        assert_eq!(served(&reloader), first);
        assert_eq!(metrics.tls_reload_failing.get(), 1);

        let second = write(&["second.test"]);
        assert_eq!(reloader.check(), ReloadOutcome::Reloaded);
        assert_eq!(served(&reloader), second);
        let count = |result: &str| metrics.tls_reloads.with_label_values(&[result]).get();
        assert_eq!((count("ok"), count("error")), (1, 2));
        assert_eq!(metrics.tls_reload_failing.get(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_fingerprint_is_sha256_in_browser_notation() {
        let cert = self_signed(&["localhost"]);
        assert_eq!(cert.fingerprint.len(), 32 * 3 - 1);
        assert!(cert
            .fingerprint
            .split(':')
            .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())));
        assert!(cert
            .authority_pem
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            cert.key.cert.len(),
            2,
            "this machine's certificate, then the authority's"
        );
    }
}
