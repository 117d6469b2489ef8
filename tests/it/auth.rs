//! Passwords (`auth_basic`), authorising subrequests (`auth_request`,
//! `auth_request_set`), `satisfy`, `auth_delay` and `limit_except`, for
//! plain requests and WebSocket handshakes.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;

/// `user:password` as an `Authorization` header line.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}\r\n")
}

/// A WebSocket handshake through `addr` to `path` with extra headers.
async fn ws_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(*name, value.parse().unwrap());
    }
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, s).await
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> Response {
    let text = raw(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{headers}\r\n")
            .as_bytes(),
    )
    .await;
    Response::parse(&text)
}

/// Hashes of "secret" in every format the password file may hold (made
/// with openssl passwd and the C library's crypt()).
const USERS: &str = "\
# comment line
apr1:$apr1$SaltSalt$.wTsZyhsHljboa7m4Bjlg1
md5:$1$saltsalt$9xy1btjgzLYfb7hivXtC//
sha256:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA
sha512:$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1:with a comment
bcrypt:$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a
yescrypt:$y$j9T$abcdefghijklmnop$3dL1LkYnZM.OVXuVdnnaKVDlLYT92dRwOzDZ5XiVCe.
des:abNANd1rDfiNc
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=
ssha:{SSHA}1G904nLkTkGWjKNnQuB/hpWXC/hzYWx0c2FsdA==
plain:{PLAIN}secret
broken:$9$unknown$scheme
";

/// A proxy whose directory holds the password file `conf/users` and the
/// page `www/index.html` ("page"). Locations serve the page with
/// `try_files`: a `return` would answer in the rewrite phase, before any
/// access check, in nginx and here alike.
async fn with_users(conf: &str) -> Proxy {
    let dir = TempDir::new();
    dir.write("conf/users", USERS);
    dir.write("www/index.html", "page");
    Proxy::start_in(dir, &http_conf(conf)).await.unwrap()
}

#[tokio::test]
async fn auth_basic_checks_every_hash_format() {
    let proxy = with_users(
        r#"server {
            listen 127.0.0.1:0;
            location / {
                auth_basic "Staff only";
                auth_basic_user_file {dir}/conf/users;
                add_header X-Remote-User $remote_user;
                root {dir}/www; try_files /index.html =404;
            }
        }"#,
    )
    .await;
    let a = proxy.addr();
    // No credentials: the challenge, and an info line.
    let r = request(a, "GET", "/", "").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate").as_deref(),
        Some("Basic realm=\"Staff only\"")
    );
    for user in [
        "apr1", "md5", "sha256", "sha512", "bcrypt", "yescrypt", "des", "sha", "ssha", "plain",
    ] {
        let r = request(a, "GET", "/", &basic(user, "secret")).await;
        assert_eq!(r.status, 200, "{user}");
        assert_eq!(r.body, "page");
        assert_eq!(r.header("X-Remote-User").as_deref(), Some(user));
        let r = request(a, "GET", "/", &basic(user, "Secret")).await;
        assert_eq!(r.status, 401, "{user} with a wrong password");
        assert!(r.header("WWW-Authenticate").is_some());
    }
    let r = request(a, "GET", "/", &basic("nobody", "secret")).await;
    assert_eq!(r.status, 401);
    // A hash no crypt() knows is the server's problem, not a mismatch.
    let r = request(a, "GET", "/", &basic("broken", "secret")).await;
    assert_eq!(r.status, 500);
    // Not Basic, or not user:password: no credentials.
    let r = request(a, "GET", "/", "Authorization: Bearer abc\r\n").await;
    assert_eq!(r.status, 401);
    let r = request(a, "GET", "/", "Authorization: Basic bm9jb2xvbg==\r\n").await;
    assert_eq!(r.status, 401);

    let log = proxy.error_log();
    assert!(
        log.contains("no user/password was provided for basic authentication"),
        "{log}"
    );
    assert!(log.contains("user \"apr1\": password mismatch"), "{log}");
    assert!(
        log.contains(&format!(
            "user \"nobody\" was not found in \"{}\"",
            proxy.dir.path().join("conf/users").display()
        )),
        "{log}"
    );
}

#[tokio::test]
async fn auth_basic_files_relative_variable_missing_and_off() {
    let dir = TempDir::new();
    dir.write("users", USERS);
    dir.write("other", "plain:{PLAIN}other\n");
    dir.write("www/index.html", "page");
    // The harness loads the configuration as if it were in `dir`, so
    // relative paths resolve there, as nginx resolves them against the
    // configuration file's directory.
    let proxy = Proxy::start_in(
        dir,
        &http_conf(
            r#"server {
                listen 127.0.0.1:0;
                auth_basic "site";
                auth_basic_user_file users;
                root {dir}/www;
                location / { try_files /index.html =404; }
                location /public/ { auth_basic off; try_files /index.html =404; }
                location /by-arg/ { auth_basic_user_file $arg_file; try_files /index.html =404; }
                location /missing/ { auth_basic_user_file /nonexistent/users; try_files /index.html =404; }
            }"#,
        ),
    )
    .await
    .unwrap();
    let a = proxy.addr();
    assert_eq!(
        request(a, "GET", "/", &basic("plain", "secret"))
            .await
            .status,
        200
    );
    assert_eq!(request(a, "GET", "/", "").await.status, 401);
    // off, inherited realm or not.
    assert_eq!(request(a, "GET", "/public/", "").await.body, "page");
    // A path from a variable, relative to the configuration directory too.
    let r = request(a, "GET", "/by-arg/?file=other", &basic("plain", "other")).await;
    assert_eq!(r.status, 200);
    let r = request(a, "GET", "/by-arg/?file=other", &basic("plain", "secret")).await;
    assert_eq!(r.status, 401);
    // A file that does not exist: 403, and the error log names it.
    let r = request(a, "GET", "/missing/", &basic("plain", "secret")).await;
    assert_eq!(r.status, 403);
    assert!(
        proxy
            .error_log()
            .contains("open() \"/nonexistent/users\" failed (2: No such file or directory)"),
        "{}",
        proxy.error_log()
    );
}

#[test]
fn auth_basic_without_a_file_loads_with_a_warning() {
    let dir = TempDir::new();
    let config = switchyard::config::load_str(
        "events {}\nhttp {\n    server {\n        listen 127.0.0.1:0;\n        auth_basic \"x\";\n    }\n}\n",
        dir.path(),
    )
    .unwrap();
    let w: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.iter().any(|w| w
            .starts_with("\"auth_basic\" without \"auth_basic_user_file\" asks for no password")
            && w.ends_with(":5")),
        "{w:?}"
    );
}

#[tokio::test]
async fn auth_basic_guards_websocket_handshakes() {
    let (ws, _seen) = ws_echo().await;
    let proxy = with_users(&format!(
        r#"map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
        server {{
            listen 127.0.0.1:0;
            location /ws {{
                auth_basic "chat";
                auth_basic_user_file {{dir}}/conf/users;
                proxy_pass http://{ws};
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
            }}
        }}"#
    ))
    .await;
    // Without credentials the handshake gets the 401.
    match ws_with(proxy.addr(), "/ws", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let token = basic("bcrypt", "secret");
    let value = token.trim_end().trim_start_matches("Authorization: ");
    let (mut ws, resp) = ws_with(proxy.addr(), "/ws", &[("Authorization", value)])
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("through")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "through");
}

#[tokio::test]
async fn auth_satisfy_any_and_all() {
    let proxy = with_users(
        r#"server {
            listen 127.0.0.1:0;
            auth_basic "office";
            auth_basic_user_file {dir}/conf/users;
            root {dir}/www;
            location /any-local/ { satisfy any; allow 127.0.0.1; deny all; try_files /index.html =404; }
            location /any-remote/ { satisfy any; allow 10.0.0.0/8; deny all; try_files /index.html =404; }
            location /any-nomatch/ { satisfy any; allow 10.0.0.0/8; try_files /index.html =404; }
            location /all-local/ { allow 127.0.0.1; deny all; try_files /index.html =404; }
            location /all-remote/ { deny 127.0.0.1; try_files /index.html =404; }
        }"#,
    )
    .await;
    let a = proxy.addr();
    let good = basic("plain", "secret");
    // any: the address alone is enough...
    assert_eq!(request(a, "GET", "/any-local/", "").await.status, 200);
    // ...or the password alone; refused, the 401 wins over the 403.
    let r = request(a, "GET", "/any-remote/", "").await;
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").is_some());
    assert_eq!(request(a, "GET", "/any-remote/", &good).await.status, 200);
    // No rule matching is no verdict: the password still decides.
    assert_eq!(request(a, "GET", "/any-nomatch/", "").await.status, 401);
    assert_eq!(request(a, "GET", "/any-nomatch/", &good).await.status, 200);
    // all: both are needed.
    assert_eq!(request(a, "GET", "/all-local/", "").await.status, 401);
    assert_eq!(request(a, "GET", "/all-local/", &good).await.status, 200);
    let r = request(a, "GET", "/all-remote/", &good).await;
    assert_eq!(r.status, 403);
    assert!(r.header("WWW-Authenticate").is_none());
    // Under `any`, a refusal by address is not logged as forbidden.
    let log = proxy.error_log();
    assert_eq!(log.matches("access forbidden by rule").count(), 1, "{log}");
}

#[tokio::test]
async fn auth_delay_holds_back_refusals_only() {
    let proxy = with_users(
        r#"server {
            listen 127.0.0.1:0;
            location / {
                auth_basic "slow";
                auth_basic_user_file {dir}/conf/users;
                auth_delay 400ms;
                root {dir}/www; try_files /index.html =404;
            }
        }"#,
    )
    .await;
    let a = proxy.addr();
    let start = Instant::now();
    assert_eq!(
        request(a, "GET", "/", &basic("plain", "wrong"))
            .await
            .status,
        401
    );
    assert!(start.elapsed() >= Duration::from_millis(400));
    let start = Instant::now();
    assert_eq!(
        request(a, "GET", "/", &basic("plain", "secret"))
            .await
            .status,
        200
    );
    assert!(start.elapsed() < Duration::from_millis(400));
}

/// An authorisation service: 200 with `X-User` for `Cookie: session=ok`,
/// 401 with two challenges for no cookie, 403 for any other cookie; it
/// reports what it was sent.
async fn auth_service() -> Backend {
    Backend::with(|seen| {
        let cookie = seen.header("Cookie").unwrap_or_default();
        let head = if cookie == "session=ok" {
            "HTTP/1.1 200 OK\r\nX-User: alice\r\nContent-Length: 0\r\n"
        } else if cookie.is_empty() {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"sso\"\r\nWWW-Authenticate: Basic realm=\"sso\"\r\nContent-Length: 0\r\n"
        } else if cookie == "session=odd" {
            "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n"
        } else {
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
        };
        format!("{head}Connection: close\r\n\r\n").into_bytes()
    })
    .await
}

#[tokio::test]
async fn auth_request_authorises_requests_and_websockets() {
    let mut sso = auth_service().await;
    let mut app = Backend::echo().await;
    let (ws, mut ws_seen) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location = /_auth {{
                internal;
                proxy_pass http://{sso}/check;
                proxy_pass_request_body off;
                proxy_set_header Content-Length "";
                proxy_set_header X-Original-URI $request_uri;
            }}
            location /app/ {{
                auth_request /_auth;
                auth_request_set $user $upstream_http_x_user;
                auth_request_set $auth_status $upstream_status;
                proxy_pass http://{app};
                proxy_set_header X-User $user;
                add_header X-Auth-Status $auth_status;
            }}
            location /ws {{
                auth_request /_auth;
                auth_request_set $user $upstream_http_x_user;
                proxy_pass http://{ws};
                proxy_http_version 1.1;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection upgrade;
                proxy_set_header X-User $user;
            }}
            location /open/ {{ auth_request off; return 200 "open"; }}
        }}"#,
        sso = sso.addr,
        app = app.addr,
    ))
    .await;
    let a = proxy.addr();

    // Allowed: the app sees the user the service named; the service saw
    // a GET of its own URI with the client's headers and no body.
    let r = request(
        a,
        "POST",
        "/app/x?y=1",
        "Cookie: session=ok\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("X-Auth-Status").as_deref(), Some("200"));
    let check = bounded("a WebSocket message", sso.next()).await;
    assert_eq!(check.request_line(), "GET /check HTTP/1.0");
    assert_eq!(check.header("Cookie").as_deref(), Some("session=ok"));
    assert_eq!(
        check.header("X-Original-URI").as_deref(),
        Some("/app/x?y=1")
    );
    assert!(check.body.is_empty());
    let seen = bounded("a WebSocket message", app.next()).await;
    assert_eq!(seen.request_line(), "POST /app/x?y=1 HTTP/1.0");
    assert_eq!(seen.header("X-User").as_deref(), Some("alice"));
    assert_eq!(seen.body, b"body");

    // Refused: 401 with every challenge of the service, 403, and 500 for
    // anything else.
    let r = request(a, "GET", "/app/", "").await;
    assert_eq!(r.status, 401);
    let text = raw(a, b"GET /app/ HTTP/1.0\r\nHost: h\r\n\r\n").await;
    assert!(
        text.contains(
            "WWW-Authenticate: Bearer realm=\"sso\"\r\nWWW-Authenticate: Basic realm=\"sso\"\r\n"
        ),
        "{text}"
    );
    assert_eq!(
        request(a, "GET", "/app/", "Cookie: session=bad\r\n")
            .await
            .status,
        403
    );
    assert_eq!(
        request(a, "GET", "/app/", "Cookie: session=odd\r\n")
            .await
            .status,
        500
    );
    let log = proxy.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("auth request unexpected status: 302"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("request: \"GET /app/ HTTP/1.1\""), "{line}");
    // `internal`: the auth location is not reachable from outside.
    assert_eq!(request(a, "GET", "/_auth", "").await.status, 404);
    assert_eq!(request(a, "GET", "/open/", "").await.body, "open");

    // A WebSocket handshake is authorised before it is proxied.
    match ws_with(a, "/ws", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let (mut client, resp) = ws_with(a, "/ws", &[("Cookie", "session=ok")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let head = bounded("the backend's handshake", ws_seen.recv())
        .await
        .unwrap();
    assert!(head.contains("\nx-user: alice"), "{head}");
    client.send(Message::text("hi")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hi");
}

#[tokio::test]
async fn auth_request_to_a_dead_service_is_a_500() {
    let dead = DeadPort::new();
    let port = dead.addr().port();
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location = /auth {{ internal; proxy_pass http://127.0.0.1:{port}; }}
            location / {{ auth_request /auth; try_files /nothing =204; }}
        }}"#
    ))
    .await;
    let r = request(proxy.addr(), "GET", "/", "").await;
    assert_eq!(r.status, 500);
    let log = proxy.error_log();
    assert!(log.contains("auth request unexpected status: 502"), "{log}");
    // The failed connection is logged with the subrequest named.
    assert!(log.contains("subrequest: \"/auth\""), "{log}");
}

#[tokio::test]
async fn limit_except_applies_to_other_methods() {
    let be = Backend::echo().await;
    let proxy = with_users(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            location /ro/ {{
                limit_except GET {{ deny all; }}
                proxy_pass http://{be};
            }}
            location /write/ {{
                proxy_pass http://{be};
                limit_except GET OPTIONS {{
                    auth_basic "writers";
                    auth_basic_user_file {{dir}}/conf/users;
                }}
            }}
        }}"#,
        be = be.addr
    ))
    .await;
    let a = proxy.addr();
    assert_eq!(request(a, "GET", "/ro/", "").await.status, 200);
    // GET includes HEAD.
    assert_eq!(request(a, "HEAD", "/ro/", "").await.status, 200);
    assert_eq!(
        request(a, "POST", "/ro/", "Content-Length: 0\r\n")
            .await
            .status,
        403
    );
    assert_eq!(request(a, "DELETE", "/ro/", "").await.status, 403);
    assert_eq!(request(a, "OPTIONS", "/write/", "").await.status, 200);
    assert_eq!(
        request(a, "PUT", "/write/", "Content-Length: 0\r\n")
            .await
            .status,
        401
    );
    let r = request(
        a,
        "PUT",
        "/write/",
        &format!("Content-Length: 0\r\n{}", basic("plain", "secret")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("PUT /write/ HTTP/1.0"), "{}", r.body);
}

#[test]
fn auth_configuration_errors_say_what_is_wrong() {
    let cases = [
        (
            "server { listen 127.0.0.1:0; location / { limit_except FETCH { deny all; } } }",
            "invalid method \"FETCH\" in ",
        ),
        (
            "server { listen 127.0.0.1:0; limit_except GET { deny all; } }",
            "\"limit_except\" directive is not allowed here in ",
        ),
        (
            "server { listen 127.0.0.1:0; location / { limit_except GET { return 403; } } }",
            "\"return\" directive is not allowed here in ",
        ),
        (
            "server { listen 127.0.0.1:0; location / { limit_except GET { deny all; } limit_except POST { deny all; } } }",
            "\"limit_except\" directive is duplicate in ",
        ),
        (
            "server { listen 127.0.0.1:0; location / { limit_except GET { proxy_pass http://127.0.0.1:9/uri; } } }",
            "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block in ",
        ),
        (
            "server { listen 127.0.0.1:0; satisfy some; }",
            "invalid value \"some\" in \"satisfy\" directive, it must be \"all\" or \"any\" in ",
        ),
        (
            "server { listen 127.0.0.1:0; auth_request_set user $upstream_status; }",
            "invalid variable name \"user\" in ",
        ),
        (
            "server { listen 127.0.0.1:0; auth_request_set $host x; }",
            "the duplicate \"host\" variable in ",
        ),
        (
            "server { listen 127.0.0.1:0; auth_basic_user_file a; auth_basic_user_file b; }",
            "\"auth_basic_user_file\" directive is duplicate in ",
        ),
    ];
    for (conf, want) in cases {
        let e = http_config_error(conf);
        assert!(e.starts_with(want), "{conf}\n{e}");
    }
}
