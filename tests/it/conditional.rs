//! Conditional requests (nginx's not-modified filter): `ETag` and
//! `Last-Modified` of static files, 304 for `If-None-Match` and
//! `If-Modified-Since`, 412 for `If-Match` and `If-Unmodified-Since`, the
//! directives `etag` and `if_modified_since`, and what a 304 keeps.

use std::time::{Duration, UNIX_EPOCH};

use crate::harness::*;

/// The modification time given to the test files: 2024-02-29 13:14:15 UTC.
const MTIME: u64 = 1_709_212_455;
const MTIME_TEXT: &str = "Thu, 29 Feb 2024 13:14:15 GMT";
const BODY: &str = "a cached page body\n";

/// Writes `name` with `contents`, modified at `secs` since the epoch.
pub fn file_at(dir: &TempDir, name: &str, contents: &str, secs: u64) {
    let path = dir.write(name, contents);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn etag() -> String {
    format!("\"{MTIME:x}-{:x}\"", BODY.len())
}

async fn site(extra: &str) -> (Proxy, TempDir) {
    let site = TempDir::new();
    file_at(&site, "page.html", BODY, MTIME);
    file_at(&site, "sub/page.html", BODY, MTIME);
    site.write("oops.html", "custom precondition page\n");
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            root {root};
            location / {{ }}
            location /sub/ {{
                add_header X-Sub on;
                add_header X-Every on always;
                expires 2h;
            }}
            location /before/ {{ alias {root}/; if_modified_since before; }}
            location /ignore/ {{ alias {root}/; if_modified_since off; }}
            location /untagged/ {{ alias {root}/; etag off; }}
            location /paged/ {{ alias {root}/; error_page 412 /oops.html; }}
            location = /text {{ return 200 "generated"; }}
            {extra}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

async fn ask(proxy: &Proxy, path: &str, headers: &str) -> Response {
    let req = format!("GET {path} HTTP/1.0\r\nHost: t\r\n{headers}\r\n");
    Response::parse(&raw(proxy.addr(), req.as_bytes()).await)
}

#[tokio::test]
async fn conditional_validators_of_a_static_file() {
    let (proxy, _site) = site("").await;
    let r = ask(&proxy, "/page.html", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ETag"), Some(etag()));
    assert_eq!(r.header("Last-Modified").as_deref(), Some(MTIME_TEXT));
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("bytes"));
    // nginx's places: Last-Modified right after the length, the ETag and
    // Accept-Ranges after Connection.
    let names: Vec<&str> = r
        .head
        .lines()
        .skip(1)
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Server",
            "Date",
            "Content-Type",
            "Content-Length",
            "Last-Modified",
            "Connection",
            "ETag",
            "Accept-Ranges"
        ]
    );
    let r = ask(&proxy, "/untagged/page.html", "").await;
    assert_eq!(r.header("ETag"), None);
    assert_eq!(r.header("Last-Modified").as_deref(), Some(MTIME_TEXT));
}

#[tokio::test]
async fn conditional_if_none_match_forms() {
    let (proxy, _site) = site("").await;
    let tag = etag();
    for value in [
        tag.clone(),
        format!("\"one\", \"two\",\t{tag} , \"three\""),
        format!("W/{tag}"),
        "*".to_string(),
    ] {
        let r = ask(&proxy, "/page.html", &format!("If-None-Match: {value}\r\n")).await;
        assert_eq!(r.status, 304, "If-None-Match: {value}");
        assert_eq!(r.body, "");
    }
    for value in ["\"other\"", "\"one\", \"two\"", &tag[1..], "W/\"x\""] {
        let r = ask(&proxy, "/page.html", &format!("If-None-Match: {value}\r\n")).await;
        assert_eq!(r.status, 200, "If-None-Match: {value}");
        assert_eq!(r.body, BODY);
    }
    // HEAD is answered the same way.
    let req = format!("HEAD /page.html HTTP/1.0\r\nIf-None-Match: {tag}\r\n\r\n");
    assert_eq!(
        Response::parse(&raw(proxy.addr(), req.as_bytes()).await).status,
        304
    );
}

#[tokio::test]
async fn conditional_not_modified_keeps_validators_and_drops_the_entity_headers() {
    let (proxy, _site) = site("").await;
    let r = ask(
        &proxy,
        "/sub/page.html",
        &format!("If-None-Match: {}\r\n", etag()),
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(etag()));
    assert_eq!(r.header("Last-Modified").as_deref(), Some(MTIME_TEXT));
    for gone in ["Content-Type", "Content-Length", "Accept-Ranges"] {
        assert_eq!(r.header(gone), None, "{gone} in\n{}", r.head);
    }
    // add_header and expires run after the filter and apply to a 304.
    assert_eq!(r.header("X-Sub").as_deref(), Some("on"));
    assert_eq!(r.header("X-Every").as_deref(), Some("on"));
    assert_eq!(r.header("Cache-Control").as_deref(), Some("max-age=7200"));
    assert!(r.header("Expires").is_some());
}

#[tokio::test]
async fn conditional_if_modified_since_modes() {
    let (proxy, _site) = site("").await;
    let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(MTIME + 60));
    let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(MTIME - 60));
    let cases = [
        ("/page.html", MTIME_TEXT, 304),
        ("/page.html", later.as_str(), 200),
        ("/page.html", earlier.as_str(), 200),
        ("/page.html", "yesterday", 200),
        // The other two formats nginx reads.
        ("/page.html", "Thursday, 29-Feb-24 13:14:15 GMT", 304),
        ("/page.html", "Thu Feb 29 13:14:15 2024", 304),
        ("/before/page.html", later.as_str(), 304),
        ("/before/page.html", MTIME_TEXT, 304),
        ("/before/page.html", earlier.as_str(), 200),
        ("/ignore/page.html", MTIME_TEXT, 200),
    ];
    for (path, date, status) in cases {
        let r = ask(&proxy, path, &format!("If-Modified-Since: {date}\r\n")).await;
        assert_eq!(r.status, status, "{path} If-Modified-Since: {date}");
    }
}

#[tokio::test]
async fn conditional_if_match_and_if_unmodified_since_fail_with_412() {
    let (proxy, _site) = site("").await;
    let tag = etag();
    let cases = [
        (format!("If-Match: {tag}"), 200),
        (format!("If-Match: \"x\", \t{tag}"), 200),
        ("If-Match: *".to_string(), 200),
        ("If-Match: \"x\"".to_string(), 412),
        // If-Match compares strongly.
        (format!("If-Match: W/{tag}"), 412),
        (format!("If-Unmodified-Since: {MTIME_TEXT}"), 200),
        (
            "If-Unmodified-Since: Fri, 01 Mar 2024 00:00:00 GMT".to_string(),
            200,
        ),
        (
            "If-Unmodified-Since: Wed, 28 Feb 2024 00:00:00 GMT".to_string(),
            412,
        ),
        ("If-Unmodified-Since: not a date".to_string(), 412),
    ];
    for (header, status) in cases {
        let r = ask(&proxy, "/page.html", &format!("{header}\r\n")).await;
        assert_eq!(r.status, status, "{header}");
    }
    // nginx's page for 412; only `always` headers on it.
    let r = ask(&proxy, "/sub/page.html", "If-Match: \"x\"\r\n").await;
    assert_eq!(r.status, 412);
    assert!(r.body.contains("<title>412 Precondition Failed</title>"));
    assert_eq!(r.header("Content-Type").as_deref(), Some("text/html"));
    assert_eq!(r.header("X-Every").as_deref(), Some("on"));
    assert_eq!(r.header("X-Sub"), None);
    assert_eq!(r.header("ETag"), None);
    assert_eq!(r.header("Cache-Control"), None);
    // error_page handles the 412.
    let r = ask(&proxy, "/paged/page.html", "If-Match: \"x\"\r\n").await;
    assert_eq!(r.status, 412);
    assert_eq!(r.body, "custom precondition page\n");
}

#[tokio::test]
async fn conditional_headers_combined() {
    let (proxy, _site) = site("").await;
    let tag = etag();
    let older = "Wed, 28 Feb 2024 00:00:00 GMT";
    let cases = [
        // Both must say "not modified".
        (
            format!("If-None-Match: \"x\"\r\nIf-Modified-Since: {MTIME_TEXT}"),
            200,
        ),
        (
            format!("If-None-Match: {tag}\r\nIf-Modified-Since: {older}"),
            200,
        ),
        (
            format!("If-None-Match: {tag}\r\nIf-Modified-Since: {MTIME_TEXT}"),
            304,
        ),
        // The 412 tests come first.
        (format!("If-Match: \"x\"\r\nIf-None-Match: {tag}"), 412),
        (
            format!("If-Unmodified-Since: {older}\r\nIf-None-Match: {tag}"),
            412,
        ),
        (format!("If-Match: {tag}\r\nIf-None-Match: {tag}"), 304),
        (
            format!("If-Unmodified-Since: {MTIME_TEXT}\r\nIf-Modified-Since: {MTIME_TEXT}"),
            304,
        ),
    ];
    for (headers, status) in cases {
        let r = ask(&proxy, "/page.html", &format!("{headers}\r\n")).await;
        assert_eq!(r.status, status, "{headers}");
    }
}

#[tokio::test]
async fn conditional_applies_to_200s_we_make_and_not_to_errors() {
    let (proxy, _site) = site("").await;
    // A generated 200 has no validators: `*` matches, a tag cannot.
    let r = ask(&proxy, "/text", "If-None-Match: *\r\n").await;
    assert_eq!(r.status, 304);
    assert_eq!(
        ask(&proxy, "/text", "If-None-Match: \"a\"\r\n")
            .await
            .status,
        200
    );
    assert_eq!(
        ask(&proxy, "/text", "If-Match: \"a\"\r\n").await.status,
        412
    );
    assert_eq!(
        ask(
            &proxy,
            "/text",
            "If-Unmodified-Since: Thu, 29 Feb 2024 13:14:15 GMT\r\n"
        )
        .await
        .status,
        412
    );
    // Preconditions are ignored where the answer would not be a 200.
    assert_eq!(
        ask(&proxy, "/missing.html", "If-Match: \"a\"\r\n")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn conditional_proxied_responses_are_passed_through() {
    let backend = Backend::with(|seen| {
        let status = if seen.header("If-None-Match").as_deref() == Some("\"v7\"") {
            "304 Not Modified"
        } else {
            "200 OK"
        };
        format!(
            "HTTP/1.1 {status}\r\nETag: \"v7\"\r\nLast-Modified: {MTIME_TEXT}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
        )
        .into_bytes()
    })
    .await;
    let (proxy, _site) = site(&format!(
        r#"location /app/ {{ proxy_pass http://{b}; }}
           location /quiet/ {{ proxy_pass http://{b}; proxy_set_header If-None-Match ""; proxy_set_header If-Match ""; }}"#,
        b = backend.addr
    ))
    .await;
    // The backend decides: its 304 goes through as it is.
    let r = ask(&proxy, "/app/x", "If-None-Match: \"v7\"\r\n").await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag").as_deref(), Some("\"v7\""));
    // A backend 200 is never turned into a 304 or a 412 (nginx does so only
    // for responses from its cache).
    let r = ask(&proxy, "/quiet/x", "If-None-Match: \"v7\"\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "body");
    let r = ask(&proxy, "/quiet/x", "If-Match: \"other\"\r\n").await;
    assert_eq!(r.status, 200);
    let r = ask(
        &proxy,
        "/quiet/x",
        &format!("If-Modified-Since: {MTIME_TEXT}\r\n"),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn conditional_repeated_headers_are_refused() {
    let (proxy, _site) = site("").await;
    for name in [
        "If-Match",
        "If-None-Match",
        "If-Modified-Since",
        "If-Unmodified-Since",
        "If-Range",
    ] {
        let r = ask(
            &proxy,
            "/page.html",
            &format!("{name}: \"a\"\r\n{name}: \"b\"\r\n"),
        )
        .await;
        assert_eq!(r.status, 400, "{name} twice");
    }
    assert!(proxy.error_log().contains(
        "client sent duplicate header line: \"If-Range: \"b\"\", previous value: \"If-Range: \"a\"\""
    ));
    // Range itself may repeat: the first counts.
    let r = ask(
        &proxy,
        "/page.html",
        "Range: bytes=0-1\r\nRange: bytes=2-3\r\n",
    )
    .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, "a ");
}

#[tokio::test]
async fn conditional_compressed_responses_have_weak_tags() {
    let site = TempDir::new();
    file_at(&site, "page.html", BODY, MTIME);
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; root {}; gzip on; gzip_min_length 1; }}",
        site.path().display()
    ))
    .await;
    // gzip answers HTTP/1.1 requests only (gzip_http_version).
    let gz = "Accept-Encoding: gzip\r\n";
    let addr = proxy.addr();
    let ask = |headers: String| async move {
        let req =
            format!("GET /page.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n");
        Response::parse(&raw(addr, req.as_bytes()).await)
    };
    let r = ask(gz.to_string()).await;
    assert_eq!(r.header("ETag"), Some(format!("W/{}", etag())));
    assert_eq!(r.header("Content-Encoding").as_deref(), Some("gzip"));
    // The tag a cache kept, weak, still matches.
    let r = ask(format!("{gz}If-None-Match: W/{}\r\n", etag())).await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Content-Encoding"), None);
}
