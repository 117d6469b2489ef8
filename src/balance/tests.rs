//! The balancer's unit tests: each sequence worked by hand from nginx's
//! algorithm, on a clock of their own.

use super::*;
use crate::config::template::Template;

thread_local! {
    /// This test's clock (each test runs on a thread of its own), far
    /// from 0 as a real clock is, so that a never-failed peer's
    /// `checked` of 0 is long past.
    pub(super) static CLOCK: std::cell::Cell<i64> = const { std::cell::Cell::new(1_000_000) };
}

fn advance(secs: i64) {
    CLOCK.with(|c| c.set(c.get() + secs));
}

fn upstream(method: BalanceMethod, weights: &[u32]) -> Arc<Balancer> {
    tuned(method, weights, |_| {})
}

/// Peers on ports 8081.. with `weights`, each then changed by `tune`.
fn tuned(method: BalanceMethod, weights: &[u32], tune: impl Fn(&mut Peer)) -> Arc<Balancer> {
    let peers = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut peer = Peer {
                weight: *w,
                ..Peer::new(
                    std::net::SocketAddr::from(([127, 0, 0, 1], 8081 + i as u16)),
                    format!("127.0.0.1:{}", 8081 + i),
                )
            };
            tune(&mut peer);
            peer
        })
        .collect();
    Arc::new(Balancer::new(Arc::new(Upstream {
        name: "u".into(),
        index: 0,
        peers,
        method,
        keepalive: None,
        implicit: false,
        span: crate::config::Span::command_line(),
        resolved: Vec::new(),
        resolver: None,
    })))
}

fn ports(b: &Arc<Balancer>, n: usize, client: IpAddr, key: &[u8]) -> Vec<u16> {
    (0..n)
        .map(|_| {
            let mut p = b.start(client, key.to_vec(), 0);
            let c = p.next_peer().unwrap();
            p.free(&c, false);
            c.addr.inet().expect("a TCP peer").port()
        })
        .collect()
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// `n` picks whose connections stay open: their ports and leases.
fn held_ports(b: &Arc<Balancer>, n: usize) -> (Vec<u16>, Vec<Lease>) {
    (0..n)
        .map(|_| {
            let mut p = b.start(LOCAL, Vec::new(), 0);
            let c = p.next_peer().unwrap();
            (c.addr.inet().unwrap().port(), p.succeed(&c))
        })
        .unzip()
}

#[test]
fn balance_smooth_weighted_round_robin() {
    // nginx's documented sequence for weights 5,1,1: a a b a c a a.
    // least_conn gives the same when no connection stays open: every
    // peer ties at 0, and the tie-break is this round robin.
    for method in [BalanceMethod::RoundRobin, BalanceMethod::LeastConn] {
        let b = upstream(method.clone(), &[5, 1, 1]);
        assert_eq!(
            ports(&b, 7, LOCAL, b""),
            [8081, 8081, 8082, 8081, 8083, 8081, 8081],
            "{method:?}"
        );
    }
}

#[test]
fn balance_failure_lowers_the_effective_weight_which_recovers() {
    // Weights 3 and 1, max_fails=3: a failure of the first lowers its
    // effective weight by 3/3 = 1 without disabling it, and each pick
    // gives one back. By nginx's algorithm (current += effective, the
    // largest current wins and loses the total): the first pick is the
    // first peer (3 against 1, current -1), it fails (effective 2);
    // then 1 vs 2 picks the second (and the first's effective weight
    // is back at 3), then 4 vs 0, 3 vs 1, 2 vs 2 (a tie goes to the
    // first), 1 vs 3. Never recovering would pick the second at the
    // fourth of these instead.
    let b = tuned(BalanceMethod::RoundRobin, &[3, 1], |p| p.max_fails = 3);
    let mut p = b.start(LOCAL, Vec::new(), 0);
    let c = p.next_peer().unwrap();
    assert_eq!(c.addr.inet().unwrap().port(), 8081);
    assert_eq!(
        p.free(&c, true),
        None,
        "one failure of three disables nothing"
    );
    assert_eq!(ports(&b, 5, LOCAL, b""), [8082, 8081, 8081, 8081, 8082]);
}

#[test]
fn balance_failed_peer_returns_after_fail_timeout() {
    // max_fails=1 fail_timeout=1s: disabled while the clock, in whole
    // seconds, is within 1 of the failure; back 2 s after it.
    let b = tuned(BalanceMethod::RoundRobin, &[1, 1], |p| {
        p.fail_timeout = std::time::Duration::from_secs(1);
    });
    let mut p = b.start(LOCAL, Vec::new(), 0);
    let c = p.next_peer().unwrap();
    let failed = c.addr.inet().unwrap().port();
    assert!(p.free(&c, true).is_some(), "disabled by its one failure");
    assert!(!ports(&b, 4, LOCAL, b"").contains(&failed));
    advance(1);
    assert!(!ports(&b, 4, LOCAL, b"").contains(&failed), "1 s later");
    // Back, with its effective weight recovering from 0 by one a pick
    // (current weights -1 + 0 against 1 + 1, then 0 against 2, then 1
    // against 1): the third pick.
    advance(1);
    assert_eq!(failed, 8081);
    assert_eq!(ports(&b, 3, LOCAL, b""), [8082, 8082, 8081], "2 s later");
}

/// The methods with the key each is given in these tests.
fn methods() -> [(BalanceMethod, &'static [u8]); 5] {
    let hash = |consistent| BalanceMethod::Hash {
        key: Template::default(),
        consistent,
    };
    [
        (BalanceMethod::RoundRobin, b""),
        (BalanceMethod::LeastConn, b""),
        (BalanceMethod::IpHash, b""),
        (hash(false), b"/key"),
        (hash(true), b"/key"),
    ]
}

/// One attempt, reported as failed or not: the port it went to and
/// the warning it caused.
fn attempt(b: &Arc<Balancer>, key: &[u8], failed: bool) -> (u16, Option<String>) {
    let mut p = b.start(LOCAL, key.to_vec(), 0);
    let c = p.next_peer().expect("a peer");
    let warning = p.free(&c, failed);
    (c.addr.inet().unwrap().port(), warning)
}

/// Peers 8081 (max_fails=2 fail_timeout=10s) and 8082 `down`, so every
/// method picks 8081 while it is usable.
fn one_live_peer(method: BalanceMethod) -> Arc<Balancer> {
    tuned(method, &[1, 1], |p| {
        p.max_fails = 2;
        p.fail_timeout = std::time::Duration::from_secs(10);
        p.down = p.name.ends_with("8082");
    })
}

const DISABLED: Option<&str> = Some("upstream server temporarily disabled");

#[test]
fn balance_a_success_within_fail_timeout_keeps_the_failures() {
    // nginx clears a peer's failures on success only when the peer was
    // picked more than fail_timeout after its last check: one failure,
    // a success a second later and a failure a second after that
    // disable it (max_fails=2), with every method.
    for (method, key) in methods() {
        let b = one_live_peer(method.clone());
        assert_eq!(attempt(&b, key, true), (8081, None), "{method:?}");
        advance(1);
        assert_eq!(attempt(&b, key, false), (8081, None), "{method:?}");
        advance(1);
        let (port, warning) = attempt(&b, key, true);
        assert_eq!((port, warning.as_deref()), (8081, DISABLED), "{method:?}");
        let mut p = b.start(LOCAL, key.to_vec(), 0);
        assert_eq!(p.next_peer().unwrap_err(), NoPeer::NoLive, "{method:?}");
    }
}

#[test]
fn balance_a_success_exactly_fail_timeout_later_keeps_the_failures() {
    // The window is closed: picked exactly fail_timeout (10 s) after
    // the failure, the peer is not re-checked, so the success does not
    // clear the failure and the next one disables it.
    for (method, key) in methods() {
        let b = one_live_peer(method.clone());
        assert_eq!(attempt(&b, key, true), (8081, None), "{method:?}");
        advance(10);
        assert_eq!(attempt(&b, key, false), (8081, None), "{method:?}");
        let (port, warning) = attempt(&b, key, true);
        assert_eq!((port, warning.as_deref()), (8081, DISABLED), "{method:?}");
    }
}

#[test]
fn balance_a_success_after_fail_timeout_clears_the_failures() {
    // Disabled by two failures, the peer is unusable for 10 s, usable
    // at 11 s; a success then clears its failures, so one more failure
    // leaves it in use.
    for (method, key) in methods() {
        let b = one_live_peer(method.clone());
        assert_eq!(attempt(&b, key, true), (8081, None), "{method:?}");
        let (_, warning) = attempt(&b, key, true);
        assert_eq!(warning.as_deref(), DISABLED, "{method:?}");
        advance(10);
        let mut p = b.start(LOCAL, key.to_vec(), 0);
        assert_eq!(p.next_peer().unwrap_err(), NoPeer::NoLive, "{method:?}");
        advance(1);
        assert_eq!(attempt(&b, key, false), (8081, None), "{method:?}");
        assert_eq!(attempt(&b, key, true), (8081, None), "{method:?}");
        assert_eq!(attempt(&b, key, false), (8081, None), "{method:?}");
    }
}

#[test]
fn balance_max_fails_0_never_disables() {
    let b = tuned(BalanceMethod::RoundRobin, &[1, 1], |p| p.max_fails = 0);
    let got: Vec<(u16, Option<String>)> = (0..4).map(|_| attempt(&b, b"", true)).collect();
    assert_eq!(
        got,
        [(8081, None), (8082, None), (8081, None), (8082, None)]
    );
}

#[test]
fn balance_a_single_peer_is_never_disabled() {
    // As nginx: the only server of an upstream counts no failures.
    let b = tuned(BalanceMethod::RoundRobin, &[1], |p| p.max_fails = 1);
    for _ in 0..3 {
        assert_eq!(attempt(&b, b"", true), (8081, None));
    }
}

#[test]
fn balance_max_conns_counts_open_connections() {
    // max_conns=1 on both peers: two held connections fill them, the
    // third request finds none; a lease given back or a pick released
    // unused frees its peer again. Sticky methods go to the other peer
    // while theirs is full.
    for (method, key) in methods() {
        let b = tuned(method.clone(), &[1, 1], |p| p.max_conns = 1);
        let mut p1 = b.start(LOCAL, key.to_vec(), 0);
        let c1 = p1.next_peer().unwrap();
        let lease = p1.succeed(&c1);
        let mut p2 = b.start(LOCAL, key.to_vec(), 0);
        let c2 = p2.next_peer().unwrap();
        assert_ne!(c1.addr, c2.addr, "{method:?}");
        let mut p3 = b.start(LOCAL, key.to_vec(), 0);
        assert_eq!(p3.next_peer().unwrap_err(), NoPeer::NoLive, "{method:?}");
        drop(lease);
        let mut p4 = b.start(LOCAL, key.to_vec(), 0);
        let c4 = p4.next_peer().unwrap();
        assert_eq!(c4.addr, c1.addr, "{method:?}: the lease was not given back");
        p4.release(&c4);
        let mut p5 = b.start(LOCAL, key.to_vec(), 0);
        let c5 = p5.next_peer().unwrap();
        assert_eq!(c5.addr, c1.addr, "{method:?}: release kept the slot");
    }
}

#[test]
fn balance_failures_cannot_push_the_effective_weight_below_0() {
    // Weights 2 and 1, max_fails=1 (a failure takes 2 off): three
    // requests in flight go to A, B, A (current weights as in nginx's
    // smooth round robin end at A 0, B 0); both of A's fail, which
    // would take its effective weight to -2 but stops at 0. 11 s later
    // A is usable again with effective weight 0, recovering by one per
    // pick: B (A 0, B 1), A (1 against 1, the first wins), B, A. An
    // effective weight of -2 would give B twice first.
    let b = tuned(BalanceMethod::RoundRobin, &[2, 1], |p| {
        p.max_fails = 1;
        p.fail_timeout = std::time::Duration::from_secs(10);
    });
    let mut held: Vec<(Pick, Chosen)> = (0..3)
        .map(|_| {
            let mut p = b.start(LOCAL, Vec::new(), 0);
            let c = p.next_peer().unwrap();
            (p, c)
        })
        .collect();
    let got: Vec<u16> = held
        .iter()
        .map(|(_, c)| c.addr.inet().unwrap().port())
        .collect();
    assert_eq!(got, [8081, 8082, 8081]);
    for (i, (p, c)) in held.iter_mut().enumerate() {
        p.free(c, i != 1);
    }
    advance(11);
    assert_eq!(ports(&b, 4, LOCAL, b""), [8082, 8081, 8082, 8081]);
}

#[test]
fn balance_round_robin_ignores_open_connections() {
    // Connections kept open change nothing for round robin (they
    // would for least_conn): weights 5, 1, 1 still give a a b a c a a.
    let b = upstream(BalanceMethod::RoundRobin, &[5, 1, 1]);
    let (got, _open) = held_ports(&b, 7);
    assert_eq!(got, [8081, 8081, 8082, 8081, 8083, 8081, 8081]);
}

#[test]
fn balance_least_conn_divides_connections_by_weight() {
    // Weights 1 and 2, connections kept open. All idle: a tie, smooth
    // round robin gives B (current weights 1 and 2). Then A at 0
    // against B's 1. Then 1/1 against 1/2: B. Then 1/1 against 2/2, a
    // tie: current weights A 1 + 1, B -1 + 2: A.
    let b = upstream(BalanceMethod::LeastConn, &[1, 2]);
    let (got, _open) = held_ports(&b, 4);
    assert_eq!(got, [8082, 8081, 8082, 8081]);
}

#[test]
fn balance_consistent_hash_shares_a_name_between_its_addresses() {
    // A server name with two addresses (8081 and 8082 named
    // "backend:80") owns one set of ring points; a key landing on them
    // alternates between the addresses by smooth round robin, as nginx
    // does for a name that resolves to several.
    let shared = || {
        tuned(
            BalanceMethod::Hash {
                key: Template::default(),
                consistent: true,
            },
            &[1, 1, 1],
            |p| {
                if !p.name.ends_with("8083") {
                    p.name = "backend:80".into();
                }
            },
        )
    };
    // Found on a twin, so that the balancer under test starts with
    // every current weight at 0.
    let probe = shared();
    let key = (0..100)
        .map(|k| format!("/k{k}").into_bytes())
        .find(|k| ports(&probe, 1, LOCAL, k)[0] != 8083)
        .expect("a key on backend:80");
    // Current weights 1 and 1, the first wins; then 0 against 2; ...
    assert_eq!(ports(&shared(), 4, LOCAL, &key), [8081, 8082, 8081, 8082]);
}

#[test]
fn balance_consistent_hash_key_on_a_point_goes_to_its_server() {
    // A key whose CRC32 is exactly a server's first ring point
    // (crc32(host "\0" port) continued with four zero bytes, the
    // previous point of 0) belongs to that server: the search takes
    // the first point at or after the key's hash.
    let b = upstream(
        BalanceMethod::Hash {
            key: Template::default(),
            consistent: true,
        },
        &[1, 1, 1],
    );
    for port in [8081u16, 8082, 8083] {
        let mut key = format!("127.0.0.1\0{port}").into_bytes();
        key.extend_from_slice(&[0; 4]);
        assert_eq!(ports(&b, 1, LOCAL, &key), [port]);
    }
}

#[test]
fn balance_tries_are_capped_by_next_upstream_tries() {
    // Three peers give three tries (the proxy stops when `tries` is
    // 0); proxy_next_upstream_tries 2 caps them at two, 0 is no cap.
    for (cap, want) in [(2, 2), (0, 3), (5, 3), (3, 3)] {
        let b = upstream(BalanceMethod::RoundRobin, &[1, 1, 1]);
        let mut p = b.start(LOCAL, Vec::new(), cap);
        assert_eq!(p.tries, want, "proxy_next_upstream_tries {cap}");
        for left in (0..want).rev() {
            let c = p.next_peer().unwrap();
            p.free(&c, true);
            assert_eq!(p.tries, left);
        }
    }
}

#[test]
fn balance_ip_hash_is_sticky_and_matches_nginx() {
    let b = upstream(BalanceMethod::IpHash, &[1, 1]);
    let got = ports(&b, 4, LOCAL, b"");
    // 127.0.0.x: h = 89, then h = (h * 113 + b) % 6271 for b in 127, 0, 0 gives 4040, even: first peer.
    assert_eq!(got, [8081; 4]);
    let other = ports(&b, 2, IpAddr::from([127, 0, 1, 1]), b"");
    assert!(other.iter().all(|p| *p == other[0]));
}

#[test]
fn balance_ip_hash_maps_addresses_as_nginx() {
    // Worked by hand from nginx's formula, 3 equal peers: the peer is
    // h % 3 with h over the first three octets (all sixteen of IPv6),
    // e.g. 127.0.2.1: 89 -> 3913 -> 3199 -> 4042, 4042 % 3 = 1.
    let b = upstream(BalanceMethod::IpHash, &[1, 1, 1]);
    for (client, port) in [
        ("127.0.1.1", 8081),   // h = 4041
        ("127.0.2.1", 8082),   // h = 4042
        ("127.0.3.1", 8083),   // h = 4043
        ("127.0.3.200", 8083), // the fourth octet does not count
        ("10.20.30.40", 8082), // h = 4855
        ("192.0.2.200", 8081), // h = 6255
        ("203.0.113.9", 8081), // h = 2592
        ("::1", 8083),         // h = 5945
        ("2001:db8::5", 8081), // h = 2604
    ] {
        let ip: IpAddr = client.parse().unwrap();
        assert_eq!(ports(&b, 1, ip, b""), [port], "{client}");
    }
}

#[test]
fn balance_hash_rehashes_past_failed_peers() {
    let b = upstream(
        BalanceMethod::Hash {
            key: Template::default(),
            consistent: false,
        },
        &[1, 1, 1],
    );
    let first = ports(&b, 3, LOCAL, b"/abc");
    assert!(first.iter().all(|p| *p == first[0]));
    let mut p = b.start(LOCAL, b"/abc".to_vec(), 0);
    let c1 = p.next_peer().unwrap();
    p.free(&c1, true);
    let c2 = p.next_peer().unwrap();
    assert_ne!(c1.addr, c2.addr);
    p.free(&c2, false);
}

#[test]
fn balance_consistent_hash_moves_few_keys() {
    let three = upstream(
        BalanceMethod::Hash {
            key: Template::default(),
            consistent: true,
        },
        &[1, 1, 1],
    );
    let two = upstream(
        BalanceMethod::Hash {
            key: Template::default(),
            consistent: true,
        },
        &[1, 1],
    );
    let mut same = 0;
    for k in 0..300 {
        let key = format!("/key{k}");
        let a = ports(&three, 1, LOCAL, key.as_bytes())[0];
        let b = ports(&two, 1, LOCAL, key.as_bytes())[0];
        if a == b {
            same += 1;
        }
    }
    // Keys on the two surviving servers stay put (about two thirds).
    assert!(same > 150, "{same}");
}

#[test]
fn balance_least_conn_weighs_connections_and_breaks_ties_smoothly() {
    // Weights 2, 1, 1, every connection kept open. nginx's least_conn:
    // the fewest connections per weight wins; peers tied on that share
    // a smooth weighted round robin. By hand: all idle, the tie goes
    // to the heaviest (A); then B and C tie at 0 (B by current
    // weight); C alone at 0; A at 1/2 against 1 and 1; A, B, C all at
    // 1 (C's current weight is highest); A and B tie at 1 against C's
    // 2 (A). Then a C connection closes: C at 1 ties with A and B.
    let b = upstream(BalanceMethod::LeastConn, &[2, 1, 1]);
    let mut open = Vec::new();
    let pick = |open: &mut Vec<(u16, Lease)>| {
        let mut p = b.start(LOCAL, Vec::new(), 0);
        let c = p.next_peer().unwrap();
        let port = c.addr.inet().unwrap().port();
        open.push((port, p.succeed(&c)));
        port
    };
    let got: Vec<u16> = (0..6).map(|_| pick(&mut open)).collect();
    assert_eq!(got, [8081, 8082, 8083, 8081, 8083, 8081]);
    let c = open.iter().position(|(port, _)| *port == 8083).unwrap();
    open.remove(c);
    // Conns 3, 1, 1 over weights 2, 1, 1: B and C tie at 1 below A's
    // 1.5; current weights B 2, C -1 grow to 3 and 0: B.
    assert_eq!(pick(&mut open), 8082);
    // 3, 2, 1: C alone.
    assert_eq!(pick(&mut open), 8083);
}

#[test]
fn balance_least_conn_prefers_idle_peers() {
    let b = upstream(BalanceMethod::LeastConn, &[1, 1]);
    let mut p1 = b.start(LOCAL, vec![], 0);
    let busy = p1.next_peer().unwrap();
    let mut p2 = b.start(LOCAL, vec![], 0);
    let second = p2.next_peer().unwrap();
    assert_ne!(busy.addr, second.addr);
    p1.free(&busy, false);
    p2.free(&second, false);
}

#[test]
fn balance_reports_no_live_upstreams_after_failures() {
    let b = upstream(BalanceMethod::RoundRobin, &[1, 1]);
    let mut p = b.start(LOCAL, vec![], 0);
    assert_eq!(p.tries, 2);
    let a = p.next_peer().unwrap();
    assert!(p.free(&a, true).is_some());
    let c = p.next_peer().unwrap();
    p.free(&c, true);
    assert_eq!(p.tries, 0);
    let mut q = b.start(LOCAL, vec![], 0);
    assert_eq!(q.next_peer().unwrap_err(), NoPeer::NoLive);
    assert_eq!(q.upstream_name(), "u", "shown in $upstream_addr");
}
