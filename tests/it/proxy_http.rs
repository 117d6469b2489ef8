//! Plain HTTP proxying: the request the backend sees, the response the
//! client sees, bodies, keep-alive, and the error statuses.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

fn server(backend: std::net::SocketAddr, location: &str) -> String {
    format!(
        "server {{ listen 127.0.0.1:0; server_name localhost; location / {{ proxy_pass http://{backend}; {location} }} }}"
    )
}

#[tokio::test]
async fn proxy_sends_nginx_default_request() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&server(be.addr, "")).await;
    let r = Response::parse(&raw_one(proxy.addr(), b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Custom: yes\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\n\r\n").await);
    assert_eq!(r.status, 200);
    let seen = bounded("a WebSocket message", be.next()).await;
    // HTTP/1.0 by default, Host is $proxy_host, Connection: close, the
    // client's hop-by-hop headers are dropped, others pass in order.
    assert_eq!(seen.request_line(), "GET /a/b?c=d HTTP/1.0");
    assert_eq!(
        seen.headers(),
        vec![
            format!("Host: {}", be.addr),
            "Connection: close".into(),
            "X-Custom: yes".into()
        ]
    );
    // The backend's own headers come back; Server/Date are ours.
    assert_eq!(r.header("X-Backend").as_deref(), Some("echo"));
    assert!(r.header("Server").unwrap().starts_with("switchyard"));
}

#[tokio::test]
async fn proxy_set_header_order_and_empty_values() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&server(
        be.addr,
        "proxy_set_header X-Real-IP $remote_addr; proxy_set_header Host $host; proxy_set_header X-Drop \"\"; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    ))
    .await;
    raw(proxy.addr(), b"GET / HTTP/1.0\r\nHost: Example.COM:8080\r\nX-Forwarded-For: 10.0.0.1\r\nX-Drop: client\r\n\r\n").await;
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(
        seen.headers(),
        vec![
            "X-Real-IP: 127.0.0.1".to_string(),
            "Host: example.com".into(),
            "X-Forwarded-For: 10.0.0.1, 127.0.0.1".into(),
            "Connection: close".into(),
        ]
    );
}

#[tokio::test]
async fn proxy_set_header_inheritance_replaces_the_whole_set() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "proxy_set_header X-From http;
         server {{
            listen 127.0.0.1:0;
            proxy_set_header X-From server;
            proxy_set_header X-Server-Only 1;
            location /inherit {{ proxy_pass http://{0}; }}
            location /own {{ proxy_pass http://{0}; proxy_set_header X-From location; }}
         }}",
        be.addr
    ))
    .await;
    get(proxy.addr(), "/inherit").await;
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.header("X-From").as_deref(), Some("server"));
    assert_eq!(seen.header("X-Server-Only").as_deref(), Some("1"));
    get(proxy.addr(), "/own").await;
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.header("X-From").as_deref(), Some("location"));
    assert_eq!(
        seen.header("X-Server-Only"),
        None,
        "a level that sets any header replaces the inherited set"
    );
}

#[tokio::test]
async fn proxy_pass_uri_part_replaces_the_location_prefix() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "server {{
            listen 127.0.0.1:0;
            location /api/ {{ proxy_pass http://{0}/v2/; }}
            location /raw/ {{ proxy_pass http://{0}; }}
            location = /exact {{ proxy_pass http://{0}/other; }}
         }}",
        be.addr
    ))
    .await;
    get(proxy.addr(), "/api/users/a%20b?x=1").await;
    assert_eq!(
        bounded("a WebSocket message", be.next())
            .await
            .request_line(),
        "GET /v2/users/a%20b?x=1 HTTP/1.0"
    );
    get(proxy.addr(), "/raw/x/../y?q").await;
    assert_eq!(
        bounded("a WebSocket message", be.next())
            .await
            .request_line(),
        "GET /raw/x/../y?q HTTP/1.0",
        "no URI part: the client's URI as sent"
    );
    get(proxy.addr(), "/exact?k=v").await;
    assert_eq!(
        bounded("a WebSocket message", be.next())
            .await
            .request_line(),
        "GET /other?k=v HTTP/1.0"
    );
    // /api (no slash) redirects to /api/ because the location proxies.
    let r = get_response(proxy.addr(), "/api?z").await;
    assert_eq!(r.status, 301);
    assert!(
        r.header("Location").unwrap().ends_with("/api/?z"),
        "{:?}",
        r.header("Location")
    );
}

#[tokio::test]
async fn proxy_pass_with_variables_and_upstream_names() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "upstream named {{ server {0}; }}
         map $arg_to $target {{ default {0}; n named; }}
         server {{
            listen 127.0.0.1:0;
            location /v {{ proxy_pass http://$target/fixed$is_args$args; }}
            location /bad {{ proxy_pass http://$arg_host; }}
         }}",
        be.addr
    ))
    .await;
    get(proxy.addr(), "/v?a=1").await;
    assert_eq!(
        bounded("a WebSocket message", be.next())
            .await
            .request_line(),
        "GET /fixed?a=1 HTTP/1.0"
    );
    get(proxy.addr(), "/v?to=n").await;
    assert_eq!(
        bounded("a WebSocket message", be.next())
            .await
            .request_line(),
        "GET /fixed?to=n HTTP/1.0"
    );
    let r = get_response(proxy.addr(), "/bad?host=no.such.host.invalid").await;
    assert_eq!(r.status, 502);
    assert!(
        proxy
            .error_log()
            .contains("no resolver defined to resolve no.such.host.invalid")
    );
}

#[tokio::test]
async fn proxy_http11_keepalive_and_chunked_bodies() {
    // The backend answers with a chunked body; an HTTP/1.1 client gets it
    // re-chunked on a kept-alive connection.
    let be = Backend::with(|seen| {
        let body = String::from_utf8_lossy(&seen.body).to_string();
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).into_bytes()
    })
    .await;
    let proxy = Proxy::http(&server(be.addr, "")).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    for round in 0..3 {
        c.write_all(format!("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab{round}\r\n0\r\n\r\n").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while find(&got, b"0\r\n\r\n").is_none() {
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        assert!(text.contains("Connection: keep-alive\r\n"), "{text}");
        assert!(
            text.contains(&format!("5\r\nhello\r\n3\r\nab{round}\r\n0\r\n\r\n")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn proxy_request_body_is_sent_with_content_length() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&server(be.addr, "")).await;
    raw(proxy.addr(), b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n").await;
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.header("Content-Length").as_deref(), Some("9"));
    assert_eq!(seen.header("Transfer-Encoding"), None);
    assert_eq!(seen.body, b"wikipedia");
}

#[tokio::test]
async fn proxy_large_bodies_stream_both_ways() {
    let be = Backend::with(|seen| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            seen.body.len()
        )
        .into_bytes();
        r.extend_from_slice(&seen.body);
        r
    })
    .await;
    let proxy = Proxy::http(&server(be.addr, "client_max_body_size 10m;")).await;
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(
        format!(
            "PUT /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&body).await.unwrap();
    let mut out = Vec::new();
    bounded("the response", c.read_to_end(&mut out))
        .await
        .unwrap();
    let split = find(&out, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(&out[split..], &body[..]);
}

#[tokio::test]
async fn proxy_413_when_body_exceeds_client_max_body_size() {
    let be = Backend::echo().await;
    let proxy = Proxy::http(&server(be.addr, "client_max_body_size 10;")).await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890",
        )
        .await,
    );
    assert_eq!(r.status, 413);
    assert!(r.body.contains("413 Request Entity Too Large"));
    assert!(
        proxy
            .error_log()
            .contains("client intended to send too large body: 11 bytes")
    );
    let r = Response::parse(&raw(proxy.addr(), b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n0123456789ab\r\n0\r\n\r\n").await);
    assert_eq!(r.status, 413);
}

/// A custom `error_page` for 413 (or 400) still ends the connection, as
/// the plain error would.
#[tokio::test]
async fn proxy_error_pages_for_fatal_statuses_still_close() {
    let be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; error_page 413 /too-big;
             location = /too-big {{ return 413 \"custom\"; }}
             location / {{ proxy_pass http://{}; client_max_body_size 10; }} }}",
        be.addr
    ))
    .await;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        raw(
            proxy.addr(),
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890",
        ),
    )
    .await
    .expect("the connection stayed open after a 413");
    let r = Response::parse(&answer);
    assert_eq!(r.status, 413);
    assert_eq!(r.body, "custom");
}

/// A client that keeps sending a body the proxy refused still reads the
/// whole 413: the proxy closes with a lingering read instead of a reset.
#[tokio::test]
async fn proxy_413_survives_a_client_still_sending_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let be = Backend::echo().await;
    let proxy = Proxy::http(&server(be.addr, "client_max_body_size 1k;")).await;
    let s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let total = 4 << 20;
    let writer = tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {total}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'b'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        let _ = wr.shutdown().await;
        sent
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), rd.read_to_end(&mut out))
        .await
        .expect("the proxy neither answered nor closed");
    assert!(read.is_ok(), "connection reset: {read:?}");
    let r = Response::parse(&String::from_utf8_lossy(&out));
    assert_eq!(r.status, 413);
    assert!(r.body.contains("413 Request Entity Too Large"));
    assert_eq!(writer.await.unwrap(), total, "the proxy stopped reading");
}

#[tokio::test]
async fn proxy_502_when_the_backend_refuses_with_nginx_log_line() {
    let dead = DeadPort::new();
    let port = dead.addr().port();
    let proxy = Proxy::http(&format!("server {{ listen 127.0.0.1:0; server_name example.com; location / {{ proxy_pass http://127.0.0.1:{port}; }} }}")).await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"GET /x HTTP/1.0\r\nHost: example.com\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 502);
    assert!(r.body.contains("<center><h1>502 Bad Gateway</h1></center>"));
    let log = proxy.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("connect() failed"))
        .expect(&log);
    let re = regex::Regex::new(&format!(
        r#"^\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#\d+: \*\d+ connect\(\) failed \(111: Connection refused\) while connecting to upstream, client: 127\.0\.0\.1, server: example\.com, request: "GET /x HTTP/1\.0", upstream: "http://127\.0\.0\.1:{port}/x", host: "example\.com"$"#
    ))
    .unwrap();
    assert!(re.is_match(line), "{line}");
}

#[tokio::test]
async fn proxy_504_when_the_backend_is_silent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let proxy = Proxy::http(&server(addr, "proxy_read_timeout 300ms;")).await;
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!(r.status, 504);
    assert!(proxy.error_log().contains(
        "upstream timed out (110: Connection timed out) while reading response header from upstream"
    ));
}

#[tokio::test]
async fn proxy_504_on_connect_timeout() {
    // A listener whose backlog is full leaves new connections hanging in
    // SYN-SENT: the connect times out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let proxy = Proxy::http(&server(addr, "proxy_connect_timeout 300ms;")).await;
    let start = std::time::Instant::now();
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!(r.status, 504, "{}", r.head);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        proxy.error_log().contains(
            "upstream timed out (110: Connection timed out) while connecting to upstream"
        )
    );
    drop(socket);
}

#[tokio::test]
async fn proxy_400_for_malformed_requests() {
    let proxy = Proxy::http("server { listen 127.0.0.1:0; location / { return 200 ok; } }").await;
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET /../x HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:80/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
        b"GET http://ok.test/ HTTP/1.1\r\nHost: a..b\r\n\r\n",
        b"GET http://bad_host/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://a:8o/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"\x01\x02\x03 garbage\r\n\r\n",
    ] {
        let r = Response::parse(&raw(proxy.addr(), bad).await);
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            r.head
        );
    }
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 501);
    for newer in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"GET / HTTP/3\r\n\r\n"] {
        let r = Response::parse(&raw(proxy.addr(), newer).await);
        assert_eq!(r.status, 505, "{}", String::from_utf8_lossy(newer));
    }
    assert!(proxy.error_log().contains("client sent invalid version"));
    let trace = raw(proxy.addr(), b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(Response::parse(&trace).status, 405);
}

#[tokio::test]
async fn proxy_http10_clients_get_close_delimited_bodies() {
    let be = Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()
    })
    .await;
    let proxy = Proxy::http(&server(be.addr, "")).await;
    let text = raw(proxy.addr(), b"GET / HTTP/1.0\r\nHost: h\r\n\r\n").await;
    assert!(text.ends_with("\r\n\r\nabc"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert!(!text.contains("Transfer-Encoding"), "{text}");
}

#[tokio::test]
async fn proxy_hides_and_passes_backend_headers() {
    let be = Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nServer: backend/1\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nX-Pad: x\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok".to_vec()
    })
    .await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
            location / {{ proxy_pass http://{0}; proxy_hide_header X-Secret; }}
            location /pass {{ proxy_pass http://{0}; proxy_pass_header Server; }} }}",
        be.addr
    ))
    .await;
    let r = get_response(proxy.addr(), "/").await;
    assert!(r.header("Server").unwrap().starts_with("switchyard"));
    assert_ne!(
        r.header("Date").as_deref(),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    assert_eq!(r.header("X-Pad"), None);
    assert_eq!(r.header("X-Secret"), None);
    assert_eq!(r.header("Keep-Alive"), None);
    let r = get_response(proxy.addr(), "/pass").await;
    assert_eq!(r.header("Server").as_deref(), Some("backend/1"));
}

#[tokio::test]
async fn proxy_keepalive_pool_reuses_backend_connections() {
    // Count accepted connections at the backend.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                while read_request(&mut s).await.is_some() {
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::http(&format!(
        "upstream pool {{ server {addr}; keepalive 4; }}
         server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
    ))
    .await;
    for _ in 0..5 {
        let r = get_response(proxy.addr(), "/").await;
        assert_eq!(r.body, "ok");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn proxy_next_upstream_tries_the_next_server() {
    let dead_port = DeadPort::new();
    let dead = dead_port.addr().port();
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "upstream two {{ server 127.0.0.1:{dead}; server {}; }}
         log_format up \"$upstream_addr $upstream_status\";
         server {{ listen 127.0.0.1:0; access_log {{dir}}/up.log up; location / {{ proxy_pass http://two; }} }}",
        be.addr
    ))
    .await;
    for _ in 0..2 {
        let r = get_response(proxy.addr(), "/").await;
        assert_eq!(r.status, 200);
        bounded("a WebSocket message", be.next()).await;
    }
    let log = std::fs::read_to_string(proxy.dir.path().join("up.log")).unwrap();
    assert!(
        log.contains(&format!("127.0.0.1:{dead}, {} 502, 200", be.addr)),
        "{log}"
    );
}

#[tokio::test]
async fn proxy_502_when_the_backend_head_exceeds_proxy_buffer_size() {
    let big = "v".repeat(6000);
    let be = Backend::with(move |_| {
        format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 2\r\n\r\nok").into_bytes()
    })
    .await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{}; }} location /roomy {{ proxy_buffer_size 16k; proxy_pass http://{}; }} }}",
        be.addr, be.addr
    ))
    .await;
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!(r.status, 502);
    assert!(
        proxy
            .error_log()
            .contains("upstream sent too big header while reading response header from upstream"),
        "{}",
        proxy.error_log()
    );
    let r = get_response(proxy.addr(), "/roomy").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-big").map(|v| v.len()), Some(6000));
}

/// A cached backend connection that dies after reading a request: an
/// idempotent request is retried on a fresh connection, a POST is not
/// (the backend may have acted on it) and gets a 502.
#[tokio::test]
async fn proxy_cached_connection_failures_retry_only_what_may_repeat() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                // Each connection answers one request, then reads the
                // next and closes without a word.
                let mut answered = false;
                while read_request(&mut s).await.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                    if answered {
                        return;
                    }
                    answered = true;
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::http(&format!(
        "upstream pool {{ server {addr}; keepalive 4; }}
         server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
    ))
    .await;
    assert_eq!(get_response(proxy.addr(), "/").await.status, 200);
    let post = Response::parse(
        &raw(
            proxy.addr(),
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await,
    );
    assert_eq!(post.status, 502);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the POST was sent twice");
    assert_eq!(get_response(proxy.addr(), "/").await.status, 200);
    assert_eq!(get_response(proxy.addr(), "/").await.status, 200);
    assert_eq!(seen.load(Ordering::SeqCst), 5);
}

/// A body larger than `client_body_buffer_size` is read into an unlinked
/// temporary file (in `client_body_temp_path`), sent with its length to an
/// HTTP/1.0 backend even when the client chunked it, and sent again in
/// full when the first server fails.
#[tokio::test]
async fn proxy_large_bodies_are_spooled_to_disk_and_replayed() {
    let dead_port = DeadPort::new();
    let dead = dead_port.addr().port();
    let mut be = Backend::with(|seen| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            seen.body.len()
        )
        .into_bytes()
    })
    .await;
    let proxy = Proxy::http(&format!(
        "upstream two {{ server 127.0.0.1:{dead}; server {}; }}
         server {{ listen 127.0.0.1:0; client_body_temp_path {{dir}}/body_temp 1 2; client_body_buffer_size 8k;
             location / {{ proxy_pass http://two; client_max_body_size 10m; }} }}",
        be.addr
    ))
    .await;
    let body: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(
        b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    for piece in body.chunks(100_000) {
        c.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .await
            .unwrap();
        c.write_all(piece).await.unwrap();
        c.write_all(b"\r\n").await.unwrap();
    }
    c.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    bounded("the response", c.read_to_end(&mut out))
        .await
        .unwrap();
    let r = Response::parse(&String::from_utf8_lossy(&out));
    assert_eq!(r.status, 200, "{}", proxy.error_log());
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.header("Content-Length"), Some(body.len().to_string()));
    assert_eq!(seen.header("Transfer-Encoding"), None);
    assert!(seen.body == body, "the body changed on its way");
    assert!(
        proxy
            .error_log()
            .contains("a client request body is buffered to a temporary file")
    );
    let left: Vec<_> = std::fs::read_dir(proxy.dir.path().join("body_temp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}

/// `client_body_timeout` bounds each read of the body, not the whole
/// body: a slow but steady client gets through, a stalled one gets 408.
#[tokio::test]
async fn proxy_client_body_timeout_is_per_read() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&server(be.addr, "client_body_timeout 1s;")).await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    for b in b"abcde" {
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.write_all(&[*b]).await.unwrap();
    }
    let mut out = Vec::new();
    bounded("the response", c.read_to_end(&mut out))
        .await
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(
        bounded("a WebSocket message", be.next()).await.body,
        b"abcde"
    );

    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out))
        .await
        .expect("no answer to a stalled body")
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// An absolute-form target names the server (whatever `Host` says), in
/// any scheme case, and its path and query are what the backend gets.
#[tokio::test]
async fn proxy_absolute_form_targets() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; return 200 \"default $request_uri\"; }}
         server {{ listen 127.0.0.1:0; server_name site.test; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    let front = proxy.addrs[0];
    let r = Response::parse(
        &raw(
            front,
            b"GET HTTP://Site.Test?x=/y HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 200);
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.request_line(), "GET /?x=/y HTTP/1.0");
    let r = Response::parse(
        &raw(
            front,
            b"GET http://other.test:80/p?q HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.body, "default /p?q");
}

/// Idle cached backend connections do not linger: one the backend closed
/// is closed by the proxy too (no CLOSE_WAIT until the next request), and
/// one idle past the upstream's `keepalive_timeout` is closed.
#[tokio::test]
async fn proxy_keepalive_pool_closes_dead_and_expired_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let tx = tx.clone();
            // The first connection is closed by the backend after its
            // answer; the second is kept open by the backend.
            let backend_closes = n == 1;
            // Failures are reported to the test, not panicked here.
            tokio::spawn(async move {
                let outcome = async {
                    read_request(&mut s).await.ok_or("no request")?;
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .map_err(|_| "write failed")?;
                    if backend_closes {
                        s.shutdown().await.map_err(|_| "shutdown failed")?;
                    }
                    let started = std::time::Instant::now();
                    let mut rest = Vec::new();
                    let _ = bounded("the response", s.read_to_end(&mut rest)).await;
                    Ok::<_, &str>((backend_closes, started.elapsed()))
                }
                .await;
                let _ = tx.send(outcome);
            });
        }
    });
    let proxy = Proxy::http(&format!(
        "upstream pool {{ server {addr}; keepalive 4; keepalive_timeout 2s; }}
         server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
    ))
    .await;
    assert_eq!(get_response(proxy.addr(), "/").await.body, "ok");
    let (first, waited) = tokio::time::timeout(Duration::from_secs(4), closed.recv())
        .await
        .expect("the proxy kept a connection the backend closed")
        .unwrap()
        .unwrap_or_else(|e| panic!("backend: {e}"));
    assert!(first, "{waited:?}");
    assert_eq!(get_response(proxy.addr(), "/").await.body, "ok");
    let (first, waited) = tokio::time::timeout(Duration::from_secs(6), closed.recv())
        .await
        .expect("the proxy kept a connection past keepalive_timeout")
        .unwrap()
        .unwrap_or_else(|e| panic!("backend: {e}"));
    assert!(!first);
    assert!(
        waited >= Duration::from_millis(1900),
        "closed early: {waited:?}"
    );
}

/// A backend answering 302 with the `Location` (or `Refresh`) the request
/// asks for in `X-Want` / `X-Refresh`.
async fn redirecting_backend() -> Backend {
    Backend::with(|seen| {
        let mut head =
            String::from("HTTP/1.1 302 Found\r\nContent-Length: 0\r\nConnection: close\r\n");
        if let Some(v) = seen.header("X-Want") {
            head.push_str(&format!("Location: {v}\r\n"));
        }
        if let Some(v) = seen.header("X-Refresh") {
            head.push_str(&format!("Refresh: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    })
    .await
}

async fn redirect_of(proxy: &Proxy, path: &str, header: &str, value: &str) -> Response {
    let text = raw(
        proxy.addr(),
        format!("GET {path} HTTP/1.1\r\nHost: front.test\r\n{header}: {value}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    Response::parse(&text)
}

#[tokio::test]
async fn proxy_redirect_rewrites_backend_locations() {
    let be = redirecting_backend().await;
    let b = be.addr;
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location /implicit/ {{ proxy_pass http://{b}/app/; }}
            location /prefix/ {{
                proxy_pass http://{b};
                proxy_redirect http://$proxy_host/old/ http://$host/new/;
                proxy_redirect http://{b}/ /rest/;
            }}
            location /regex/ {{
                proxy_pass http://{b};
                proxy_redirect ~*^HTTP://[^/]+/Deep/(.*)$ /flat/$1;
            }}
            location /off/ {{ proxy_pass http://{b}/app/; proxy_redirect off; }}
            location /inherit/ {{
                proxy_redirect http://{b}/srv/ /from-outer/;
                location /inherit/inner/ {{ proxy_pass http://{b}; }}
            }}
        }}"#
    ))
    .await;
    let port = proxy.addr().port();
    let loc = |r: Response| r.header("Location").unwrap_or_default();

    // Implicit default: the proxy_pass URL becomes the location prefix.
    let r = redirect_of(
        &proxy,
        "/implicit/x",
        "X-Want",
        &format!("http://{b}/app/page?q=1"),
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        loc(r),
        format!("http://front.test:{port}/implicit/page?q=1")
    );
    // A prefix with variables on both sides; the first matching rule wins.
    let r = redirect_of(&proxy, "/prefix/x", "X-Want", &format!("http://{b}/old/a")).await;
    assert_eq!(loc(r), "http://front.test/new/a");
    let r = redirect_of(&proxy, "/prefix/x", "X-Want", &format!("http://{b}/other")).await;
    assert_eq!(loc(r), format!("http://front.test:{port}/rest/other"));
    // Caseless regex with a capture; the whole value is replaced.
    let r = redirect_of(
        &proxy,
        "/regex/x",
        "X-Want",
        &format!("http://{b}/deep/er/est"),
    )
    .await;
    assert_eq!(loc(r), format!("http://front.test:{port}/flat/er/est"));
    // Unmatched values pass unchanged.
    let r = redirect_of(&proxy, "/regex/x", "X-Want", "https://elsewhere.test/deep").await;
    assert_eq!(loc(r), "https://elsewhere.test/deep");
    // off: the backend's own URL reaches the client.
    let r = redirect_of(&proxy, "/off/x", "X-Want", &format!("http://{b}/app/page")).await;
    assert_eq!(loc(r), format!("http://{b}/app/page"));
    // A location without proxy_redirect inherits the enclosing rules
    // instead of its own default.
    let r = redirect_of(
        &proxy,
        "/inherit/inner/x",
        "X-Want",
        &format!("http://{b}/srv/z"),
    )
    .await;
    assert_eq!(loc(r), format!("http://front.test:{port}/from-outer/z"));
    // Refresh: the URL after `url=` is rewritten, the delay kept.
    let r = redirect_of(
        &proxy,
        "/implicit/x",
        "X-Refresh",
        &format!("5; URL=http://{b}/app/r"),
    )
    .await;
    assert_eq!(r.header("Refresh").unwrap(), "5; URL=/implicit/r");
    // A path-only Location becomes absolute on this server, as nginx's
    // header filter makes it.
    let r = redirect_of(&proxy, "/off/x", "X-Want", "/local").await;
    assert_eq!(loc(r), format!("http://front.test:{port}/local"));
}

#[test]
fn proxy_redirect_errors_say_what_is_wrong() {
    let e = http_config_error(
        "server { listen 127.0.0.1:0; location / { proxy_redirect default; proxy_pass http://127.0.0.1:9; } }",
    );
    assert!(
        e.starts_with(
            "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive in "
        ),
        "{e}"
    );
    let e = http_config_error(
        "server { listen 127.0.0.1:0; location / { proxy_pass http://$arg_b; proxy_redirect default; } }",
    );
    assert!(e.starts_with("\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables in "), "{e}");
    let e = http_config_error(
        "server { listen 127.0.0.1:0; location / { proxy_redirect sometimes; } }",
    );
    assert!(e.starts_with("invalid parameter \"sometimes\" in "), "{e}");
    let e = http_config_error(
        "server { listen 127.0.0.1:0; location / { proxy_redirect ~(unclosed /x; } }",
    );
    assert!(e.contains("(unclosed"), "{e}");
    assert_eq!(
        http_config_error(
            "server { listen 127.0.0.1:0; location / { proxy_pass http://127.0.0.1:9/a/; proxy_redirect default; proxy_redirect http://x/ /; } }"
        ),
        ""
    );
}
