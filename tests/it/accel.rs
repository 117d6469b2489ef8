//! Backend control headers: `X-Accel-Redirect` (an internal redirect the
//! backend asks for), `X-Accel-Limit-Rate`, and `proxy_ignore_headers`.

use std::time::{Duration, Instant};

use crate::harness::*;

/// A backend that answers every request with `head` (status line and
/// headers, without the blank line) and `body`.
async fn backend(head: &'static str, body: &'static str) -> Backend {
    Backend::with(move |_| {
        format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

/// A proxy with `/app/` passed to `app`, `/files/` internal static files,
/// `/echo/` internal and passed to `echo`, and `@named`.
async fn proxy(app: &Backend, echo: &Backend, extra: &str) -> Proxy {
    let proxy = Proxy::start(&http_conf(&format!(
        "    log_format rate \"$request_method $uri $limit_rate\";
    server {{ listen 127.0.0.1:0;
        access_log {{dir}}/rate.log rate;
        location /app/ {{ proxy_pass http://{}; {extra} }}
        location /files/ {{ internal; alias {{dir}}/files/; }}
        location /echo/ {{ internal; proxy_pass http://{}; }}
        location @named {{ return 200 \"named location\"; }}
    }}",
        app.addr, echo.addr
    )))
    .await;
    proxy.dir.write("files/report.txt", "the protected file\n");
    proxy
}

#[tokio::test]
async fn accel_redirect_serves_internal_content_with_the_kept_headers() {
    let app = backend(
        "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /files/report.txt\r\nContent-Type: application/x-report\r\nSet-Cookie: seen=1\r\nContent-Disposition: attachment\r\nAccept-Ranges: none\r\nX-Private: backend only",
        "backend body",
    )
    .await;
    let echo = Backend::echo().await;
    let proxy = proxy(&app, &echo, "").await;
    let r = get_response(proxy.addr(), "/app/download").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, "the protected file\n");
    assert_eq!(
        r.header("Content-Type").as_deref(),
        Some("application/x-report")
    );
    assert_eq!(r.header("Set-Cookie").as_deref(), Some("seen=1"));
    assert_eq!(
        r.header("Content-Disposition").as_deref(),
        Some("attachment")
    );
    assert_eq!(r.header("Accept-Ranges").as_deref(), Some("none"));
    assert_eq!(r.header("X-Private"), None, "{}", r.head);
    assert_eq!(r.header("X-Accel-Redirect"), None, "{}", r.head);
    // The location itself stays internal.
    assert_eq!(
        get_response(proxy.addr(), "/files/report.txt").await.status,
        404
    );
}

#[tokio::test]
async fn accel_redirect_turns_the_method_into_get_and_keeps_arguments() {
    let app = backend(
        "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /echo/next?from=app",
        "",
    )
    .await;
    let mut echo = Backend::echo().await;
    let proxy = proxy(&app, &echo, "").await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"POST /app/x HTTP/1.0\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nbody",
        )
        .await,
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(
        echo.next().await.request_line(),
        "GET /echo/next?from=app HTTP/1.0"
    );

    // HEAD stays HEAD.
    let r = raw(
        proxy.addr(),
        b"HEAD /app/x HTTP/1.0\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        echo.next()
            .await
            .request_line()
            .starts_with("HEAD /echo/next")
    );
}

#[tokio::test]
async fn accel_redirect_to_a_named_location_and_unsafe_targets() {
    let app = backend("HTTP/1.1 200 OK\r\nX-Accel-Redirect: @named", "").await;
    let echo = Backend::echo().await;
    let proxy = proxy(&app, &echo, "").await;
    let r = get_response(proxy.addr(), "/app/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "named location"));

    for target in ["/files/../../secret", "/files/%2e%2e/secret", ""] {
        let app = Backend::with(move |_| {
            format!("HTTP/1.1 200 OK\r\nX-Accel-Redirect: {target}\r\nContent-Length: 0\r\n\r\n")
                .into_bytes()
        })
        .await;
        let proxy = self::proxy(&app, &echo, "").await;
        let r = get_response(proxy.addr(), "/app/").await;
        assert_eq!(r.status, 404, "{target}: {}", r.head);
        assert!(
            eventually(|| proxy.error_log().contains("unsafe URI")).await,
            "{}",
            proxy.error_log()
        );
    }
}

#[tokio::test]
async fn accel_redirect_loops_end_in_500() {
    // The backend sends every request back to itself.
    let app = backend("HTTP/1.1 200 OK\r\nX-Accel-Redirect: /app/again", "").await;
    let echo = Backend::echo().await;
    let proxy = proxy(&app, &echo, "").await;
    let r = get_response(proxy.addr(), "/app/").await;
    assert_eq!(r.status, 500, "{}", r.head);
    proxy
        .assert_error_logged("rewrite or internal redirection cycle")
        .await;
}

#[tokio::test]
async fn proxy_ignore_headers_passes_the_backend_answer_on() {
    let app = backend(
        "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /files/report.txt\r\nX-Accel-Limit-Rate: 100",
        "backend body",
    )
    .await;
    let echo = Backend::echo().await;
    let proxy = proxy(
        &app,
        &echo,
        "proxy_ignore_headers x-accel-redirect; proxy_ignore_headers X-Accel-Limit-Rate Vary;",
    )
    .await;
    let r = get_response(proxy.addr(), "/app/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "backend body"));
    // Ignored, but still hidden as by default.
    assert_eq!(r.header("X-Accel-Redirect"), None, "{}", r.head);
    let log = || std::fs::read_to_string(proxy.dir.path().join("rate.log")).unwrap_or_default();
    assert!(
        eventually(|| log().contains("GET /app/ 0")).await,
        "{}",
        log()
    );
}

#[tokio::test]
async fn x_accel_limit_rate_paces_the_response() {
    static BODY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body: &'static str = BODY.get_or_init(|| "x".repeat(20_000));
    let app = Backend::with(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nX-Accel-Limit-Rate: 10000\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await;
    let echo = Backend::echo().await;
    let proxy = proxy(&app, &echo, "").await;
    let started = Instant::now();
    let r = get_response(proxy.addr(), "/app/").await;
    assert_eq!(r.body.len(), 20_000);
    // 10,000 bytes at once, the rest paced: unpaced, 20 kB on loopback
    // take a few milliseconds.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let log = || std::fs::read_to_string(proxy.dir.path().join("rate.log")).unwrap_or_default();
    assert!(
        eventually(|| log().contains("GET /app/ 10000")).await,
        "{}",
        log()
    );
}

#[test]
fn proxy_ignore_headers_refuses_unknown_names() {
    assert_eq!(
        http_config_error("proxy_ignore_headers X-Accel-Expires Cache-Control Set-Cookie;"),
        ""
    );
    let e = http_config_error("proxy_ignore_headers X-Powered-By;");
    assert!(e.contains("invalid value \"X-Powered-By\""), "{e}");
}
