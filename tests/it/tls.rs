//! TLS: termination (`listen ... ssl`, SNI), and `https://` backends.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// Connects with TLS to `addr`, sending SNI `name` and trusting only `ca`.
pub async fn connect(addr: SocketAddr, name: &str, ca: Vec<u8>) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(
            rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

struct Cert {
    der: Vec<u8>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn cert(dir: &TempDir, name: &str) -> Cert {
    let k = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    Cert {
        der: k.cert.der().to_vec(),
        cert: dir.write(&format!("{name}.crt"), k.cert.pem()),
        key: dir.write(&format!("{name}.key"), k.signing_key.serialize_pem()),
    }
}

#[tokio::test]
async fn tls_terminates_and_picks_certificates_by_sni() {
    let dir = TempDir::new();
    let a = cert(&dir, "a.test");
    let b = cert(&dir, "b.test");
    let port = free_port();
    let proxy = Proxy::http(&format!(
        r#"server {{ listen 127.0.0.1:{port} ssl; server_name a.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 "a $scheme $https"; }} }}
           server {{ listen 127.0.0.1:{port} ssl; server_name b.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 "b $scheme"; }} }}"#,
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display()
    ))
    .await;
    for (name, der, want) in [
        ("a.test", a.der.clone(), "a https on"),
        ("b.test", b.der.clone(), "b https"),
    ] {
        let mut s = connect(proxy.addr(), name, der).await;
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {name}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap_or_default();
        assert!(out.ends_with(want), "{name}: {out}");
    }
}

#[tokio::test]
async fn tls_wss_to_plain_backend() {
    let (backend, _) = ws_echo().await;
    let dir = TempDir::new();
    let c = cert(&dir, "localhost");
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {}; location / {{ proxy_pass http://{backend}; }} }}",
        c.cert.display(),
        c.key.display()
    ))
    .await;
    let tls = connect(proxy.addr(), "localhost", c.der.clone()).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/", proxy.addr().port()), tls)
            .await
            .unwrap();
    let big = "z".repeat(300_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(big));
}

#[tokio::test]
async fn tls_https_backend_with_and_without_verification() {
    let dir = TempDir::new();
    let c = cert(&dir, "backend.test");
    let other = cert(&dir, "other.test");
    // A TLS backend served by a second Switchyard server block.
    let backend_port = free_port();
    let proxy = Proxy::http(&format!(
        r#"server {{ listen 127.0.0.1:{backend_port} ssl; ssl_certificate {crt}; ssl_certificate_key {key}; location / {{ return 200 "tls backend"; }} }}
           server {{ listen 127.0.0.1:0;
               location /noverify {{ proxy_pass https://127.0.0.1:{backend_port}/; }}
               location /verify {{ proxy_pass https://127.0.0.1:{backend_port}/; proxy_ssl_verify on; proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {crt}; }}
               location /wrongca {{ proxy_pass https://127.0.0.1:{backend_port}/; proxy_ssl_verify on; proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {other}; }}
           }}"#,
        crt = c.cert.display(),
        key = c.key.display(),
        other = other.cert.display()
    ))
    .await;
    let front = proxy.addrs[1];
    assert_eq!(get_response(front, "/noverify").await.body, "tls backend");
    assert_eq!(get_response(front, "/verify").await.body, "tls backend");
    let r = get_response(front, "/wrongca").await;
    assert_eq!(r.status, 502);
    assert!(
        proxy
            .error_log()
            .contains("while SSL handshaking to upstream"),
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn tls_bad_certificate_paths_are_refused_at_load() {
    let dir = TempDir::new();
    let e = Proxy::try_start(&http_conf(&format!(
        "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}/nope.crt; ssl_certificate_key {}/nope.key; }}",
        dir.path().display(),
        dir.path().display()
    )))
    .await
    .err()
    .unwrap();
    assert!(
        e.contains("cannot load certificate") && e.contains("(2: No such file or directory)"),
        "{e}"
    );
}

#[tokio::test]
async fn tls_plain_http_to_a_tls_port_is_refused_cleanly() {
    let dir = TempDir::new();
    let c = cert(&dir, "localhost");
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200; }} }}",
        c.cert.display(),
        c.key.display()
    ))
    .await;
    // Not TLS: the handshake fails and the connection closes; the server
    // keeps serving.
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let _ = read_to_close(&mut s).await;
    let mut t = connect(proxy.addr(), "localhost", c.der.clone()).await;
    t.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).await.unwrap_or_default();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
