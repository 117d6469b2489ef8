//! `allow`/`deny` and the real client address behind trusted proxies.

use crate::harness::*;

fn get_from(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: h\r\n{headers}\r\n")
}

#[tokio::test]
async fn access_rules_run_in_order_and_replace_inherited_ones() {
    let be = Backend::echo().await;
    let (ws, _messages) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            allow 10.0.0.0/8;
            deny all;
            location / {{ proxy_pass http://{be}; }}
            location /open/ {{ allow 127.0.0.1; proxy_pass http://{be}; }}
            location /first-match/ {{ deny 127.0.0.1; allow all; proxy_pass http://{be}; }}
            location /returns/ {{ return 200 "rewrite phase"; }}
            location /ws {{ allow 127.0.0.0/8; deny all; proxy_pass http://{ws}; }}
            location /closed-ws {{ deny 127.0.0.0/8; proxy_pass http://{ws}; }}
            location /page/ {{ allow all; return 200 "page"; }}
            error_page 403 /page/denied;
        }}"#,
        be = be.addr
    ))
    .await;
    // The server's rules: only 10/8, so loopback is denied (with the
    // error_page), and the error log says why.
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "page", "error_page applies to 403 from deny");
    let log = proxy.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("access forbidden by rule"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("[error]")
            && line.contains("client: 127.0.0.1")
            && line.contains("request: \"GET / HTTP/1.0\""),
        "{line}"
    );
    // A location with its own rules does not inherit the server's.
    assert_eq!(get_response(proxy.addr(), "/open/").await.status, 200);
    assert_eq!(
        get_response(proxy.addr(), "/first-match/").await.status,
        403
    );
    // As in nginx, `return` runs in the rewrite phase, before access rules.
    assert_eq!(
        get_response(proxy.addr(), "/returns/").await.body,
        "rewrite phase"
    );
    // WebSocket handshakes are requests like any other.
    let ok = ws_connect(proxy.addr(), "/ws").await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    let r = Response::parse(
        &raw(
            proxy.addr(),
            b"GET /closed-ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await,
    );
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn access_rules_see_the_real_client_address() {
    let proxy = Proxy::http(
        r#"log_format real '$remote_addr $realip_remote_addr';
        server {
            listen 127.0.0.1:0;
            access_log {dir}/real.log real;
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Forwarded-For;
            real_ip_recursive on;
            set_real_ip_from 10.0.0.0/8;
            location / { return 200 "$remote_addr|$remote_port|$realip_remote_addr|$binary_remote_addr"; }
            location /guarded { deny 203.0.113.66; }
        }"#,
    )
    .await;
    let r = Response::parse(
        &raw(
            proxy.addr(),
            get_from("/", "X-Forwarded-For: 100.64.0.5, 10.0.0.2\r\n").as_bytes(),
        )
        .await,
    );
    let parts: Vec<&str> = r.body.splitn(4, '|').collect();
    assert_eq!(parts[0], "100.64.0.5");
    assert_eq!(parts[1], "", "no port was reported");
    assert_eq!(parts[2], "127.0.0.1");
    assert_eq!(parts[3].as_bytes(), [100, 64, 0, 5]);
    // Without the header, the peer is the client.
    let r = get_response(proxy.addr(), "/").await;
    assert!(r.body.starts_with("127.0.0.1|"), "{}", r.body);
    // deny sees the real address.
    let r = Response::parse(
        &raw(
            proxy.addr(),
            get_from("/guarded", "X-Forwarded-For: 203.0.113.66\r\n").as_bytes(),
        )
        .await,
    );
    assert_eq!(r.status, 403);
    assert!(
        proxy
            .error_log()
            .contains("access forbidden by rule, client: 203.0.113.66"),
        "{}",
        proxy.error_log()
    );
    let log = std::fs::read_to_string(proxy.dir.path().join("real.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "100.64.0.5 127.0.0.1",
            "127.0.0.1 127.0.0.1",
            "203.0.113.66 127.0.0.1"
        ]
    );
}

#[tokio::test]
async fn access_real_ip_is_not_taken_from_untrusted_peers() {
    let be = Backend::echo().await;
    let proxy = Proxy::http(&format!(
        r#"server {{
            listen 127.0.0.1:0;
            set_real_ip_from 192.0.2.1;
            location / {{
                proxy_set_header X-Seen $remote_addr;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_pass http://{};
            }}
        }}"#,
        be.addr
    ))
    .await;
    let _ = raw(
        proxy.addr(),
        get_from("/", "X-Real-IP: 198.51.100.7\r\n").as_bytes(),
    )
    .await;
    let mut be = be;
    let seen = bounded("a WebSocket message", be.next()).await;
    assert_eq!(seen.header("X-Seen").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("X-Forwarded-For").as_deref(), Some("127.0.0.1"));
}

#[test]
fn access_directive_errors_and_warnings() {
    let dir = TempDir::new();
    let load = |body: &str| {
        switchyard::config::load_str(&format!("events {{}}\nhttp {{ {body} }}\n"), dir.path())
    };
    let err = http_config_error;
    assert!(err("allow 10.0.0.0/33;").contains("invalid parameter \"10.0.0.0/33\""));
    assert!(err("deny;").contains("invalid number of arguments in \"deny\" directive"));
    assert!(
        err("set_real_ip_from no-such-host.invalid;")
            .contains("host not found in set_real_ip_from")
    );
    assert!(err("real_ip_header proxy_protocol;").contains("PROXY protocol"));
    assert!(err("real_ip_header X-Real-IP; real_ip_header X-Real-IP;").contains("is duplicate"));
    let c = load("allow 192.168.1.5/24;").unwrap();
    let warnings: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("low address bits of 192.168.1.5/24 are meaningless")),
        "{warnings:?}"
    );
}
