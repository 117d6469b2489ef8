//! Variables (through `return` text, `add_header` and `log_format`),
//! `map`, server and location selection, and the rewrite script.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::harness::*;

#[tokio::test]
async fn variables_describe_the_request() {
    let proxy = Proxy::http(
        r#"server {
            listen 127.0.0.1:0;
            server_name primary.example alias.example;
            location /v {
                return 200 "host=$host http_x=$http_x_custom_header uri=$uri args=$args is_args=$is_args arg_a=$arg_a method=$request_method request_uri=$request_uri scheme=$scheme server_name=$server_name proto=$server_protocol cookie=$cookie_session https=[$https]";
            }
            location /addr {
                return 200 "remote=$remote_addr port_ok=$remote_port server_port=$server_port server_addr=$server_addr";
            }
        }"#,
    )
    .await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"GET /v/a%20b/../c?a=1&b=2 HTTP/1.1\r\nHost: Alias.Example:8080\r\nX-Custom-Header: yes\r\nCookie: theme=dark; session=abc\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(
        r.body,
        "host=alias.example http_x=yes uri=/v/c args=a=1&b=2 is_args=? arg_a=1 method=GET request_uri=/v/a%20b/../c?a=1&b=2 scheme=http server_name=primary.example proto=HTTP/1.1 cookie=abc https=[]"
    );
    let r = get_response(proxy.addr(), "/addr").await;
    assert!(
        r.body.starts_with("remote=127.0.0.1 port_ok="),
        "{}",
        r.body
    );
    assert!(
        r.body.ends_with(&format!(
            "server_port={} server_addr=127.0.0.1",
            proxy.addr().port()
        )),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn variables_in_logs_and_binary_remote_addr() {
    let mut be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        r#"log_format all '$remote_addr|$binary_remote_addr|$status|$body_bytes_sent|$bytes_sent|$request_time|$time_local|$proxy_host|$upstream_addr|$upstream_status|$sent_http_x_backend|$request|$http_referer';
        server {{
            listen 127.0.0.1:0;
            access_log {{dir}}/all.log all;
            location / {{ proxy_pass http://{}; proxy_set_header X-PH $proxy_host:$proxy_port; }}
        }}"#,
        be.addr
    ))
    .await;
    let text = get(proxy.addr(), "/logme").await;
    let r = Response::parse(&text);
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(
        seen.header("X-PH"),
        Some(format!("{}:{}", be.addr, be.addr.port()))
    );
    let path = proxy.dir.path().join("all.log");
    assert!(
        eventually(|| std::fs::read_to_string(&path)
            .map(|s| s.ends_with('\n'))
            .unwrap_or(false))
        .await
    );
    let line = std::fs::read_to_string(&path).unwrap();
    let f: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(f[0], "127.0.0.1");
    // The four bytes of 127.0.0.1, escaped as nginx escapes bytes.
    assert_eq!(f[1], "\\x7F\\x00\\x00\\x01");
    assert_eq!(f[2], "200");
    assert_eq!(f[3], r.body.len().to_string());
    assert_eq!(
        f[4],
        text.len().to_string(),
        "bytes_sent counts the head too"
    );
    assert!(
        regex::Regex::new(r"^\d+\.\d{3}$").unwrap().is_match(f[5]),
        "{}",
        f[5]
    );
    assert!(
        regex::Regex::new(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$")
            .unwrap()
            .is_match(f[6]),
        "{}",
        f[6]
    );
    assert_eq!(f[7], be.addr.to_string());
    assert_eq!(f[8], be.addr.to_string());
    assert_eq!(f[9], "200");
    assert_eq!(f[10], "echo");
    assert_eq!(f[11], "GET /logme HTTP/1.0");
    assert_eq!(f[12], "-", "a missing header logs as -");
}

#[tokio::test]
async fn variables_default_access_log_is_combined() {
    let proxy = Proxy::http("server { listen 127.0.0.1:0; location / { return 204; } }").await;
    raw(proxy.addr(), b"GET /c?x HTTP/1.1\r\nHost: h\r\nUser-Agent: test \"agent\"\r\nReferer: http://r/\r\nConnection: close\r\n\r\n").await;
    assert!(eventually(|| proxy.access_log().ends_with('\n')).await);
    let line = proxy.access_log();
    let re = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /c\?x HTTP/1\.1" 204 0 "http://r/" "test \\x22agent\\x22"\n$"#,
    )
    .unwrap();
    assert!(re.is_match(&line), "{line}");
}

#[tokio::test]
async fn variables_access_log_off_and_json_escape() {
    let proxy = Proxy::http(
        r#"log_format j escape=json '{"ua":"$http_user_agent","missing":"$http_nope"}';
        server {
            listen 127.0.0.1:0;
            location /quiet { access_log off; return 204; }
            location /json { access_log {dir}/j.log j; return 204; }
        }"#,
    )
    .await;
    raw(proxy.addr(), b"GET /quiet HTTP/1.0\r\n\r\n").await;
    raw(
        proxy.addr(),
        b"GET /json HTTP/1.0\r\nUser-Agent: a\"b\\c\r\n\r\n",
    )
    .await;
    let path = proxy.dir.path().join("j.log");
    assert!(
        eventually(|| std::fs::metadata(&path)
            .map(|m| m.len() > 0)
            .unwrap_or(false))
        .await
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"ua\":\"a\\\"b\\\\c\",\"missing\":\"\"}\n"
    );
    assert_eq!(proxy.access_log(), "", "access_log off writes nothing");
}

#[tokio::test]
async fn map_matches_exact_regex_and_hostnames() {
    let proxy = Proxy::http(
        r#"map $arg_k $exact {
            default      none;
            foo          bar;
            ~^num(\d+)$  "number $1";
            ~*^CASE      insensitive;
            \~tilde      escaped;
        }
        map $http_host $site {
            hostnames;
            default            other;
            example.com        root;
            *.example.com      sub;
            www.example.*      tail;
            .dot.example.org   dot;
        }
        map $exact $chained { "number 7" seven; default -; }
        server {
            listen 127.0.0.1:0;
            location / { return 200 "$exact|$site|$chained"; }
        }"#,
    )
    .await;
    let ask = |k: &'static str, host: &'static str| {
        let addr = proxy.addr();
        async move {
            Response::parse(
                &raw(
                    addr,
                    format!("GET /?k={k} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
                )
                .await,
            )
            .body
        }
    };
    assert_eq!(ask("foo", "example.com").await, "bar|root|-");
    assert_eq!(
        ask("FOO", "EXAMPLE.COM").await,
        "bar|root|-",
        "exact keys compare case-insensitively"
    );
    assert_eq!(ask("num7", "a.example.com").await, "number 7|sub|seven");
    assert_eq!(ask("case-x", "www.example.net").await, "insensitive|tail|-");
    assert_eq!(ask("~tilde", "dot.example.org").await, "escaped|dot|-");
    assert_eq!(ask("zzz", "x.dot.example.org").await, "none|dot|-");
    assert_eq!(ask("", "unknown.test").await, "none|other|-");
}

#[tokio::test]
async fn routing_selects_servers_like_nginx() {
    let port = "{port0}";
    let conf = [
        ("default_server", "server_name _;", "fallback"),
        ("", "server_name exact.test;", "exact"),
        ("", "server_name *.wild.test;", "head"),
        ("", "server_name app.*;", "tail"),
        ("", "server_name ~^(?<sub>[a-z]+)\\.re\\.test$;", "regex $sub"),
    ]
    .iter()
    .map(|(flag, name, body)| format!("server {{ listen 127.0.0.1:{port} {flag}; {name} location / {{ return 200 \"{body}\"; }} }}"))
    .collect::<Vec<_>>()
    .join("\n");
    let proxy = Proxy::start_on_ports(1, &http_conf(&conf)).await;
    let ask = |host: &'static str| {
        let addr = proxy.addr();
        async move {
            Response::parse(
                &raw(
                    addr,
                    format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
                )
                .await,
            )
            .body
        }
    };
    assert_eq!(ask("exact.test").await, "exact");
    assert_eq!(ask("a.b.wild.test").await, "head");
    assert_eq!(ask("app.example").await, "tail");
    assert_eq!(ask("api.re.test").await, "regex api");
    assert_eq!(
        ask("nothing.test").await,
        "fallback",
        "default_server, not the first server"
    );
    let r = Response::parse(&raw(proxy.addr(), b"GET / HTTP/1.0\r\n\r\n").await);
    assert_eq!(
        r.body, "fallback",
        "HTTP/1.0 without Host goes to the default server"
    );
}

#[tokio::test]
async fn routing_selects_locations_like_nginx() {
    let proxy = Proxy::http(
        r#"server {
            listen 127.0.0.1:0;
            location / { return 200 "prefix /"; }
            location /docs/ { return 200 "prefix /docs/";
                location /docs/deep/ { return 200 "nested prefix"; }
                location ~ \.pdf$ { return 200 "nested regex"; }
            }
            location = /docs/ { return 200 "exact"; }
            location ^~ /static/ { return 200 "no regex"; }
            location ~ \.(png|css)$ { return 200 "regex $1"; }
            location ~* \.JPG$ { return 200 "caseless"; }
            location /images/ { return 200 "images prefix"; }
        }"#,
    )
    .await;
    let ask = |path: &'static str| {
        let addr = proxy.addr();
        async move { get_response(addr, path).await.body }
    };
    assert_eq!(ask("/").await, "prefix /");
    assert_eq!(ask("/docs/").await, "exact");
    assert_eq!(ask("/docs/x").await, "prefix /docs/");
    assert_eq!(ask("/docs/deep/x").await, "nested prefix");
    assert_eq!(ask("/docs/a.pdf").await, "nested regex");
    assert_eq!(
        ask("/static/a.png").await,
        "no regex",
        "^~ stops the regex search"
    );
    assert_eq!(
        ask("/images/a.png").await,
        "regex png",
        "regexes beat plain prefixes"
    );
    assert_eq!(ask("/images/a.jpg").await, "caseless");
    assert_eq!(ask("/images/a.gif").await, "images prefix");
}

#[tokio::test]
async fn rewrite_set_return_if_and_rewrite() {
    let proxy = Proxy::http(
        r#"server {
            listen 127.0.0.1:0;
            set $who server;
            location /set { set $greeting "hello $who"; return 200 $greeting; }
            location /text { return 202 "accepted"; }
            location /redirect { return 301 /elsewhere; }
            location /url { return https://example.com/x; }
            location /code { return 403; }
            location /close { return 444; }
            location /if {
                if ($arg_mode = admin) { return 200 "admin"; }
                if ($http_x_flag ~* ^y(es)?$) { return 200 "flag $1"; }
                if (!-f {dir}/missing) { return 200 "no file"; }
                return 500;
            }
            location /old/ { rewrite ^/old/(.*)$ /new/$1 last; }
            location /new/ { return 200 "new $uri $args"; }
            location /perm { rewrite ^ /target permanent; }
        }"#,
    )
    .await;
    let a = proxy.addr();
    assert_eq!(get_response(a, "/set").await.body, "hello server");
    let r = get_response(a, "/text").await;
    assert_eq!((r.status, r.body.as_str()), (202, "accepted"));
    let r = get_response(a, "/redirect").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("Location"),
        Some(format!("http://localhost:{}/elsewhere", a.port()))
    );
    let r = get_response(a, "/url").await;
    assert_eq!(
        (r.status, r.header("Location").as_deref()),
        (302, Some("https://example.com/x"))
    );
    let r = get_response(a, "/code").await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("<center><h1>403 Forbidden</h1></center>"));
    assert_eq!(get(a, "/close").await, "", "444 closes without a response");
    assert_eq!(get_response(a, "/if?mode=admin").await.body, "admin");
    let r = Response::parse(&raw(a, b"GET /if HTTP/1.0\r\nX-Flag: YES\r\n\r\n").await);
    assert_eq!(r.body, "flag ES");
    assert_eq!(get_response(a, "/if").await.body, "no file");
    assert_eq!(get_response(a, "/old/x?y=1").await.body, "new /new/x y=1");
    let r = get_response(a, "/perm?q").await;
    assert_eq!(r.status, 301);
    assert!(r.header("Location").unwrap().ends_with("/target?q"));
}

/// `if` inside a location takes nginx's LIF directives: when it holds,
/// the block's settings apply (its `add_header` set replaces the
/// location's, its `proxy_pass` or `root` wins), everything else is
/// inherited, the location's `proxy_pass` included. Directives nginx
/// refuses in `if` are refused the same way.
#[tokio::test]
async fn rewrite_if_in_a_location_applies_its_settings() {
    let main = Backend::with(|seen| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nmain {}",
            5 + seen.request_line().len(),
            seen.request_line()
        )
        .into_bytes()
    })
    .await;
    let other =
        Backend::with(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother".to_vec()).await;
    let site = TempDir::new();
    site.write("alt/page.txt", "alternate root");
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
            location / {{
                if ($request_method = OPTIONS) {{
                    add_header Access-Control-Allow-Origin *;
                    add_header Access-Control-Max-Age 1728000;
                    return 204;
                }}
                if ($request_method = POST) {{
                    add_header Access-Control-Allow-Origin * always;
                }}
                if ($arg_to = other) {{
                    proxy_pass http://{};
                }}
                add_header X-Location main;
                proxy_pass http://{};
            }}
            location /files/ {{
                root /nonexistent;
                if ($arg_alt) {{ root {}; rewrite ^/files/(.*)$ /alt/$1 break; }}
            }}
        }}",
        other.addr,
        main.addr,
        site.path().display()
    ))
    .await;
    let a = proxy.addr();
    let r = Response::parse(&raw(a, b"OPTIONS /x HTTP/1.0\r\nHost: h\r\n\r\n").await);
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(
        r.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        r.header("Access-Control-Max-Age").as_deref(),
        Some("1728000")
    );
    assert_eq!(
        r.header("X-Location"),
        None,
        "the block's add_header set replaces the location's"
    );
    let r = Response::parse(
        &raw(
            a,
            b"POST /x HTTP/1.0\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body.starts_with("main POST /x"),
        "inherited proxy_pass: {}",
        r.body
    );
    assert_eq!(
        r.header("Access-Control-Allow-Origin").as_deref(),
        Some("*")
    );
    assert_eq!(r.header("X-Location"), None);
    let r = get_response(a, "/x").await;
    assert!(r.body.starts_with("main GET /x"), "{}", r.body);
    assert_eq!(r.header("X-Location").as_deref(), Some("main"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert_eq!(get_response(a, "/x?to=other").await.body, "other");
    assert_eq!(
        get_response(a, "/files/page.txt?alt=1").await.body,
        "alternate root"
    );
    assert_eq!(get_response(a, "/files/page.txt").await.status, 404);

    let dir = TempDir::new();
    for (conf, directive) in [
        (
            "location / { if ($arg_x) { proxy_set_header X 1; } }",
            "proxy_set_header",
        ),
        ("if ($arg_x) { add_header X 1; }", "add_header"),
    ] {
        let e = switchyard::config::load_str(
            &format!("events {{}}\nhttp {{ server {{ {conf} }} }}\n"),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!("\"{directive}\" directive is not allowed here")),
            "{e}"
        );
    }
}

#[tokio::test]
async fn keepalive_serves_several_requests_and_closes_when_asked() {
    let proxy = Proxy::http(
        "server { listen 127.0.0.1:0; keepalive_requests 2; location / { return 200 ok; } }",
    )
    .await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nGET /3 HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
    let text = read_to_close(&mut s).await;
    // keepalive_requests 2: the second response closes the connection.
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("Connection: keep-alive"));
    assert!(text.trim_end().ends_with("ok"));
    assert!(text.contains("Connection: close"));
}

#[tokio::test]
async fn keepalive_timeout_closes_idle_connections() {
    let proxy = Proxy::http(
        "server { listen 127.0.0.1:0; keepalive_timeout 1; location / { return 200 ok; } }",
    )
    .await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let text = read_to_close(&mut s).await;
    assert!(text.contains("200 OK"));
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn ipv6_listeners_and_backends() {
    // No skip: the project's machines (and CI) have an IPv6 loopback, so a
    // machine without one fails here, visibly.
    let backend = tokio::net::TcpListener::bind("[::1]:0")
        .await
        .expect("this test needs the IPv6 loopback [::1]");
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = backend.accept().await {
            tokio::spawn(async move {
                let _ = read_request(&mut s).await;
                let body = format!("from {}", peer.ip());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    let proxy = Proxy::http(&format!(
        r#"upstream v6 {{ server [::1]:{port}; }}
        server {{
            listen [::1]:0;
            location /who {{ return 200 "$remote_addr $server_addr $binary_remote_addr"; }}
            location /up {{ proxy_pass http://v6; add_header X-Up $upstream_addr; }}
        }}"#,
        port = backend_addr.port()
    ))
    .await;
    assert!(proxy.addr().is_ipv6());
    let r = get_response(proxy.addr(), "/who").await;
    let mut words = r.body.split(' ');
    assert_eq!(words.next(), Some("::1"));
    assert_eq!(words.next(), Some("::1"));
    // 16 raw bytes, 15 zeros and a one.
    assert_eq!(r.body.len(), "::1 ::1 ".len() + 16, "{:?}", r.body);
    let r = get_response(proxy.addr(), "/up").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "from ::1");
    assert_eq!(
        r.header("x-up"),
        Some(format!("[::1]:{}", backend_addr.port()))
    );
    assert!(
        proxy.access_log().starts_with("::1 - - ["),
        "{}",
        proxy.access_log()
    );
}
