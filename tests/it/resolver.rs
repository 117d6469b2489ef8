//! `resolver`: names in `proxy_pass` with variables looked up at run time
//! against a small DNS server of the test's own (A, AAAA, CNAME, NXDOMAIN,
//! truncated answers retried over TCP, silence), with caching by TTL and
//! `valid=`, and WebSockets to a resolved host.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// What the DNS server answers for a name.
#[derive(Clone)]
pub enum Record {
    /// An A record with this TTL.
    A(Ipv4Addr, u32),
    /// A CNAME to a name, then that name's A record, in one answer.
    Cname(&'static str, Ipv4Addr),
    /// NXDOMAIN.
    NxDomain,
    /// Over UDP a truncated empty answer; over TCP the A record.
    TruncatedA(Ipv4Addr),
    /// No answer at all.
    Silent,
}

/// A DNS server on 127.0.0.1 (UDP and TCP on the same port) that counts
/// the A queries it gets per name.
pub struct Dns {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Record>>>,
    a_queries: Arc<Mutex<HashMap<String, usize>>>,
    tcp_queries: Arc<Mutex<usize>>,
}

impl Dns {
    pub async fn start(records: &[(&'static str, Record)]) -> Dns {
        let records: Arc<Mutex<HashMap<String, Record>>> = Arc::new(Mutex::new(
            records
                .iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect(),
        ));
        // One port for both transports: bind TCP first, then UDP on it.
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            if let Ok(udp) = UdpSocket::bind(tcp.local_addr().unwrap()).await {
                break (tcp, udp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let a_queries = Arc::new(Mutex::new(HashMap::new()));
        let tcp_queries = Arc::new(Mutex::new(0));
        {
            let (records, counts) = (records.clone(), a_queries.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    if let Some(reply) = answer(&buf[..n], &records, &counts, false) {
                        let _ = udp.send_to(&reply, from).await;
                    }
                }
            });
        }
        {
            let (records, counts, tcp_count) =
                (records.clone(), a_queries.clone(), tcp_queries.clone());
            tokio::spawn(async move {
                while let Ok((mut s, _)) = tcp.accept().await {
                    *tcp_count.lock().unwrap() += 1;
                    let (records, counts) = (records.clone(), counts.clone());
                    tokio::spawn(async move {
                        loop {
                            let mut len = [0u8; 2];
                            if s.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                            if s.read_exact(&mut q).await.is_err() {
                                return;
                            }
                            if let Some(reply) = answer(&q, &records, &counts, true) {
                                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                                out.extend_from_slice(&reply);
                                if s.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            });
        }
        Dns {
            addr,
            records,
            a_queries,
            tcp_queries,
        }
    }

    /// Changes what `name` resolves to from now on.
    fn set(&self, name: &str, record: Record) {
        self.records
            .lock()
            .unwrap()
            .insert(name.to_string(), record);
    }

    fn a_queries(&self, name: &str) -> usize {
        self.a_queries
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// The question's name (dotted, lowercase) and type, and where the
/// question ends.
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

fn answer(
    q: &[u8],
    records: &Mutex<HashMap<String, Record>>,
    counts: &Mutex<HashMap<String, usize>>,
    tcp: bool,
) -> Option<Vec<u8>> {
    const A: u16 = 1;
    const CNAME: u16 = 5;
    let (name, qtype, end) = question(q)?;
    if qtype == A {
        *counts.lock().unwrap().entry(name.clone()).or_default() += 1;
    }
    let record = records
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .unwrap_or(Record::NxDomain);
    let mut flags: u16 = 0x8180; // response, recursion desired and available
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let rr = |owner: Vec<u8>, rtype: u16, ttl: u32, rdata: Vec<u8>| {
        let mut r = owner;
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
        r
    };
    match record {
        Record::Silent => return None,
        Record::NxDomain => flags |= 3,
        Record::A(ip, ttl) if qtype == A => {
            answers.push(rr(vec![0xc0, 12], A, ttl, ip.octets().to_vec()))
        }
        Record::Cname(target, ip) => {
            answers.push(rr(vec![0xc0, 12], CNAME, 60, encode_name(target)));
            if qtype == A {
                answers.push(rr(encode_name(target), A, 60, ip.octets().to_vec()));
            }
        }
        Record::TruncatedA(_) if !tcp => flags |= 0x0200,
        Record::TruncatedA(ip) if qtype == A => {
            answers.push(rr(vec![0xc0, 12], A, 60, ip.octets().to_vec()))
        }
        // Other types of a name with an A record: no data.
        _ => {}
    }
    let mut out = Vec::new();
    out.extend_from_slice(&q[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q[12..end]);
    for a in answers {
        out.extend_from_slice(&a);
    }
    Some(out)
}

/// A proxy whose `/` passes to `http://$arg_h:PORT` through `resolver`.
async fn proxy(dns: &Dns, resolver_extra: &str, port: u16) -> Proxy {
    Proxy::start(&http_conf(&format!(
        "    resolver {} {resolver_extra};\n    resolver_timeout 1s;\n    server {{ listen 127.0.0.1:0;\n        location / {{ proxy_pass http://$arg_h:{port}; }}\n    }}",
        dns.addr
    )))
    .await
}

#[tokio::test]
async fn a_resolved_name_is_proxied_to_and_its_answer_cached_for_its_ttl() {
    let dns = Dns::start(&[
        ("backend.test", Record::A(Ipv4Addr::LOCALHOST, 60)),
        ("short.test", Record::A(Ipv4Addr::LOCALHOST, 1)),
    ])
    .await;
    let backend = Backend::echo().await;
    let proxy = proxy(&dns, "", backend.addr.port()).await;
    let r = get_response(proxy.addrs[0], "/?h=backend.test").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(
        r.body
            .contains(&format!("Host: backend.test:{}", backend.addr.port())),
        "{}",
        r.body
    );
    // Case and a trailing dot do not make another name.
    let r = get_response(proxy.addrs[0], "/?h=Backend.TEST").await;
    assert_eq!(r.status, 200);
    assert_eq!(dns.a_queries("backend.test"), 1, "cached for 60 s");

    // A TTL of 1 s: asked again once it has passed.
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=short.test").await.status,
        200
    );
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=short.test").await.status,
        200
    );
    assert_eq!(dns.a_queries("short.test"), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=short.test").await.status,
        200
    );
    assert_eq!(dns.a_queries("short.test"), 2, "asked again after the TTL");
}

#[tokio::test]
async fn valid_overrides_the_ttl() {
    let dns = Dns::start(&[("backend.test", Record::A(Ipv4Addr::LOCALHOST, 3600))]).await;
    let backend = Backend::echo().await;
    let proxy = proxy(&dns, "valid=1s", backend.addr.port()).await;
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=backend.test")
            .await
            .status,
        200
    );
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=backend.test")
            .await
            .status,
        200
    );
    assert_eq!(dns.a_queries("backend.test"), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=backend.test")
            .await
            .status,
        200
    );
    assert_eq!(dns.a_queries("backend.test"), 2, "valid=1s, not the TTL");
}

#[tokio::test]
async fn an_unknown_name_is_502_and_not_cached() {
    let dns = Dns::start(&[]).await;
    let proxy = proxy(&dns, "", 80).await;
    let r = get_response(proxy.addrs[0], "/?h=nowhere.test").await;
    assert_eq!(r.status, 502, "{}", r.head);
    proxy
        .assert_error_logged("nowhere.test could not be resolved (3: Host not found)")
        .await;
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=nowhere.test")
            .await
            .status,
        502
    );
    assert_eq!(dns.a_queries("nowhere.test"), 2, "failures are not cached");
}

#[tokio::test]
async fn a_silent_server_is_502_after_resolver_timeout() {
    let dns = Dns::start(&[("slow.test", Record::Silent)]).await;
    let proxy = proxy(&dns, "", 80).await;
    let started = Instant::now();
    let r = get_response(proxy.addrs[0], "/?h=slow.test").await;
    let took = started.elapsed();
    assert_eq!(r.status, 502, "{}", r.head);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "resolver_timeout 1s, took {took:?}"
    );
    proxy
        .assert_error_logged("slow.test could not be resolved (110: Operation timed out)")
        .await;
}

#[tokio::test]
async fn cnames_are_followed_and_truncated_answers_retried_over_tcp() {
    let dns = Dns::start(&[
        (
            "alias.test",
            Record::Cname("real.test", Ipv4Addr::LOCALHOST),
        ),
        ("big.test", Record::TruncatedA(Ipv4Addr::LOCALHOST)),
    ])
    .await;
    let backend = Backend::echo().await;
    let proxy = proxy(&dns, "", backend.addr.port()).await;
    let r = get_response(proxy.addrs[0], "/?h=alias.test").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body.contains("Host: alias.test:"), "{}", r.body);

    assert_eq!(*dns.tcp_queries.lock().unwrap(), 0);
    let r = get_response(proxy.addrs[0], "/?h=big.test").await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(*dns.tcp_queries.lock().unwrap() >= 1, "asked over TCP");
}

#[tokio::test]
async fn without_a_resolver_a_name_is_502_with_the_reason() {
    let proxy = Proxy::start(&http_conf(
        "    server { listen 127.0.0.1:0;\n        location / { proxy_pass http://$arg_h:80; }\n    }",
    ))
    .await;
    assert_eq!(
        get_response(proxy.addrs[0], "/?h=backend.test")
            .await
            .status,
        502
    );
    proxy
        .assert_error_logged("no resolver defined to resolve backend.test")
        .await;
}

#[tokio::test]
async fn a_websocket_reaches_a_resolved_host() {
    let dns = Dns::start(&[("chat.test", Record::A(Ipv4Addr::LOCALHOST, 60))]).await;
    let (ws_addr, mut handshakes) = ws_echo().await;
    let proxy = Proxy::start(&http_conf(&format!(
        "    resolver {};\n    server {{ listen 127.0.0.1:0;\n        location /ws {{\n            proxy_pass http://chat.test$arg_p;\n            proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            proxy_set_header Connection upgrade;\n        }}\n    }}",
        dns.addr
    )))
    .await;
    let mut ws = ws_connect(proxy.addrs[0], &format!("/ws?p=:{}", ws_addr.port()))
        .await
        .expect("handshake through the proxy");
    let head = tokio::time::timeout(Duration::from_secs(5), handshakes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(head.contains("host: chat.test:"), "{head}");
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
    assert_eq!(dns.a_queries("chat.test"), 1);
}

#[test]
fn resolver_parameters_are_checked_at_load() {
    assert_eq!(
        http_config_error("resolver 127.0.0.1 valid=30s ipv6=off;"),
        ""
    );
    assert!(
        http_config_error("resolver 127.0.0.1 ipv4=off ipv6=off;").contains("ipv4")
            || http_config_error("resolver 127.0.0.1 ipv4=off ipv6=off;").contains("ipv6"),
        "{}",
        http_config_error("resolver 127.0.0.1 ipv4=off ipv6=off;")
    );
    assert!(
        http_config_error("resolver 127.0.0.1 valid=x;").contains("valid"),
        "{}",
        http_config_error("resolver 127.0.0.1 valid=x;")
    );
    assert!(
        http_config_error("resolver;").contains("invalid number of arguments"),
        "{}",
        http_config_error("resolver;")
    );
}

/// An HTTP server on `addr` that answers every request with `tag`.
async fn tagged(addr: SocketAddr, tag: &'static str) -> Option<SocketAddr> {
    let listener = TcpListener::bind(addr).await.ok()?;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if read_request(&mut s).await.is_some() {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{tag}",
                        tag.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                }
            });
        }
    });
    Some(addr)
}

#[tokio::test]
async fn upstream_servers_with_resolve_follow_the_name() {
    // Two backends on one port, on 127.0.0.1 and 127.0.0.2.
    let (first, second) = loop {
        let first = tagged("127.0.0.1:0".parse().unwrap(), "first")
            .await
            .unwrap();
        let other = SocketAddr::new([127, 0, 0, 2].into(), first.port());
        if let Some(second) = tagged(other, "second").await {
            break (first, second);
        }
    };
    let dns = Dns::start(&[("app.test", Record::A(Ipv4Addr::LOCALHOST, 1))]).await;
    let proxy = Proxy::start(&http_conf(&format!(
        "    resolver {};
    upstream app {{ zone app 64k; server app.test:{} resolve max_fails=0; server unknown.test:1 resolve backup; }}
    server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://app; }} }}",
        dns.addr,
        first.port()
    )))
    .await;
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "first"), "{}", r.head);

    dns.set("app.test", Record::A(Ipv4Addr::new(127, 0, 0, 2), 1));
    // Once the 1 s TTL has passed, the next lookup moves the traffic.
    let mut body = String::new();
    for _ in 0..40 {
        body = get_response(proxy.addr(), "/").await.body;
        if body == "second" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        body, "second",
        "traffic follows the new address of {}",
        second
    );
    assert!(
        eventually(|| proxy.error_log().contains(
            "unknown.test could not be resolved (3: Host not found) for upstream \"app\""
        ))
        .await,
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn an_upstream_whose_names_do_not_resolve_answers_502() {
    let dns = Dns::start(&[]).await;
    let proxy = Proxy::start(&http_conf(&format!(
        "    resolver {};
    resolver_timeout 1s;
    upstream app {{ server nowhere.test resolve; }}
    server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://app; }} }}",
        dns.addr
    )))
    .await;
    assert_eq!(get_response(proxy.addr(), "/").await.status, 502);
}

#[test]
fn resolve_needs_a_resolver() {
    let e = http_config_error(
        "upstream app { server app.test:8080 resolve; } server { location / { proxy_pass http://app; } }",
    );
    assert!(e.contains("no resolver defined to resolve app.test"), "{e}");
    let e = http_config_error(
        "upstream app { server unix:/run/a.sock resolve; } server { location / { proxy_pass http://app; } }",
    );
    assert!(e.contains("invalid parameter \"resolve\""), "{e}");
}

/// A reload keeps what `server ... resolve` names were found to be: the
/// new generation's group of the same name starts from those addresses
/// (with the port it now says), so a DNS server that is silent right then
/// costs nothing.
#[tokio::test]
async fn a_reload_starts_from_the_addresses_already_found() {
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let before = tagged(SocketAddr::from((ip, 0)), "before").await.unwrap();
    let after = tagged(SocketAddr::from((ip, 0)), "after").await.unwrap();
    let dns = Dns::start(&[("app.test", Record::A(ip, 1))]).await;
    let conf = |port: u16| {
        http_conf(&format!(
            "    resolver {};
    resolver_timeout 1s;
    upstream app {{ zone app 64k; server app.test:{port} resolve; }}
    server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://app; }} }}",
            dns.addr
        ))
    };
    let proxy = Proxy::start(&conf(before.port())).await;
    assert_eq!(get_response(proxy.addr(), "/").await.body, "before");
    dns.set("app.test", Record::Silent);
    proxy.reload(&conf(after.port())).unwrap();
    // Without them the lookup would time out and leave no peer: 502.
    let r = get_response(proxy.addr(), "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "after"), "{}", r.head);
}
