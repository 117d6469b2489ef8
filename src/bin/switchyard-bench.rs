//! `switchyard-bench`: the load generator and echo backend behind
//! `bench/run.sh`.
//!
//! ```text
//! switchyard-bench backend   --listen ADDR
//! switchyard-bench echo      --target ADDR --label L --conns N --size BYTES --seconds S [--pid P] [--h2]
//! switchyard-bench bulk      --target ADDR --label L --conns N --mib M [--pid P]
//! switchyard-bench handshakes --target ADDR --label L --conns N --count K [--pid P]
//! switchyard-bench idle      --target ADDR --label L --conns N [--pid P]
//! switchyard-bench soak      --target ADDR --label L --conns N --messages M --seconds S
//! switchyard-bench report    FILE.jsonl
//! ```
//!
//! With `--h2`, each WebSocket of `echo` is an RFC 8441 extended CONNECT
//! stream on an HTTP/2 connection of its own (h2c). The backend answers
//! plain HTTP requests (no `Sec-WebSocket-Key`) with a 2-byte `200`, kept
//! alive, for HTTP benchmarks such as `h2load`.
//!
//! The backend answers the WebSocket handshake, then echoes bytes as they
//! come: the proxies under test are frame-transparent, so echoing frames
//! byte for byte keeps the backend's cost minimal and identical for every
//! proxy. Clients send masked binary frames (an all-zero mask, which is
//! valid and costs nothing to apply) and read the same bytes back.
//!
//! Measurements of the proxy come from `/proc`: CPU time (user + system)
//! of the process and its children, and resident memory summed over the
//! process tree. Each scenario prints one JSON line; `report` turns a file
//! of them into a table of medians with ratios to nginx.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        usage("no scenario given");
    };
    let opts = Opts::parse(&args[1..]);
    if cmd == "report" {
        report(
            args.get(1)
                .map(String::as_str)
                .unwrap_or("bench/out/latest.jsonl"),
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match cmd.as_str() {
            "backend" => backend(opts.addr("listen")).await,
            "echo" => echo(&opts).await,
            "bulk" => bulk(&opts).await,
            "handshakes" => handshakes(&opts).await,
            "idle" => idle(&opts).await,
            "soak" => soak(&opts).await,
            other => usage(&format!("unknown scenario {other:?}")),
        }
    });
}

/// Prints the problem and the usage (the module's header), then exits 2.
fn usage(problem: &str) -> ! {
    eprintln!(
        "switchyard-bench: {problem}\nusage:\n  switchyard-bench backend    --listen ADDR\n  switchyard-bench echo       --target ADDR --label L --conns N --size BYTES --seconds S [--pid P]\n  switchyard-bench bulk       --target ADDR --label L --conns N --mib M [--pid P]\n  switchyard-bench handshakes --target ADDR --label L --conns N --count K [--pid P]\n  switchyard-bench idle       --target ADDR --label L --conns N [--pid P]\n  switchyard-bench soak       --target ADDR --label L --conns N --messages M --seconds S\n  switchyard-bench report     FILE.jsonl"
    );
    std::process::exit(2);
}

/// `--name value` options.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut map = BTreeMap::new();
        let mut i = 0;
        while i < args.len() {
            if let Some(name) = args[i].strip_prefix("--") {
                // A flag (`--h2`) has no value: the next word is an option.
                match args.get(i + 1).filter(|v| !v.starts_with("--")) {
                    Some(value) => {
                        map.insert(name.to_string(), value.clone());
                        i += 2;
                    }
                    None => {
                        map.insert(name.to_string(), String::new());
                        i += 1;
                    }
                }
            } else {
                i += 1;
            }
        }
        Opts(map)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn num(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn addr(&self, name: &str) -> SocketAddr {
        match self.get(name).map(str::parse) {
            Some(Ok(addr)) => addr,
            Some(Err(_)) => usage(&format!("--{name} needs an address such as 127.0.0.1:9000")),
            None => usage(&format!("--{name} ADDR is required")),
        }
    }

    fn label(&self) -> String {
        self.get("label").unwrap_or("target").to_string()
    }

    fn pids(&self) -> Vec<u32> {
        self.get("pid")
            .map(|v| v.split(',').filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// /proc measurements.

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The pids and all their descendants.
fn tree(pids: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = pids.to_vec();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(") ")
        {
            let ppid = rest
                .split(' ')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            parents.push((pid, ppid));
        }
    }
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for (child, parent) in &parents {
            if *parent == p && !all.contains(child) {
                all.push(*child);
            }
        }
        i += 1;
    }
    all
}

/// CPU seconds (user + system) used so far by `pids` and descendants.
fn cpu_seconds(pids: &[u32]) -> f64 {
    let procs = tree(pids);
    // The scheduler's own account, in nanoseconds, where the kernel
    // exposes it (/proc/PID/task/TID/sched): the 10 ms ticks of
    // /proc/PID/stat move a 0.3 s run by several per cent.
    let precise: Option<f64> = procs.iter().map(|pid| sched_seconds(*pid)).sum();
    if let Some(s) = precise {
        return s;
    }
    let ticks: u64 = procs
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split(' ').collect();
            // After the command: state is field 3, utime 14, stime 15.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / clock_ticks()
}

/// CPU time of `pid`'s live threads from `se.sum_exec_runtime` (ms, to the
/// nanosecond), or `None` when the kernel does not show it.
fn sched_seconds(pid: u32) -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("sched")).ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("se.sum_exec_runtime"))?;
        let ms: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
        total += ms / 1000.0;
    }
    Some(total)
}

/// Resident memory (KiB) of `pids` and descendants.
fn rss_kib(pids: &[u32]) -> u64 {
    tree(pids)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The backend.

async fn backend(listen: SocketAddr) {
    let listener = TcpListener::bind(listen).await.expect("bind backend");
    eprintln!("backend on {listen}");
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            let mut head = Vec::new();
            let body_start = loop {
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
                if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let text = String::from_utf8_lossy(&head[..body_start]).to_string();
            if !text.to_ascii_lowercase().contains("sec-websocket-key") {
                plain_http(s, head, buf).await;
                return;
            }
            let key = text
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default();
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            if head.len() > body_start && s.write_all(&head[body_start..]).await.is_err() {
                return;
            }
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Answers request heads (no bodies) with `200 ok`, kept alive.
async fn plain_http(mut s: TcpStream, mut pending: Vec<u8>, mut buf: Vec<u8>) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
    loop {
        let mut answers = Vec::new();
        while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..i + 4);
            answers.extend_from_slice(OK);
        }
        if !answers.is_empty() && s.write_all(&answers).await.is_err() {
            return;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

// ---------------------------------------------------------------------------
// Clients.

/// A WebSocket's byte stream, over its own TCP connection or an HTTP/2
/// stream.
trait Wire: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Wire for T {}

/// An RFC 8441 WebSocket: an h2c connection, one extended CONNECT stream.
async fn handshake_h2(target: SocketAddr, path: &str) -> std::io::Result<Box<dyn Wire>> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let (client, conn) = h2::client::handshake(tcp)
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.map_err(std::io::Error::other)?;
    for _ in 0..400 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut req = http::Request::builder()
        .method("CONNECT")
        .uri(format!("http://bench{path}"))
        .header("sec-websocket-version", "13")
        .body(())
        .map_err(std::io::Error::other)?;
    req.extensions_mut()
        .insert(h2::ext::Protocol::from("websocket"));
    let (resp, send) = client
        .send_request(req, false)
        .map_err(std::io::Error::other)?;
    let resp = resp.await.map_err(std::io::Error::other)?;
    if resp.status() != 200 {
        return Err(std::io::Error::other(format!(
            "CONNECT answered {}",
            resp.status()
        )));
    }
    let recv = resp.into_body();
    Ok(Box::new(switchyard::client::h2::H2Io::new(
        send,
        recv,
        16 * 1024,
    )))
}

async fn handshake(target: SocketAddr, path: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 512];
    loop {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed during handshake",
            ));
        }
        head.extend_from_slice(&b[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(format!(
            "no 101: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(s)
}

/// A masked binary frame with `size` payload bytes (zero mask).
fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x82u8];
    if size < 126 {
        f.push(0x80 | size as u8);
    } else if size < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(size as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(size as u64).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(b'x', size));
    f
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn emit(fields: &[(&str, String)]) {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    println!("{{{}}}", body.join(","));
}

fn s(v: &str) -> String {
    format!("\"{v}\"")
}

/// A masked binary frame whose payload names its connection and sequence
/// number, padded to 32 bytes.
fn numbered_frame(conn: u64, seq: u64) -> Vec<u8> {
    let mut f = vec![0x82u8, 0x80 | 32, 0, 0, 0, 0];
    let text = format!("{conn:016x}{seq:016x}");
    f.extend_from_slice(text.as_bytes());
    f
}

/// Soak: `--conns` WebSockets at a time, each sending `--messages`
/// numbered messages one after the other and checking that each comes back
/// in order, then closing; a finished connection is replaced at once, for
/// `--seconds`. Prints the WebSockets opened and completed, messages sent
/// and echoed, and every failure: a handshake refused, a connection cut
/// before its last echo (as a reload that dropped it would), an echo that
/// is missing, repeated or out of order.
async fn soak(o: &Opts) {
    use std::cell::Cell;
    use std::rc::Rc;
    let target = o.addr("target");
    let conns = o.num("conns", 100);
    let messages = o.num("messages", 20);
    let seconds = o.num("seconds", 60);
    let label = o.0.get("label").cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    #[derive(Default)]
    struct Counts {
        opened: Cell<u64>,
        completed: Cell<u64>,
        sent: Cell<u64>,
        echoed: Cell<u64>,
        refused: Cell<u64>,
        cut: Cell<u64>,
        wrong: Cell<u64>,
    }
    let counts = Rc::new(Counts::default());
    let next_id = Rc::new(Cell::new(0u64));
    let local = tokio::task::LocalSet::new();
    for _ in 0..conns {
        let counts = counts.clone();
        let next_id = next_id.clone();
        local.spawn_local(async move {
            while Instant::now() < deadline {
                let id = next_id.get();
                next_id.set(id + 1);
                let Ok(mut s) = handshake(target, "/ws").await else {
                    counts.refused.set(counts.refused.get() + 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                counts.opened.set(counts.opened.get() + 1);
                let mut back = [0u8; 38];
                let mut ok = true;
                for seq in 0..messages {
                    let f = numbered_frame(id, seq);
                    if s.write_all(&f).await.is_err() {
                        ok = false;
                        break;
                    }
                    counts.sent.set(counts.sent.get() + 1);
                    let read =
                        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
                            .await;
                    match read {
                        Ok(Ok(_)) if back[..] == f[..] => {
                            counts.echoed.set(counts.echoed.get() + 1)
                        }
                        Ok(Ok(_)) => {
                            counts.wrong.set(counts.wrong.get() + 1);
                            ok = false;
                            break;
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    counts.completed.set(counts.completed.get() + 1);
                } else {
                    counts.cut.set(counts.cut.get() + 1);
                }
            }
        });
    }
    local.await;
    emit(&[
        ("scenario", s("soak")),
        ("label", s(&label)),
        ("seconds", seconds.to_string()),
        ("opened", counts.opened.get().to_string()),
        ("completed", counts.completed.get().to_string()),
        ("sent", counts.sent.get().to_string()),
        ("echoed", counts.echoed.get().to_string()),
        ("refused", counts.refused.get().to_string()),
        ("cut", counts.cut.get().to_string()),
        ("wrong", counts.wrong.get().to_string()),
    ]);
}

/// Ping-pong: every connection sends a frame and waits for it back.
async fn echo(o: &Opts) {
    let target = o.addr("target");
    let conns = o.num("conns", 50) as usize;
    let size = o.num("size", 64) as usize;
    let seconds = o.num("seconds", 10);
    let warmup = Duration::from_millis(o.num("warmup-ms", 500));
    let pids = o.pids();
    let msg = std::rc::Rc::new(frame(size));
    let h2 = o.get("h2").is_some();
    let mut streams: Vec<Box<dyn Wire>> = Vec::new();
    for _ in 0..conns {
        streams.push(if h2 {
            handshake_h2(target, "/ws")
                .await
                .expect("RFC 8441 handshake")
        } else {
            Box::new(handshake(target, "/ws").await.expect("handshake"))
        });
    }
    let start_gate = std::rc::Rc::new(std::cell::Cell::new(None::<Instant>));
    let local = tokio::task::LocalSet::new();
    let deadline = Instant::now() + warmup + Duration::from_secs(seconds);
    let mut handles = Vec::new();
    for mut st in streams {
        let msg = msg.clone();
        let gate = start_gate.clone();
        handles.push(local.spawn_local(async move {
            let mut buf = vec![0u8; msg.len()];
            let mut lat: Vec<u32> = Vec::new();
            let mut count = 0u64;
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                if st.write_all(&msg).await.is_err() || st.read_exact(&mut buf).await.is_err() {
                    break;
                }
                if gate.get().is_some_and(|g| t >= g) {
                    lat.push(t.elapsed().as_micros() as u32);
                    count += 1;
                }
            }
            (count, lat)
        }));
    }
    let measure = local.run_until(async {
        tokio::time::sleep(warmup).await;
        let cpu0 = cpu_seconds(&pids);
        let t0 = Instant::now();
        start_gate.set(Some(t0));
        let mut total = 0u64;
        let mut lat = Vec::new();
        for h in handles {
            let (c, l) = h.await.expect("client task");
            total += c;
            lat.extend(l);
        }
        (total, lat, t0.elapsed(), cpu_seconds(&pids) - cpu0)
    });
    let (total, mut lat, elapsed, cpu) = measure.await;
    lat.sort_unstable();
    let relayed = total * 2;
    emit(&[
        ("scenario", s(if h2 { "echo_h2" } else { "echo" })),
        ("label", s(&o.label())),
        ("workers", o.num("workers", 1).to_string()),
        ("conns", conns.to_string()),
        ("size", size.to_string()),
        ("round_trips", total.to_string()),
        ("seconds", format!("{:.3}", elapsed.as_secs_f64())),
        (
            "msgs_per_sec",
            format!("{:.0}", relayed as f64 / elapsed.as_secs_f64()),
        ),
        (
            "cpu_us_per_msg",
            format!("{:.3}", cpu * 1e6 / relayed.max(1) as f64),
        ),
        ("p50_us", percentile(&lat, 0.5).to_string()),
        ("p99_us", percentile(&lat, 0.99).to_string()),
    ]);
}

/// Streams `mib` MiB through each connection (echoed back) in 64 KiB
/// frames, sending and receiving concurrently.
async fn bulk(o: &Opts) {
    let target = o.addr("target");
    let conns = o.num("conns", 1) as usize;
    let mib = o.num("mib", 256);
    let pids = o.pids();
    // Frames of `--frame-kib` KiB on the wire (header included).
    let chunk = frame(o.num("frame-kib", 64) as usize * 1024 - 14);
    let per_conn = mib * 1024 * 1024 / chunk.len() as u64;
    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let st = handshake(target, "/ws").await.expect("handshake");
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            let (mut r, mut w) = st.into_split();
            let len = chunk.len() as u64 * per_conn;
            let writer = tokio::spawn(async move {
                for _ in 0..per_conn {
                    w.write_all(&chunk).await.expect("write");
                }
                w
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0u64;
            while got < len {
                let n = r.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed early");
                got += n as u64;
            }
            drop(writer.await);
            got
        }));
    }
    let mut bytes = 0u64;
    for t in tasks {
        bytes += t.await.expect("bulk task");
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds(&pids) - cpu0;
    // Each byte crosses the proxy twice (to the backend and back).
    let relayed_mib = (bytes * 2) as f64 / (1024.0 * 1024.0);
    emit(&[
        ("scenario", s("bulk")),
        ("label", s(&o.label())),
        ("conns", conns.to_string()),
        ("frame_kib", o.num("frame-kib", 64).to_string()),
        ("mib_relayed", format!("{relayed_mib:.0}")),
        ("seconds", format!("{:.3}", elapsed.as_secs_f64())),
        (
            "mib_per_sec",
            format!("{:.1}", relayed_mib / elapsed.as_secs_f64()),
        ),
        ("cpu_us_per_mib", format!("{:.1}", cpu * 1e6 / relayed_mib)),
    ]);
}

/// Connect, upgrade, close, `count` times over `conns` concurrent clients.
async fn handshakes(o: &Opts) {
    let target = o.addr("target");
    let conns = o.num("conns", 20) as usize;
    let count = o.num("count", 20000);
    let pids = o.pids();
    let per = count / conns as u64;
    let cpu0 = cpu_seconds(&pids);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per as usize);
            for _ in 0..per {
                let t = Instant::now();
                let mut st = handshake(target, "/ws").await.expect("handshake");
                lat.push(t.elapsed().as_micros() as u32);
                let _ = st.shutdown().await;
                let mut b = [0u8; 64];
                // Wait for the proxy to close its side: the upgrade is over.
                while let Ok(n) = st.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("handshake task"));
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds(&pids) - cpu0;
    lat.sort_unstable();
    let done = lat.len() as f64;
    emit(&[
        ("scenario", s("handshakes")),
        ("label", s(&o.label())),
        ("conns", conns.to_string()),
        ("upgrades", lat.len().to_string()),
        ("seconds", format!("{:.3}", elapsed.as_secs_f64())),
        (
            "upgrades_per_sec",
            format!("{:.0}", done / elapsed.as_secs_f64()),
        ),
        ("cpu_us_per_upgrade", format!("{:.1}", cpu * 1e6 / done)),
        ("p50_us", percentile(&lat, 0.5).to_string()),
        ("p99_us", percentile(&lat, 0.99).to_string()),
    ]);
}

/// Opens `conns` WebSockets, leaves them idle, measures the proxy's RSS.
async fn idle(o: &Opts) {
    let target = o.addr("target");
    let conns = o.num("conns", 9000) as usize;
    let pids = o.pids();
    let settle = Duration::from_millis(o.num("settle-ms", 1500));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(&pids);
    let mut held = Vec::with_capacity(conns);
    for i in 0..conns {
        match handshake(target, "/ws").await {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("idle: connection {i} failed: {e}");
                break;
            }
        }
    }
    tokio::time::sleep(settle).await;
    let after = rss_kib(&pids);
    let opened = held.len();
    emit(&[
        ("scenario", s("idle")),
        ("label", s(&o.label())),
        ("conns", opened.to_string()),
        ("rss_before_kib", before.to_string()),
        ("rss_after_kib", after.to_string()),
        (
            "kib_per_conn",
            format!(
                "{:.2}",
                (after as f64 - before as f64) / opened.max(1) as f64
            ),
        ),
    ]);
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
}

// ---------------------------------------------------------------------------
// Report.

fn report(path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // (scenario key, metric) -> label -> values
    let mut table: BTreeMap<(String, String), BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let fields = parse_line(line);
        let scenario = fields.get("scenario").cloned().unwrap_or_default();
        let label = fields.get("label").cloned().unwrap_or_default();
        let key = match scenario.as_str() {
            "echo" => {
                let workers = fields.get("workers").map(String::as_str).unwrap_or("1");
                let suffix = if workers == "1" {
                    String::new()
                } else {
                    format!(" {workers} workers")
                };
                format!(
                    "echo {}B x{}{suffix}",
                    fields.get("size").cloned().unwrap_or_default(),
                    fields.get("conns").cloned().unwrap_or_default()
                )
            }
            "bulk" => format!("bulk x{}", fields.get("conns").cloned().unwrap_or_default()),
            "handshakes" => "handshakes".to_string(),
            "idle" => format!("idle x{}", fields.get("conns").cloned().unwrap_or_default()),
            other => other.to_string(),
        };
        for metric in [
            "cpu_us_per_msg",
            "msgs_per_sec",
            "p50_us",
            "p99_us",
            "cpu_us_per_mib",
            "mib_per_sec",
            "cpu_us_per_upgrade",
            "upgrades_per_sec",
            "kib_per_conn",
        ] {
            if let Some(v) = fields.get(metric).and_then(|v| v.parse::<f64>().ok()) {
                table
                    .entry((key.clone(), metric.to_string()))
                    .or_default()
                    .entry(label.clone())
                    .or_default()
                    .push(v);
            }
        }
    }
    println!(
        "{:<28} {:<20} {:>12} {:>12} {:>8}",
        "scenario", "metric", "nginx", "switchyard", "ratio"
    );
    for ((key, metric), by_label) in &table {
        let median = |label: &str| -> Option<f64> {
            let mut v = by_label.get(label)?.clone();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            Some(v[v.len() / 2])
        };
        let n = median("nginx");
        let sy = median("switchyard");
        let ratio = match (n, sy) {
            (Some(n), Some(s)) if n > 0.0 => format!("{:.2}", s / n),
            _ => "-".into(),
        };
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{key:<28} {metric:<20} {:>12} {:>12} {ratio:>8}",
            show(n),
            show(sy)
        );
    }
}

fn parse_line(line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let inner = line.trim().trim_start_matches('{').trim_end_matches('}');
    for part in inner.split(',') {
        if let Some((k, v)) = part.split_once(':') {
            out.insert(
                k.trim().trim_matches('"').to_string(),
                v.trim().trim_matches('"').to_string(),
            );
        }
    }
    out
}
