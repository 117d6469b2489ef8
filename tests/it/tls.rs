//! TLS: termination (`listen ... ssl`, SNI), and `https://` backends.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A TLS client that trusts only the certificate `ca` (DER).
pub fn connector(ca: Vec<u8>) -> tokio_rustls::TlsConnector {
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
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects with TLS to `addr`, sending SNI `name` and trusting only `ca`.
pub async fn connect(addr: SocketAddr, name: &str, ca: Vec<u8>) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(ca)
        .connect(
            rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Opens a WebSocket over TLS to `addr` (SNI `localhost`, trusting `ca`).
async fn wss_connect(
    addr: SocketAddr,
    ca: Vec<u8>,
) -> tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>> {
    let tls = connect(addr, "localhost", ca).await;
    let url = format!("wss://localhost:{}/", addr.port());
    tokio_tungstenite::client_async(url, tls).await.unwrap().0
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
    let port = "{port0}";
    let proxy = Proxy::start_on_ports(1, &http_conf(&format!(
        r#"server {{ listen 127.0.0.1:{port} ssl; server_name a.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 "a $scheme $https"; }} }}
           server {{ listen 127.0.0.1:{port} ssl; server_name b.test; ssl_certificate {}; ssl_certificate_key {}; location / {{ return 200 "b $scheme"; }} }}"#,
        a.cert.display(),
        a.key.display(),
        b.cert.display(),
        b.key.display()
    )))
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
        bounded("the response", s.read_to_string(&mut out))
            .await
            .unwrap_or_default();
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
    let mut ws = wss_connect(proxy.addr(), c.der.clone()).await;
    let big = "z".repeat(300_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(
        bounded("a WebSocket message", ws.next())
            .await
            .unwrap()
            .unwrap(),
        Message::text(big)
    );
}

#[tokio::test]
async fn tls_https_backend_with_and_without_verification() {
    let dir = TempDir::new();
    let c = cert(&dir, "backend.test");
    let other = cert(&dir, "other.test");
    // A TLS backend served by a second Switchyard server block.
    let backend_port = "{port0}";
    let proxy = Proxy::start_on_ports(1, &http_conf(&format!(
        r#"server {{ listen 127.0.0.1:{backend_port} ssl; ssl_certificate {crt}; ssl_certificate_key {key}; location / {{ return 200 "tls backend"; }} }}
           server {{ listen 127.0.0.1:0;
               location /noverify {{ proxy_pass https://127.0.0.1:{backend_port}/; }}
               location /verify {{ proxy_pass https://127.0.0.1:{backend_port}/; proxy_ssl_verify on; proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {crt}; }}
               location /wrongca {{ proxy_pass https://127.0.0.1:{backend_port}/; proxy_ssl_verify on; proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {other}; }}
           }}"#,
        crt = c.cert.display(),
        key = c.key.display(),
        other = other.cert.display()
    )))
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
    let refused = read_to_close(&mut s).await;
    assert!(
        !refused.contains(" 200 "),
        "plaintext on a TLS port must not be served: {refused}"
    );
    let mut t = connect(proxy.addr(), "localhost", c.der.clone()).await;
    t.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    bounded("the TLS answer", t.read_to_string(&mut out))
        .await
        .unwrap_or_default();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A self-signed certificate with the given subjectAltNames (none: only a
/// common name), optionally marked as a CA the way `openssl req -x509`
/// marks them.
fn custom_cert(dir: &TempDir, file: &str, cn: &str, sans: &[&str], ca: bool) -> Cert {
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert {
        der: cert.der().to_vec(),
        cert: dir.write(&format!("{file}.crt"), cert.pem()),
        key: dir.write(&format!("{file}.key"), key.serialize_pem()),
    }
}

#[tokio::test]
async fn tls_backend_verification_follows_openssl() {
    let dir = TempDir::new();
    // subjectAltName wins over the common name when present.
    let san = custom_cert(
        &dir,
        "san",
        "no.match.example.com",
        &["example.com", "*.example.com"],
        false,
    );
    // Only a common name, and marked as a CA.
    let ca = custom_cert(&dir, "ca", "ca.example.com", &[], true);
    // An X.509 v1 certificate (no extensions), as `openssl req -x509` makes
    // without an extensions section.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let (p_san, p_ca, p_v1) = ("{port0}", "{port1}", "{port2}");
    let backend = |port: &str, crt: &str, key: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {crt}; ssl_certificate_key {key}; location / {{ return 200 \"ok $ssl_server_name\"; }} }}\n"
        )
    };
    let front = |path: &str, port: &str, name: &str, trusted: &str| {
        format!(
            "location {path} {{ proxy_pass https://127.0.0.1:{port}/; proxy_ssl_verify on; proxy_ssl_server_name on; proxy_ssl_name {name}; proxy_ssl_trusted_certificate {trusted}; }}\n"
        )
    };
    let (san_crt, ca_crt) = (
        san.cert.display().to_string(),
        ca.cert.display().to_string(),
    );
    let v1_crt = format!("{fixtures}/v1-cn-only.crt");
    let mut conf = String::new();
    conf += &backend(p_san, &san_crt, &san.key.display().to_string());
    conf += &backend(p_ca, &ca_crt, &ca.key.display().to_string());
    conf += &backend(p_v1, &v1_crt, &format!("{fixtures}/v1-cn-only.key"));
    conf += "server { listen 127.0.0.1:0;\n";
    conf += &front("/san", p_san, "example.com", &san_crt);
    conf += &front("/wildcard", p_san, "foo.example.com", &san_crt);
    conf += &front("/cn-ignored", p_san, "no.match.example.com", &san_crt);
    conf += &front("/ca", p_ca, "ca.example.com", &ca_crt);
    conf += &front("/ca-wrong-name", p_ca, "bad.example.com", &ca_crt);
    conf += &front("/v1", p_v1, "v1.example.com", &v1_crt);
    conf += &front("/v1-wrong-name", p_v1, "other.example.com", &v1_crt);
    conf += &front("/untrusted", p_ca, "ca.example.com", &san_crt);
    conf += &format!("location /v1-unverified {{ proxy_pass https://127.0.0.1:{p_v1}/; }}\n");
    conf += "}\n";
    let proxy = Proxy::start_on_ports(3, &http_conf(&conf)).await;
    let addr = proxy.addrs[3];
    for (path, want) in [
        ("/san", "ok example.com"),
        ("/wildcard", "ok foo.example.com"),
        ("/ca", "ok ca.example.com"),
        ("/v1", "ok v1.example.com"),
        ("/v1-unverified", "ok "),
    ] {
        let r = get_response(addr, path).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, want),
            "{path}: {}",
            proxy.error_log()
        );
    }
    for path in [
        "/cn-ignored",
        "/ca-wrong-name",
        "/v1-wrong-name",
        "/untrusted",
    ] {
        assert_eq!(get_response(addr, path).await.status, 502, "{path}");
    }
}

#[tokio::test]
async fn tls_verification_needs_trusted_certificates_at_load() {
    let e = Proxy::try_start(&http_conf(
        "server { listen 127.0.0.1:0; location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; } }",
    ))
    .await
    .err()
    .expect("refused");
    assert!(
        e.contains("no proxy_ssl_trusted_certificate for proxy_ssl_verify"),
        "{e}"
    );
    let e = Proxy::try_start(&http_conf(
        "server { listen 127.0.0.1:0; location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; proxy_ssl_trusted_certificate /nonexistent/ca.pem; } }",
    ))
    .await
    .err()
    .expect("refused");
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
}

#[tokio::test]
async fn tls_session_variables() {
    let dir = TempDir::new();
    let c = cert(&dir, "vars.test");
    let plain = "{port0}";
    let proxy = Proxy::start_on_ports(1, &http_conf(&format!(
        r#"server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {};
              location / {{ return 200 "$ssl_server_name|$ssl_protocol|$ssl_cipher|$ssl_session_reused"; }} }}
           server {{ listen 127.0.0.1:{plain}; location / {{ return 200 "[$ssl_protocol]"; }} }}"#,
        c.cert.display(),
        c.key.display()
    )))
    .await;
    let mut s = connect(proxy.addrs[0], "vars.test", c.der.clone()).await;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    bounded("the response", s.read_to_string(&mut out))
        .await
        .unwrap();
    let body = Response::parse(&out).body;
    let parts: Vec<&str> = body.split('|').collect();
    assert_eq!(parts[0], "vars.test");
    assert_eq!(parts[1], "TLSv1.3");
    assert!(
        parts[2].starts_with("TLS_") && parts[2].contains("_SHA"),
        "{body}"
    );
    assert_eq!(parts[3], ".");
    assert_eq!(get_response(proxy.addrs[1], "/").await.body, "[]");
}

/// A WebSocket crossing two TLS hops (client → TLS listener → `https://`
/// backend that is itself a TLS listener → plain echo): bursts of small
/// messages and a large one all arrive, in order, with no message left
/// sitting in a TLS layer waiting for the next one.
#[tokio::test]
async fn tls_relay_flushes_bursts_across_two_tls_hops() {
    let (backend, _) = ws_echo().await;
    let dir = TempDir::new();
    let c = cert(&dir, "localhost");
    let inner = "{port0}";
    let proxy = Proxy::start_on_ports(
        1,
        &http_conf(&format!(
            "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {crt}; ssl_certificate_key {key};
               location / {{ proxy_pass https://127.0.0.1:{inner}; }} }}
         server {{ listen 127.0.0.1:{inner} ssl; ssl_certificate {crt}; ssl_certificate_key {key};
               location / {{ proxy_pass http://{backend}; }} }}",
            crt = c.cert.display(),
            key = c.key.display(),
        )),
    )
    .await;
    let ws = wss_connect(proxy.addr(), c.der.clone()).await;
    let (mut tx, mut rx) = ws.split();
    let sizes: Vec<usize> = (0..400).map(|i| [1, 90, 3000, 17_000][i % 4]).collect();
    let expect = sizes.clone();
    let sender = tokio::spawn(async move {
        for (i, n) in sizes.iter().enumerate() {
            let body = format!("{i:05}{}", "x".repeat(*n));
            tx.feed(Message::text(body)).await.unwrap();
        }
        tx.flush().await.unwrap();
        tx.send(Message::text("y".repeat(1 << 20))).await.unwrap();
        tx
    });
    for (i, n) in expect.iter().enumerate() {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), rx.next())
            .await
            .expect("message stuck in the relay")
            .unwrap()
            .unwrap();
        let text = m.into_text().unwrap();
        assert_eq!(&text[..5], format!("{i:05}"));
        assert_eq!(text.len(), 5 + n);
    }
    let last = tokio::time::timeout(std::time::Duration::from_secs(10), rx.next())
        .await
        .expect("large message stuck in the relay")
        .unwrap()
        .unwrap();
    assert_eq!(last.len(), 1 << 20);
    // The last message alone, after a pause: it must not wait for traffic.
    let mut tx = sender.await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tx.send(Message::text("alone")).await.unwrap();
    let m = tokio::time::timeout(std::time::Duration::from_secs(5), rx.next())
        .await
        .expect("lone message stuck in the relay")
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("alone"));
}

/// A TLS client driven by hand, so that the test decides how the bytes
/// after the server's flight reach the socket: the request is queued before
/// the handshake ends, so rustls sends it in the same write as its
/// Finished; `split` then cuts that write in two at a byte offset, with a
/// pause between the parts. Returns what was decrypted from the answer,
/// read until `want` appears, the server closes, or 5 s pass.
fn tls_exchange(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    request: &[u8],
    split: Option<usize>,
    want: &[u8],
) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    conn.writer().write_all(request).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut flights = 0;
    let mut got = Vec::new();
    loop {
        if conn.wants_write() {
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            flights += 1;
            match split {
                // The second flight holds Finished and the request.
                Some(at) if flights == 2 && at < out.len() => {
                    sock.write_all(&out[..at]).map_err(|e| e.to_string())?;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    sock.write_all(&out[at..]).map_err(|e| e.to_string())?;
                }
                _ => sock.write_all(&out).map_err(|e| e.to_string())?,
            }
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => return Ok(got),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "{e} after {} decrypted bytes: {:?}",
                    got.len(),
                    String::from_utf8_lossy(&got)
                ));
            }
        }
        conn.process_new_packets().map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        if find(&got, want).is_some() {
            return Ok(got);
        }
    }
}

/// A request (or a WebSocket upgrade) written in the same TCP segment as
/// the client's Finished is answered, a thousand times in TLS 1.3 and in
/// TLS 1.2, and so is one cut
/// at every byte offset of that last flight: the proxy must read data
/// that arrives with the end of the handshake.
#[tokio::test]
async fn tls_request_with_the_finished_message_is_answered() {
    let (backend, _) = ws_echo().await;
    let dir = TempDir::new();
    let c = cert(&dir, "localhost");
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {};
            location / {{ return 200 'answered'; }}
            location /ws {{ proxy_pass http://{backend}; }} }}",
        c.cert.display(),
        c.key.display()
    ))
    .await;
    let addr = proxy.addr();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(c.der.clone()))
        .unwrap();
    // One configuration per version, each reused, so that after the first
    // exchange sessions are resumed: then the client's Finished is the
    // last handshake message, and the request travels with it in TLS 1.2
    // too.
    let builder = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        )
    };
    let config = builder(&[&rustls::version::TLS13]);
    let config12 = builder(&[&rustls::version::TLS12]);
    let plain: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let upgrade: &[u8] = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let failures = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        let mut check = |what: String, request: &[u8], split: Option<usize>, tls12: bool| {
            let want: &[u8] = if request == plain {
                b"answered"
            } else {
                b"\r\n\r\n"
            };
            let config = if tls12 { &config12 } else { &config };
            match tls_exchange(config.clone(), addr, request, split, want) {
                Ok(got) if request == plain && find(&got, b"answered").is_some() => {}
                Ok(got) if request != plain && got.starts_with(b"HTTP/1.1 101 ") => {}
                Ok(got) => failures.push(format!("{what}: {:?}", String::from_utf8_lossy(&got))),
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        };
        for i in 0..1000 {
            let request = if i % 2 == 0 { plain } else { upgrade };
            check(format!("same segment #{i}"), request, None, false);
            check(format!("TLS 1.2 #{i}"), request, None, true);
        }
        // The last flight is one Finished record and one data record: a
        // few hundred bytes, cut at each offset.
        for at in 1..400 {
            check(format!("cut at {at}"), plain, Some(at), false);
        }
        failures
    })
    .await
    .unwrap();
    assert!(
        failures.is_empty(),
        "{} exchanges failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// A TLS backend on a unix socket at `path` with certificate `c`: a
/// WebSocket echo when `websocket`, else an HTTP/1.1 keep-alive server
/// answering "tls over unix N" (N: its connection's request count). The
/// returned counter counts TLS connections accepted.
fn tls_unix_backend(
    path: &std::path::Path,
    c: &Cert,
    websocket: bool,
) -> Arc<std::sync::atomic::AtomicUsize> {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&c.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![c.der.clone().into()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if websocket {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tls).await {
                        echo_until_close(ws).await;
                    }
                    return;
                }
                let (mut buf, mut served) = (Vec::new(), 0);
                let mut tmp = [0u8; 4096];
                loop {
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        served += 1;
                        let body = format!("tls over unix {served}");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match tls.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    accepted
}

/// `proxy_pass https://unix:PATH:` and `server unix:PATH` with `https://`:
/// TLS over a unix socket, verified by `proxy_ssl_name` when asked,
/// cached by `keepalive`, and carrying WebSockets.
#[tokio::test]
async fn tls_backend_on_a_unix_socket() {
    let dir = TempDir::new();
    let c = cert(&dir, "backend.test");
    let other = cert(&dir, "other.test");
    let http_sock = dir.path().join("https.sock");
    let ws_sock = dir.path().join("wss.sock");
    let accepted = tls_unix_backend(&http_sock, &c, false);
    tls_unix_backend(&ws_sock, &c, true);
    let conf = http_conf(&format!(
        "upstream kept {{ server unix:{h}; keepalive 4; }}
         server {{ listen 127.0.0.1:0;
             location /direct {{ proxy_pass https://unix:{h}:/; }}
             location /verify {{ proxy_pass https://unix:{h}:/; proxy_ssl_verify on;
                 proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {crt}; }}
             location /wrongca {{ proxy_pass https://unix:{h}:/; proxy_ssl_verify on;
                 proxy_ssl_name backend.test; proxy_ssl_trusted_certificate {other}; }}
             location /kept {{ proxy_pass https://kept; proxy_http_version 1.1;
                 proxy_set_header Connection ''; }}
             location /ws {{ proxy_pass https://unix:{w}:; proxy_http_version 1.1;
                 proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}
         }}",
        h = http_sock.display(),
        w = ws_sock.display(),
        crt = c.cert.display(),
        other = other.cert.display(),
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    let front = proxy.addr();
    assert_eq!(get_response(front, "/direct").await.body, "tls over unix 1");
    assert_eq!(get_response(front, "/verify").await.body, "tls over unix 1");
    assert_eq!(get_response(front, "/wrongca").await.status, 502);
    proxy
        .assert_error_logged("while SSL handshaking to upstream")
        .await;
    // Kept connections: the second request rides the first's connection.
    let before = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get_response(front, "/kept").await.body, "tls over unix 1");
    assert_eq!(get_response(front, "/kept").await.body, "tls over unix 2");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        before + 1
    );

    let mut ws = ws_connect(front, "/ws").await.unwrap();
    assert_echo(&mut ws, "wss over a unix socket").await;
    assert_echo(&mut ws, &"y".repeat(1 << 20)).await;
}
