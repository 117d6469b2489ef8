//! Backends on unix domain sockets: `server unix:PATH` in `upstream`
//! blocks and `proxy_pass http://unix:PATH:/uri`, for requests, keepalive
//! and WebSockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// An HTTP/1.1 keep-alive backend on a unix socket: answers each request
/// with its head as the body; counts accepted connections.
struct UnixBackend {
    heads: mpsc::UnboundedReceiver<String>,
    accepted: Arc<AtomicUsize>,
}

fn unix_backend(path: &Path) -> UnixBackend {
    let listener = UnixListener::bind(path).unwrap();
    let (tx, heads) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                loop {
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let _ = tx.send(head.clone());
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                            head.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    UnixBackend { heads, accepted }
}

impl UnixBackend {
    async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.heads.recv())
            .await
            .expect("the backend saw no request")
            .expect("backend gone")
    }
}

/// A WebSocket echo server on a unix socket at `path`.
pub fn ws_echo_unix(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(s).await {
                    echo_until_close(ws).await;
                }
            });
        }
    });
}

fn socket(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[tokio::test]
async fn upstream_servers_on_unix_sockets_with_keepalive() {
    let dir = TempDir::new();
    let path = socket(&dir, "app.sock");
    let mut backend = unix_backend(&path);
    let conf = http_conf(&format!(
        "    log_format up \"$upstream_addr $status\";
    upstream app {{ server unix:{}; keepalive 4; }}
    server {{ listen 127.0.0.1:0;
        access_log {{dir}}/up.log up;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}
    }}",
        path.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    for _ in 0..3 {
        let r = get_response(proxy.addr(), "/status?x=1").await;
        assert_eq!(r.status, 200, "{}", r.head);
        let head = backend.next().await;
        assert!(head.starts_with("GET /status?x=1 HTTP/1.1"), "{head}");
        assert!(head.contains("Host: app"), "{head}");
    }
    assert_eq!(
        backend.accepted.load(Ordering::SeqCst),
        1,
        "one cached connection"
    );
    let log = || std::fs::read_to_string(proxy.dir.path().join("up.log")).unwrap_or_default();
    let want = format!("unix:{} 200", path.display());
    assert!(eventually(|| log().contains(&want)).await, "{}", log());
}

#[tokio::test]
async fn proxy_pass_to_a_unix_socket_url_replaces_the_prefix() {
    let dir = TempDir::new();
    let path = socket(&dir, "api.sock");
    let mut backend = unix_backend(&path);
    let conf = http_conf(&format!(
        "    server {{ listen 127.0.0.1:0;
        location /api/ {{ proxy_pass http://unix:{}:/v2/; }}
        location /raw/ {{ proxy_pass http://unix:{}; }}
        location /var/ {{ proxy_pass http://$arg_to; }}
    }}",
        path.display(),
        path.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    assert_eq!(get_response(proxy.addr(), "/api/users").await.status, 200);
    let head = backend.next().await;
    assert!(head.starts_with("GET /v2/users HTTP/1.0"), "{head}");
    assert!(head.contains("Host: localhost"), "{head}");
    assert_eq!(get_response(proxy.addr(), "/raw/x").await.status, 200);
    assert!(backend.next().await.starts_with("GET /raw/x HTTP/1.0"));
    // A host whose fifth byte falls inside a character is no unix: target:
    // the request gets the usual 502 (no resolver), not a failed task.
    let r = raw(
        proxy.addr(),
        "GET /var/?to=abcd\u{e9}x HTTP/1.0\r\nHost: localhost\r\n\r\n".as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    // With variables: the same forms, made at run time.
    let to = format!("unix:{}:/from-var", path.display());
    assert_eq!(
        get_response(proxy.addr(), &format!("/var/?to={to}"))
            .await
            .status,
        200
    );
    let head = backend.next().await;
    assert!(head.starts_with("GET /from-var HTTP/1.0"), "{head}");
    assert!(head.contains("Host: localhost"), "{head}");
}

#[tokio::test]
async fn a_websocket_through_a_unix_socket_backend() {
    let dir = TempDir::new();
    let path = socket(&dir, "ws.sock");
    ws_echo_unix(&path);
    let conf = http_conf(&format!(
        "    server {{ listen 127.0.0.1:0;
        location /ws {{
            proxy_pass http://unix:{};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }}
    }}",
        path.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    let mut ws = tokio::time::timeout(Duration::from_secs(10), ws_connect(proxy.addr(), "/ws"))
        .await
        .expect("handshake within 10 s")
        .expect("handshake through the proxy");
    let big = "x".repeat(300_000);
    for msg in [
        Message::text("hello over a unix socket"),
        Message::text(big),
    ] {
        ws.send(msg.clone()).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("echo within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_missing_socket_is_502_with_the_path_in_the_log() {
    let dir = TempDir::new();
    let path = socket(&dir, "nobody-listens.sock");
    let conf = http_conf(&format!(
        "    server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://unix:{}:/; }} }}",
        path.display()
    ));
    let proxy = Proxy::start_in(dir, &conf).await.unwrap();
    assert_eq!(get_response(proxy.addr(), "/").await.status, 502);
    let want = format!("upstream: \"http://unix:{}:/\"", path.display());
    assert!(
        eventually(|| proxy.error_log().contains(&want)).await,
        "{}",
        proxy.error_log()
    );
}

#[test]
fn unix_socket_addresses_are_checked_at_load() {
    let e = http_config_error(
        "upstream u { server unix:; } server { location / { proxy_pass http://u; } }",
    );
    assert!(e.contains("no path in the unix domain socket"), "{e}");
    let long = format!("/{}", "d".repeat(120));
    let e = http_config_error(&format!(
        "server {{ location / {{ proxy_pass http://unix:{long}; }} }}"
    ));
    assert!(e.contains("too long path in the unix domain socket"), "{e}");
    // TLS over a unix socket loads (tests/it/tls.rs runs it).
    assert_eq!(
        http_config_error("server { location / { proxy_pass https://unix:/run/app.sock; } }"),
        ""
    );
    assert_eq!(
        http_config_error(
            "upstream u { server unix:/run/a.sock weight=2 max_fails=3; server 127.0.0.1:1 backup; } server { location / { proxy_pass http://u; } }"
        ),
        ""
    );
}
