//! The in-process harness: Switchyard on port 0 with an inline
//! configuration, small backends, and raw clients.
//!
//! Every test gets its own directory (logs, static files, configuration)
//! and its own server; nothing listens on a fixed port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use switchyard::server::{self, Handle};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SWITCHYARD_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running proxy.
pub struct Proxy {
    pub handle: Handle,
    pub dir: TempDir,
    /// Actual addresses, in the order of the configuration's listens.
    pub addrs: Vec<SocketAddr>,
}

impl Proxy {
    /// Starts a full configuration. `{dir}` is replaced by the test's
    /// directory.
    pub async fn start(conf: &str) -> Proxy {
        Self::try_start(conf)
            .await
            .unwrap_or_else(|e| panic!("proxy did not start: {e}\n{conf}"))
    }

    pub async fn try_start(conf: &str) -> Result<Proxy, String> {
        let dir = TempDir::new();
        Self::start_in(dir, conf).await
    }

    pub async fn start_in(dir: TempDir, conf: &str) -> Result<Proxy, String> {
        let text = conf.replace("{dir}", &dir.path().display().to_string());
        let config = switchyard::config::load_str(&text, dir.path()).map_err(|e| e.to_string())?;
        let bound = server::bind_all(&config)?;
        let handle = Handle::start(config, bound, None)?;
        let addrs = handle.local_addrs().into_iter().map(|(_, a)| a).collect();
        Ok(Proxy { handle, dir, addrs })
    }

    /// Starts a configuration that must name its own ports (a server
    /// proxying to itself, TLS names per port...): `{port0}`, `{port1}`...
    /// are replaced by the ports of loopback listeners bound here on port 0
    /// and handed to the server as they are, so no other process can take a
    /// port between choosing and serving it. `n` listeners are bound; a
    /// listen of the configuration on `127.0.0.1:{portN}` uses listener N.
    pub async fn start_on_ports(n: usize, conf: &str) -> Proxy {
        let dir = TempDir::new();
        let mut held: Vec<std::net::TcpListener> = (0..n)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let mut text = conf.replace("{dir}", &dir.path().display().to_string());
        for (i, l) in held.iter().enumerate() {
            let port = l.local_addr().unwrap().port().to_string();
            text = text.replace(&format!("{{port{i}}}"), &port);
        }
        let config = switchyard::config::load_str(&text, dir.path())
            .unwrap_or_else(|e| panic!("proxy did not start: {e}\n{text}"));
        let mut bound = Vec::new();
        if let Some(http) = &config.http {
            for group in &http.listens {
                if !switchyard::config::listen::binds_own_socket(group, &http.listens) {
                    continue;
                }
                let held_here = held
                    .iter()
                    .position(|l| Some(l.local_addr().unwrap()) == group.addr.inet());
                let listener = match held_here {
                    Some(i) => switchyard::net::StdListener::Tcp(held.swap_remove(i)),
                    None => switchyard::net::bind(&group.addr, &group.opts)
                        .unwrap_or_else(|e| panic!("bind() to {}: {e}", group.addr)),
                };
                bound.push(server::Bound {
                    key: group.addr.clone(),
                    listener,
                });
            }
        }
        let handle = Handle::start(config, bound, None)
            .unwrap_or_else(|e| panic!("proxy did not start: {e}\n{text}"));
        let addrs = handle.local_addrs().into_iter().map(|(_, a)| a).collect();
        Proxy { handle, dir, addrs }
    }

    /// Starts with `body` as the contents of the `http` block, logging to
    /// the test directory.
    pub async fn http(body: &str) -> Proxy {
        Self::start(&http_conf(body)).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Fails unless the error log comes to contain `needle` within
    /// [`eventually`]'s patience; the message shows the log.
    pub async fn assert_error_logged(&self, needle: &str) {
        assert_logged("error", || self.error_log(), needle).await;
    }

    /// [`Proxy::assert_error_logged`] for the access log.
    pub async fn assert_access_logged(&self, needle: &str) {
        assert_logged("access", || self.access_log(), needle).await;
    }

    /// Reloads with a new configuration (same `{dir}`).
    pub fn reload(&self, conf: &str) -> Result<(), String> {
        let text = conf.replace("{dir}", &self.dir.path().display().to_string());
        let config =
            switchyard::config::load_str(&text, self.dir.path()).map_err(|e| e.to_string())?;
        self.handle.apply(config)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle.stop_now();
    }
}

/// Fails unless `log()` comes to contain `needle` within [`eventually`]'s
/// patience, showing the `which` log.
async fn assert_logged(which: &str, log: impl Fn() -> String, needle: &str) {
    let found = eventually(|| log().contains(needle)).await;
    assert!(found, "no {needle:?} in the {which} log:\n{}", log());
}

/// A main context that logs into the test directory, around `http { body }`.
pub fn http_conf(body: &str) -> String {
    format!(
        "error_log {{dir}}/error.log info;\nevents {{ worker_connections 4096; }}\nhttp {{\n    access_log {{dir}}/access.log;\n{body}\n}}\n"
    )
}

/// The error loading `events {} http { body }` gives (empty when it loads).
pub fn http_config_error(body: &str) -> String {
    let dir = TempDir::new();
    switchyard::config::load_str(&format!("events {{}}\nhttp {{ {body} }}\n"), dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// Eventually-true checks: retries `f` for up to `SWITCHYARD_TEST_PATIENCE_MS`
/// (default 5000) milliseconds.
pub async fn eventually<F: FnMut() -> bool>(mut f: F) -> bool {
    let patience: u64 = std::env::var("SWITCHYARD_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(patience);
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A "dead" address: a TCP socket bound on loopback and never listened
/// on, kept for as long as this value lives, so connecting to it is
/// refused and no other process or test can take the port meanwhile.
pub struct DeadPort(socket2::Socket);

impl DeadPort {
    pub fn new() -> DeadPort {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        DeadPort(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap().as_socket().unwrap()
    }
}

/// How long any single network wait in a test may take before the test
/// fails (`SWITCHYARD_TEST_WAIT_MS`, default 10000).
pub fn wait_limit() -> Duration {
    Duration::from_millis(
        std::env::var("SWITCHYARD_TEST_WAIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
    )
}

/// Awaits `fut` for at most [`wait_limit`]; a test that waits longer fails,
/// naming what it was waiting for.
pub async fn bounded<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    let limit = wait_limit();
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Connects and sends `request`, within [`wait_limit`].
pub async fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = bounded("connect", TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    bounded("write of the request", s.write_all(request))
        .await
        .unwrap();
    s
}

/// Sends raw bytes and reads the answer until the server closes; a server
/// that has not closed within [`wait_limit`] fails the test.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = send(addr, request).await;
    read_to_close(&mut s).await
}

/// Sends raw bytes and reads one response whose body has a
/// Content-Length (for keep-alive requests, where the server rightly keeps
/// the connection open), within [`wait_limit`].
pub async fn raw_one(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = send(addr, request).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    bounded("one response", async {
        loop {
            if let Some(i) = find(&got, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..i]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("raw_one needs a Content-Length");
                if got.len() >= i + 4 + len {
                    return;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads until the peer closes. A connection still open after
/// [`wait_limit`] fails the test, showing what had arrived; a reset after
/// some bytes returns those bytes.
pub async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let limit = wait_limit();
    match tokio::time::timeout(limit, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!(
            "the server did not close the connection within {limit:?}; received so far:\n{}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// `GET path HTTP/1.0` with a Host header; the full response text.
pub async fn get(addr: SocketAddr, path: &str) -> String {
    raw(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn parse(text: &str) -> Response {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Response {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

pub async fn get_response(addr: SocketAddr, path: &str) -> Response {
    Response::parse(&get(addr, path).await)
}

/// A request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn headers(&self) -> Vec<String> {
        self.head.lines().skip(1).map(str::to_string).collect()
    }
}

/// An HTTP backend that records each request and answers with `respond`.
pub struct Backend {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Backend {
    /// Answers every request with a 200 whose body echoes the request head.
    pub async fn echo() -> Backend {
        Self::with(|seen| {
            let body = seen.head.clone();
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\nX-Backend: echo\r\n\r\n{body}", body.len()).into_bytes()
        })
        .await
    }

    /// Answers every request with the bytes `respond` returns, then closes.
    pub async fn with(respond: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Backend {
        Self::with_delay(Duration::ZERO, respond).await
    }

    /// Like [`Backend::with`], answering after `delay` (without blocking
    /// the test's runtime).
    pub async fn with_delay(
        delay: Duration,
        respond: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
    ) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let respond = Arc::new(respond);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let tx = tx.clone();
                let respond = respond.clone();
                tokio::spawn(async move {
                    let Some(seen) = read_request(&mut s).await else {
                        return;
                    };
                    let _ = tx.send(seen.clone());
                    tokio::time::sleep(delay).await;
                    let _ = s.write_all(&respond(&seen)).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Backend { addr, seen }
    }

    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("backend saw no request")
            .expect("backend gone")
    }
}

/// Reads one request (head, then a Content-Length or chunked body).
pub async fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let mut body = buf[head_end..].to_vec();
    let lower = head.to_ascii_lowercase();
    if let Some(cl) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let n: usize = cl.trim().parse().ok()?;
        while body.len() < n {
            let k = s.read(&mut tmp).await.ok()?;
            if k == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..k]);
        }
    } else if lower.contains("transfer-encoding: chunked") {
        while find(&body, b"0\r\n\r\n").is_none() {
            let k = s.read(&mut tmp).await.ok()?;
            if k == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..k]);
        }
    }
    Some(Seen { head, body })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket echo backend (tokio-tungstenite): echoes text and binary,
/// answers close with the same code, and reports each handshake's
/// request head.
pub async fn ws_echo() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    ws_echo_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
}

/// [`ws_echo`] on a listener of the caller's.
pub fn ws_echo_on(listener: TcpListener) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback type
                let cb = |req: &Request, resp: Response| {
                    let mut head = format!("{} {}", req.method(), req.uri());
                    for (n, v) in req.headers() {
                        head.push_str(&format!("\n{}: {}", n, v.to_str().unwrap_or("")));
                    }
                    let _ = tx.send(head);
                    Ok(resp)
                };
                let mut config =
                    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
                config.max_message_size = Some(64 << 20);
                config.max_frame_size = Some(64 << 20);
                if let Ok(ws) =
                    tokio_tungstenite::accept_hdr_async_with_config(s, cb, Some(config)).await
                {
                    echo_until_close(ws).await;
                }
            });
        }
    });
    (addr, rx)
}

/// Echoes text and binary messages until the peer closes (its close frame
/// is answered) or the connection fails.
pub async fn echo_until_close<S>(mut ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_close() {
            // tungstenite queued the echo of the close frame; flush it
            // before the socket is dropped.
            let _ = ws.flush().await;
            break;
        }
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket through `addr` to `path`.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let s = bounded("connect", TcpStream::connect(addr)).await.unwrap();
    ws_handshake(s, addr, path).await
}

/// [`ws_connect`] from the loopback address `source` (any of 127.0.0.0/8),
/// so that one test can be many clients to `ip_hash` and the like.
pub async fn ws_connect_from(
    source: std::net::Ipv4Addr,
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    let s = bounded("connect", socket.connect(addr)).await.unwrap();
    ws_handshake(s, addr, path).await
}

async fn ws_handshake(
    s: TcpStream,
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(64 << 20);
    config.max_frame_size = Some(64 << 20);
    let (ws, _) = bounded(
        "the WebSocket handshake",
        tokio_tungstenite::client_async_with_config(format!("ws://{addr}{path}"), s, Some(config)),
    )
    .await?;
    Ok(ws)
}

/// Sends `text` over `ws` and fails the test unless the same text comes
/// back within [`wait_limit`].
pub async fn assert_echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let got = bounded("the echo", ws.next())
        .await
        .expect("the WebSocket ended")
        .expect("WebSocket error");
    assert_eq!(got, Message::text(text));
}

/// The browser tests' prerequisites: the `tests/browser` directory and the
/// Chromium to use. These tests are ignored by a plain `cargo test`;
/// `.ci/run` installs what they need and runs them, so a missing piece
/// fails the test, never skips it.
pub fn browser_setup() -> (PathBuf, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = [
        (!Path::new(&chromium).exists()).then_some("chromium"),
        (!root.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci --prefix tests/browser)"),
        std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_err()
            .then_some("node"),
    ];
    let missing: Vec<&str> = missing.into_iter().flatten().collect();
    assert!(
        missing.is_empty(),
        "the browser test cannot run: missing {missing:?}"
    );
    (root, chromium)
}

/// Runs `tests/browser/SCRIPT URL` (90 s at most) and returns what it
/// printed; a script that fails (or does not end) fails the test.
pub async fn run_browser_script(script: &str, url: &str) -> String {
    let out = browser_script(script, url).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `tests/browser/SCRIPT URL` (90 s at most) and returns how it
/// ended, for callers that must clean up before judging.
pub async fn browser_script(script: &str, url: &str) -> std::process::Output {
    let (root, chromium) = browser_setup();
    let browser = tokio::process::Command::new("node")
        .arg(root.join(script))
        .arg(url)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(90), browser)
        .await
        .expect("browser test timed out")
        .expect("run node")
}
