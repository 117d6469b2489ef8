//! Balancing through the proxy: nginx's choices, observed through
//! `$upstream_addr`, and `limit_conn`.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use crate::harness::*;

/// Three backends that answer with their own port.
async fn backends(n: usize) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for _ in 0..n {
        let b = Backend::with(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        out.push(b.addr);
        std::mem::forget(b.seen);
    }
    out
}

async fn picks(proxy: &Proxy, path: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = get_response(proxy.addr(), path).await;
        out.push(r.header("X-Up").unwrap_or_default());
    }
    out
}

fn conf(method: &str, servers: &[String]) -> String {
    let lines: String = servers.iter().map(|s| format!("server {s};")).collect();
    format!(
        "upstream u {{ {method} {lines} }}
         server {{ listen 127.0.0.1:0; add_header X-Up $upstream_addr; location / {{ proxy_pass http://u; }} }}"
    )
}

#[tokio::test]
async fn balance_weighted_round_robin_is_smooth() {
    let b = backends(3).await;
    let proxy = Proxy::http(&conf(
        "",
        &[
            format!("{} weight=5", b[0]),
            b[1].to_string(),
            b[2].to_string(),
        ],
    ))
    .await;
    let got = picks(&proxy, "/", 7).await;
    let (x, y, z) = (b[0].to_string(), b[1].to_string(), b[2].to_string());
    assert_eq!(got, [x.clone(), x.clone(), y, x.clone(), z, x.clone(), x]);
}

/// The peer `proxy` picks for `path` with `X-Real-IP: client`.
async fn pick_for(proxy: &Proxy, path: &str, client: &str) -> String {
    let head = format!("GET {path} HTTP/1.0\r\nHost: h\r\nX-Real-IP: {client}\r\n\r\n");
    let r = Response::parse(&raw(proxy.addr(), head.as_bytes()).await);
    assert_eq!(r.status, 200, "{path} {client}: {}", r.head);
    r.header("X-Up").unwrap_or_default()
}

#[tokio::test]
async fn balance_ip_hash_and_hash_are_sticky() {
    // Many clients (addresses from X-Real-IP, users from the query): each
    // keeps its peer on every request, and together they use every peer,
    // which a balancer that always picks one peer would not.
    let b = backends(3).await;
    let s: Vec<String> = b.iter().map(|a| a.to_string()).collect();
    let realip = "set_real_ip_from 127.0.0.1; real_ip_header X-Real-IP;";
    for method in [
        "ip_hash;",
        "hash $remote_addr;",
        "hash $arg_user consistent;",
    ] {
        let proxy = Proxy::http(&conf(method, &s).replace(
            "listen 127.0.0.1:0;",
            &format!("listen 127.0.0.1:0; {realip}"),
        ))
        .await;
        let mut used = std::collections::BTreeSet::new();
        for (i, client) in client_addrs(30).iter().take(30).enumerate() {
            let path = format!("/?user=user{i}");
            let first = pick_for(&proxy, &path, client).await;
            for _ in 0..2 {
                assert_eq!(
                    pick_for(&proxy, &path, client).await,
                    first,
                    "{method} {client}"
                );
            }
            used.insert(first);
        }
        assert_eq!(used.len(), 3, "{method}: 30 clients used only {used:?}");
    }
}

#[tokio::test]
async fn balance_backup_and_down_servers() {
    let b = backends(2).await;
    let dead_port = DeadPort::new();
    let dead = dead_port.addr().port();
    let proxy = Proxy::http(&conf(
        "",
        &[
            format!("127.0.0.1:{dead}"),
            format!("{} down", b[0]),
            format!("{} backup", b[1]),
        ],
    ))
    .await;
    let got = picks(&proxy, "/", 3).await;
    // The dead primary is tried first, then the backup; once marked failed,
    // straight to the backup.
    assert_eq!(got[0], format!("127.0.0.1:{dead}, {}", b[1]));
    assert_eq!(got[1], b[1].to_string());
    assert!(
        proxy
            .error_log()
            .contains("upstream server temporarily disabled"),
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn balance_limit_conn_status_and_log_level() {
    // A backend that holds its first request until the test lets it go:
    // the second request arrives while the first is counted, however slow
    // the machine.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (reached, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let (release, hold) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = read_request(&mut s).await;
        let _ = reached.send(());
        let _ = hold.await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
    });
    let proxy = Proxy::http(&format!(
        "limit_conn_zone $remote_addr zone=balance_lc:1m;
         server {{ listen 127.0.0.1:0;
            location / {{ limit_conn balance_lc 1; limit_conn_status 429; limit_conn_log_level warn; proxy_pass http://{}; }} }}",
        backend
    ))
    .await;
    let addr = proxy.addr();
    let first = tokio::spawn(async move { get_response(addr, "/").await });
    bounded("the first request at the backend", arrived.recv()).await;
    let second = get_response(addr, "/").await;
    assert_eq!(second.status, 429);
    release.send(()).unwrap();
    let first = bounded("the first response", first).await.unwrap();
    assert_eq!(first.body, "ok");
    assert!(
        proxy.error_log().contains("[warn]")
            && proxy
                .error_log()
                .contains("limiting connections by zone \"balance_lc\"")
    );
}

/// A tunnel keeps its backend connection counted: `max_conns=1` refuses a
/// second WebSocket while the first is open, and admits it once it closes.
#[tokio::test]
async fn balance_max_conns_counts_open_tunnels() {
    let (ws, _) = ws_echo().await;
    let proxy = Proxy::http(&format!(
        "upstream u {{ server {ws} max_conns=1; }}
         server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://u; }} }}"
    ))
    .await;
    let mut first = ws_connect(proxy.addr(), "/").await.unwrap();
    match ws_connect(proxy.addr(), "/").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 502),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("second tunnel admitted"),
    }
    first.close(None).await.unwrap();
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        if ws_connect(proxy.addr(), "/").await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "the closed tunnel's slot never came back");
}

/// A client that sends too large a body is the client's failure: with
/// `max_fails=1`, the peer it was streaming to stays in rotation.
#[tokio::test]
async fn balance_client_errors_do_not_count_against_peers() {
    let b = backends(2).await;
    let proxy = Proxy::http(&format!(
        "upstream u {{ server {} max_fails=1; server {} max_fails=1; }}
         server {{ listen 127.0.0.1:0; add_header X-Up $upstream_addr;
             location / {{ proxy_pass http://u; proxy_request_buffering off; proxy_http_version 1.1; client_max_body_size 10; }} }}",
        b[0], b[1]
    ))
    .await;
    for _ in 0..2 {
        let r = Response::parse(
            &raw(
                proxy.addr(),
                b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n01234567890123456789\r\n0\r\n\r\n",
            )
            .await,
        );
        assert_eq!(r.status, 413);
    }
    let got = picks(&proxy, "/", 4).await;
    for peer in &b {
        assert!(got.contains(&peer.to_string()), "{peer} dropped: {got:?}");
    }
}

#[tokio::test]
async fn balance_failed_peer_is_tried_again_after_fail_timeout() {
    // max_fails=1 fail_timeout=1s on a dead peer: the first request tries
    // it and goes on to the live one; it is then left out while nginx's
    // whole-second clock is within 1 s of the failure, and tried again
    // within about 2 s (with the real clock; unit tests run on their own).
    let b = backends(1).await;
    let dead_port = DeadPort::new();
    let dead = format!("127.0.0.1:{}", dead_port.addr().port());
    let proxy = Proxy::http(&conf(
        "",
        &[
            format!("{dead} max_fails=1 fail_timeout=1s"),
            b[0].to_string(),
        ],
    ))
    .await;
    let both = format!("{dead}, {}", b[0]);
    let started = std::time::Instant::now();
    assert_eq!(picks(&proxy, "/", 1).await, std::slice::from_ref(&both));
    assert_eq!(picks(&proxy, "/", 1).await, [b[0].to_string()]);
    let mut again = None;
    while started.elapsed() < std::time::Duration::from_secs(4) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if picks(&proxy, "/", 1).await[0] == both {
            again = Some(started.elapsed());
            break;
        }
    }
    let again = again.expect("the failed peer was never tried again");
    // Never before one whole second has passed.
    assert!(again >= std::time::Duration::from_secs(1), "{again:?}");
}

/// Client addresses for the mapping test: `n` IPv4 and `n` IPv6 ones from
/// a fixed pseudo-random sequence (spread over the whole address space,
/// so every /24 of ip_hash and every hash bucket is exercised).
fn client_addrs(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let v = next();
        out.push(std::net::Ipv4Addr::from((v >> 16) as u32).to_string());
    }
    for _ in 0..n {
        let hi = u128::from(next());
        let lo = u128::from(next());
        out.push(std::net::Ipv6Addr::from((hi << 64) | lo).to_string());
    }
    out
}

/// `ip_hash`, `hash` and `hash ... consistent` send each of 2,000 client
/// addresses (IPv4 and IPv6; the realip module takes them from
/// X-Real-IP) to the same peer as a real nginx does, with weights and a
/// down peer, and with two live peers among 22 down ones (rehashing, the
/// fallback to round robin after 20 unusable picks, ring points of a
/// unix-socket server), both proxies in front of the same backends.
#[tokio::test]
#[ignore = "needs nginx (apt-get install nginx); .ci/run runs it"]
async fn balance_hash_methods_map_clients_like_nginx() {
    let b = backends(5).await;
    let peers = format!(
        "server {} weight=3; server {}; server {} down; server {} weight=2; server {};",
        b[0], b[1], b[2], b[3], b[4]
    );
    // Two live peers among 22 down ones: most clients' first picks land on
    // a down peer, many need more than 20 (the fallback to round robin).
    // A down unix-socket peer has ring points too, from its path alone.
    let mut sparse = String::new();
    for i in 0..24 {
        match i {
            5 => sparse += &format!("server {};", b[0]),
            17 => sparse += &format!("server {};", b[1]),
            _ => sparse += &format!("server 127.0.0.1:{} down;", 40000 + i),
        }
    }
    let unix = "server unix:/nonexistent/switchyard-ring.sock down;";
    let upstreams = format!(
        "upstream by_ip {{ ip_hash; {peers} }}
         upstream by_hash {{ hash $remote_addr; {peers} }}
         upstream by_ring {{ hash $remote_addr consistent; {peers} {unix} }}
         upstream sparse_ip {{ ip_hash; {sparse} }}
         upstream sparse_hash {{ hash $remote_addr; {sparse} }}
         upstream sparse_ring {{ hash $remote_addr consistent; {sparse} {unix} }}"
    );
    let locations = "set_real_ip_from 127.0.0.1; real_ip_header X-Real-IP;
            add_header X-Up $upstream_addr always;
            location /ip {{ proxy_pass http://by_ip; }}
            location /hash {{ proxy_pass http://by_hash; }}
            location /ring {{ proxy_pass http://by_ring; }}
            location /sparse_ip {{ proxy_pass http://sparse_ip; }}
            location /sparse_hash {{ proxy_pass http://sparse_hash; }}
            location /sparse_ring {{ proxy_pass http://sparse_ring; }}";
    let ours = Proxy::http(&format!(
        "{upstreams} server {{ listen 127.0.0.1:0; {} }}",
        locations.replace("{{", "{").replace("}}", "}")
    ))
    .await;
    let server = format!(
        "{upstreams} server {{ listen 127.0.0.1:{{port}}; {} }}",
        locations.replace("{{", "{").replace("}}", "}")
    );
    let nginx = tokio::task::spawn_blocking(move || crate::probe::nginx::start(&server))
        .await
        .unwrap();
    let theirs = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    let ours = ours.addr();
    let clients = std::sync::Arc::new(client_addrs(1000));
    let down = b[2].to_string();
    // The upstreams are independent, so their comparisons run at once;
    // within one, both proxies see the clients in the same order (round
    // robin after 20 unusable picks depends on it).
    let mut compared = tokio::task::JoinSet::new();
    for (path, live) in [
        ("/ip", 4),
        ("/hash", 4),
        ("/ring", 4),
        ("/sparse_ip", 2),
        ("/sparse_hash", 2),
        ("/sparse_ring", 2),
    ] {
        let (clients, down) = (clients.clone(), down.clone());
        compared.spawn(async move {
            let mut differ = Vec::new();
            let mut used = std::collections::BTreeMap::new();
            for c in clients.iter() {
                let mine = upstream_of(ours, path, c).await;
                let real = upstream_of(theirs, path, c).await;
                assert_ne!(mine, down, "{path} {c}: the down peer was chosen");
                *used.entry(real.clone()).or_insert(0) += 1;
                if mine != real {
                    differ.push(format!("{c}: ours {mine}, nginx {real}"));
                }
            }
            // The comparison means something only if nginx spread the
            // clients over every peer that is up.
            assert_eq!(used.len(), live, "{path}: nginx used {used:?}");
            assert!(
                differ.is_empty(),
                "{path}: {} of {} clients mapped differently, e.g. {:?}",
                differ.len(),
                clients.len(),
                &differ[..differ.len().min(5)]
            );
        });
    }
    while let Some(done) = compared.join_next().await {
        done.unwrap();
    }
}

/// The `X-Up` header (`$upstream_addr`) of `path` asked at `addr` for
/// `client` (taken by the realip module from X-Real-IP).
async fn upstream_of(addr: SocketAddr, path: &str, client: &str) -> String {
    let r = Response::parse(
        &raw(
            addr,
            format!("GET {path} HTTP/1.0\r\nHost: h\r\nX-Real-IP: {client}\r\n\r\n").as_bytes(),
        )
        .await,
    );
    assert_eq!(r.status, 200, "{path} {client}: {}", r.head);
    r.header("X-Up").unwrap_or_default()
}
