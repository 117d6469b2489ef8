//! `limit_req`: request rates per key, bursts, delays, dry runs, and
//! WebSocket handshakes counted as requests.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Zones are process-wide by name (their state outlives a reload), and the
/// tests share one process: each test names its own zones (`test`).
fn conf(test: &str, locations: &str) -> String {
    let locations = locations.replace("zone=", &format!("zone={test}-"));
    format!(
        r#"limit_req_zone $binary_remote_addr zone={test}-one:64k rate=1r/s;
        limit_req_zone $binary_remote_addr zone={test}-fast:64k rate=10r/s;
        limit_req_zone $binary_remote_addr zone={test}-minute:64k rate=1r/m;
        limit_req_zone $binary_remote_addr zone={test}-minute2:64k rate=1r/m;
        limit_req_zone $arg_user zone={test}-users:64k rate=1r/m;
        log_format rl '$uri $status $limit_req_status';
        server {{
            listen 127.0.0.1:0;
            access_log {{dir}}/rl.log rl;
            {locations}
        }}"#
    )
}

async fn status(proxy: &Proxy, path: &str) -> u16 {
    get_response(proxy.addr(), path).await.status
}

#[tokio::test]
async fn limit_req_refuses_beyond_the_rate_and_burst() {
    let proxy = Proxy::http(&conf(
        "refuse",
        r#"location /strict { limit_req zone=minute; alias {dir}/; }
           location /burst { limit_req zone=minute2 burst=2 nodelay; limit_req_status 429; alias {dir}/; }
           location /users { limit_req zone=users; alias {dir}/; }"#,
    ))
    .await;
    std::fs::write(proxy.dir.path().join("f"), "ok").unwrap();
    // Rates of one a minute: what a loaded machine takes between two
    // requests does not change the verdicts below.
    // No burst: the first request passes, the next is refused.
    assert_eq!(status(&proxy, "/strict/f").await, 200);
    assert_eq!(status(&proxy, "/strict/f").await, 503);
    let log = proxy.error_log();
    let re = regex::Regex::new(
        r#"\[error\] \d+#\d+: \*\d+ limiting requests, excess: (0\.9\d\d|1\.000) by zone "refuse-minute", client: 127\.0\.0\.1, server: , request: "GET /strict/f HTTP/1\.0""#,
    )
    .unwrap();
    assert!(re.is_match(&log), "{log}");
    // burst=2 nodelay: three at once, then refused with the configured status.
    for _ in 0..3 {
        assert_eq!(status(&proxy, "/burst/f").await, 200);
    }
    assert_eq!(status(&proxy, "/burst/f").await, 429);
    // Keys are separate; an empty key is not limited.
    assert_eq!(status(&proxy, "/users/f?user=a").await, 200);
    assert_eq!(status(&proxy, "/users/f?user=b").await, 200);
    assert_eq!(status(&proxy, "/users/f?user=a").await, 503);
    for _ in 0..3 {
        assert_eq!(status(&proxy, "/users/f").await, 200);
    }
    let access = std::fs::read_to_string(proxy.dir.path().join("rl.log")).unwrap();
    let lines: Vec<&str> = access.lines().collect();
    assert_eq!(lines[0], "/strict/f 200 PASSED");
    assert_eq!(lines[1], "/strict/f 503 REJECTED");
    assert_eq!(*lines.last().unwrap(), "/users/f 200 -", "{access}");
}

#[tokio::test]
async fn limit_req_delays_excess_within_the_burst() {
    let proxy = Proxy::http(&conf(
        "delay",
        r#"location /queue { limit_req zone=fast burst=5; return 200 "late"; }
           location /queued { limit_req zone=one burst=5; alias {dir}/; }
           location /two-free { limit_req zone=minute burst=5 delay=2; alias {dir}/; }"#,
    ))
    .await;
    std::fs::write(proxy.dir.path().join("f"), "ok").unwrap();
    assert_eq!(status(&proxy, "/queued/f").await, 200);
    // 1 r/s: the second request at once is one in excess, served about a
    // second after the first. Only a lower bound is checked, and one that
    // holds unless half a second passes between the two requests.
    let started = Instant::now();
    assert_eq!(status(&proxy, "/queued/f").await, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        proxy.error_log().contains("[warn]"),
        "delays log one level below error"
    );
    assert!(proxy.error_log().contains("delaying request, excess: "));
    // delay=2 at one a minute: the two requests after the first are in
    // excess but pass undelayed (PASSED in the access log); the fourth is
    // delayed, which its log line says before the delay ends.
    for _ in 0..3 {
        assert_eq!(status(&proxy, "/two-free/f").await, 200);
    }
    let slow = tokio::spawn({
        let addr = proxy.addr();
        async move { get_response(addr, "/two-free/f").await.status }
    });
    let fourth =
        regex::Regex::new(r#"delaying request, excess: (2\.9\d\d|3\.000), by zone "delay-minute""#)
            .unwrap();
    let delaying = eventually(|| fourth.is_match(&proxy.error_log()));
    assert!(delaying.await, "{}", proxy.error_log());
    assert!(!slow.is_finished(), "a delay of a minute ended early");
    slow.abort();
    let log = proxy.dir.path().join("rl.log");
    let access = std::fs::read_to_string(&log).unwrap();
    let verdicts: Vec<&str> = access
        .lines()
        .filter(|l| l.starts_with("/two-free/"))
        .collect();
    assert_eq!(verdicts, ["/two-free/f 200 PASSED"; 3], "{access}");
    assert!(access.contains("/queued/f 200 DELAYED"), "{access}");
    // `return` runs in the rewrite phase, before limit_req.
    assert_eq!(get_response(proxy.addr(), "/queue").await.body, "late");
}

#[tokio::test]
async fn limit_req_dry_run_only_logs() {
    let proxy = Proxy::http(&conf(
        "dry",
        r#"location /try { limit_req zone=one; limit_req_dry_run on; alias {dir}/; }"#,
    ))
    .await;
    std::fs::write(proxy.dir.path().join("f"), "ok").unwrap();
    for _ in 0..3 {
        assert_eq!(status(&proxy, "/try/f").await, 200);
    }
    assert!(
        proxy
            .error_log()
            .contains("limiting requests, dry run, excess:"),
        "{}",
        proxy.error_log()
    );
    let access = std::fs::read_to_string(proxy.dir.path().join("rl.log")).unwrap();
    assert!(access.contains("/try/f 200 REJECTED_DRY_RUN"), "{access}");
}

#[tokio::test]
async fn limit_req_counts_websocket_handshakes() {
    let (ws, _messages) = ws_echo().await;
    let proxy = Proxy::http(&conf(
        "ws",
        &format!("location /ws {{ limit_req zone=one; proxy_pass http://{ws}; }}"),
    ))
    .await;
    let first = ws_connect(proxy.addr(), "/ws").await;
    assert!(first.is_ok(), "{:?}", first.err());
    let second = ws_connect(proxy.addr(), "/ws").await;
    let err = second.expect_err("the second handshake within a second is refused");
    assert!(err.to_string().contains("503"), "{err}");
}

#[test]
fn limit_req_directive_errors() {
    let load = http_config_error;
    let zone = "limit_req_zone $binary_remote_addr zone=z:1m rate=5r/s;";
    assert!(
        load("limit_req_zone $binary_remote_addr zone=z:1m rate=fast;")
            .contains("invalid rate \"rate=fast\"")
    );
    assert!(
        load("limit_req_zone $binary_remote_addr zone=z:1k rate=1r/s;").contains("is too small")
    );
    assert!(
        load("limit_req_zone $binary_remote_addr rate=1r/s x;").contains("invalid parameter \"x\"")
    );
    assert!(
        load("limit_req_zone $binary_remote_addr rate=1r/s size=1;").contains("invalid parameter")
    );
    assert!(
        load(&format!("{zone} limit_req_zone $uri zone=z:1m rate=1r/s;"))
            .contains("limit_req_zone \"z\" is already bound to key \"$binary_remote_addr\"")
    );
    assert!(
        load("server { location / { limit_req zone=nope; } }")
            .contains("unknown limit_req_zone \"nope\"")
    );
    assert!(
        load(&format!("{zone} server {{ limit_req zone=z burst=0; }}"))
            .contains("invalid burst value \"burst=0\"")
    );
    assert!(
        load(&format!("{zone} server {{ limit_req burst=3; }}"))
            .contains("must have \"zone\" parameter")
    );
    assert!(
        load(&format!(
            "{zone} server {{ limit_req zone=z; limit_req zone=z; }}"
        ))
        .contains("\"limit_req\" directive is duplicate")
    );
    assert!(
        load(&format!("{zone} limit_req_status 200;"))
            .contains("value must be between 400 and 599")
    );
    assert!(load(&format!("{zone} limit_req_log_level loud;")).contains("invalid value \"loud\""));
}
