//! The WebSocket-aware relay: keepalive pings and dead peers, message
//! limits, the Origin policy, close frames on drain and the
//! `$websocket_*` log variables.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;
use crate::websocket::{classic, raw_tunnel, raw_tunnel_with, read_n};

/// Reads messages until a close frame and returns its code; pings from the
/// proxy are skipped (the client library answers them), anything else
/// fails the test.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match bounded("a close frame", ws.next()).await {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Reads one frame from a raw socket: opcode, unmasked payload, whether it
/// was masked.
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>, bool) {
    let head = read_n(s, 2, "a frame header").await;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u16::from_be_bytes(read_n(s, 2, "length").await.try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(read_n(s, 8, "length").await.try_into().unwrap()) as usize,
        n => n as usize,
    };
    let mask = if masked {
        read_n(s, 4, "mask").await
    } else {
        vec![0; 4]
    };
    let payload = read_n(s, len, "payload")
        .await
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    (head[0] & 0x0f, payload, masked)
}

/// An unmasked frame, as a server sends it.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut v = vec![0x80 | opcode, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

#[tokio::test]
async fn ws_pings_keep_an_idle_websocket_past_proxy_read_timeout() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(
        backend,
        "proxy_read_timeout 2s;
         location /ws/plain { proxy_pass http://BACKEND; websocket_ping_interval off; }
         websocket_ping_interval 500ms;"
            .replace("BACKEND", &backend.to_string())
            .as_str(),
    ))
    .await;
    let mut pinged = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let mut plain = ws_connect(proxy.addr(), "/ws/plain").await.unwrap();
    // Idle for three times proxy_read_timeout: only the proxy's pings and
    // their pongs move.
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut pings = 0;
    while let Ok(msg) = tokio::time::timeout_at(until, pinged.next()).await {
        match msg {
            Some(Ok(Message::Ping(p))) => {
                assert_eq!(p.len(), 8);
                pings += 1;
            }
            other => panic!("the pinged WebSocket ended: {other:?}"),
        }
    }
    assert!(pings >= 6, "{pings} pings in 6 s at 500 ms");
    assert_echo(&mut pinged, "still here").await;
    // The same tunnel without pings was cut at proxy_read_timeout.
    let end = bounded("the plain tunnel's end", plain.next()).await;
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

/// A backend that completes the handshake, then never reads again (a
/// frozen process: it answers no ping).
async fn frozen_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(s).await {
                held.push(ws);
            }
        }
    });
    addr
}

#[tokio::test]
async fn ws_frozen_backend_is_detected_and_the_client_gets_1011() {
    let backend = frozen_backend().await;
    let proxy = Proxy::http(&classic(
        backend,
        "websocket_ping_interval 500ms; websocket_pong_timeout 1s; proxy_read_timeout 60s;",
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let start = Instant::now();
    assert_eq!(close_code(&mut ws).await, 1011);
    // interval + timeout at the earliest; `bounded` caps the latest.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    proxy
        .assert_error_logged("upstream did not answer a WebSocket ping in time")
        .await;
}

#[tokio::test]
async fn ws_pings_are_masked_to_the_backend_and_their_pongs_taken_out() {
    let (proxy, mut c, mut s) =
        raw_tunnel("websocket_ping_interval 500ms; websocket_pong_timeout 1s;").await;
    // To the client: unmasked, 8 bytes.
    let (op, to_client, masked) = read_frame(&mut c).await;
    assert_eq!((op, to_client.len(), masked), (0x9, 8, false));
    // To the backend: masked, as a client's frames must be.
    let (op, to_backend, masked) = read_frame(&mut s).await;
    assert_eq!((op, to_backend.len(), masked), (0x9, 8, true));
    // The backend answers; its pong is the proxy's, so the client never
    // sees it: the next thing the client reads is the text frame after.
    let mut answer = server_frame(0xA, &to_backend);
    answer.extend(server_frame(0x1, b"hi"));
    bounded("pong", s.write_all(&answer)).await.unwrap();
    assert_eq!(
        read_n(&mut c, 4, "the text frame").await,
        server_frame(0x1, b"hi")
    );
    // The client never answers: after the timeout the backend gets a
    // close 1001 (masked), the client only the end of the stream.
    let code = loop {
        match read_frame(&mut s).await {
            (0x9, p, _) => bounded("pong", s.write_all(&server_frame(0xA, &p)))
                .await
                .unwrap(),
            (0x8, p, masked) => {
                assert!(masked);
                break u16::from_be_bytes([p[0], p[1]]);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    };
    assert_eq!(code, 1001);
    drop(s);
    let mut rest = Vec::new();
    bounded("the client's end", c.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    proxy
        .assert_error_logged("client did not answer a WebSocket ping in time")
        .await;
}

#[tokio::test]
async fn ws_message_over_the_size_limit_gets_1009() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "websocket_max_message_size 1m;")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let half = vec![7u8; 512 * 1024];
    ws.send(Message::binary(half.clone())).await.unwrap();
    match bounded("the echo", ws.next()).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), half.len()),
        other => panic!("{other:?}"),
    }
    ws.send(Message::binary(vec![7u8; 2 << 20])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
    proxy
        .assert_error_logged("exceeds websocket_max_message_size, closed with 1009 to the client")
        .await;
}

#[tokio::test]
async fn ws_frame_over_the_frame_limit_closes_before_forwarding_it() {
    let (proxy, mut c, mut s) = raw_tunnel("websocket_max_frame_size 100;").await;
    // A frame of 101 bytes (masked, as from a client) right after one of 5.
    let mut frames = vec![0x81, 0x85, 0, 0, 0, 0];
    frames.extend_from_slice(b"small");
    frames.extend([0x82, 0x80 | 101, 0, 0, 0, 0]);
    frames.extend([0u8; 101]);
    bounded("frames", c.write_all(&frames)).await.unwrap();
    // The backend gets the small frame, then a close 1001; nothing of the
    // big one.
    assert_eq!(read_frame(&mut s).await, (0x1, b"small".to_vec(), true));
    let (op, p, _) = read_frame(&mut s).await;
    assert_eq!((op, u16::from_be_bytes([p[0], p[1]])), (0x8, 1001));
    // The client gets 1009.
    let (op, p, masked) = read_frame(&mut c).await;
    assert_eq!(
        (op, u16::from_be_bytes([p[0], p[1]]), masked),
        (0x8, 1009, false)
    );
    drop(proxy);
}

#[tokio::test]
async fn ws_messages_faster_than_the_rate_get_1008() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "websocket_message_rate 2r/s burst=3;")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    for i in 0..10 {
        // The proxy may close while the client still writes.
        if ws.send(Message::text(format!("m{i}"))).await.is_err() {
            break;
        }
    }
    let mut echoed = 0;
    let code = loop {
        match bounded("a message", ws.next()).await {
            Some(Ok(Message::Text(_))) => echoed += 1,
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, 1008);
    // The rate's one and the burst's three passed, no more.
    assert!(echoed <= 4, "{echoed} echoes");
    assert!(echoed >= 1, "{echoed} echoes");
}

/// A WebSocket handshake with `origin`; the status line's code.
async fn handshake_status(addr: std::net::SocketAddr, origin: Option<&str>) -> u16 {
    let mut c = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: chat.example.net\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    );
    let (head, _) = crate::websocket::send_and_read_head(&mut c, req.as_bytes()).await;
    head[9..12].parse().unwrap()
}

#[tokio::test]
async fn ws_foreign_origin_gets_403_and_the_backend_sees_nothing() {
    let (backend, mut seen) = ws_echo().await;
    let proxy = Proxy::http(&classic(
        backend,
        "websocket_allowed_origins https://app.example.com *.example.org same;",
    ))
    .await;
    for foreign in [
        Some("https://evil.example"),
        Some("https://app.example.com.evil.example"),
        Some("https://example.org"),
        None,
    ] {
        assert_eq!(
            handshake_status(proxy.addr(), foreign).await,
            403,
            "{foreign:?}"
        );
    }
    assert!(seen.try_recv().is_err(), "the backend saw a handshake");
    for allowed in [
        "https://app.example.com",
        "HTTPS://APP.EXAMPLE.COM",
        "http://a.b.example.org:8080",
        "http://chat.example.net",
    ] {
        assert_eq!(
            handshake_status(proxy.addr(), Some(allowed)).await,
            101,
            "{allowed}"
        );
    }
    assert!(proxy.error_log().contains(
        "WebSocket handshake from origin \"https://evil.example\" forbidden by websocket_allowed_origins"
    ));
}

#[tokio::test]
async fn ws_access_log_reports_messages_close_code_and_closer() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "log_format wsv \"$status $websocket_messages_in $websocket_messages_out $websocket_close_code $websocket_closed_by $websocket_duration\";
         access_log {{dir}}/ws.log wsv;
         access_log {{dir}}/predefined.log websocket;
         {}",
        classic(backend, "")
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    for text in ["one", "two", "three"] {
        assert_echo(&mut ws, text).await;
    }
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(_)) = bounded("the end", ws.next()).await {}
    drop(ws);
    let path = proxy.dir.path().join("ws.log");
    assert!(eventually(|| std::fs::read_to_string(&path).is_ok_and(|s| !s.is_empty())).await);
    let line = std::fs::read_to_string(&path).unwrap();
    let f: Vec<&str> = line.trim().split(' ').collect();
    assert_eq!(&f[..5], ["101", "3", "3", "1001", "client"], "{line}");
    assert!(f[5].parse::<f64>().is_ok(), "{line}");
    let predefined = std::fs::read_to_string(proxy.dir.path().join("predefined.log")).unwrap();
    assert!(
        predefined.contains("ws_in=3 ws_out=3 close=1001 by=client time="),
        "{predefined}"
    );
    // A plain request has no WebSocket values.
    let _ = get(proxy.addr(), "/ws").await;
    assert!(
        eventually(|| std::fs::read_to_string(&path).is_ok_and(|s| s.lines().count() == 2)).await
    );
    let plain = std::fs::read_to_string(&path).unwrap();
    assert!(
        plain.lines().nth(1).unwrap().ends_with(" - - - - -"),
        "{plain}"
    );
}

#[tokio::test]
async fn ws_byte_relay_still_reports_who_closed() {
    // No websocket_* directive and no frame variable in the format: the
    // tunnel stays a byte relay, yet knows whose end came first.
    let (proxy, mut c, s) = raw_tunnel_with(|backend| {
        format!(
            "log_format by \"$status $websocket_closed_by\"; {}",
            classic(backend, "access_log {dir}/by.log by;")
        )
    })
    .await;
    drop(s);
    let mut rest = Vec::new();
    bounded("the end", c.read_to_end(&mut rest)).await.unwrap();
    drop(c);
    let path = proxy.dir.path().join("by.log");
    assert!(eventually(|| std::fs::read_to_string(&path).is_ok_and(|s| !s.is_empty())).await);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        "101 backend"
    );
}

#[tokio::test]
async fn ws_drain_sends_1001_spread_over_the_window() {
    const CLIENTS: usize = 1000;
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&classic(backend, "websocket_drain_window 2s;")).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ws_connect(proxy.addr(), "/ws").await.unwrap());
    }
    let start = Instant::now();
    let waits = futures_util::future::join_all(clients.into_iter().map(|mut ws| async move {
        let code = close_code(&mut ws).await;
        (code, start.elapsed())
    }));
    let (_, got) = tokio::join!(
        bounded("the graceful stop", proxy.handle.graceful_stop()),
        waits
    );
    let mut times: Vec<Duration> = got
        .iter()
        .map(|(code, t)| {
            assert_eq!(*code, 1001);
            *t
        })
        .collect();
    times.sort();
    let (first, last) = (times[0], times[CLIENTS - 1]);
    // Within the window (and a second of slack for a loaded machine)...
    assert!(last <= Duration::from_secs(3), "{last:?}");
    // ...and spread over it, not in one burst: uniform arrivals over 2 s
    // put about 50 in each 100 ms; no 100 ms may hold a quarter of them.
    assert!(
        last - first >= Duration::from_millis(1200),
        "{first:?}..{last:?}"
    );
    for w in times.windows(CLIENTS / 4) {
        assert!(
            w[w.len() - 1] - w[0] >= Duration::from_millis(100),
            "burst at {:?}",
            w[0]
        );
    }
}

/// One name on two ports, as `listen 80` beside `listen 443 ssl`: two
/// servers, each with `/ws`; `second_to` is where the second one's goes.
fn one_name_two_ports(first_to: std::net::SocketAddr, second_to: std::net::SocketAddr) -> String {
    http_conf(&format!(
        "server {{ listen 127.0.0.1:{{port0}}; server_name chat.test; websocket_drain_window 300ms;
                   location /ws {{ proxy_pass http://{first_to}; }} }}
         server {{ listen 127.0.0.1:{{port1}}; server_name chat.test; websocket_drain_window 300ms;
                   location /ws {{ proxy_pass http://{second_to}; }} }}"
    ))
}

/// A route is its server (addresses and names) and location, not the
/// server's first name: changing one of two servers that share a name
/// drains only that server's WebSockets.
#[tokio::test]
async fn ws_reload_tells_apart_servers_that_share_a_name() {
    let (one, _) = ws_echo().await;
    let (two, _) = ws_echo().await;
    let proxy = Proxy::start_on_ports(2, &one_name_two_ports(one, one)).await;
    let (first, second) = (proxy.addrs[0], proxy.addrs[1]);
    let conf = |a, b| {
        one_name_two_ports(a, b)
            .replace("{port0}", &first.port().to_string())
            .replace("{port1}", &second.port().to_string())
    };
    let mut on_first = ws_connect(first, "/ws").await.unwrap();
    let mut on_second = ws_connect(second, "/ws").await.unwrap();
    // The second server's /ws now goes elsewhere: its WebSocket gets 1001,
    // the first server's lives on.
    proxy.reload(&conf(one, two)).unwrap();
    assert_eq!(close_code(&mut on_second).await, 1001);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_echo(&mut on_first, "the first server's WebSocket").await;
    // Then the first one's changes: now it drains.
    proxy.reload(&conf(two, two)).unwrap();
    assert_eq!(close_code(&mut on_first).await, 1001);
}

/// Two locations on one backend, each draining with a window; `b_to`
/// is where `/b` goes.
fn two_routes(a_to: std::net::SocketAddr, b_to: std::net::SocketAddr) -> String {
    http_conf(&format!(
        "server {{ listen 127.0.0.1:{{port0}}; server_name chat.test; websocket_drain_window 300ms;
                   location /a {{ proxy_pass http://{a_to}; }}
                   location /b {{ proxy_pass http://{b_to}; }} }}"
    ))
}

#[tokio::test]
async fn ws_reload_drains_only_websockets_whose_route_changed() {
    let (one, _) = ws_echo().await;
    let (two, _) = ws_echo().await;
    let proxy = Proxy::start_on_ports(1, &two_routes(one, one)).await;
    let port = proxy.addr().port();
    let conf = |a, b| two_routes(a, b).replace("{port0}", &port.to_string());
    let mut a = ws_connect(proxy.addr(), "/a").await.unwrap();
    let mut b = ws_connect(proxy.addr(), "/b").await.unwrap();
    // A reload that changes nothing for them (same text) closes nothing.
    proxy.reload(&conf(one, one)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_echo(&mut a, "a after the first reload").await;
    assert_echo(&mut b, "b after the first reload").await;
    // /b now goes elsewhere: its WebSocket gets 1001 within the window,
    // /a's lives on.
    proxy.reload(&conf(one, two)).unwrap();
    let start = Instant::now();
    assert_eq!(close_code(&mut b).await, 1001);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_echo(&mut a, "a after the second reload").await;
    // A new WebSocket on /b reaches the new backend and survives a reload
    // that keeps /b where it is.
    let mut b2 = ws_connect(proxy.addr(), "/b").await.unwrap();
    proxy.reload(&conf(one, two)).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_echo(&mut b2, "b2").await;
    assert_echo(&mut a, "a after the third reload").await;
}
