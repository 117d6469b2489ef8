//! `stub_status` and the `$connections_*` variables: nginx's page byte for
//! byte, and the states a connection is counted in.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::*;

const CONF: &str = "
    server {
        listen 127.0.0.1:0;
        add_header X-Active $connections_active;
        add_header X-Reading $connections_reading;
        add_header X-Writing $connections_writing;
        add_header X-Waiting $connections_waiting;
        location /stub { stub_status; }
        location /slow { limit_rate 10; return 200 'a slow body of about forty bytes......'; }
        location / { return 200 ok; }
    }";

/// The status page's body.
async fn page(addr: std::net::SocketAddr) -> String {
    let r = get(addr, "/stub").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("\r\nContent-Type: text/plain\r\n"), "{r}");
    r.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The seven figures of a status page: active, accepts, handled, requests,
/// reading, writing, waiting.
fn figures(page: &str) -> [u64; 7] {
    let n: Vec<u64> = page
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    n.try_into().unwrap_or_else(|_| panic!("{page}"))
}

/// The figures once `ready` holds for them (a state change reaches the
/// counters a moment after the socket event), or the last ones seen after
/// a second.
async fn until(addr: std::net::SocketAddr, ready: impl Fn(&[u64; 7]) -> bool) -> [u64; 7] {
    let mut last = figures(&page(addr).await);
    for _ in 0..50 {
        if ready(&last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        last = figures(&page(addr).await);
    }
    last
}

#[tokio::test]
async fn stub_status_prints_nginx_page_and_counts_connection_states() {
    let proxy = Proxy::http(CONF).await;
    let addr = proxy.addr();
    // The first request is the status request itself: one connection, in
    // progress (writing).
    assert_eq!(
        page(addr).await,
        "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \nReading: 0 Writing: 1 Waiting: 0 \n"
    );
    // Two pipelined requests on one connection.
    raw(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let [_, accepts, handled, requests, ..] = figures(&page(addr).await);
    assert_eq!((accepts, handled, requests), (3, 3, 4));
    // An open connection that sent nothing is waiting...
    let mut idle = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    let f = until(addr, |f| f[0] == 2).await;
    assert_eq!((f[0], f[4], f[5], f[6]), (2, 0, 1, 1), "{f:?}");
    // ...reading once part of a head came...
    bounded("a partial head", idle.write_all(b"GET /slow HTTP/1.0\r\n"))
        .await
        .unwrap();
    let last = until(addr, |f| f[4] == 1).await;
    assert_eq!((last[4], last[5], last[6]), (1, 1, 0), "{last:?}");
    // ...and writing while its (rate-limited) response is sent.
    bounded("the rest of the head", idle.write_all(b"Host: x\r\n\r\n"))
        .await
        .unwrap();
    let last = until(addr, |f| f[5] == 2).await;
    assert_eq!(
        (last[0], last[4], last[5], last[6]),
        (2, 0, 2, 0),
        "{last:?}"
    );
    // A client that leaves during a paced response is no longer counted
    // (noticed while the pacing waits, not at its next write).
    drop(idle);
    let last = until(addr, |f| f[0] == 1).await;
    assert_eq!((last[0], last[5]), (1, 1), "{last:?}");
}

#[tokio::test]
async fn stub_status_answers_get_and_head_only_and_variables_show_the_counts() {
    let proxy = Proxy::http(CONF).await;
    let addr = proxy.addr();
    let head = raw(addr, b"HEAD /stub HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head}"
    );
    let post = raw(
        addr,
        b"POST /stub HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405 Not Allowed\r\n"), "{post}");
    let r = get(addr, "/").await;
    for h in [
        "X-Active: 1",
        "X-Reading: 0",
        "X-Writing: 1",
        "X-Waiting: 0",
    ] {
        assert!(r.contains(h), "{h} in {r}");
    }
}

#[tokio::test]
async fn stub_status_counts_an_open_websocket_as_writing() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location /stub {{ stub_status; }}
                   location /ws {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    assert_echo(&mut ws, "hello").await;
    let f = figures(&page(proxy.addr()).await);
    assert_eq!((f[0], f[5], f[6]), (2, 2, 0), "{f:?}");
    drop(ws);
    let last = until(proxy.addr(), |f| f[0] == 1).await;
    assert_eq!((last[0], last[5]), (1, 1), "{last:?}");
}

#[tokio::test]
async fn status_page_serves_its_page_and_events_with_live_figures() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; server_name chat.test;
                   location = /status {{ status_page; }}
                   # Pings make the relay follow frames: close codes are known.
                   location /ws {{ proxy_pass http://{backend}; websocket_ping_interval 30s; }} }}"
    ))
    .await;
    let page = get(proxy.addr(), "/status").await;
    assert!(page.contains("\r\nContent-Type: text/html\r\n"), "{page}");
    assert!(page.contains("new EventSource("), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "external assets: {page}"
    );
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    assert_echo(&mut ws, "hi").await;
    let events = get(proxy.addr(), "/status?events").await;
    assert!(
        events.contains("\r\nContent-Type: text/event-stream\r\n"),
        "{events}"
    );
    assert!(
        events.contains("\r\nCache-Control: no-cache\r\n"),
        "{events}"
    );
    let body = events.split_once("\r\n\r\n").unwrap().1;
    assert!(
        body.starts_with("retry: 1000\nevent: metrics\ndata: "),
        "{body}"
    );
    assert!(
        body.contains(
            "data: switchyard_websockets_open{server=\"chat.test\",location=\"/ws\",upstream=\""
        ),
        "{body}"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    let mut listed = String::new();
    for _ in 0..100 {
        let e = get(proxy.addr(), "/status?events").await;
        listed = e
            .split("event: closes\ndata: ")
            .nth(1)
            .unwrap_or("")
            .to_string();
        if listed.contains("\"route\":\"chat.test /ws -> ") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(listed.contains("\"code\":\"1005\""), "{listed}");
    assert!(listed.contains("\"by\":\"client\""), "{listed}");
}

#[tokio::test]
#[ignore = "needs Chromium, Node.js and playwright-core; run with --ignored (CI does)"]
async fn status_page_in_chromium_follows_open_websockets() {
    browser_setup();
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
                   location = /status {{ status_page; }}
                   location /ws {{ proxy_pass http://{backend}; websocket_ping_interval 30s; }} }}"
    ))
    .await;
    let url = format!("http://127.0.0.1:{}/status", proxy.addr().port());
    let stdout = run_browser_script("status-page.mjs", &url).await;
    assert!(
        stdout.contains("ok: open WebSockets 0 -> 5 -> 0"),
        "{stdout}"
    );
}
