//! Variables that classify clients. `geo`: from the client address, by
//! network or by range, from `$address`, behind `proxy` networks through
//! `X-Forwarded-For`, cached per request unless `volatile`.
//! `split_clients`: by nginx's hash of a value and percentages. Both with
//! nginx's load-time verdicts.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::harness::*;

const GEOS: &str = r#"
    geo $net {
        default        world;
        127.0.0.0/8    loopback;
        127.0.0.1/32   me;
        192.0.2.0/24   doc;
        255.255.255.255 nowhere;
    }
    geo $arg_ip $by_arg {
        default        world;
        10.0.0.0/8     ten;
        10.1.0.0/16    ten-one;
        2001:db8::/32  doc6;
        ::/0           world6;
        include        {dir}/geo.conf;
        delete         10.1.0.0/16;
    }
    geo $arg_ip $by_range {
        ranges;
        default                 other;
        10.0.0.0-10.0.255.255   a;
        10.0.1.0-10.0.1.255     b;
        10.0.1.7-10.0.1.7       c;
        10.0.5.0-10.3.0.255     wide;
        delete                  10.0.1.7-10.0.1.7;
    }
    geo $behind {
        default        none;
        proxy          127.0.0.0/8;
        proxy          203.0.113.0/24;
        127.0.0.0/8    loopback;
        198.51.100.0/24 client;
        203.0.113.0/24 hop;
    }
    geo $behind_all {
        proxy_recursive;
        default        none;
        proxy          127.0.0.0/8;
        proxy          203.0.113.0/24;
        198.51.100.0/24 client;
        203.0.113.0/24 hop;
    }
    server {
        listen 127.0.0.1:0;
        listen unix:{dir}/geo.sock;
        location / {
            return 200 "$net|$by_arg|$by_range|$behind|$behind_all";
        }
    }
"#;

/// Starts [`GEOS`] with its include file in place.
async fn geo_proxy() -> Proxy {
    let dir = TempDir::new();
    dir.write("geo.conf", "198.51.100.0/24 included;\n");
    Proxy::start_in(dir, &http_conf(GEOS))
        .await
        .unwrap_or_else(|e| panic!("proxy did not start: {e}"))
}

async fn fields(proxy: &Proxy, uri: &str, xff: &[&str]) -> Vec<String> {
    let mut head = format!("GET {uri} HTTP/1.0\r\nHost: localhost\r\n");
    for line in xff {
        head.push_str(&format!("X-Forwarded-For: {line}\r\n"));
    }
    head.push_str("\r\n");
    let r = Response::parse(&raw(proxy.addr(), head.as_bytes()).await);
    assert_eq!(r.status, 200, "{uri}: {}", r.body);
    r.body.split('|').map(str::to_string).collect()
}

async fn unix_body(path: &Path, uri: &str) -> String {
    let mut s = bounded("connect to the unix socket", UnixStream::connect(path))
        .await
        .unwrap();
    s.write_all(format!("GET {uri} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    bounded("the answer over the unix socket", s.read_to_end(&mut out))
        .await
        .unwrap();
    Response::parse(&String::from_utf8_lossy(&out)).body
}

#[tokio::test]
async fn geo_networks_match_the_longest_prefix_of_the_client_or_of_a_variable() {
    let proxy = geo_proxy().await;
    // The client is 127.0.0.1: /32 beats /8. No ip argument is not an
    // address: 255.255.255.255 in the IPv4 table, the IPv4 default.
    let f = fields(&proxy, "/", &[]).await;
    assert_eq!(f[0], "me");
    assert_eq!(f[1], "world");
    assert_eq!(f[2], "other");
    for (ip, want) in [
        ("10.1.2.3", "ten"), // 10.1.0.0/16 was deleted
        ("10.200.0.1", "ten"),
        ("198.51.100.9", "included"),
        ("192.0.2.1", "world"),
        ("2001:db8::5", "doc6"),
        ("2001:db9::5", "world6"),
        ("::ffff:10.9.9.9", "ten"), // a mapped address is its IPv4 address
        ("[::1]", "world"),         // brackets are not an address here
        ("10.0.0.1:80", "world"),   // nor is a port
    ] {
        assert_eq!(
            fields(&proxy, &format!("/?ip={ip}"), &[]).await[1],
            want,
            "{ip}"
        );
    }
    // A unix-domain client is 255.255.255.255 too.
    let body = unix_body(&proxy.dir.path().join("geo.sock"), "/").await;
    assert!(body.starts_with("nowhere|"), "{body}");
}

#[tokio::test]
async fn geo_ranges_take_later_narrower_ranges_out_of_earlier_ones() {
    let proxy = geo_proxy().await;
    for (ip, want) in [
        ("10.0.0.9", "a"),
        ("10.0.1.6", "b"),
        ("10.0.1.7", "other"), // its own range was deleted
        ("10.0.1.8", "b"),
        ("10.0.2.0", "a"),
        ("10.0.5.0", "wide"), // spans /16 blocks
        ("10.1.77.1", "wide"),
        ("10.3.0.255", "wide"),
        ("10.3.1.0", "other"),
        ("2001:db8::1", "other"), // ranges hold IPv4 only
    ] {
        assert_eq!(
            fields(&proxy, &format!("/?ip={ip}"), &[]).await[2],
            want,
            "{ip}"
        );
    }
}

#[tokio::test]
async fn geo_proxy_reads_x_forwarded_for_from_trusted_addresses() {
    let proxy = geo_proxy().await;
    let case = |xff: &'static [&'static str]| {
        let proxy = &proxy;
        async move {
            let f = fields(proxy, "/", xff).await;
            (f[3].clone(), f[4].clone())
        }
    };
    // No header: the client's own address.
    assert_eq!(case(&[]).await, ("loopback".into(), "none".into()));
    // Only the last element, unless proxy_recursive walks past trusted ones.
    assert_eq!(
        case(&["198.51.100.7, 203.0.113.9"]).await,
        ("hop".into(), "client".into())
    );
    assert_eq!(
        case(&["198.51.100.7:4000"]).await,
        ("client".into(), "client".into())
    );
    // Without proxy_recursive, only the last header line; with it, all.
    assert_eq!(
        case(&["198.51.100.7", "203.0.113.9"]).await,
        ("hop".into(), "client".into())
    );
    // An element that is not an address stops the walk: the last good one.
    assert_eq!(
        case(&["junk, 203.0.113.9"]).await,
        ("hop".into(), "hop".into())
    );
    assert_eq!(case(&["junk"]).await, ("loopback".into(), "none".into()));
}

#[tokio::test]
async fn geo_values_are_looked_up_once_per_request_unless_volatile() {
    let proxy = Proxy::http(
        r#"
        geo $arg_ip $once { default other; 192.0.2.0/24 doc; }
        geo $arg_ip $each { volatile; default other; 192.0.2.0/24 doc; }
        server {
            listen 127.0.0.1:0;
            location / {
                set $before "$once|$each";
                set $args ip=10.0.0.1;
                return 200 "$before|$once|$each";
            }
        }"#,
    )
    .await;
    let r = get_response(proxy.addr(), "/?ip=192.0.2.1").await;
    assert_eq!(r.body, "doc|doc|doc|other");
}

#[tokio::test]
async fn geo_exempts_an_allowlist_from_limit_req() {
    // The usual shape: addresses that geo marks 0 get an empty key, which
    // limit_req does not count. (Not through `return`: it answers in the
    // rewrite phase, before limit_req.)
    let proxy = Proxy::http(
        r#"
        geo $limited {
            default 1;
            proxy 127.0.0.1;
            10.0.0.0/8 0;
        }
        map $limited $limit_key { 0 ""; 1 $http_x_forwarded_for; }
        limit_req_zone $limit_key zone=per_client:1m rate=1r/m;
        server {
            listen 127.0.0.1:0;
            location / { limit_req zone=per_client; root {dir}; }
        }"#,
    )
    .await;
    proxy.dir.write("f.txt", "ok");
    let status = |xff: &'static str| {
        let addr = proxy.addr();
        async move {
            let head = format!("GET /f.txt HTTP/1.0\r\nHost: x\r\nX-Forwarded-For: {xff}\r\n\r\n");
            Response::parse(&raw(addr, head.as_bytes()).await).status
        }
    };
    for _ in 0..3 {
        assert_eq!(status("10.2.3.4").await, 200);
    }
    assert_eq!(status("192.0.2.1").await, 200);
    assert_eq!(status("192.0.2.1").await, 503);
}

#[test]
fn geo_load_errors_and_warnings_are_nginx_s() {
    let err = http_config_error;
    for (conf, want) in [
        (
            "geo $g { 10.0.0.0/33 x; }",
            "invalid network \"10.0.0.0/33\"",
        ),
        ("geo $g { proxy unix:; }", "invalid network \"unix:\""),
        (
            "geo $g { default; }",
            "invalid number of the geo parameters",
        ),
        (
            "geo $g { 1.2.3.4 a b; }",
            "invalid number of the geo parameters",
        ),
        ("geo $g { x { } }", "unexpected \"{\""),
        ("geo g { }", "invalid variable name \"g\""),
        (
            "geo $remote_addr { }",
            "the duplicate \"remote_addr\" variable",
        ),
        ("geo $a $b $c { }", "invalid number of arguments in \"geo\""),
        ("geo $g;", "directive \"geo\" has no opening \"{\""),
        (
            "geo $g { default x; ranges; }",
            "the \"ranges\" directive must be the first directive inside \"geo\" block",
        ),
        (
            "geo $g { ranges; 10.0.0.0/8 x; }",
            "invalid range \"10.0.0.0/8\"",
        ),
        ("geo $g { ranges; 10.0.0.9-10.0.0.1 x; }", "invalid range"),
        (
            "geo $g { ranges; 10.0.0.0-255.255.255.255 x; }",
            "invalid range",
        ),
        ("geo $g { ranges; ::1-::2 x; }", "invalid range"),
        (
            "geo $g { ranges; 10.0.0.10-10.0.0.20 a; 10.0.0.15-10.0.0.30 b; }",
            "range \"10.0.0.15-10.0.0.30\" overlaps \"10.0.0.10-10.0.0.20\"",
        ),
        (
            "geo $g { ranges; 10.0.0.10-10.0.0.20 a; 10.0.0.0-10.0.0.255 b; }",
            "overlaps \"10.0.0.10-10.0.0.20\"",
        ),
        ("geo $nope $g { }", "unknown \"nope\" variable"),
    ] {
        let e = err(conf);
        assert!(e.contains(want), "{conf}: {e}");
    }
    let warnings = |conf: &str| -> Vec<String> {
        let dir = TempDir::new();
        let c =
            switchyard::config::load_str(&format!("events {{}}\nhttp {{ {conf} }}\n"), dir.path())
                .unwrap_or_else(|e| panic!("{conf}: {e}"));
        c.warnings.iter().map(|w| w.to_string()).collect()
    };
    let w = warnings(
        "geo $g { 10.0.0.0/8 a; 10.0.0.0/8 b; delete 10.9.0.0/16; 10.1.2.3/16 c; default x; default y; }",
    );
    for want in [
        "duplicate network \"10.0.0.0/8\", value: \"b\", old value: \"a\"",
        "no network \"10.9.0.0/16\" to delete",
        "low address bits of 10.1.2.3/16 are meaningless",
        "duplicate network \"default\", value: \"y\", old value: \"x\"",
    ] {
        assert!(w.iter().any(|l| l.contains(want)), "{want}: {w:?}");
    }
    let w = warnings(
        "geo $g { ranges; default x; default y; 10.0.0.0-10.0.0.9 a; 10.0.0.0-10.0.0.9 b; delete 10.0.0.0-10.0.0.5; }",
    );
    for want in [
        "duplicate default geo range value: \"y\", old value: \"x\"",
        "duplicate range \"10.0.0.0-10.0.0.9\", value: \"b\", old value: \"a\"",
        "no address range \"10.0.0.0-10.0.0.5\" to delete",
    ] {
        assert!(w.iter().any(|l| l.contains(want)), "{want}: {w:?}");
    }
}

#[tokio::test]
async fn split_clients_divides_values_by_nginx_s_hash_and_shares() {
    let proxy = Proxy::http(
        r#"
        split_clients "${arg_user}" $variant {
            50%   a;
            25%   b;
            *     c;
        }
        split_clients $arg_user $half { 50% x; }
        split_clients $loop $loop { * z; }
        server {
            listen 127.0.0.1:0;
            location / { return 200 "$variant|$half"; }
            location /loop { return 200 "[$loop]"; }
        }"#,
    )
    .await;
    // Which part a name falls in, worked out apart from this code with
    // nginx's MurmurHash2 and bounds.
    for (user, want) in [
        ("alice", "a"),
        ("dave", "b"),
        ("erin", "b"),
        ("judy", "c"),
        ("oscar", "c"),
        ("trent", "a"),
    ] {
        let body = get_response(proxy.addr(), &format!("/?user={user}"))
            .await
            .body;
        let (variant, half) = body.split_once('|').unwrap();
        assert_eq!(variant, want, "{user}");
        // Parts short of 100%: past them the value is empty.
        assert_eq!(half, if want == "a" { "x" } else { "" }, "{user}");
    }
    // Over many values the parts get their shares.
    let mut counts = std::collections::HashMap::new();
    for i in 0..400 {
        let body = get_response(proxy.addr(), &format!("/?user=u{i}"))
            .await
            .body;
        *counts.entry(body[..1].to_string()).or_insert(0) += 1;
    }
    let share = |k: &str| counts.get(k).copied().unwrap_or(0);
    assert!((160..=240).contains(&share("a")), "{counts:?}");
    assert!((70..=130).contains(&share("b")), "{counts:?}");
    assert!((70..=130).contains(&share("c")), "{counts:?}");
    // A split of its own variable is a cycle, logged; the value it reads
    // is empty (which hashes into `*`), and nothing recurses.
    assert_eq!(get_response(proxy.addr(), "/loop").await.body, "[z]");
    proxy
        .assert_error_logged("cycle while evaluating variable \"loop\"")
        .await;
}

#[test]
fn split_clients_load_errors_are_nginx_s() {
    for (conf, want) in [
        (
            "split_clients $a $v { 60% x; 50% y; }",
            "percent total is greater than 100%",
        ),
        (
            "split_clients $a $v { 0% x; }",
            "invalid percent value \"0%\"",
        ),
        (
            "split_clients $a $v { 10 x; }",
            "invalid percent value \"10\"",
        ),
        (
            "split_clients $a $v { 1.234% x; }",
            "invalid percent value \"1.234%\"",
        ),
        ("split_clients $a $v { x%% x; }", "invalid percent value"),
        (
            "split_clients $a $v { 10% x y; }",
            "invalid number of the split_clients parameters",
        ),
        ("split_clients $a v { * x; }", "invalid variable name \"v\""),
        (
            "split_clients $a $host { * x; }",
            "the duplicate \"host\" variable",
        ),
    ] {
        let e = http_config_error(conf);
        assert!(e.contains(want), "{conf}: {e}");
    }
    assert_eq!(
        http_config_error("split_clients $arg_a $v { 12.5% x; 87.5% y; * z; }"),
        ""
    );
}
