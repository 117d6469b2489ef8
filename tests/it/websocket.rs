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
fn classic(backend: std::net::SocketAddr, extra: &str) -> String {
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
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
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
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{backend}; proxy_set_header Upgrade \"\"; }} }}"
    ))
    .await;
    // The backend gets a plain request and refuses it: the handshake fails.
    let err = ws_connect(proxy.addr(), "/").await.unwrap_err();
    assert!(
        err.to_string().contains("400") || err.to_string().contains("HTTP error"),
        "{err}"
    );
}

#[tokio::test]
async fn websocket_pipelined_frames_reach_the_backend_after_the_101() {
    // A backend that insists on seeing nothing after the request head
    // before it answers 101 (like nginx's test daemons).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(b"\r\n\r\n") {
                break;
            }
            assert!(
                find(&got, b"\r\n\r\n").is_none(),
                "pipelined bytes arrived before the 101"
            );
        }
        s.write_all(
            b"HTTP/1.1 101 Switching\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\nhandshaked\r\n",
        )
        .await
        .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    let proxy = Proxy::http(&classic(backend, "")).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\nPIPELINED",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while find(&got, b"PIPELINED").is_none() {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 Switching\r\n"), "{text}");
    assert!(text.contains("Connection: upgrade\r\n"), "{text}");
    assert!(text.contains("handshaked\r\nPIPELINED"), "{text}");
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
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(
        eventually(|| proxy.error_log().contains(
            "upstream timed out (110: Connection timed out) while proxying upgraded connection"
        ))
        .await
    );
}

#[tokio::test]
async fn websocket_traffic_in_either_direction_keeps_the_tunnel() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "proxy_read_timeout 1s;")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ws.send(Message::text(format!("keepalive {i}")))
            .await
            .unwrap();
        assert_eq!(recv(&mut ws).await, Message::text(format!("keepalive {i}")));
    }
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
    // The backend answers after the client's EOF: the reply must still
    // reach the client.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        s.write_all(format!("got {} bytes then EOF", rest.len()).as_bytes())
            .await
            .unwrap();
    });
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    c.write_all(b"12345").await.unwrap();
    c.shutdown().await.unwrap();
    let rest = read_to_close(&mut c).await;
    assert_eq!(rest, "got 5 bytes then EOF");
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
    while let Some(Ok(_)) = ws.next().await {}
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
