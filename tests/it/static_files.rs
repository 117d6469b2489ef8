//! Static files beside proxied locations: root, alias, index, try_files,
//! statuses, conditional requests, add_header and expires.

use crate::harness::*;

async fn site() -> (Proxy, TempDir) {
    let site = TempDir::new();
    site.write("index.html", "<p>home</p>");
    site.write("app.js", "console.log(1)");
    site.write("docs/guide.txt", "guide");
    std::fs::create_dir_all(site.path().join("empty")).unwrap();
    site.write("assets/logo.svg", "<svg/>");
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            root {root};
            add_header X-Always yes always;
            location / {{ index index.html; }}
            location /spa/ {{ try_files $uri $uri/ /index.html; }}
            location /named/ {{ try_files $uri @fallback; }}
            location @fallback {{ return 200 "named fallback"; }}
            location /status/ {{ try_files $uri =418; }}
            location /static/ {{ alias {root}/assets/; expires 1h; add_header X-Static 1; }}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

#[tokio::test]
async fn static_serves_files_with_types_and_validators() {
    let (proxy, _site) = site().await;
    let r = get_response(proxy.addr(), "/app.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "console.log(1)");
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/javascript")
    );
    assert_eq!(r.header("Content-Length").as_deref(), Some("14"));
    let lm = r.header("Last-Modified").expect("Last-Modified");
    assert!(r.header("ETag").is_some());
    let r = Response::parse(
        &raw(
            proxy.addr(),
            format!("GET /app.js HTTP/1.0\r\nIf-Modified-Since: {lm}\r\n\r\n").as_bytes(),
        )
        .await,
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.body, "");
    let text = raw(proxy.addr(), b"HEAD /app.js HTTP/1.0\r\n\r\n").await;
    assert!(
        text.contains("Content-Length: 14") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
}

#[tokio::test]
async fn static_index_and_directory_rules() {
    let (proxy, _site) = site().await;
    assert_eq!(get_response(proxy.addr(), "/").await.body, "<p>home</p>");
    let r = get_response(proxy.addr(), "/docs").await;
    assert_eq!(r.status, 301);
    assert!(r.header("Location").unwrap().ends_with("/docs/"));
    let r = get_response(proxy.addr(), "/empty/").await;
    assert_eq!(r.status, 403);
    assert!(proxy.error_log().contains("directory index of"));
    let r = get_response(proxy.addr(), "/missing.txt").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("X-Always").as_deref(),
        Some("yes"),
        "always adds to errors too"
    );
    assert!(
        proxy
            .error_log()
            .contains("missing.txt\" failed (2: No such file or directory)")
    );
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"POST /app.js HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 405);
    // As nginx: POST to a missing file is a 404, other methods are 405.
    let missing = raw(proxy.addr(), b"POST /nope.js HTTP/1.0\r\n\r\n").await;
    assert_eq!(Response::parse(&missing).status, 404);
    let put = raw(proxy.addr(), b"PUT /nope.js HTTP/1.0\r\n\r\n").await;
    assert_eq!(Response::parse(&put).status, 405);
}

#[tokio::test]
async fn static_try_files_fallbacks() {
    let (proxy, _site) = site().await;
    assert_eq!(
        get_response(proxy.addr(), "/spa/route/42").await.body,
        "<p>home</p>"
    );
    assert_eq!(
        get_response(proxy.addr(), "/named/zzz").await.body,
        "named fallback"
    );
    assert_eq!(get_response(proxy.addr(), "/status/zzz").await.status, 418);
}

#[tokio::test]
async fn static_alias_expires_and_add_header() {
    let (proxy, _site) = site().await;
    let r = get_response(proxy.addr(), "/static/logo.svg").await;
    assert_eq!(r.body, "<svg/>");
    assert_eq!(r.header("Content-Type").as_deref(), Some("image/svg+xml"));
    assert_eq!(r.header("Cache-Control").as_deref(), Some("max-age=3600"));
    assert!(r.header("Expires").is_some());
    assert_eq!(r.header("X-Static").as_deref(), Some("1"));
    assert_eq!(
        r.header("X-Always"),
        None,
        "a level with add_header replaces the inherited ones"
    );
    let r = get_response(proxy.addr(), "/static/none.svg").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("X-Static"),
        None,
        "without always, add_header skips errors"
    );
}

#[tokio::test]
async fn static_types_blocks_and_mime_types_include() {
    let site = TempDir::new();
    for name in ["a.tst", "b.TST", "c.css", "d.html", "noext", ".hidden.tst"] {
        site.write(name, "x");
    }
    // Like Debian's /etc/nginx/mime.types, included from the http block.
    let mime = site.write(
        "mime.types",
        "types {\n    text/html html htm;\n    text/x-test tst;\n}\n",
    );
    let proxy = Proxy::http(&format!(
        r#"include {mime};
        default_type application/octet-stream;
        server {{
            listen 127.0.0.1:0;
            root {root};
            location /raw/ {{ alias {root}/; types {{ }} default_type text/plain; }}
            location /more/ {{ alias {root}/; types {{ text/css css; }} types {{ text/x-again tst; }} }}
        }}"#,
        mime = mime.display(),
        root = site.path().display()
    ))
    .await;
    let ctype = |path: &'static str| {
        let addr = proxy.addr();
        async move { get_response(addr, path).await.header("Content-Type") }
    };
    assert_eq!(ctype("/a.tst").await.as_deref(), Some("text/x-test"));
    assert_eq!(
        ctype("/b.TST").await.as_deref(),
        Some("text/x-test"),
        "extensions ignore case"
    );
    assert_eq!(ctype("/.hidden.tst").await.as_deref(), Some("text/x-test"));
    assert_eq!(ctype("/d.html").await.as_deref(), Some("text/html"));
    // The configured table replaces the built-in one: css is unknown here.
    assert_eq!(
        ctype("/c.css").await.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        ctype("/noext").await.as_deref(),
        Some("application/octet-stream")
    );
    // An empty block at a lower level forces default_type.
    assert_eq!(ctype("/raw/d.html").await.as_deref(), Some("text/plain"));
    // Two blocks at one level add up; the location's table replaces http's.
    assert_eq!(ctype("/more/c.css").await.as_deref(), Some("text/css"));
    assert_eq!(ctype("/more/a.tst").await.as_deref(), Some("text/x-again"));
    assert_eq!(
        ctype("/more/d.html").await.as_deref(),
        Some("application/octet-stream")
    );
}

#[test]
fn static_types_duplicate_extension_warns_and_keeps_the_later() {
    let dir = TempDir::new();
    let config = switchyard::config::load_str(
        "events {}\nhttp { types { text/a x; text/b x y; } server { listen 127.0.0.1:0; } }\n",
        dir.path(),
    )
    .unwrap();
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(
            "duplicate extension \"x\", content type: \"text/b\", previous content type: \"text/a\""
        ),
        "{warnings:?}"
    );
}

/// A FIFO (or any non-regular file) is a 404 logged as such, answered at
/// once instead of waiting for a writer.
#[tokio::test]
async fn static_non_regular_files_are_404() {
    let (proxy, site) = site().await;
    let fifo = site.path().join("pipe.txt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        get_response(proxy.addr(), "/pipe.txt"),
    )
    .await
    .expect("a FIFO blocked the request");
    assert_eq!(r.status, 404);
    assert!(
        proxy
            .error_log()
            .contains("pipe.txt\" is not a regular file"),
        "{}",
        proxy.error_log()
    );
}

/// A file that shrinks while it is sent ends the connection short of its
/// Content-Length, so the client cannot take it as complete.
#[tokio::test]
async fn static_truncated_files_end_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (proxy, site) = site().await;
    let len = 32 << 20;
    let file = site.write("big.bin", vec![b'f'; len]);
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = bounded("the response", s.read(&mut got)).await.unwrap();
    got.truncate(n);
    let head_end = find(&got, b"\r\n\r\n").expect("head in the first read") + 4;
    assert!(String::from_utf8_lossy(&got[..head_end]).contains(&format!("Content-Length: {len}")));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(1024)
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the connection stayed open")
        .unwrap();
    assert!(n - head_end + rest.len() < len);
    assert!(
        proxy.error_log().contains("file was truncated"),
        "{}",
        proxy.error_log()
    );
}
