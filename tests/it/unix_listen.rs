//! Clients on unix domain sockets: `listen unix:PATH`. The client is
//! `unix:` to variables, access rules, `set_real_ip_from` and logs, as in
//! nginx; requests and WebSockets are served as on TCP; the socket file is
//! made world-writable, refused when it already exists, and removed when
//! the server stops listening on it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::harness::*;

/// Sends `request` over the unix socket at `path` and reads until the
/// server closes, within [`wait_limit`].
async fn unix_raw(path: &Path, request: &str) -> String {
    let mut s = bounded("connect to the unix socket", UnixStream::connect(path))
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    bounded("the answer over the unix socket", s.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn unix_get(path: &Path, uri: &str) -> Response {
    Response::parse(
        &unix_raw(
            path,
            &format!("GET {uri} HTTP/1.0\r\nHost: localhost\r\nX-Real-IP: 192.0.2.1\r\n\r\n"),
        )
        .await,
    )
}

const SERVER: &str = "
    log_format peers '$remote_addr|$request';
    server {
        listen unix:{dir}/app.sock;
        listen 127.0.0.1:0;
        access_log {dir}/access.log peers;
        location = /vars {
            return 200 '$remote_addr|$remote_port|$server_addr|$server_port|$binary_remote_addr|$realip_remote_addr';
        }
        location = /deny-unix { deny unix:; }
        # `return` would answer before the access phase: these locations
        # have no content, so a client let in gets 404.
        location = /only-unix { allow unix:; deny all; }
        location = /deny-ipv4 { deny 0.0.0.0/0; }
        location = /deny-all { deny all; }
        # realip works in a location after the rewrite phase, so not
        # through `return` (as in nginx).
        location = /real {
            set_real_ip_from unix:;
            add_header X-IP '$remote_addr|$realip_remote_addr' always;
        }
    }";

#[tokio::test]
async fn unix_listen_client_is_unix_to_variables_and_access_rules() {
    let proxy = Proxy::http(SERVER).await;
    let sock = proxy.dir.path().join("app.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "socket file mode {mode:o}");

    let vars = unix_get(&sock, "/vars").await;
    assert_eq!(vars.status, 200);
    // No port for a unix client or for the socket; the socket's own name
    // as the server address; the text form as the binary address.
    let want = format!("unix:||unix:{}||unix:|unix:", sock.display());
    assert_eq!(vars.body, want);

    assert_eq!(unix_get(&sock, "/deny-unix").await.status, 403);
    assert_eq!(unix_get(&sock, "/only-unix").await.status, 404);
    assert_eq!(get_response(proxy.addr(), "/only-unix").await.status, 403);
    assert_eq!(get_response(proxy.addr(), "/deny-unix").await.status, 404);
    // No address block holds a unix client; `all` does.
    assert_eq!(unix_get(&sock, "/deny-ipv4").await.status, 404);
    assert_eq!(get_response(proxy.addr(), "/deny-ipv4").await.status, 403);
    assert_eq!(unix_get(&sock, "/deny-all").await.status, 403);

    // `set_real_ip_from unix:` believes what the unix client reports.
    let real = unix_get(&sock, "/real").await;
    assert_eq!(real.header("x-ip").as_deref(), Some("192.0.2.1|unix:"));
    let tcp = get_response(proxy.addr(), "/real").await;
    assert_eq!(tcp.header("x-ip").as_deref(), Some("127.0.0.1|127.0.0.1"));

    proxy.assert_access_logged("unix:|GET /vars HTTP/1.0").await;
}

/// A WebSocket from a unix-socket client to a TCP backend: handshake,
/// messages both ways, a large one, and the close.
#[tokio::test]
async fn unix_listen_carries_websockets() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{
            listen unix:{{dir}}/ws.sock;
            location /ws {{
                proxy_pass http://{backend};
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection upgrade;
            }}
        }}"
    ))
    .await;
    let sock = proxy.dir.path().join("ws.sock");
    let s = bounded("connect", UnixStream::connect(&sock))
        .await
        .unwrap();
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(8 << 20);
    let (mut ws, answer) = bounded(
        "the WebSocket handshake",
        tokio_tungstenite::client_async_with_config("ws://localhost/ws", s, Some(config)),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 101);
    assert_echo(&mut ws, "over a unix socket").await;
    let big = "x".repeat(3 << 20);
    assert_echo(&mut ws, &big).await;
    use futures_util::StreamExt;
    ws.close(None).await.unwrap();
    let end = bounded("the close", async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(end, "no close frame came back");
}

/// The socket file: removed when the server stops; a file already there
/// refuses the start (nginx: "Address already in use"); a reload that
/// adds an address binds it, one that drops it removes the file.
#[tokio::test]
async fn unix_listen_socket_file_lifecycle() {
    let dir = TempDir::new();
    let stale = dir.write("taken.sock", "");
    let conf = http_conf("server { listen unix:{dir}/taken.sock; return 200; }");
    let err = match Proxy::start_in(dir, &conf).await {
        Ok(_) => panic!("started over an existing file"),
        Err(e) => e,
    };
    assert!(
        err.contains(&format!(
            "bind() to unix:{} failed (98: Address already in use)",
            stale.display()
        )),
        "{err}"
    );

    let one = http_conf("server { listen 127.0.0.1:0; location / { return 200 'one'; } }");
    let two = http_conf(
        "server { listen 127.0.0.1:0; location / { return 200 'one'; } }
         server { listen unix:{dir}/two.sock; location / { return 200 'two'; } }",
    );
    let proxy = Proxy::start(&one).await;
    let sock = proxy.dir.path().join("two.sock");
    assert!(!sock.exists());
    proxy.reload(&two).unwrap();
    assert_eq!(unix_get(&sock, "/").await.body, "two");
    proxy.reload(&one).unwrap();
    assert!(
        !sock.exists(),
        "a reload without the address leaves its file"
    );
    proxy.reload(&two).unwrap();
    assert!(sock.exists());
    // A reload that fails on its second new address takes back the first
    // one's file, so the next try is not refused by it.
    let taken = proxy.dir.write("taken.sock", "");
    let three = http_conf(
        "server { listen 127.0.0.1:0; location / { return 200 'one'; } }
         server { listen unix:{dir}/three.sock; listen unix:{dir}/taken.sock; }",
    );
    let err = proxy.reload(&three).unwrap_err();
    assert!(err.contains("Address already in use"), "{err}");
    assert!(!proxy.dir.path().join("three.sock").exists());
    std::fs::remove_file(&taken).unwrap();
    proxy.reload(&three).unwrap();
    let third = proxy.dir.path().join("three.sock");
    assert!(third.exists());
    // Stopped while its directory is still there (dropping the proxy
    // removes the directory, which would hide a file left behind).
    proxy.handle.stop_now();
    assert!(!third.exists(), "the stopped server left its socket file");
}

#[test]
fn unix_listen_refusals_say_what_and_why() {
    assert!(
        http_config_error("server { listen unix:; }")
            .contains("no path in the unix domain socket in \"unix:\""),
        "{}",
        http_config_error("server { listen unix:; }")
    );
    let long = format!("server {{ listen unix:/{}; }}", "a".repeat(120));
    assert!(http_config_error(&long).contains("too long path in the unix domain socket"));
    for param in ["ssl", "reuseport", "so_keepalive=on"] {
        let err = http_config_error(&format!("server {{ listen unix:/tmp/x.sock {param}; }}"));
        let name = param.split('=').next().unwrap();
        assert!(
            err.contains(&format!(
                "the \"{name}\" parameter on a unix domain socket (\"unix:/tmp/x.sock\") is not supported by switchyard"
            )),
            "{param}: {err}"
        );
    }
    let err = http_config_error(
        "server { listen unix:/tmp/x.sock; ssl on; ssl_certificate a; ssl_certificate_key b; }",
    );
    assert!(err.contains("TLS on a unix domain socket"), "{err}");
}
