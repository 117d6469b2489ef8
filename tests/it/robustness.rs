//! Bad input never crashes the proxy: garbage bytes, slow or oversized
//! requests, abrupt closes, dead backends, random configurations.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

#[tokio::test]
async fn robustness_garbage_requests_get_answers_or_closes() {
    let be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    let mut rng = Rng(0x5eed);
    let pieces = [
        "GET",
        "POST",
        " ",
        "/",
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/9.9",
        "\r\n",
        "\n",
        "Host: x",
        "Content-Length: 5",
        "Content-Length: -1",
        "Transfer-Encoding: chunked",
        "0\r\n\r\n",
        "zz\r\n",
        "Upgrade: websocket",
        "Connection: upgrade",
        ":",
        "\0",
        "\x7f",
        "%",
        "%zz",
        "/../..",
        "?a=%00",
        "x-\u{e9}: \u{e9}",
    ];
    for _ in 0..300 {
        let n = 1 + rng.next() % 12;
        let mut req = String::new();
        for _ in 0..n {
            req.push_str(rng.pick(&pieces));
        }
        req.push_str("\r\n\r\n");
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = s.write_all(req.as_bytes()).await;
        // End of the client's input: whatever the request was, the server
        // answers (or not) and then closes; it must not keep the socket.
        let _ = s.shutdown().await;
        let text = read_to_close(&mut s).await;
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 "),
            "{req:?} -> {text}"
        );
    }
    // Still serving.
    assert_eq!(get_response(proxy.addr(), "/").await.status, 200);
}

#[tokio::test]
async fn robustness_oversized_heads() {
    let proxy = Proxy::http("server { listen 127.0.0.1:0; location / { return 200 ok; } }").await;
    let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(20_000));
    let r = Response::parse(&raw(proxy.addr(), long_uri.as_bytes()).await);
    assert_eq!(r.status, 414);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..2000 {
        many.push_str(&format!("X-Header-{i}: {}\r\n", "v".repeat(30)));
    }
    many.push_str("\r\n");
    let r = Response::parse(&raw(proxy.addr(), many.as_bytes()).await);
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("Request Header Or Cookie Too Large"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn robustness_clients_that_vanish() {
    // Slow backend; clients leave while it thinks.
    let be = Backend::with_delay(Duration::from_millis(300), |_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
    })
    .await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        drop(s);
    }
    // Half a request, then gone.
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        drop(s);
    }
    proxy
        .assert_error_logged("client prematurely closed connection")
        .await;
    assert_eq!(get_response(proxy.addr(), "/").await.body, "ok");
}

#[tokio::test]
async fn robustness_dead_backends_mid_response() {
    // Promises 100 bytes, sends 5, closes.
    let be =
        Backend::with(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()).await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    let text = get(proxy.addr(), "/").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("short"),
        "the client sees a truncated body, not a hang"
    );
    proxy
        .assert_error_logged("upstream prematurely closed connection while reading upstream")
        .await;
    // Garbage instead of HTTP.
    let be = Backend::with(|_| b"\x00\x01garbage\r\n\r\n".to_vec()).await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    assert_eq!(get_response(proxy.addr(), "/").await.status, 502);
    assert!(proxy.error_log().contains("upstream sent invalid header"));
}

#[test]
fn robustness_random_configurations_never_panic() {
    let words = [
        "http",
        "server",
        "location",
        "upstream",
        "map",
        "events",
        "listen",
        "proxy_pass",
        "return",
        "{",
        "}",
        ";",
        "$host",
        "\"quoted\"",
        "'q'",
        "#c\n",
        "127.0.0.1:0",
        "/x",
        "~",
        "=",
        "^~",
        "@n",
        "200",
        "if",
        "(",
        ")",
        "$a",
        "default",
        "include",
        "*.conf",
        "set",
        "rewrite",
        "^/(.*)$",
        "http://127.0.0.1:1",
        "\\",
        "${",
        "ip_hash",
        "hash",
        "consistent",
        "limit_conn",
        "z",
        "10",
        "ssl",
        "off",
        "on",
        "1s",
        "x\ny",
    ];
    let dir = TempDir::new();
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let n = 1 + rng.next() % 30;
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(rng.pick(&words));
            text.push(' ');
        }
        // Errors are fine; panics are not.
        let _ = switchyard::config::load_str(&text, dir.path());
    }
}

#[tokio::test]
async fn robustness_client_header_timeout_closes_slow_heads() {
    let proxy = Proxy::http(
        "client_header_timeout 300ms; server { listen 127.0.0.1:0; location / { return 200 ok; } }",
    )
    .await;
    // Half a head, then silence: closed once the timeout passes.
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the connection should be closed by the proxy");
    assert_eq!(
        n.unwrap_or(0),
        0,
        "no response is sent to a client that timed out"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(
        eventually(|| proxy.error_log().contains(
            "client timed out (110: Connection timed out) while reading client request headers"
        ))
        .await,
        "{}",
        proxy.error_log()
    );
    // A connection that never sends a byte is closed on the same bound.
    let mut idle = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("a silent connection should be closed");
    assert_eq!(n.unwrap_or(0), 0);
}
