//! `expires` in all its forms (a map choosing `epoch`, `max`, `off`, a
//! time, `@time`; `modified`), `add_header` for `ETag` and
//! `Last-Modified`, and `chunked_transfer_encoding`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Local, TimeZone, Timelike};

use crate::conditional::file_at;
use crate::harness::*;

/// 2023-06-01 08:00:00 UTC.
const MTIME: u64 = 1_685_606_400;

fn epoch_secs(date: &str) -> i64 {
    let t = httpdate::parse_http_date(date).unwrap_or_else(|_| panic!("not a date: {date}"));
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn site(extra: &str) -> (Proxy, TempDir) {
    let site = TempDir::new();
    for name in [
        "epoch", "max", "off", "access", "negative", "daily", "junk", "none", "zero",
    ] {
        file_at(&site, &format!("{name}.txt"), name, MTIME);
    }
    let proxy = Proxy::http(&format!(
        r#"map $uri $lifetime {{
            ~/epoch  epoch;
            ~/max    max;
            ~/off    off;
            ~/access 90;
            ~/negative -90;
            ~/daily  @3h15m;
            ~/junk   soon;
            ~/zero   0;
            default  "";
        }}
        server {{
            listen 127.0.0.1:0;
            root {root};
            location /v/ {{ alias {root}/; expires $lifetime; }}
            location /m/ {{ alias {root}/; expires modified $lifetime; }}
            location /fixed/ {{ alias {root}/; expires modified 1d; }}
            location /at/ {{ alias {root}/; expires @23h59m; }}
            {extra}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

#[tokio::test]
async fn response_filters_expires_chosen_by_a_map() {
    let (proxy, _site) = site("").await;
    let r = get_response(proxy.addr(), "/v/epoch.txt").await;
    assert_eq!(
        r.header("Expires").as_deref(),
        Some("Thu, 01 Jan 1970 00:00:01 GMT")
    );
    assert_eq!(r.header("Cache-Control").as_deref(), Some("no-cache"));
    let r = get_response(proxy.addr(), "/v/max.txt").await;
    assert_eq!(
        r.header("Expires").as_deref(),
        Some("Thu, 31 Dec 2037 23:55:55 GMT")
    );
    assert_eq!(
        r.header("Cache-Control").as_deref(),
        Some("max-age=315360000")
    );
    let r = get_response(proxy.addr(), "/v/access.txt").await;
    assert_eq!(r.header("Cache-Control").as_deref(), Some("max-age=90"));
    let at = epoch_secs(&r.header("Expires").unwrap());
    assert!((at - (now() + 90)).abs() <= 5, "{at}");
    let r = get_response(proxy.addr(), "/v/negative.txt").await;
    assert_eq!(r.header("Cache-Control").as_deref(), Some("no-cache"));
    let at = epoch_secs(&r.header("Expires").unwrap());
    assert!((at - (now() - 90)).abs() <= 5, "{at}");
    let r = get_response(proxy.addr(), "/v/zero.txt").await;
    assert_eq!(r.header("Cache-Control").as_deref(), Some("max-age=0"));
    // @time: the next 03:15:00 of the local clock.
    let r = get_response(proxy.addr(), "/v/daily.txt").await;
    let at = epoch_secs(&r.header("Expires").unwrap());
    let local = Local.timestamp_opt(at, 0).unwrap();
    assert_eq!((local.hour(), local.minute(), local.second()), (3, 15, 0));
    assert!(at > now() && at <= now() + 25 * 3600);
    let max_age: i64 = r
        .header("Cache-Control")
        .unwrap()
        .strip_prefix("max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((max_age - (at - now())).abs() <= 5);
    // off, an empty value and one that is not a time add nothing.
    for path in ["/v/off.txt", "/v/none.txt", "/v/junk.txt"] {
        let r = get_response(proxy.addr(), path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Expires"), None, "{path}");
        assert_eq!(r.header("Cache-Control"), None, "{path}");
    }
}

#[tokio::test]
async fn response_filters_expires_modified() {
    let (proxy, _site) = site("").await;
    // From the file's time: long past, so no-cache.
    let r = get_response(proxy.addr(), "/fixed/access.txt").await;
    assert_eq!(
        r.header("Expires").as_deref(),
        Some("Fri, 02 Jun 2023 08:00:00 GMT")
    );
    assert_eq!(r.header("Cache-Control").as_deref(), Some("no-cache"));
    let r = get_response(proxy.addr(), "/m/access.txt").await;
    assert_eq!(
        r.header("Expires").as_deref(),
        Some("Thu, 01 Jun 2023 08:01:30 GMT")
    );
    // epoch, max, off and @time are not values for `modified`.
    for path in ["/m/epoch.txt", "/m/max.txt", "/m/daily.txt"] {
        let r = get_response(proxy.addr(), path).await;
        assert_eq!(r.header("Expires"), None, "{path}");
    }
}

#[tokio::test]
async fn response_filters_expires_daily_and_on_proxied_responses() {
    let soon = now() + 600;
    let lm = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(soon as u64));
    let backend = Backend::with(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: private\r\nExpires: 0\r\nLast-Modified: {lm}\r\nCache-Control: no-store\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        .into_bytes()
    })
    .await;
    let (proxy, _site) = site(&format!(
        r#"location /app/ {{ proxy_pass http://{b}; expires modified 1h; }}"#,
        b = backend.addr
    ))
    .await;
    let r = get_response(proxy.addr(), "/at/access.txt").await;
    let at = epoch_secs(&r.header("Expires").unwrap());
    let local = Local.timestamp_opt(at, 0).unwrap();
    assert_eq!((local.hour(), local.minute()), (23, 59));
    // The backend's Last-Modified is the base; its Expires and first
    // Cache-Control are replaced where they were, the other one goes.
    let r = get_response(proxy.addr(), "/app/x").await;
    let at = epoch_secs(&r.header("Expires").unwrap());
    assert_eq!(at, soon + 3600);
    let max_age: i64 = r
        .header("Cache-Control")
        .unwrap()
        .strip_prefix("max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((max_age - 4200).abs() <= 5, "{max_age}");
    assert_eq!(r.head.matches("Cache-Control").count(), 1);
    let names: Vec<&str> = r
        .head
        .lines()
        .skip(1)
        .map(|l| l.split(':').next().unwrap())
        .collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("Cache-Control") < pos("Expires") && pos("Expires") < pos("Last-Modified"));
}

#[test]
fn response_filters_expires_refusals() {
    let err = http_config_error("server { expires @25h; }");
    assert!(
        err.contains("\"expires\" directive daily time value must be less than 24 hours"),
        "{err}"
    );
    let err = http_config_error("server { expires modified @1h; }");
    assert!(
        err.contains("daily time cannot be used with \"modified\" parameter"),
        "{err}"
    );
    let err = http_config_error("server { expires modified epoch; }");
    assert!(err.contains("\"expires\" directive invalid value"), "{err}");
    let err = http_config_error("server { expires later 1h; }");
    assert!(err.contains("\"expires\" directive invalid value"), "{err}");
    let err = http_config_error("server { expires 5ms; }");
    assert!(err.contains("invalid value"), "{err}");
    let err = http_config_error("server { expires $nope; }");
    assert!(err.contains("unknown \"nope\" variable"), "{err}");
    assert_eq!(
        http_config_error("server { expires @12h; location / { expires +1y; } }"),
        ""
    );
}

#[tokio::test]
async fn response_filters_add_header_replaces_validators() {
    let site = TempDir::new();
    file_at(&site, "f.txt", "file", MTIME);
    let root = site.path().display().to_string();
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location /tagged/ {{ alias {root}/; add_header ETag '"chosen"'; }}
            location /untagged/ {{ alias {root}/; add_header ETag ""; }}
            location /dated/ {{ alias {root}/; add_header Last-Modified "Sat, 01 Jan 2000 00:00:00 GMT"; }}
            location /undated/ {{ alias {root}/; add_header Last-Modified ""; }}
        }}"#
    ))
    .await;
    let r = get_response(proxy.addr(), "/tagged/f.txt").await;
    assert_eq!(r.header("ETag").as_deref(), Some("\"chosen\""));
    assert_eq!(r.head.matches("ETag").count(), 1);
    // Conditional requests were answered before add_header ran: with the
    // file's own tag, as in nginx.
    let own = format!("\"{MTIME:x}-4\"");
    let req = format!("GET /tagged/f.txt HTTP/1.0\r\nIf-None-Match: {own}\r\n\r\n");
    assert_eq!(
        Response::parse(&raw(proxy.addr(), req.as_bytes()).await).status,
        304
    );
    let r = get_response(proxy.addr(), "/untagged/f.txt").await;
    assert_eq!(r.header("ETag"), None);
    let r = get_response(proxy.addr(), "/dated/f.txt").await;
    assert_eq!(
        r.header("Last-Modified").as_deref(),
        Some("Sat, 01 Jan 2000 00:00:00 GMT")
    );
    assert_eq!(r.head.matches("Last-Modified").count(), 1);
    let r = get_response(proxy.addr(), "/undated/f.txt").await;
    assert_eq!(r.header("Last-Modified"), None);
}

#[tokio::test]
async fn response_filters_chunked_transfer_encoding() {
    // A body of unknown length: HTTP/1.0, ended by closing.
    let backend = Backend::with(|_| {
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed to the end".to_vec()
    })
    .await;
    let site = TempDir::new();
    file_at(&site, "f.txt", "file", MTIME);
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location /on/ {{ proxy_pass http://{b}; }}
            location /off/ {{ proxy_pass http://{b}; chunked_transfer_encoding off; }}
            location /file/ {{ alias {root}/; chunked_transfer_encoding off; }}
        }}"#,
        b = backend.addr,
        root = site.path().display()
    ))
    .await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"GET /on/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.header("Transfer-Encoding").as_deref(), Some("chunked"));
    assert_eq!(r.body, "13\r\nstreamed to the end\r\n0\r\n\r\n");
    // HEAD: the backend said no length, and neither do we.
    let head = b"HEAD /on/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let r = Response::parse(&raw(proxy.addr(), head).await);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(r.header("Transfer-Encoding"), None);
    // Off: no chunks; the body ends with the connection, which therefore
    // cannot stay open for the next request.
    let two = b"GET /off/x HTTP/1.1\r\nHost: t\r\n\r\nGET /off/x HTTP/1.1\r\nHost: t\r\n\r\n";
    let text = raw(proxy.addr(), two).await;
    let r = Response::parse(&text);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), None);
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(r.header("Connection").as_deref(), Some("close"));
    assert_eq!(r.body, "streamed to the end");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 1);
    // A known length is unaffected, and keeps the connection.
    let two = b"GET /file/f.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /file/f.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let text = raw(proxy.addr(), two).await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2);
    assert!(text.contains("Content-Length: 4\r\n"));
}

fn trailer_conf(site: &TempDir, backend: std::net::SocketAddr, listen: &str) -> String {
    format!(
        r#"server {{
            listen 127.0.0.1:0{listen};
            server_name example.test;
            root {root};
            add_trailer X-Host $host;
            add_trailer X-Every 'yes' always;
            add_trailer X-Blank '';
            add_trailer X-Seen "$sent_trailer_x_host/$sent_http_content_type";
            location /off/ {{ alias {root}/; chunked_transfer_encoding off; }}
            location /p/ {{
                proxy_pass http://{backend}/;
                add_trailer X-Length $upstream_response_length;
            }}
        }}"#,
        root = site.path().display()
    )
}

#[tokio::test]
async fn response_filters_add_trailer_chunks_http11_responses() {
    let backend = Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nupthere".to_vec()
    })
    .await;
    let site = TempDir::new();
    file_at(&site, "t.txt", "file body", MTIME);
    file_at(&site, "zero.txt", "", MTIME);
    let proxy = Proxy::http(&trailer_conf(&site, backend.addr, "")).await;
    let ask = |req: String| {
        let addr = proxy.addr();
        async move { raw(addr, req.as_bytes()).await }
    };
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
    };

    // A file of known length goes out chunked, the trailers after the last
    // chunk in their configured order, the empty one left out, the last
    // seeing the first and the response's headers.
    let r = Response::parse(&ask(get("/t.txt")).await);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), None);
    assert_eq!(r.header("Transfer-Encoding").as_deref(), Some("chunked"));
    assert_eq!(r.header("X-Host"), None, "a trailer is not a header");
    assert_eq!(
        r.body,
        "9\r\nfile body\r\n0\r\nX-Host: example.test\r\nX-Every: yes\r\nX-Seen: example.test/text/plain\r\n\r\n"
    );
    // An empty body still carries them.
    let r = Response::parse(&ask(get("/zero.txt")).await);
    assert_eq!(
        r.body,
        "0\r\nX-Host: example.test\r\nX-Every: yes\r\nX-Seen: example.test/text/plain\r\n\r\n"
    );
    // An error status: only `always`.
    let r = Response::parse(&ask(get("/missing")).await);
    assert_eq!(r.status, 404);
    assert!(r.body.ends_with("0\r\nX-Every: yes\r\n\r\n"), "{}", r.body);
    // No chunks, no trailers: HTTP/1.0, HEAD, `chunked_transfer_encoding off`.
    let text = ask("GET /t.txt HTTP/1.0\r\nHost: example.test\r\n\r\n".into()).await;
    let r = Response::parse(&text);
    assert_eq!(r.header("Content-Length").as_deref(), Some("9"));
    assert_eq!(r.body, "file body");
    let text =
        ask("HEAD /t.txt HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n".into()).await;
    let r = Response::parse(&text);
    assert_eq!(r.header("Content-Length").as_deref(), Some("9"));
    assert_eq!(r.header("Transfer-Encoding"), None);
    assert_eq!(r.body, "");
    let r = Response::parse(&ask(get("/off/t.txt")).await);
    assert_eq!(r.header("Content-Length").as_deref(), Some("9"));
    assert_eq!(r.body, "file body");
    // A location's own add_trailer replaces the inherited set, and is
    // evaluated after the backend's body: its length is known by then.
    let r = Response::parse(&ask(get("/p/x")).await);
    assert_eq!(r.body, "7\r\nupthere\r\n0\r\nX-Length: 7\r\n\r\n");
}

#[tokio::test]
async fn response_filters_add_trailer_over_http2() {
    let backend =
        Backend::with(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
    let site = TempDir::new();
    file_at(&site, "t.txt", "file body", MTIME);
    file_at(&site, "zero.txt", "", MTIME);
    let proxy = Proxy::http(&trailer_conf(&site, backend.addr, " http2")).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (client, conn) = bounded("the HTTP/2 handshake", h2::client::handshake(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (path, body, trailers) in [
        (
            "/t.txt",
            "file body",
            vec![
                ("x-host", "example.test"),
                ("x-every", "yes"),
                ("x-seen", "example.test/text/plain"),
            ],
        ),
        (
            "/zero.txt",
            "",
            vec![
                ("x-host", "example.test"),
                ("x-every", "yes"),
                ("x-seen", "example.test/text/plain"),
            ],
        ),
        ("/missing", "", vec![("x-every", "yes")]),
        ("/p/", "ok", vec![("x-length", "2")]),
    ] {
        let req = http::Request::get(format!("http://example.test{path}"))
            .body(())
            .unwrap();
        let mut ready = bounded("a stream", client.clone().ready()).await.unwrap();
        let (resp, _) = ready.send_request(req, true).unwrap();
        let resp = bounded("the response head", resp).await.unwrap();
        assert!(!resp.headers().contains_key("x-host"), "{path}");
        // Even an empty body leaves the stream open for the trailers.
        assert!(!resp.body().is_end_stream(), "{path}");
        let mut recv = resp.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = bounded("the body", recv.data()).await {
            got.extend_from_slice(&chunk.unwrap());
        }
        if path != "/missing" {
            assert_eq!(String::from_utf8_lossy(&got), body, "{path}");
        }
        let map = bounded("the trailers", recv.trailers())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{path}: no trailers"));
        let seen: Vec<(&str, &str)> = map
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(seen, trailers, "{path}");
    }
}
