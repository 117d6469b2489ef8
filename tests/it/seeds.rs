//! The seed documents' configurations, run unchanged apart from their
//! addresses (pointed at loopback): they load (`-t`), and WebSockets flow
//! through them end to end.
//!
//! The fixtures in `tests/fixtures/seeds/` are the seeds' text; each is
//! included from an `http` block, as a `conf.d/*.conf` file would be.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/seeds/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Points a seed's addresses at loopback: listeners on port 0, every
/// backend name at `backend`.
fn localize(text: &str, backend: SocketAddr) -> String {
    let b = backend.to_string();
    text.replace("listen 80;", "listen 127.0.0.1:0;")
        .replace("listen 443 ssl;", "listen 127.0.0.1:0 ssl;")
        .replace("127.0.0.1:8080", &b)
        .replace("localhost:8080", &b)
        .replace("backend1.example.com:8080", &b)
        .replace("backend2.example.com:8080", &b)
        .replace("backend3.example.com:8080", &b)
        .replace("backend1:8080", &b)
        .replace("backend2:8080", &b)
        .replace("http://backend_server", &format!("http://{b}"))
}

async fn start(seed: &str, backend: SocketAddr, extra: &[(&str, String)]) -> Proxy {
    let dir = TempDir::new();
    let mut text = localize(&fixture(seed), backend);
    for (from, to) in extra {
        text = text.replace(from, to);
    }
    dir.write("conf.d/seed.conf", &text);
    let main = "error_log {dir}/error.log info;\nevents {}\nhttp {\n    access_log {dir}/access.log;\n    include conf.d/*.conf;\n}\n";
    Proxy::start_in(dir, main)
        .await
        .unwrap_or_else(|e| panic!("{seed}: {e}\n{text}"))
}

async fn echo_once(addr: SocketAddr, path: &str) {
    let mut ws = ws_connect(addr, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    ws.send(Message::text("through the seed")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("through the seed"));
}

#[tokio::test]
async fn seeds_all_configurations_load() {
    let (backend, _) = ws_echo().await;
    for seed in [
        "000-complete.conf",
        "000-fixes.conf",
        "001-complete.conf",
        "001-chat.conf",
        "001-balancing.conf",
        "001-limits.conf",
    ] {
        let proxy = start(seed, backend, &[("/var/www/html", "/tmp".into())]).await;
        // Every listen of the seed accepts connections and answers HTTP.
        for addr in &proxy.addrs {
            let text = raw(
                *addr,
                b"GET /nonexistent-probe HTTP/1.0\r\nHost: localhost\r\n\r\n",
            )
            .await;
            assert!(text.starts_with("HTTP/1.1 "), "{seed}: {addr}: {text}");
        }
    }
}

#[tokio::test]
async fn seeds_000_complete_carries_websockets() {
    let (backend, mut heads) = ws_echo().await;
    let proxy = start("000-complete.conf", backend, &[]).await;
    echo_once(proxy.addr(), "/ws").await;
    let head = bounded("a report from the backend", heads.recv())
        .await
        .unwrap()
        .to_ascii_lowercase();
    // The seed's headers reach the backend.
    for line in [
        "x-real-ip: 127.0.0.1",
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-proto: http",
        "connection: upgrade",
    ] {
        assert!(head.contains(line), "{line} missing in {head}");
    }
}

#[tokio::test]
async fn seeds_000_fixes_carry_websockets_and_socketio() {
    let (backend, _) = ws_echo().await;
    let proxy = start("000-fixes.conf", backend, &[]).await;
    echo_once(proxy.addr(), "/ws").await;
    echo_once(proxy.addr(), "/socket.io/?EIO=4&transport=websocket").await;
}

#[tokio::test]
async fn seeds_001_complete_carries_websockets() {
    let (backend, _) = ws_echo().await;
    let proxy = start("001-complete.conf", backend, &[]).await;
    echo_once(proxy.addr(), "/socket/").await;
}

#[tokio::test]
async fn seeds_001_chat_serves_the_page_and_the_socket() {
    let backend = switchyard::demo::start_backend().await.unwrap();
    let site = TempDir::new();
    site.write("index.html", "<h1>chat</h1>");
    let proxy = start(
        "001-chat.conf",
        backend,
        &[("/var/www/html", site.path().display().to_string())],
    )
    .await;
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "<h1>chat</h1>"));
    assert_eq!(r.header("Content-Type").as_deref(), Some("text/html"));
    // try_files falls back to the page for client-side routes.
    assert_eq!(
        get_response(proxy.addr(), "/rooms/42").await.body,
        "<h1>chat</h1>"
    );
    let mut a = ws_connect(proxy.addr(), "/ws/chat").await.unwrap();
    a.send(Message::text("hi")).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), a.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("hi"));
}

#[tokio::test]
async fn seeds_001_balancing_keeps_a_client_on_one_backend() {
    // Three echo backends, each tagging its handshakes.
    let mut backends = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..3 {
        let (a, h) = ws_echo().await;
        backends.push(a);
        heads.push(h);
    }
    let text = fixture("001-balancing.conf")
        .replace("listen 80;", "listen 127.0.0.1:0;")
        .replace("backend1.example.com:8080", &backends[0].to_string())
        .replace("backend2.example.com:8080", &backends[1].to_string())
        .replace("backend3.example.com:8080", &backends[2].to_string());
    let dir = TempDir::new();
    dir.write("conf.d/seed.conf", &text);
    let proxy = Proxy::start_in(
        dir,
        "error_log {dir}/error.log;\nevents {}\nhttp { access_log off; include conf.d/*.conf; }\n",
    )
    .await
    .unwrap();
    // Clients from twelve /24s of 127.0.0.0/8 (ip_hash reads the first
    // three bytes), three WebSockets each: every client stays on one
    // backend, and the clients together reach all three (nginx's hash of
    // 127.0.N puts N = 1, 2, 3 on three different peers).
    let mut used = std::collections::BTreeSet::new();
    for n in 1..=12u8 {
        let client = std::net::Ipv4Addr::new(127, 0, n, 1);
        let mut chosen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let mut ws = ws_connect_from(client, proxy.addr(), "/ws/")
                .await
                .unwrap_or_else(|e| panic!("{client}: {e}"));
            assert_echo(&mut ws, "through the seed").await;
            for (i, h) in heads.iter_mut().enumerate() {
                while h.try_recv().is_ok() {
                    chosen.insert(i);
                }
            }
        }
        assert_eq!(chosen.len(), 1, "{client} went to backends {chosen:?}");
        used.extend(chosen);
    }
    assert_eq!(used.len(), 3, "the clients used backends {used:?}");
}

#[tokio::test]
async fn seeds_001_limits_refuse_the_eleventh_websocket() {
    let (backend, _) = ws_echo().await;
    let proxy = start(
        "001-limits.conf",
        backend,
        &[("conn_limit_per_ip", "seed_limits_zone".into())],
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(
            ws_connect(proxy.addr(), "/ws/")
                .await
                .expect("within the limit"),
        );
    }
    let err = ws_connect(proxy.addr(), "/ws/").await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert!(
        proxy
            .error_log()
            .contains("limiting connections by zone \"seed_limits_zone\"")
    );
    // Closing one frees a slot.
    drop(open.pop());
    let mut ok = false;
    for _ in 0..50 {
        if ws_connect(proxy.addr(), "/ws/").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot frees when a WebSocket closes");
}

#[tokio::test]
async fn seeds_000_wss_terminates_tls() {
    let (backend, mut heads) = ws_echo().await;
    let dir = TempDir::new();
    let key = rcgen::generate_simple_self_signed(vec!["example.com".to_string()]).unwrap();
    let cert_path = dir.write("fullchain.pem", key.cert.pem());
    let key_path = dir.write("privkey.pem", key.signing_key.serialize_pem());
    let proxy = start(
        "000-wss.conf",
        backend,
        &[
            ("http://backend:8080", format!("http://{backend}")),
            (
                "/etc/ssl/certs/fullchain.pem",
                cert_path.display().to_string(),
            ),
            ("/etc/ssl/certs/privkey.pem", key_path.display().to_string()),
        ],
    )
    .await;
    let tls = crate::tls::connect(proxy.addr(), "example.com", key.cert.der().to_vec()).await;
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("wss://example.com:{}/ws", proxy.addr().port()),
        tls,
    )
    .await
    .unwrap();
    assert_echo(&mut ws, "secure").await;
    let head = bounded("a report from the backend", heads.recv())
        .await
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("x-forwarded-proto: https"), "{head}");
}
