//! The corpus of real-world-shaped configurations in `tests/configs/`:
//! each loads with `switchyard -t` and carries a WebSocket through the
//! location its `# ws:` line names (see tests/configs/README.md).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;
use crate::resolver::{Dns, Record};

/// What a corpus file's header lines ask for.
struct Spec {
    listen: usize,
    path: String,
    tls: Option<String>,
    headers: Vec<(String, String)>,
}

fn spec(text: &str, file: &Path) -> Spec {
    let mut spec = None;
    let mut tls = None;
    let mut headers = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(ws) = line.strip_prefix("# ws: ") {
            let (n, path) = ws.split_once(' ').expect("# ws: N PATH");
            spec = Some((n.parse().expect("listen index"), path.to_string()));
        } else if let Some(name) = line.strip_prefix("# tls: ") {
            tls = Some(name.to_string());
        } else if let Some(h) = line.strip_prefix("# header: ") {
            let (n, v) = h.split_once(": ").expect("# header: NAME: VALUE");
            headers.push((n.to_string(), v.to_string()));
        }
    }
    let (listen, path) = spec.unwrap_or_else(|| panic!("{}: no # ws: line", file.display()));
    Spec {
        listen,
        path,
        tls,
        headers,
    }
}

/// The files a corpus configuration expects beside it; returns the DER of
/// the certificate the TLS servers use.
fn support_files(dir: &TempDir) -> Vec<u8> {
    let names = ["localhost", "example.com", "*.example.com"].map(String::from);
    let k = rcgen::generate_simple_self_signed(names.to_vec()).unwrap();
    dir.write("certs/fullchain.pem", k.cert.pem());
    dir.write("certs/chain.pem", k.cert.pem());
    dir.write("certs/privkey.pem", k.signing_key.serialize_pem());
    // `alice:secret`, as `htpasswd -s` writes it.
    dir.write("htpasswd", "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
    dir.write("html/index.html", "<!doctype html><title>app</title>\n");
    dir.write("html/maintenance.html", "back soon\n");
    dir.write(
        "mime.types",
        "types {\n    text/html html;\n    text/css css;\n    application/javascript js;\n}\n",
    );
    // An OCSP response with status "successful" and no body: stapled as
    // given.
    dir.write("ocsp.der", b"\x30\x03\x0a\x01\x00");
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    k.cert.der().to_vec()
}

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

/// Opens a WebSocket as `spec` says, sends a message and expects its echo.
async fn carries_a_websocket(addr: SocketAddr, spec: &Spec, der: &[u8]) -> Result<(), String> {
    let scheme = if spec.tls.is_some() { "wss" } else { "ws" };
    let host = spec.tls.clone().unwrap_or_else(|| "localhost".into());
    let mut req = format!("{scheme}://{host}:{}{}", addr.port(), spec.path)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    for (n, v) in &spec.headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    match &spec.tls {
        Some(name) => {
            let tls = crate::tls::connector(der.to_vec())
                .connect(
                    rustls::pki_types::ServerName::try_from(name.clone()).unwrap(),
                    tcp,
                )
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            echo_over(tls, req).await
        }
        None => echo_over(tcp, req).await,
    }
}

/// The handshake `req` over `stream`, then one message and its echo.
async fn echo_over<S>(
    stream: S,
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    ws.send(Message::text("ping through the corpus"))
        .await
        .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(m)) if m == Message::text("ping through the corpus") => Ok(()),
        other => Err(format!("no echo: {other:?}")),
    }
}

#[tokio::test]
async fn corpus_configurations_load_with_dash_t_and_carry_a_websocket() {
    let files = corpus();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    let (ws, _handshakes) = ws_echo().await;
    let auth = Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nX-Auth-Request-User: alice\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    })
    .await;
    let dns = Dns::start(&[("chat.internal", Record::A(Ipv4Addr::LOCALHOST, 60))]).await;
    let sockets = TempDir::new();
    let unix_socket = sockets.path().join("app.sock");
    crate::unix_upstream::ws_echo_unix(&unix_socket);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let spec = spec(&text, file);
        let conf = text
            .replace("{listen}", "127.0.0.1:0")
            .replace("{listen2}", "127.0.0.2:0")
            .replace("{backend}", &ws.to_string())
            .replace("{backend_port}", &ws.port().to_string())
            .replace("{auth}", &auth.addr.to_string())
            .replace("{dns}", &dns.addr.to_string())
            .replace("{backend_unix}", &unix_socket.display().to_string());
        let dir = TempDir::new();
        let der = support_files(&dir);
        dir.write(
            "conf.d/upstreams.conf",
            format!("upstream rails_app {{ server {ws}; keepalive 8; }}\n"),
        );
        let path = dir.write("nginx.conf", &conf);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();

        // `switchyard -t`, as an operator would check it.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() || !said.contains("test is successful") {
            failures.push(format!("{name}: -t failed:\n{said}"));
            continue;
        }

        // Served, with a WebSocket through the named location.
        let proxy = match Proxy::start_in(dir, &conf).await {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: did not start: {e}"));
                continue;
            }
        };
        let Some(&addr) = proxy.addrs.get(spec.listen) else {
            failures.push(format!("{name}: no listen #{}", spec.listen));
            continue;
        };
        match tokio::time::timeout(
            Duration::from_secs(10),
            carries_a_websocket(addr, &spec, &der),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: no echo within 10 s")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn corpus_hsts_reaches_the_websocket_handshake() {
    // 12-hsts-and-streaming.conf sets Strict-Transport-Security "always":
    // nginx sends it on the 101 too.
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/12-hsts-and-streaming.conf");
    let (ws, _handshakes) = ws_echo().await;
    let conf = std::fs::read_to_string(&file)
        .unwrap()
        .replace("{listen}", "127.0.0.1:0")
        .replace("{backend}", &ws.to_string());
    let dir = TempDir::new();
    let der = support_files(&dir);
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    let addr = proxy.addr();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = crate::tls::connector(der.clone())
        .connect(
            rustls::pki_types::ServerName::try_from("app.example.com").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let req = format!("wss://app.example.com:{}/events", addr.port())
        .into_client_request()
        .unwrap();
    let (_ws, resp) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(req, tls),
    )
    .await
    .expect("handshake within 10 s")
    .unwrap();
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap()),
        Some("max-age=31536000; includeSubDomains")
    );
}
