//! What real nginx configurations need to load and behave the same:
//! lexing as nginx does, directives that copied WebSocket snippets carry,
//! error pages in all their forms, headers on the WebSocket handshake,
//! and errors that say where they are.

use crate::harness::*;

#[test]
fn dropin_quoted_word_before_closing_parenthesis() {
    // nginx splits `"a")` into `a` and `)`.
    let e = http_config_error(
        r#"server { listen 127.0.0.1:0; location / { set $x "a"; if ($x = "a") { return 204; } } }"#,
    );
    assert_eq!(e, "");
    let e = http_config_error(
        r#"server { listen 127.0.0.1:0; location / { if ($http_x = "a")x { return 204; } } }"#,
    );
    assert!(e.starts_with("missing \")\" in condition in "), "{e}");
}

#[tokio::test]
async fn dropin_if_with_quoted_comparison_runs() {
    let proxy = Proxy::http(
        r#"server { listen 127.0.0.1:0; location / { if ($arg_v = "yes") { return 200 matched; } return 200 other; } }"#,
    )
    .await;
    assert!(get(proxy.addr(), "/?v=yes").await.ends_with("matched"));
    assert!(get(proxy.addr(), "/?v=no").await.ends_with("other"));
}

#[test]
fn dropin_cache_conditions_load_without_a_cache() {
    assert_eq!(
        http_config_error(
            "server { listen 127.0.0.1:0; location /ws { proxy_pass http://127.0.0.1:9; proxy_cache_bypass $http_upgrade; proxy_no_cache $http_pragma $arg_nocache; } }"
        ),
        ""
    );
    // Their variables are still checked, with the place.
    let e = http_config_error(
        "server { listen 127.0.0.1:0; location / { proxy_cache_bypass $no_such_thing; } }",
    );
    assert!(
        e.starts_with("unknown \"no_such_thing\" variable in "),
        "{e}"
    );
    assert!(e.ends_with(":2"), "{e}");
}

#[test]
fn dropin_performance_knobs_load_with_a_warning() {
    let dir = TempDir::new();
    let config = switchyard::config::load_str(
        "events {}\nhttp {\n    aio threads;\n    sendfile_max_chunk 512k;\n    directio 4m;\n    server { listen 127.0.0.1:0; }\n}\n",
        dir.path(),
    )
    .unwrap();
    for name in ["aio", "sendfile_max_chunk", "directio"] {
        assert!(
            config.warnings.iter().any(|w| w.message
                == format!("\"{name}\" directive is accepted but has no effect in switchyard")),
            "{name}: {:?}",
            config.warnings
        );
    }
}

#[test]
fn dropin_unknown_variables_say_where_they_are() {
    for body in [
        "add_header X-A $nope;",
        "index $nope;",
        "try_files $nope /x;",
        "error_page 404 /$nope;",
    ] {
        let e = http_config_error(&format!(
            "server {{ listen 127.0.0.1:0; location / {{\n {body} }} }}"
        ));
        assert!(
            e.starts_with("unknown \"nope\" variable in ") && e.ends_with(":3"),
            "{body}: {e}"
        );
    }
}

#[tokio::test]
async fn dropin_add_header_always_reaches_the_websocket_handshake() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; add_header Strict-Transport-Security \"max-age=63072000\" always; add_header X-Only-2xx yes; location /ws {{ proxy_pass http://{backend}; }} }}"
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEC==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    use tokio::io::AsyncReadExt;
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("a 101 in time")
            .unwrap();
        assert_eq!(n, 1, "closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nStrict-Transport-Security: max-age=63072000\r\n"),
        "{head}"
    );
    assert!(!head.contains("X-Only-2xx"), "{head}");
}

#[tokio::test]
async fn dropin_error_page_forms() {
    let backend = Backend::with(|seen| {
        let status = if seen.request_line().contains("/teapot") {
            418
        } else {
            200
        };
        format!("HTTP/1.1 {status} X\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbackend")
            .into_bytes()
    })
    .await;
    let b = backend.addr;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
            location /keep {{ error_page 404 /page; return 404; }}
            location /code {{ error_page 404 =200 /page; return 404; }}
            location /own {{ error_page 404 = /teapot; return 404; }}
            location /named {{ error_page 403 = @fallback; return 403; }}
            location /url {{ error_page 404 https://elsewhere.example/; return 404; }}
            location /url301 {{ error_page 404 =301 https://elsewhere.example/moved; return 404; }}
            location /once {{ error_page 404 /missing; return 404; }}
            location /again {{ recursive_error_pages on; error_page 404 /missing2; return 404; }}
            location = /missing2 {{ recursive_error_pages on; error_page 404 /page; return 404; }}
            location = /page {{ return 200 \"the page\"; }}
            location = /teapot {{ proxy_pass http://{b}; }}
            location @fallback {{ proxy_pass http://{b}; }}
        }}"
    ))
    .await;
    let a = proxy.addr();
    let r = get_response(a, "/keep").await;
    assert_eq!((r.status, r.body.as_str()), (404, "the page"));
    let r = get_response(a, "/code").await;
    assert_eq!((r.status, r.body.as_str()), (200, "the page"));
    let r = get_response(a, "/own").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (418, "backend"),
        "= keeps the page's own status"
    );
    let r = get_response(a, "/named").await;
    assert_eq!((r.status, r.body.as_str()), (200, "backend"));
    let r = get_response(a, "/url").await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://elsewhere.example/")
    );
    let r = get_response(a, "/url301").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://elsewhere.example/moved")
    );
    // Without recursive_error_pages, the page's own 404 is final.
    let r = get_response(a, "/once").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("404 Not Found"), "{}", r.body);
    // With it, the second error page is used too.
    let r = get_response(a, "/again").await;
    assert_eq!((r.status, r.body.as_str()), (404, "the page"));
}

#[tokio::test]
async fn dropin_error_page_for_a_websocket_location_that_fails() {
    // A dead backend behind a WebSocket location with a maintenance page:
    // the handshake is answered by the page (browsers then retry).
    let (_dead, dead) = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let a = s.local_addr().unwrap().as_socket().unwrap();
        (s, a)
    };
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location /ws {{ proxy_pass http://{dead}; error_page 502 = /maintenance; }} location = /maintenance {{ return 503 \"back soon\"; }} }}"
    ))
    .await;
    let err = ws_connect(proxy.addr(), "/ws").await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
}
