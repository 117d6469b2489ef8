//! Dead links, made for real: a peer in its own network namespace behind a
//! veth pair, and a link that then drops every packet in both directions
//! (a pulled cable: no FIN, no RST, no error, only silence). Keepalive
//! pings must find such a peer within interval + timeout, where a plain
//! relay waits for `proxy_read_timeout` or forever.
//!
//! The namespace and the veth pair are made with `ip` (iproute2) and torn
//! down when the test ends; the cut is `tc qdisc ... netem loss 100%`, or
//! where the kernel has no netem scheduler (some virtual machines' kernels
//! are built without it) `pfifo limit 0`, a queue that holds nothing and so
//! drops every packet just the same. Needs root: ignored by a plain `cargo
//! test`, run by `.ci/run` with `--ignored`, where a missing prerequisite
//! fails the test.
//!
//! Sockets are put in the namespace by creating them on a thread that has
//! joined it (`setns`); a socket stays in the namespace it was made in, so
//! the rest of the test drives it from the ordinary runtime.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

const IGNORED: &str = "needs root and iproute2 (network namespaces); run with --ignored (CI does)";

/// A network namespace joined to this one by a veth pair:
/// `10.231.N.1` here, `10.231.N.2` inside. Removed on drop.
struct Link {
    ns: String,
    outer: String,
    inner: String,
    n: u8,
}

/// Runs `ip`/`tc` with `args`; panics with its stderr when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} ({IGNORED})"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Link {
    fn new() -> Link {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        static SUBNETS: Mutex<()> = Mutex::new(());
        let _one_at_a_time = SUBNETS.lock().unwrap_or_else(|e| e.into_inner());
        remove_abandoned_links();
        // Names carry this process's id, so that a run killed before its
        // links were dropped leaves names the next run can recognise
        // (interface names: at most 15 bytes).
        let tag = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let link = Link {
            ns: format!("sy{tag}"),
            outer: format!("syo{tag}"),
            inner: format!("syi{tag}"),
            n: free_subnet(),
        };
        let (ns, outer, inner) = (&link.ns, &link.outer, &link.inner);
        run("ip", &["netns", "add", ns]);
        run(
            "ip",
            &["link", "add", outer, "type", "veth", "peer", "name", inner],
        );
        run("ip", &["link", "set", inner, "netns", ns]);
        run(
            "ip",
            &["addr", "add", &format!("{}/30", link.here()), "dev", outer],
        );
        run("ip", &["link", "set", outer, "up"]);
        let there = format!("{}/30", link.there());
        run("ip", &["-n", ns, "addr", "add", &there, "dev", inner]);
        run("ip", &["-n", ns, "link", "set", inner, "up"]);
        run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        link
    }

    /// This side's address.
    fn here(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.n, 1)
    }

    /// The namespace's address.
    fn there(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.n, 2)
    }

    /// Runs `f` on a thread inside the namespace.
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns({path}): {e}"));
            f()
        })
        .join()
        .unwrap()
    }

    /// A listener on the namespace's address, port 0.
    fn listen_inside(&self) -> TcpListener {
        let there = self.there();
        let l = self.inside(move || std::net::TcpListener::bind((there, 0)).unwrap());
        l.set_nonblocking(true).unwrap();
        TcpListener::from_std(l).unwrap()
    }

    /// A connection from inside the namespace to `addr` (on this side).
    fn connect_from_inside(&self, addr: SocketAddr) -> TcpStream {
        let s = self.inside(move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
        });
        s.set_nonblocking(true).unwrap();
        TcpStream::from_std(s).unwrap()
    }

    /// Pulls the cable: from now on the link drops every packet, both
    /// ways, with no signal to either end.
    fn cut(&self) {
        let netem = ["root", "netem", "loss", "100%"];
        let pfifo = ["root", "pfifo", "limit", "0"];
        let has_netem = Command::new("tc")
            .args(["qdisc", "add", "dev", &self.outer])
            .args(netem)
            .output()
            .is_ok_and(|o| o.status.success());
        let qdisc: &[&str] = if has_netem {
            &netem
        } else {
            run(
                "tc",
                &[&["qdisc", "add", "dev", &self.outer][..], &pfifo].concat(),
            );
            &pfifo
        };
        run(
            "ip",
            &[
                &[
                    "netns",
                    "exec",
                    &self.ns,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    &self.inner,
                ][..],
                qdisc,
            ]
            .concat(),
        );
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Deletes the namespaces (and with them their veth pairs) of test
/// processes that are gone: a run killed by a timeout never drops its
/// links, and their addresses would shadow the next run's.
fn remove_abandoned_links() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let ns = line.split_whitespace().next().unwrap_or("");
        let Some((pid, _)) = ns.strip_prefix("sy").and_then(|t| t.split_once('x')) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let tag = &ns[2..];
            let _ = Command::new("ip")
                .args(["link", "del", &format!("syo{tag}")])
                .output();
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The first `10.231.N.0/30` no interface here has an address in.
fn free_subnet() -> u8 {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .unwrap_or_else(|e| panic!("ip: {e} ({IGNORED})"));
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..=255u8)
        .find(|n| !used.contains(&format!(" 10.231.{n}.")))
        .expect("a free 10.231.N.0/30 subnet")
}

/// The location of `classic` with keepalive pings every 300 ms, a pong
/// due within 700 ms, and a `proxy_read_timeout` long enough not to
/// matter; `/ws/plain` has no pings.
fn pinged(backend: SocketAddr, listen: SocketAddr) -> String {
    crate::websocket::classic(
        backend,
        &format!(
            "websocket_ping_interval 300ms; websocket_pong_timeout 700ms; proxy_read_timeout 60s;
             location /ws/plain {{ proxy_pass http://{backend}; websocket_ping_interval off; }}"
        ),
    )
    .replace("listen 127.0.0.1:0;", &format!("listen {listen};"))
}

/// Waits for the next close frame on `ws`, skipping pings; its code and
/// when it came.
async fn next_close<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> (u16, Instant)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // One bound for the whole wait: pings keep coming while no close does.
    bounded("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), Instant::now()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
}

/// A backend whose cable is pulled: the client gets 1011 within
/// interval + timeout, while a tunnel without pings to the same backend
/// notices nothing.
#[tokio::test]
#[ignore = "needs root and iproute2 (network namespaces); run with --ignored (CI does)"]
async fn netns_backend_behind_a_pulled_cable_is_detected_and_the_client_gets_1011() {
    let link = Link::new();
    let (backend, _) = ws_echo_on(link.listen_inside());
    let proxy = Proxy::http(&pinged(backend, "127.0.0.1:0".parse().unwrap())).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let mut plain = ws_connect(proxy.addr(), "/ws/plain").await.unwrap();
    assert_echo(&mut ws, "over the veth pair").await;
    assert_echo(&mut plain, "no pings here").await;
    link.cut();
    let cut = Instant::now();
    let (code, at) = next_close(&mut ws).await;
    assert_eq!(code, 1011);
    let waited = at - cut;
    // The first ping after the cut goes out within one interval, and is
    // overdue one timeout later: 1 s, plus slack for a loaded machine.
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    proxy
        .assert_error_logged("upstream did not answer a WebSocket ping in time")
        .await;
    // Without pings the same dead backend goes unnoticed: nothing comes.
    let quiet = tokio::time::timeout(Duration::from_millis(500), plain.next()).await;
    assert!(quiet.is_err(), "the plain tunnel saw {quiet:?}");
}

/// A client whose cable is pulled: the backend gets close 1001 within
/// interval + timeout, and the log says the client went silent.
#[tokio::test]
#[ignore = "needs root and iproute2 (network namespaces); run with --ignored (CI does)"]
async fn netns_client_behind_a_pulled_cable_is_detected_and_the_backend_gets_1001() {
    let link = Link::new();
    let (backend, mut closes) = ws_echo_reporting_closes().await;
    let listen = SocketAddr::from((link.here(), 0));
    let proxy = Proxy::http(&pinged(backend, listen)).await;
    let s = link.connect_from_inside(proxy.addr());
    let (mut ws, _) = bounded(
        "the WebSocket handshake",
        tokio_tungstenite::client_async(format!("ws://{}/ws", proxy.addr()), s),
    )
    .await
    .unwrap();
    assert_echo(&mut ws, "from inside the namespace").await;
    // A live client answers pings, which needs someone reading its socket.
    let _reader = AbortOnDrop(tokio::spawn(async move {
        while let Some(Ok(_)) = ws.next().await {}
    }));
    link.cut();
    let cut = Instant::now();
    let code = bounded("the backend's close frame", closes.recv())
        .await
        .unwrap();
    let waited = cut.elapsed();
    assert_eq!(code, 1001);
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    proxy
        .assert_error_logged("client did not answer a WebSocket ping in time")
        .await;
}

/// [`ws_echo`] that also reports the code of each close frame it gets.
async fn ws_echo_reporting_closes() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                use futures_util::SinkExt;
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Close(f) = msg {
                        let _ = tx.send(f.map_or(1005, |f| u16::from(f.code)));
                        let _ = ws.flush().await;
                        break;
                    }
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Aborts its task when dropped, so a reader does not outlive its test.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
