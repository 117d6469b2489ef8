//! TLS the way real deployments configure it: client certificates
//! (`ssl_verify_client` with its 495/496 pages and `$ssl_client_*`),
//! `ssl on;`, certificates at http level and relative to the
//! configuration file, per-server protocols chosen by SNI, OCSP stapling
//! from a file, and plain HTTP sent to a TLS port (497).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A certificate authority that signs server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf for `names` (subject CN = the first), signed by this CA.
    fn leaf(&self, names: &[&str]) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, names[0]);
        p.distinguished_name
            .push(DnType::OrganizationName, "Switchyard tests");
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x12, 0x34]));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
    key_der: Vec<u8>,
}

/// Records the OCSP response the server staples, trusts `ca`.
#[derive(Debug)]
struct Stapled {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    ocsp: Arc<Mutex<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for Stapled {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        im: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.ocsp.lock().unwrap() = ocsp.to_vec();
        self.inner.verify_server_cert(ee, im, name, &[], now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Default)]
struct Client<'a> {
    cert: Option<&'a Leaf>,
    versions: Option<&'static [&'static rustls::SupportedProtocolVersion]>,
    ocsp: Option<Arc<Mutex<Vec<u8>>>>,
}

/// Connects with TLS (SNI `name`, trusting `server_ca`), sends `GET path`
/// with `Host: name`, returns the response text, or the handshake error.
async fn get(
    addr: SocketAddr,
    name: &str,
    path: &str,
    server_ca: &Ca,
    client: Client<'_>,
) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(server_ca.der.clone()))
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(client.versions.unwrap_or(rustls::DEFAULT_VERSIONS))
        .unwrap();
    let builder = match client.ocsp {
        Some(ocsp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Stapled {
                inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
                ocsp,
            })),
        None => builder.with_root_certificates(roots),
    };
    let config = match client.cert {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(leaf.der.clone())],
                PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = within(
        std::time::Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(name.to_string()).unwrap(), tcp),
    )
    .await
    .map_err(|e| e.to_string())?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut out),
    )
    .await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Bounds a wait; a timeout fails the test.
async fn within<T>(limit: std::time::Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("no answer in time")
}

struct Setup {
    proxy: Proxy,
    server_ca: Ca,
    client_ca: Ca,
}

/// A proxy whose servers `a.test` (verify `mode`) echo the client
/// certificate variables; `extra` goes into that server.
async fn setup(mode: &str, extra: &str) -> Setup {
    let dir = TempDir::new();
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let leaf = server_ca.leaf(&["a.test", "b.test"]);
    let crt = dir.write("a.crt", &leaf.pem);
    let key = dir.write("a.key", &leaf.key_pem);
    let cas = dir.write("clients.pem", &client_ca.pem);
    let conf = http_conf(&format!(
        "server {{ listen 127.0.0.1:0 ssl; server_name a.test;
            ssl_certificate {crt}; ssl_certificate_key {key};
            ssl_verify_client {mode}; ssl_client_certificate {cas}; {extra}
            location / {{ return 200 \"verify=$ssl_client_verify s_dn=$ssl_client_s_dn i_dn=$ssl_client_i_dn serial=$ssl_client_serial fp=$ssl_client_fingerprint remain=$ssl_client_v_remain\"; }}
        }}
        server {{ listen 127.0.0.1:0 ssl; server_name b.test;
            ssl_certificate {crt}; ssl_certificate_key {key};
            location / {{ return 200 \"b verify=$ssl_client_verify\"; }}
        }}",
        crt = crt.display(),
        key = key.display(),
        cas = cas.display(),
    ));
    Setup {
        proxy: Proxy::start_in(dir, &conf).await.unwrap(),
        server_ca,
        client_ca,
    }
}

#[tokio::test]
async fn tls_client_certificate_required_and_verified() {
    let s = setup("on", "").await;
    let addr = s.proxy.addr();
    // No certificate: 400 with nginx's 496 page, and its log line.
    let none = get(addr, "a.test", "/", &s.server_ca, Client::default())
        .await
        .unwrap();
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(
        none.contains("No required SSL certificate was sent"),
        "{none}"
    );
    assert!(
        eventually(|| s
            .proxy
            .error_log()
            .contains("client sent no required SSL certificate"))
        .await,
        "{}",
        s.proxy.error_log()
    );
    // A certificate of the configured CA: the variables describe it.
    let good = s.client_ca.leaf(&["alice"]);
    let ok = get(
        addr,
        "a.test",
        "/",
        &s.server_ca,
        Client {
            cert: Some(&good),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("verify=SUCCESS "), "{ok}");
    assert!(
        ok.contains("s_dn=CN=alice,O=Switchyard tests ")
            || ok.contains("s_dn=O=Switchyard tests,CN=alice "),
        "{ok}"
    );
    assert!(ok.contains("i_dn=CN=client ca "), "{ok}");
    assert!(ok.contains("serial=1234 "), "{ok}");
    let fp: String = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &good.der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(ok.contains(&format!("fp={fp} ")), "{ok}");
    // A certificate of another CA: 400 with the 495 page.
    let stranger = Ca::new("other ca").leaf(&["mallory"]);
    let bad = get(
        addr,
        "a.test",
        "/",
        &s.server_ca,
        Client {
            cert: Some(&stranger),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("The SSL certificate error"), "{bad}");
    assert!(
        eventually(|| s.proxy.error_log().contains(
            "client SSL certificate verify error: (20:unable to get local issuer certificate)"
        ))
        .await,
        "{}",
        s.proxy.error_log()
    );
}

#[tokio::test]
async fn tls_client_certificate_optional_modes() {
    let s = setup("optional", "").await;
    let addr = s.proxy.addr();
    let none = get(addr, "a.test", "/", &s.server_ca, Client::default())
        .await
        .unwrap();
    assert!(none.contains("verify=NONE "), "{none}");
    let stranger = Ca::new("other ca").leaf(&["mallory"]);
    let bad = get(
        addr,
        "a.test",
        "/",
        &s.server_ca,
        Client {
            cert: Some(&stranger),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(
        bad.starts_with("HTTP/1.1 400"),
        "optional still refuses a bad one: {bad}"
    );

    let s = setup("optional_no_ca", "").await;
    let unknown = get(
        s.proxy.addr(),
        "a.test",
        "/",
        &s.server_ca,
        Client {
            cert: Some(&stranger),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(unknown.starts_with("HTTP/1.1 200"), "{unknown}");
    assert!(
        unknown.contains("verify=FAILED:unable to get local issuer certificate "),
        "{unknown}"
    );
}

#[tokio::test]
async fn tls_trusted_certificate_verifies_without_being_named() {
    let trusted = Ca::new("trusted ca");
    let dir_pem = TempDir::new();
    let path = dir_pem.write("trusted.pem", &trusted.pem);
    let s = setup(
        "on",
        &format!("ssl_trusted_certificate {};", path.display()),
    )
    .await;
    let bob = trusted.leaf(&["bob"]);
    let ok = get(
        s.proxy.addr(),
        "a.test",
        "/",
        &s.server_ca,
        Client {
            cert: Some(&bob),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(ok.contains("verify=SUCCESS "), "{ok}");
}

#[tokio::test]
async fn tls_host_other_than_the_sni_server_is_misdirected() {
    let s = setup("on", "").await;
    let good = s.client_ca.leaf(&["alice"]);
    // SNI b.test (no client certificates), Host a.test (requires them).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(s.server_ca.der.clone()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(good.der.clone())],
            PrivateKeyDer::try_from(good.key_der.clone()).unwrap(),
        )
        .unwrap();
    let tcp = TcpStream::connect(s.proxy.addr()).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("b.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut out),
    )
    .await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 421"), "{text}");
}

#[tokio::test]
async fn tls_plain_http_to_a_tls_port_is_497() {
    let s = setup("off", "error_page 497 =302 https://$host$request_uri;").await;
    let plain = raw(
        s.proxy.addr(),
        b"GET /x?y=1 HTTP/1.0\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert!(plain.starts_with("HTTP/1.1 302"), "{plain}");
    assert!(
        plain.contains("\r\nLocation: https://a.test/x?y=1\r\n"),
        "{plain}"
    );
    assert!(
        eventually(|| s
            .proxy
            .error_log()
            .contains("client sent plain HTTP request to HTTPS port"))
        .await
    );
    // Without an error_page: nginx's page.
    let s = setup("off", "").await;
    let page = raw(s.proxy.addr(), b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 400"), "{page}");
    assert!(
        page.contains("The plain HTTP request was sent to HTTPS port"),
        "{page}"
    );
}

/// Writes the server certificate files of `ca` for `a.test` into `dir`.
fn server_files(dir: &TempDir, ca: &Ca, sub: &str) -> (PathBuf, PathBuf) {
    let leaf = ca.leaf(&["a.test"]);
    (
        dir.write(&format!("{sub}a.crt"), &leaf.pem),
        dir.write(&format!("{sub}a.key"), &leaf.key_pem),
    )
}

#[tokio::test]
async fn tls_ssl_on_http_level_certificates_and_relative_paths() {
    let dir = TempDir::new();
    let ca = Ca::new("server ca");
    server_files(&dir, &ca, "conf/certs/");
    // The configuration lives in conf/, the prefix is the test directory:
    // certificate paths are relative to the configuration's directory.
    let conf = format!(
        "error_log {d}/error.log info;\nevents {{}}\nhttp {{\n    access_log off;\n    ssl_certificate certs/a.crt;\n    ssl_certificate_key certs/a.key;\n    server {{ listen 127.0.0.1:0; ssl on; server_name a.test; location / {{ return 200 \"tls=$https\"; }} }}\n}}\n",
        d = dir.path().display()
    );
    let file = dir.write("conf/switchyard.conf", &conf);
    let config =
        switchyard::config::load(&switchyard::config::LoadOptions::new(dir.path(), &file)).unwrap();
    assert!(
        config.warnings.iter().any(|w| w.message
            == "the \"ssl\" directive is deprecated, use the \"listen ... ssl\" directive instead"),
        "{:?}",
        config.warnings
    );
    let bound = switchyard::server::bind_all(&config).unwrap();
    let handle = switchyard::server::Handle::start(config, bound, None).unwrap();
    let addr = handle.local_addrs()[0].1;
    let text = get(addr, "a.test", "/", &ca, Client::default())
        .await
        .unwrap();
    handle.stop_now();
    assert!(text.ends_with("tls=on"), "{text}");
}

#[tokio::test]
async fn tls_protocols_are_per_server_by_sni() {
    let dir = TempDir::new();
    let ca = Ca::new("server ca");
    let leaf = ca.leaf(&["old.test", "new.test"]);
    let crt = dir.write("s.crt", &leaf.pem);
    let key = dir.write("s.key", &leaf.key_pem);
    let proxy = Proxy::start_in(
        dir,
        &http_conf(&format!(
            "ssl_certificate {c}; ssl_certificate_key {k};
             server {{ listen 127.0.0.1:0 ssl; server_name old.test; ssl_protocols TLSv1.2; location / {{ return 200 old; }} }}
             server {{ listen 127.0.0.1:0 ssl; server_name new.test; ssl_protocols TLSv1.3; location / {{ return 200 new; }} }}",
            c = crt.display(),
            k = key.display()
        )),
    )
    .await
    .unwrap();
    let addr = proxy.addr();
    static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let tls13 = TLS13;
    let refused = get(
        addr,
        "old.test",
        "/",
        &ca,
        Client {
            versions: Some(tls13),
            ..Client::default()
        },
    )
    .await;
    assert!(
        refused.is_err(),
        "TLSv1.2-only server accepted TLSv1.3: {refused:?}"
    );
    let ok = get(
        addr,
        "new.test",
        "/",
        &ca,
        Client {
            versions: Some(tls13),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert!(ok.ends_with("new"), "{ok}");
}

#[tokio::test]
async fn tls_stapling_file_is_stapled_and_without_one_stapling_is_off() {
    let dir = TempDir::new();
    let ca = Ca::new("server ca");
    let (crt, key) = server_files(&dir, &ca, "");
    // The bytes are stapled as given (`ssl_stapling_verify off`).
    let ocsp = b"\x30\x03\x0a\x01\x00".to_vec();
    let file = dir.write("ocsp.der", &ocsp);
    let conf = http_conf(&format!(
        "server {{ listen 127.0.0.1:0 ssl; server_name a.test; ssl_certificate {}; ssl_certificate_key {}; ssl_stapling on; ssl_stapling_file {}; location / {{ return 200; }} }}",
        crt.display(),
        key.display(),
        file.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    get(
        proxy.addr(),
        "a.test",
        "/",
        &ca,
        Client {
            ocsp: Some(seen.clone()),
            ..Client::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), ocsp);

    let dir = TempDir::new();
    let (crt, key) = server_files(&dir, &ca, "");
    let conf = format!(
        "events {{}}\nhttp {{ server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {}; ssl_stapling on; }} }}\n",
        crt.display(),
        key.display()
    );
    let config = switchyard::config::load_str(&conf, dir.path()).unwrap();
    assert!(
        config.warnings.iter().any(|w| w
            .message
            .starts_with("\"ssl_stapling\" ignored, no \"ssl_stapling_file\"")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn tls_verify_client_without_a_ca_is_refused_like_nginx() {
    let e = http_config_error(
        "server { listen 127.0.0.1:0 ssl; ssl_certificate a.crt; ssl_certificate_key a.key; ssl_verify_client on; }",
    );
    assert!(
        e.starts_with("no ssl_client_certificate for ssl_verify_client in "),
        "{e}"
    );
}

#[tokio::test]
async fn tls_without_sni_or_with_an_unknown_name_gets_the_default_server() {
    let dir = TempDir::new();
    let ca = Ca::new("server ca");
    // The default server's certificate also names the loopback address
    // (a client connecting by address sends no SNI) and the unknown name.
    let a = ca.leaf(&["a.test", "127.0.0.1", "unknown.test"]);
    let b = ca.leaf(&["b.test"]);
    let (a_crt, a_key) = (dir.write("a.crt", &a.pem), dir.write("a.key", &a.key_pem));
    let (b_crt, b_key) = (dir.write("b.crt", &b.pem), dir.write("b.key", &b.key_pem));
    let conf = http_conf(&format!(
        "server {{ listen 127.0.0.1:0 ssl; server_name a.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 \"server a\"; }} }}
         server {{ listen 127.0.0.1:0 ssl; server_name b.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 \"server b\"; }} }}",
        a_crt.display(),
        a_key.display(),
        b_crt.display(),
        b_key.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    for name in ["127.0.0.1", "unknown.test"] {
        let r = get(proxy.addr(), name, "/", &ca, Client::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: the default server's certificate: {e}"));
        assert!(r.ends_with("server a"), "{name}: {r}");
    }
    let r = get(proxy.addr(), "b.test", "/", &ca, Client::default())
        .await
        .unwrap();
    assert!(r.ends_with("server b"), "{r}");
}
