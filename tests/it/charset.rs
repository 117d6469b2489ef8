//! The charset filter: `charset`, `charset_types`, `source_charset`,
//! `override_charset`, `charset_map` (single-byte tables), for static
//! files and proxied responses, and what is refused at load.

use crate::harness::*;

async fn site(extra: &str) -> (Proxy, TempDir) {
    let site = TempDir::new();
    site.write("p.html", "plain page");
    site.write("p.txt", "plain text");
    site.write("p.css", "body {}");
    site.write("p.bin", "bytes");
    site.write("dir/index.html", "index");
    // Bytes 0xe0 and 0xe1, and ASCII letters the map changes.
    site.write("legacy.html", b"abc \xe0\xe1 cab".as_slice());
    let proxy = Proxy::http(&format!(
        r#"types {{ text/html html; text/plain txt; text/css css; application/octet-stream bin; }}
        charset_map legacy modern {{
            61 41;  # a -> A
            E0 C0;
            e1 C1;
        }}
        server {{
            listen 127.0.0.1:0;
            root {root};
            location / {{ charset utf-8; }}
            location /css/ {{ alias {root}/; charset utf-8; charset_types text/css; }}
            location /all/ {{ alias {root}/; charset utf-8; charset_types *; }}
            location /off/ {{ alias {root}/; charset off; }}
            location /var/ {{ alias {root}/; charset $arg_cs; }}
            location /conv/ {{ alias {root}/; charset modern; source_charset legacy; }}
            location /back/ {{ alias {root}/; charset legacy; source_charset modern; }}
            location /same/ {{ alias {root}/; charset LEGACY; source_charset legacy; }}
            {extra}
        }}"#,
        root = site.path().display()
    ))
    .await;
    (proxy, site)
}

/// A GET's head, and its body as bytes (converted bodies are not UTF-8).
async fn get_bytes(addr: std::net::SocketAddr, path: &str) -> (Response, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.0\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .unwrap()
        .unwrap();
    let split = find(&out, b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (Response::parse(&head), out[split..].to_vec())
}

fn ctype(r: &Response) -> String {
    r.header("Content-Type").unwrap_or_default()
}

#[tokio::test]
async fn charset_is_added_to_listed_types() {
    let (proxy, _site) = site("").await;
    let cases = [
        ("/p.html", "text/html; charset=utf-8"),
        ("/p.txt", "text/plain; charset=utf-8"),
        // text/css is not among the default types.
        ("/p.css", "text/css"),
        ("/css/p.css", "text/css; charset=utf-8"),
        // text/html always is.
        ("/css/p.html", "text/html; charset=utf-8"),
        ("/css/p.txt", "text/plain"),
        ("/all/p.bin", "application/octet-stream; charset=utf-8"),
        ("/off/p.html", "text/html"),
        // Error pages are text/html too.
        ("/missing.html", "text/html; charset=utf-8"),
        // Redirects are not (nginx: browsers kept the charset for the
        // next page).
        ("/dir", "text/html"),
    ];
    for (path, wanted) in cases {
        let r = get_response(proxy.addr(), path).await;
        assert_eq!(ctype(&r), wanted, "{path}");
    }
    let r = get_response(proxy.addr(), "/dir").await;
    assert_eq!(r.status, 301);
}

#[tokio::test]
async fn charset_from_a_variable() {
    let (proxy, _site) = site("").await;
    let r = get_response(proxy.addr(), "/var/p.html?cs=windows-1251").await;
    assert_eq!(ctype(&r), "text/html; charset=windows-1251");
    let r = get_response(proxy.addr(), "/var/p.html?cs=").await;
    assert_eq!(ctype(&r), "text/html");
    // A variable that is not found fails the response, as in nginx: the
    // connection closes without one.
    let text = get(proxy.addr(), "/var/p.html").await;
    assert_eq!(text, "");
}

#[tokio::test]
async fn charset_map_converts_single_byte_bodies() {
    let (proxy, _site) = site("").await;
    let (r, body) = get_bytes(proxy.addr(), "/conv/legacy.html").await;
    assert_eq!(ctype(&r), "text/html; charset=modern");
    assert_eq!(body, b"Abc \xc0\xc1 cAb");
    assert_eq!(r.header("Content-Length").as_deref(), Some("10"));
    // The map works both ways; bytes above 0x7f it does not name become ?.
    let r = get_response(proxy.addr(), "/back/p.html").await;
    assert_eq!(ctype(&r), "text/html; charset=legacy");
    assert_eq!(r.body, "plain page");
    // Same charset under two spellings: nothing to convert.
    let r = get_response(proxy.addr(), "/same/legacy.html").await;
    assert_eq!(ctype(&r), "text/html; charset=LEGACY");
    assert!(r.body.starts_with("abc "));
    // Ranges are served from the converted body.
    let req = b"GET /conv/legacy.html HTTP/1.0\r\nRange: bytes=0-2\r\n\r\n";
    let r = Response::parse(&raw(proxy.addr(), req).await);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, "Abc");
}

#[tokio::test]
async fn charset_of_proxied_responses() {
    let backend = Backend::with(|seen| {
        let path = seen.request_line().split(' ').nth(1).unwrap_or("").to_string();
        let (ctype, extra) = match path.as_str() {
            "/bare" => ("text/html", ""),
            "/named" => ("text/html; charset=\"legacy\"", ""),
            "/other" => ("text/html; charset=koi8-u", ""),
            "/accel" => ("text/html", "X-Accel-Charset: modern\r\n"),
            _ => ("text/plain", ""),
        };
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{extra}Content-Length: 8\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(b"banana\xe0!");
        out
    })
    .await;
    let (proxy, _site) = site(&format!(
        r#"location /px/ {{ proxy_pass http://{b}/; charset utf-8; }}
           location /ov/ {{ proxy_pass http://{b}/; charset modern; override_charset on; }}
           location /raw/ {{ proxy_pass http://{b}/; source_charset legacy; charset modern; }}"#,
        b = backend.addr
    ))
    .await;
    // A backend type without a charset gets ours.
    let r = get_response(proxy.addr(), "/px/bare").await;
    assert_eq!(ctype(&r), "text/html; charset=utf-8");
    // One that names a charset keeps it without override_charset.
    let r = get_response(proxy.addr(), "/px/named").await;
    assert_eq!(ctype(&r), "text/html; charset=\"legacy\"");
    // override_charset: converted from the named charset.
    let (r, body) = get_bytes(proxy.addr(), "/ov/named").await;
    assert_eq!(ctype(&r), "text/html; charset=modern");
    assert_eq!(body, b"bAnAnA\xc0!");
    // No map between the two: left alone, and an error line says so.
    let r = get_response(proxy.addr(), "/ov/other").await;
    assert_eq!(ctype(&r), "text/html; charset=koi8-u");
    assert!(
        proxy
            .error_log()
            .contains("no \"charset_map\" between the charsets \"koi8-u\" and \"modern\"")
    );
    // source_charset converts a backend body that names no charset.
    let (r, body) = get_bytes(proxy.addr(), "/raw/bare").await;
    assert_eq!(ctype(&r), "text/html; charset=modern");
    assert_eq!(body, b"bAnAnA\xc0!");
    // X-Accel-Charset chooses the charset to send (and is not passed on).
    let backend_accel = get_response(proxy.addr(), "/raw/accel").await;
    assert_eq!(ctype(&backend_accel), "text/html; charset=modern");
    assert_eq!(backend_accel.header("X-Accel-Charset"), None);
}

#[test]
fn charset_refusals_at_load() {
    let err = http_config_error("charset_map koi8-r utf-8 { C0 D18E; }");
    assert!(
        err.contains("conversion to or from UTF-8 is not implemented"),
        "{err}"
    );
    let err = http_config_error("charset_map one two { 41 zz; }");
    assert!(err.contains("invalid value \"zz\""), "{err}");
    let err = http_config_error("charset_map one two { 41 42 43; }");
    assert!(err.contains("invalid parameters number"), "{err}");
    let err = http_config_error("charset_map one ONE { }");
    assert!(err.contains("between the same charsets"), "{err}");
    let err = http_config_error("charset_map one two { } charset_map two one { }");
    assert!(err.contains("duplicate \"charset_map\""), "{err}");
    let err = http_config_error("server { location / { charset two; source_charset one; } }");
    assert!(
        err.contains("no \"charset_map\" between the charsets \"one\" and \"two\""),
        "{err}"
    );
    let err = http_config_error("server { charset_map one two { } }");
    assert!(err.contains("not allowed here"), "{err}");
    let err = http_config_error("server { charset utf-8; charset koi8-r; }");
    assert!(err.contains("is duplicate"), "{err}");
    // With a map, the same pair loads, either way round.
    assert_eq!(
        http_config_error(
            "charset_map one two { } server { location / { charset one; source_charset two; } }"
        ),
        ""
    );
}

#[test]
fn charset_utf8_maps_are_notes_for_check_nginx() {
    let dir = TempDir::new();
    let conf = dir.write(
        "nginx.conf",
        "events {}\nhttp {\n    charset_map koi8-r utf-8 { C0 D18E; }\n    server {\n        listen 127.0.0.1:8080;\n        location / { charset utf-8; source_charset koi8-r; }\n    }\n}\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--nginx", "-p"])
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("SY900") && text.contains("UTF-8 is not implemented"),
        "{text}"
    );
    // The location using the map is not reported as lacking one.
    assert!(!text.contains("no \"charset_map\""), "{text}");
}
