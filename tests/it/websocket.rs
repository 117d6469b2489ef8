//! WebSockets through the proxy: handshakes, messages, closes, timeouts,
//! and the WebSocket-first defaults.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;

/// The seed's recommended location, pointing at `backend`.
pub(crate) fn classic(backend: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:0;
        location /ws {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            {extra}
        }}
    }}"#
    )
}

async fn recv(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
        .expect("websocket error")
}

#[tokio::test]
async fn websocket_echoes_text_and_binary() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
}

#[tokio::test]
async fn websocket_carries_one_mebibyte_messages() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(big));
    let text = "x".repeat(1 << 20);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text(text));
}

#[tokio::test]
async fn websocket_keeps_a_thousand_messages_in_order() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let (mut sink, mut source) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..1000 {
            sink.send(Message::text(format!("message {i}")))
                .await
                .unwrap();
        }
        sink
    });
    for i in 0..1000 {
        let msg = tokio::time::timeout(Duration::from_secs(10), source.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text(format!("message {i}")));
    }
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn websocket_passes_close_codes_both_ways() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye now".into(),
    })))
    .await
    .unwrap();
    match recv(&mut ws).await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode::Library(4001));
            assert_eq!(frame.reason.as_str(), "bye now");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn websocket_broadcasts_between_clients_through_the_demo_backend() {
    let backend = switchyard::demo::start_backend().await.unwrap();
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location /ws/ {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut a = ws_connect(proxy.addr(), "/ws/chat").await.unwrap();
    let mut b = ws_connect(proxy.addr(), "/ws/chat").await.unwrap();
    // Both subscriptions are live once each sees its own message.
    a.send(Message::text("ping a")).await.unwrap();
    assert_eq!(recv(&mut a).await, Message::text("ping a"));
    b.send(Message::text("ping b")).await.unwrap();
    loop {
        if recv(&mut b).await == Message::text("ping b") {
            break;
        }
    }
    a.send(Message::text("from a")).await.unwrap();
    loop {
        if recv(&mut b).await == Message::text("from a") {
            break;
        }
    }
}

#[tokio::test]
async fn websocket_first_upgrades_without_header_lines() {
    // A bare proxy_pass: nginx would send HTTP/1.0 without Upgrade and the
    // backend would answer 400. Switchyard upgrades WebSocket handshakes.
    let (backend, mut heads) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/chat").await.unwrap();
    ws.send(Message::text("works")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("works"));
    let head = bounded("a report from the backend", heads.recv())
        .await
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
}

#[tokio::test]
async fn websocket_first_fixes_http10_and_missing_connection_header() {
    // Cause 1 and 2 of the seed: Upgrade passed but HTTP/1.0 and no
    // Connection line. Still upgraded.
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{backend}; proxy_set_header Upgrade $http_upgrade; }} }}"
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/").await.unwrap();
    ws.send(Message::text("ok")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("ok"));
}

#[tokio::test]
async fn websocket_first_can_be_turned_off_per_location() {
    let mut backend = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; proxy_set_header Upgrade \"\"; }} }}",
        backend.addr
    ))
    .await;
    // The backend gets a plain request (no Upgrade) and answers 200: the
    // client's handshake fails on that 200.
    handshake_refused_with(proxy.addr(), "/", 200).await;
    let seen = bounded("a WebSocket message", backend.next()).await;
    assert_eq!(seen.header("Upgrade"), None, "{}", seen.head);
}

/// A WebSocket handshake through `addr` to `path` that must fail with an
/// HTTP answer of `status`.
async fn handshake_refused_with(addr: std::net::SocketAddr, path: &str, status: u16) {
    match bounded("handshake", ws_connect(addr, path)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), status)
        }
        Err(other) => panic!("expected an HTTP {status}, got {other}"),
        Ok(_) => panic!("expected an HTTP {status}, the handshake succeeded"),
    }
}

/// A backend for raw tunnels: accepts one connection, reads the request
/// head, and hands the socket and the bytes it read to the test.
pub(crate) async fn raw_upgrade_backend() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<(TcpStream, Vec<u8>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while find(&got, b"\r\n\r\n").is_none() {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send((s, got));
    });
    (addr, rx)
}

/// Sends `request` and reads up to the end of the response head; returns
/// the head and whatever followed it.
pub(crate) async fn send_and_read_head(c: &mut TcpStream, request: &[u8]) -> (String, Vec<u8>) {
    bounded("request", c.write_all(request)).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(i) = find(&got, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i + 4]).into_owned();
            return (head, got[i + 4..].to_vec());
        }
        let n = bounded("response head", c.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn websocket_pipelined_frames_reach_the_backend_after_the_101() {
    // The client sends tunnel bytes right behind its handshake; the proxy
    // must hold them until the backend has switched protocols.
    let (backend, accepted) = raw_upgrade_backend().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    bounded(
        "request",
        c.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: chat-v2\r\nConnection: Upgrade\r\n\r\nEARLY-BYTES"),
    )
    .await
    .unwrap();
    let (mut s, before_101) = bounded("the backend's accept", accepted).await.unwrap();
    // Give a proxy that forwards too early the chance to do it.
    let mut extra = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(200), s.read(&mut extra)).await;
    assert!(
        before_101.ends_with(b"\r\n\r\n") && early.is_err(),
        "tunnel bytes reached the backend before its 101: {:?} then {early:?}",
        String::from_utf8_lossy(&before_101)
    );
    bounded(
        "101",
        s.write_all(
            b"HTTP/1.1 101 Go Ahead\r\nUpgrade: chat-v2\r\nConnection: Upgrade\r\n\r\nready\r\n",
        ),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while got.len() < b"EARLY-BYTES".len() {
        let n = bounded("tunnel bytes at the backend", s.read(&mut extra))
            .await
            .unwrap();
        assert!(n > 0, "proxy closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&extra[..n]);
    }
    assert_eq!(got, b"EARLY-BYTES");
    let (head, mut after) = send_and_read_head(&mut c, b"").await;
    assert!(head.starts_with("HTTP/1.1 101 Go Ahead\r\n"), "{head}");
    assert!(head.contains("Connection: upgrade\r\n"), "{head}");
    let mut buf = [0u8; 64];
    while after.len() < b"ready\r\n".len() {
        let n = bounded("tunnel bytes at the client", c.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0);
        after.extend_from_slice(&buf[..n]);
    }
    assert_eq!(after, b"ready\r\n");
}

#[tokio::test]
async fn websocket_unrequested_101_is_a_502() {
    let backend = Backend::with(|_| {
        b"HTTP/1.1 101 Switching\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n".to_vec()
    })
    .await;
    let proxy = Proxy::http(&classic(backend.addr, "")).await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 502);
    assert_eq!(r.body, "");
    assert!(
        proxy
            .error_log()
            .contains("switched protocols although the client did not ask"),
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn websocket_idle_tunnel_is_cut_after_proxy_read_timeout() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "proxy_read_timeout 1s;")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let start = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("tunnel not cut");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
    // Only the lower bound: a loaded machine can make the cut late (the
    // 5 s bound above catches a tunnel that is never cut), never early.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(
        eventually(|| proxy.error_log().contains(
            "upstream timed out (110: Connection timed out) while proxying upgraded connection"
        ))
        .await
    );
}

/// Opens a raw tunnel through `proxy_read_timeout 2s` to a backend that
/// answers 101; returns the client and backend sockets.
pub(crate) async fn raw_tunnel(extra: &str) -> (Proxy, TcpStream, TcpStream) {
    raw_tunnel_with(|backend| classic(backend, extra)).await
}

/// [`raw_tunnel`] with the `http` block `conf` makes for the backend.
pub(crate) async fn raw_tunnel_with(
    conf: impl FnOnce(std::net::SocketAddr) -> String,
) -> (Proxy, TcpStream, TcpStream) {
    let (backend, accepted) = raw_upgrade_backend().await;
    let proxy = Proxy::http(&conf(backend)).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    bounded(
        "request",
        c.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    let (mut s, _) = bounded("the backend's accept", accepted).await.unwrap();
    bounded(
        "101",
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    )
    .await
    .unwrap();
    let (head, after) = send_and_read_head(&mut c, b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(after.is_empty());
    (proxy, c, s)
}

/// Reads exactly `n` bytes, failing the test on EOF or after the wait limit.
pub(crate) async fn read_n(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut v = vec![0u8; n];
    bounded(what, s.read_exact(&mut v))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    v
}

/// Traffic in one direction only, every 300 ms for longer than
/// `proxy_read_timeout 2s`: nginx restarts the timer on activity either
/// way, so the tunnel stays open (checked by a byte the other way at the
/// end).
async fn one_way_traffic_keeps_the_tunnel(client_talks: bool) {
    let (_proxy, mut c, mut s) = raw_tunnel("proxy_read_timeout 2s;").await;
    let (talker, listener) = if client_talks {
        (&mut c, &mut s)
    } else {
        (&mut s, &mut c)
    };
    for i in 0..10u8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        bounded("write", talker.write_all(&[b'a' + i]))
            .await
            .unwrap();
        assert_eq!(read_n(listener, 1, "byte across").await, [b'a' + i]);
    }
    bounded("write back", listener.write_all(b"!"))
        .await
        .unwrap();
    assert_eq!(read_n(talker, 1, "byte back").await, b"!");
}

#[tokio::test]
async fn websocket_client_to_backend_traffic_alone_keeps_the_tunnel() {
    one_way_traffic_keeps_the_tunnel(true).await;
}

#[tokio::test]
async fn websocket_backend_to_client_traffic_alone_keeps_the_tunnel() {
    one_way_traffic_keeps_the_tunnel(false).await;
}

/// Writes `bytes` and shuts the writing side (a half-close).
async fn say_and_shut(s: &mut TcpStream, bytes: &[u8]) {
    bounded("write", s.write_all(bytes)).await.unwrap();
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn websocket_half_close_from_the_backend_reaches_the_client() {
    // The backend says goodbye and shuts its side first: the client gets
    // the bytes then EOF, and can still send until it closes too.
    let (_proxy, mut c, mut s) = raw_tunnel("").await;
    say_and_shut(&mut s, b"bye from backend").await;
    assert_eq!(read_to_close(&mut c).await, "bye from backend");
    say_and_shut(&mut c, b"last words").await;
    assert_eq!(read_to_close(&mut s).await, "last words");
}

#[tokio::test]
async fn websocket_long_read_timeout_keeps_idle_tunnels() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(
        backend,
        "proxy_read_timeout 3600s; proxy_send_timeout 3600s;",
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    // Idle longer than a short timeout would allow; still open.
    assert!(
        tokio::time::timeout(Duration::from_millis(2500), ws.next())
            .await
            .is_err()
    );
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("still here"));
}

#[tokio::test]
async fn websocket_half_close_reaches_the_backend() {
    // The client shuts its side first; the backend answers after that EOF
    // and the answer still reaches the client.
    let (_proxy, mut c, mut s) = raw_tunnel("").await;
    say_and_shut(&mut c, b"12345").await;
    let rest = read_to_close(&mut s).await;
    say_and_shut(
        &mut s,
        format!("got {} bytes then EOF", rest.len()).as_bytes(),
    )
    .await;
    assert_eq!(read_to_close(&mut c).await, "got 5 bytes then EOF");
}

#[tokio::test]
async fn websocket_subprotocol_and_extensions_pass_through() {
    let (backend, accepted) = raw_upgrade_backend().await;
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    bounded(
        "request",
        c.write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n\
              Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    let (mut s, head) = bounded("the backend's accept", accepted).await.unwrap();
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(
        head.contains("\r\nsec-websocket-protocol: chat.v2, chat.v1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(
            "\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n"
        ),
        "{head}"
    );
    assert!(
        head.contains("\r\nsec-websocket-key: aaaaaaaaaaaaaaaaaaaaaa==\r\n"),
        "{head}"
    );
    bounded(
        "101",
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n\
              Sec-WebSocket-Protocol: chat.v1\r\n\
              Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        ),
    )
    .await
    .unwrap();
    let (head, _) = send_and_read_head(&mut c, b"").await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for line in [
        "Sec-WebSocket-Accept: ICX+Yqv66kxgM0FcWaLWlFLwTAI=\r\n",
        "Sec-WebSocket-Protocol: chat.v1\r\n",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    ] {
        assert!(head.contains(line), "{line:?} missing: {head}");
    }
}

#[tokio::test]
async fn websocket_handshake_to_a_dead_backend_is_a_502() {
    // A port bound and never listened on: the connect is refused.
    let dead = DeadPort::new();
    let proxy = Proxy::http(&classic(dead.addr(), "")).await;
    handshake_refused_with(proxy.addr(), "/ws", 502).await;
}

#[tokio::test]
async fn websocket_handshake_to_a_silent_backend_is_a_504() {
    // The backend accepts and reads the handshake but never answers.
    let (backend, accepted) = raw_upgrade_backend().await;
    let proxy = Proxy::http(&classic(backend, "proxy_read_timeout 1s;")).await;
    handshake_refused_with(proxy.addr(), "/ws", 504).await;
    drop(accepted);
    assert!(
        eventually(|| proxy.error_log().contains("upstream timed out")).await,
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn websocket_access_log_counts_tunnel_bytes() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "log_format bytes \"$status $bytes_sent $body_bytes_sent $sent_http_connection\";
         access_log {{dir}}/bytes.log bytes;
         {}",
        classic(backend, "")
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    ws.send(Message::text("0123456789")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("0123456789"));
    ws.close(None).await.unwrap();
    bounded("the end of the WebSocket", async {
        while let Some(Ok(_)) = bounded("a WebSocket message", ws.next()).await {}
    })
    .await;
    // The backend closed; the client closes too and the tunnel ends.
    drop(ws);
    let path = proxy.dir.path().join("bytes.log");
    assert!(
        eventually(|| std::fs::read_to_string(&path)
            .map(|s| !s.is_empty())
            .unwrap_or(false))
        .await
    );
    let line = std::fs::read_to_string(&path).unwrap();
    let fields: Vec<&str> = line.trim().split(' ').collect();
    assert_eq!(fields[0], "101");
    let total: u64 = fields[1].parse().unwrap();
    let body: u64 = fields[2].parse().unwrap();
    // A 12-byte text frame and a 2-byte close frame (no code) came back.
    assert_eq!(body, 12 + 2);
    assert!(total > body + 100, "{line}");
    assert_eq!(fields[3], "upgrade");
}

#[tokio::test]
async fn websocket_client_that_stops_reading_is_cut_at_send_timeout() {
    // A backend that accepts the upgrade, then writes until the proxy
    // stops taking bytes and closes; it reports how long it could write.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        if read_request(&mut s).await.is_none() {
            let _ = tx.send(Err("no handshake".to_string()));
            return;
        }
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await;
        // Unmasked binary frames of 64 KiB, at most 1 GiB in all.
        let mut frame = vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        frame.resize(10 + 65536, b'x');
        let started = std::time::Instant::now();
        for _ in 0..16384 {
            if s.write_all(&frame).await.is_err() {
                let _ = tx.send(Ok(started.elapsed()));
                return;
            }
        }
        let _ = tx.send(Err("1 GiB written: the proxy never gave up".to_string()));
    });
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; send_timeout 1s; proxy_read_timeout 60s;
           location / {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    // The client upgrades, then never reads again.
    let mut client = bounded("connect", TcpStream::connect(proxy.addr()))
        .await
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    bounded("the 101", client.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 101");
    let wrote_for = tokio::time::timeout(Duration::from_secs(30), done.recv())
        .await
        .expect("the proxy cut the tunnel within 30 s")
        .expect("backend report")
        .unwrap_or_else(|e| panic!("{e}"));
    // Buffers fill within moments; the cut comes after send_timeout.
    assert!(wrote_for >= Duration::from_millis(900), "{wrote_for:?}");
    drop(client);
}
