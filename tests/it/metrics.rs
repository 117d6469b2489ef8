//! The `metrics` handler: Prometheus text whose counters match the traffic
//! sent, protected like any location.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::harness::*;

fn conf(backend: std::net::SocketAddr) -> String {
    format!(
        "server {{
            listen 127.0.0.1:0;
            server_name chat.test;
            location = /metrics {{ metrics; allow 127.0.0.1; deny all; }}
            location = /metrics-closed {{ metrics; deny all; }}
            location /ws {{ proxy_pass http://{backend}; websocket_ping_interval 100ms; }}
            location = /gone {{ return 404; }}
            location / {{ return 200 ok; }}
        }}"
    )
}

/// The metrics page's body.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = get(addr, "/metrics").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        r.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{r}"
    );
    r.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the sample `name{labels}` (labels as written, in order).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Sends traffic the counters can be checked against: three 200s, one
/// 404, and a WebSocket with five messages each way that the client closes
/// with 1000.
async fn traffic(addr: std::net::SocketAddr) {
    for _ in 0..3 {
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 200 "));
    }
    assert!(get(addr, "/gone").await.starts_with("HTTP/1.1 404 "));
    let mut ws = ws_connect(addr, "/ws").await.unwrap();
    for i in 0..5 {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        // The proxy's pings come in between: the client answers them.
        loop {
            match bounded("the echo", ws.next()).await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(m)) => {
                    assert_eq!(m, Message::text(text));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        // Long enough for a ping or two, which the client answers while it
        // reads.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    close_normally(&mut ws).await;
}

#[tokio::test]
async fn metrics_count_requests_websockets_and_reloads() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&conf(backend)).await;
    let addr = proxy.addr();
    traffic(addr).await;
    proxy.reload(&http_conf(&conf(backend))).unwrap();
    // The WebSocket has ended once its close is counted.
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(addr).await;
        if sample(
            &text,
            "switchyard_websocket_closes_total{code=\"1000\",by=\"client\"}",
        )
        .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = [
        (
            "switchyard_requests_total{server=\"chat.test\",status=\"2xx\",protocol=\"HTTP/1.0\"}",
            3.0,
        ),
        (
            "switchyard_requests_total{server=\"chat.test\",status=\"4xx\",protocol=\"HTTP/1.0\"}",
            1.0,
        ),
        (
            "switchyard_requests_total{server=\"chat.test\",status=\"1xx\",protocol=\"HTTP/1.1\"}",
            1.0,
        ),
        (
            "switchyard_websocket_handshakes_total{result=\"upgraded\"}",
            1.0,
        ),
        (
            "switchyard_websocket_messages_total{direction=\"client_to_backend\"}",
            5.0,
        ),
        (
            "switchyard_websocket_messages_total{direction=\"backend_to_client\"}",
            5.0,
        ),
        (
            "switchyard_websocket_closes_total{code=\"1000\",by=\"client\"}",
            1.0,
        ),
        (
            "switchyard_websockets_open{server=\"chat.test\",location=\"/ws\",upstream=\"",
            -1.0,
        ),
        ("switchyard_upstream_requests_total{upstream=\"", -1.0),
        ("switchyard_reloads_total{result=\"ok\"}", 1.0),
        ("switchyard_websocket_lifetime_seconds_count", 1.0),
    ];
    for (series, value) in want {
        if value < 0.0 {
            assert!(text.contains(series), "{series} missing:\n{text}");
            continue;
        }
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    // The WebSocket is no longer open.
    let open = text
        .lines()
        .find(|l| l.starts_with("switchyard_websockets_open{"))
        .unwrap();
    assert!(open.ends_with(" 0"), "{open}");
    assert!(
        sample(&text, "switchyard_websocket_ping_rtt_seconds_count").unwrap() >= 1.0,
        "{text}"
    );
    // Backend bytes: 5 frames of 15 bytes and a close, each way at least.
    assert!(
        sample(
            &text,
            "switchyard_websocket_bytes_total{direction=\"client_to_backend\"}"
        )
        .unwrap()
            >= 5.0 * 15.0,
        "{text}"
    );
    // Protected like any location.
    assert!(
        get(addr, "/metrics-closed")
            .await
            .starts_with("HTTP/1.1 403 ")
    );
    assert!(
        raw(
            addr,
            b"POST /metrics HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .await
        .starts_with("HTTP/1.1 405 ")
    );
}

#[tokio::test]
#[ignore = "needs promtool (apt-get install prometheus); .ci/run runs it"]
async fn metrics_output_passes_promtool_check() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&conf(backend)).await;
    traffic(proxy.addr()).await;
    let text = scrape(proxy.addr()).await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool not found: apt-get install prometheus");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `n` text messages of 7 bytes (masked client frames of 13 bytes,
/// echoes of 9) and reads each echo.
async fn echo(ws: &mut Ws, n: usize) {
    for _ in 0..n {
        ws.send(Message::text("message")).await.unwrap();
        let echo = bounded("the echo", ws.next()).await.unwrap().unwrap();
        assert_eq!(echo, Message::text("message"));
    }
}

/// Closes with 1000 and waits for the backend's close frame.
async fn close_normally(ws: &mut Ws) {
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .await
    .unwrap();
    while let Some(Ok(m)) = bounded("the close", ws.next()).await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

/// Scrapes until `series` reads `want` (the relay publishes its totals
/// when it next waits, just after the echo went out), then returns the
/// page; fails after about two seconds.
async fn scrape_until(addr: std::net::SocketAddr, series: &str, want: f64) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape(addr).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} never reached {want}:\n{text}");
}

#[tokio::test]
async fn metrics_count_an_open_websockets_messages_and_bytes_while_it_runs() {
    // A long-lived WebSocket shows in the counters as it goes, not only
    // when it closes, and its end adds only what came after the last
    // scrape. Frames are followed (pings on, too slow to send one here).
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
            location = /metrics {{ metrics; }}
            location /ws {{ proxy_pass http://{backend}; websocket_ping_interval 1h; }} }}"
    ))
    .await;
    let addr = proxy.addr();
    let messages_in = "switchyard_websocket_messages_total{direction=\"client_to_backend\"}";
    let messages_out = "switchyard_websocket_messages_total{direction=\"backend_to_client\"}";
    let bytes_in = "switchyard_websocket_bytes_total{direction=\"client_to_backend\"}";
    let bytes_out = "switchyard_websocket_bytes_total{direction=\"backend_to_client\"}";
    let mut ws = ws_connect(addr, "/ws").await.unwrap();
    echo(&mut ws, 3).await;
    let text = scrape_until(addr, messages_out, 3.0).await;
    assert_eq!(sample(&text, messages_in), Some(3.0), "{text}");
    assert_eq!(sample(&text, bytes_in), Some(3.0 * 13.0), "{text}");
    assert_eq!(sample(&text, bytes_out), Some(3.0 * 9.0), "{text}");
    echo(&mut ws, 2).await;
    let text = scrape_until(addr, messages_out, 5.0).await;
    assert_eq!(sample(&text, messages_in), Some(5.0), "{text}");
    assert_eq!(sample(&text, bytes_in), Some(5.0 * 13.0), "{text}");
    assert_eq!(sample(&text, bytes_out), Some(5.0 * 9.0), "{text}");
    close_normally(&mut ws).await;
    // The tunnel ends when both sides have closed their connections.
    drop(ws);
    // After the end: the client's close frame (2 + 4 of mask + 2 of
    // code) added once, the messages unchanged.
    let text = scrape_until(
        addr,
        "switchyard_websocket_closes_total{code=\"1000\",by=\"client\"}",
        1.0,
    )
    .await;
    assert_eq!(sample(&text, bytes_in), Some(5.0 * 13.0 + 8.0), "{text}");
    assert_eq!(sample(&text, messages_in), Some(5.0), "{text}");
    assert_eq!(sample(&text, messages_out), Some(5.0), "{text}");
    let again = scrape(addr).await;
    assert_eq!(sample(&again, bytes_in), Some(5.0 * 13.0 + 8.0), "{again}");
}
