//! `gzip`: which responses are compressed, the headers that change, and
//! bodies that stay decodable, whole or streamed.

use std::io::Read;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// A response kept as bytes (compressed bodies are not text).
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        Response::parse(&self.head).header(name)
    }

    fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The body without chunk framing.
    fn payload(&self) -> Vec<u8> {
        if self.header("Transfer-Encoding").as_deref() != Some("chunked") {
            return self.body.clone();
        }
        dechunk(&self.body)
    }

    /// The payload, gunzipped when `Content-Encoding: gzip`.
    fn text(&self) -> String {
        let payload = self.payload();
        if self.header("Content-Encoding").as_deref() == Some("gzip") {
            gunzip(&payload)
        } else {
            String::from_utf8(payload).unwrap()
        }
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap(), 16)
            .expect("chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn gunzip(data: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut text)
        .expect("valid gzip");
    text
}

async fn fetch(addr: std::net::SocketAddr, request: &str) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .expect("response within 10s")
        .unwrap();
    let at = find(&all, b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8(all[..at].to_vec()).unwrap();
    Raw {
        status: Response::parse(&head).status,
        head,
        body: all[at + 4..].to_vec(),
    }
}

fn get_with(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{headers}\r\n")
}

const PAGE: &str = "<html><body>hello, compressed world; hello, compressed world</body></html>\n";

async fn site(gzip: &str) -> (Proxy, TempDir) {
    let site = TempDir::new();
    site.write("page.html", PAGE.repeat(20));
    site.write("style.css", "body { color: red; } ".repeat(100));
    site.write("tiny.html", "<p>hi</p>");
    let proxy = Proxy::http(&format!(
        r#"log_format gz '$request_uri $gzip_ratio $body_bytes_sent';
        server {{
            listen 127.0.0.1:0;
            root {root};
            access_log {{dir}}/gzip.log gz;
            {gzip}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

#[tokio::test]
async fn gzip_compresses_html_for_clients_that_accept_it() {
    let (proxy, _site) = site("gzip on;").await;
    let plain = fetch(proxy.addr(), &get_with("/page.html", "")).await;
    assert_eq!(plain.status, 200);
    assert!(!plain.has("Content-Encoding"));
    assert_eq!(
        plain.header("Content-Length"),
        Some((PAGE.len() * 20).to_string())
    );
    let etag = plain.header("ETag").unwrap();

    let gz = fetch(
        proxy.addr(),
        &get_with("/page.html", "Accept-Encoding: gzip, deflate, br\r\n"),
    )
    .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("Content-Encoding").as_deref(), Some("gzip"));
    assert_eq!(gz.header("Transfer-Encoding").as_deref(), Some("chunked"));
    assert!(
        !gz.has("Content-Length") && !gz.has("Accept-Ranges"),
        "{}",
        gz.head
    );
    assert_eq!(
        gz.header("ETag"),
        Some(format!("W/{etag}")),
        "the ETag turns weak"
    );
    assert!(!gz.has("Vary"), "gzip_vary is off by default");
    assert_eq!(gz.text(), PAGE.repeat(20));
    assert!(gz.payload().len() < PAGE.len() * 20 / 4);

    // Quality zero means no; HTTP/1.0 stays uncompressed; HEAD announces
    // the compressed response GET would get.
    let refused = fetch(
        proxy.addr(),
        &get_with("/page.html", "Accept-Encoding: gzip;q=0\r\n"),
    )
    .await;
    assert!(!refused.has("Content-Encoding"));
    let head = fetch(
        proxy.addr(),
        "HEAD /page.html HTTP/1.1\r\nHost: h\r\nConnection: close\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert_eq!(
        head.header("Content-Encoding").as_deref(),
        Some("gzip"),
        "{}",
        head.head
    );
    assert!(
        !head.has("Content-Length") && head.body.is_empty(),
        "{}",
        head.head
    );
    let old = fetch(
        proxy.addr(),
        "GET /page.html HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert!(
        !old.has("Content-Encoding"),
        "gzip_http_version defaults to 1.1"
    );

    // Only text/html by default; below gzip_min_length stays plain.
    let css = fetch(
        proxy.addr(),
        &get_with("/style.css", "Accept-Encoding: gzip\r\n"),
    )
    .await;
    assert!(!css.has("Content-Encoding"));
    let tiny = fetch(
        proxy.addr(),
        &get_with("/tiny.html", "Accept-Encoding: gzip\r\n"),
    )
    .await;
    assert!(!tiny.has("Content-Encoding"));
    // Error pages are HTML too.
    let missing = fetch(
        proxy.addr(),
        &get_with("/nope.html", "Accept-Encoding: gzip\r\n"),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("Content-Encoding").as_deref(), Some("gzip"));
    assert!(missing.text().contains("404 Not Found"));

    // $gzip_ratio is set for compressed responses only; $body_bytes_sent
    // counts compressed bytes.
    let log = std::fs::read_to_string(proxy.dir.path().join("gzip.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("/page.html - "), "{log}");
    let fields: Vec<&str> = lines[1].split(' ').collect();
    let ratio: f64 = fields[1].parse().expect("a ratio");
    assert!(ratio > 4.0, "{log}");
    assert_eq!(fields[2], gz.payload().len().to_string(), "{log}");
}

#[tokio::test]
async fn gzip_types_min_length_vary_and_disable() {
    let (proxy, _site) = site(
        "gzip on; gzip_types text/css; gzip_min_length 1000; gzip_vary on; gzip_comp_level 9; gzip_disable \"^curl/\";",
    )
    .await;
    let css = fetch(
        proxy.addr(),
        &get_with("/style.css", "Accept-Encoding: gzip\r\n"),
    )
    .await;
    assert_eq!(css.header("Content-Encoding").as_deref(), Some("gzip"));
    assert_eq!(css.header("Vary").as_deref(), Some("Accept-Encoding"));
    assert_eq!(css.text(), "body { color: red; } ".repeat(100));
    // Vary is sent for a response that qualifies even when this client
    // gets it plain.
    let plain = fetch(proxy.addr(), &get_with("/style.css", "")).await;
    assert!(!plain.has("Content-Encoding"));
    assert_eq!(plain.header("Vary").as_deref(), Some("Accept-Encoding"));
    // Too small now (tiny.html < 1000): neither compressed nor Vary.
    let tiny = fetch(
        proxy.addr(),
        &get_with("/tiny.html", "Accept-Encoding: gzip\r\n"),
    )
    .await;
    assert!(!tiny.has("Content-Encoding") && !tiny.has("Vary"));
    // gzip_disable matches the User-Agent, case-insensitively.
    let curl = fetch(
        proxy.addr(),
        &get_with(
            "/style.css",
            "Accept-Encoding: gzip\r\nUser-Agent: CURL/8.5\r\n",
        ),
    )
    .await;
    assert!(!curl.has("Content-Encoding"));
}

#[tokio::test]
async fn gzip_proxied_requests_follow_gzip_proxied() {
    let site_dir = TempDir::new();
    site_dir.write("page.html", PAGE.repeat(20));
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            root {root};
            gzip on;
            location /any/ {{ alias {root}/; gzip_proxied any; }}
            location /auth/ {{ alias {root}/; gzip_proxied auth; expires 1h; }}
        }}"#,
        root = site_dir.path().display()
    ))
    .await;
    let via = "Accept-Encoding: gzip\r\nVia: 1.1 cdn\r\n";
    let off = fetch(proxy.addr(), &get_with("/page.html", via)).await;
    assert!(
        !off.has("Content-Encoding"),
        "gzip_proxied is off by default"
    );
    let any = fetch(proxy.addr(), &get_with("/any/page.html", via)).await;
    assert_eq!(any.header("Content-Encoding").as_deref(), Some("gzip"));
    // With `Expires` set and no `expired` flag, only `auth` can allow it.
    let no_auth = fetch(proxy.addr(), &get_with("/auth/page.html", via)).await;
    assert!(no_auth.has("Expires"));
    assert!(!no_auth.has("Content-Encoding"));
    let auth = fetch(
        proxy.addr(),
        &get_with(
            "/auth/page.html",
            &format!("{via}Authorization: Basic eDp5\r\n"),
        ),
    )
    .await;
    assert_eq!(auth.header("Content-Encoding").as_deref(), Some("gzip"));
}

#[tokio::test]
async fn gzip_streams_backend_bodies_flushing_each_read() {
    // The backend sends one chunk, waits until the client has decoded it
    // through the proxy, then sends the rest.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut s).await;
        let first = "<p>first part of the page, long enough to compress</p>";
        s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
                first.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let _ = go_rx.await;
        s.write_all(b"5\r\n<hr/>\r\n0\r\n\r\n").await.unwrap();
    });
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; gzip on; location / {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(get_with("/", "Accept-Encoding: gzip\r\n").as_bytes())
        .await
        .unwrap();
    // Read until the first part decodes.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let decoded_first = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("the first part should arrive before the backend finishes")
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        let Some(at) = find(&got, b"\r\n\r\n") else {
            continue;
        };
        let body = &got[at + 4..];
        // Decode the complete chunks received so far.
        let mut payload = Vec::new();
        let mut rest = body;
        while let Some(line_end) = find(rest, b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            if rest.len() < line_end + 2 + size + 2 {
                break;
            }
            payload.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        let mut text = Vec::new();
        let _ = flate2::read::GzDecoder::new(&payload[..]).read_to_end(&mut text);
        if text.ends_with(b"compress</p>") {
            break String::from_utf8(text).unwrap();
        }
    };
    assert_eq!(
        decoded_first,
        "<p>first part of the page, long enough to compress</p>"
    );
    go_tx.send(()).unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    got.extend_from_slice(&rest);
    let at = find(&got, b"\r\n\r\n").unwrap();
    let head = String::from_utf8(got[..at].to_vec()).unwrap();
    let full = Raw {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        head,
        body: got[at + 4..].to_vec(),
    };
    assert_eq!(full.status, 200);
    assert_eq!(full.header("Content-Encoding").as_deref(), Some("gzip"));
    assert_eq!(
        full.text(),
        "<p>first part of the page, long enough to compress</p><hr/>"
    );
}

#[tokio::test]
async fn gzip_leaves_encoded_and_error_responses_alone() {
    let be = Backend::with(|seen| {
        let body = "x".repeat(500);
        let (status, encoding) = match seen.request_line() {
            l if l.starts_with("GET /br") => ("200 OK", "Content-Encoding: br\r\n"),
            l if l.starts_with("GET /fail") => ("500 Internal Server Error", ""),
            _ => ("200 OK", ""),
        };
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\n{encoding}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; gzip on; location / {{ proxy_pass http://{}; }} }}",
        be.addr
    ))
    .await;
    let ae = "Accept-Encoding: gzip\r\n";
    let ok = fetch(proxy.addr(), &get_with("/ok", ae)).await;
    assert_eq!(ok.header("Content-Encoding").as_deref(), Some("gzip"));
    assert_eq!(ok.text(), "x".repeat(500));
    let br = fetch(proxy.addr(), &get_with("/br", ae)).await;
    assert_eq!(br.header("Content-Encoding").as_deref(), Some("br"));
    assert_eq!(br.header("Content-Length").as_deref(), Some("500"));
    let fail = fetch(proxy.addr(), &get_with("/fail", ae)).await;
    assert_eq!(fail.status, 500);
    assert!(!fail.has("Content-Encoding"));
}

#[test]
fn gzip_directive_errors() {
    let load = http_config_error;
    assert!(load("gzip_comp_level 10;").contains("value must be between 1 and 9"));
    assert!(load("gzip_proxied sometimes;").contains("invalid value \"sometimes\""));
    assert!(load("gzip_http_version 2.0;").contains("invalid value \"2.0\""));
    assert!(load("gzip maybe;").contains("it must be \"on\" or \"off\""));
    assert!(load("gzip_disable \"(\";").contains("is not a valid regex"));
    assert!(load("gzip_static on;").contains("ngx_http_gzip_static_module is not implemented"));
}
