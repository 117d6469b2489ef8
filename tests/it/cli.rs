//! The `switchyard` executable: nginx's command line, pid file, signals,
//! reload, daemon mode.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run switchyard")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A configuration serving `return 200` on `port`, logging in `dir`.
fn conf(dir: &Path, port: u16, body: &str) -> String {
    format!(
        "daemon off;\npid {d}/sy.pid;\nerror_log {d}/error.log info;\nevents {{}}\nhttp {{\n access_log {d}/access.log;\n server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"{body}\"; }} }}\n}}\n",
        d = dir.display()
    )
}

/// The loopback address process `pid` listens on (configurations here say
/// port 0, so nothing races for a port), read from /proc: the inodes of
/// its socket descriptors matched against the kernel's table of listening
/// IPv4 sockets. Waits for the socket within the test's wait limit.
async fn listening_addr(pid: u32) -> std::net::SocketAddr {
    bounded("the process to listen", async {
        loop {
            if let Some(a) = find_listening(pid) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn find_listening(pid: u32) -> Option<std::net::SocketAddr> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_str()?;
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local address, state (0A is LISTEN), inode
        if f.len() < 10 || f[3] != "0A" || !inodes.contains(f[9]) {
            return None;
        }
        let (ip, port) = f[1].split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(std::net::SocketAddr::from((ip.to_le_bytes(), port)))
    })
}

async fn wait_for_pid(dir: &Path, child: &mut Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("sy.pid"))
            && let Ok(pid) = t.trim().parse()
        {
            return pid;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
            panic!("switchyard exited during start-up: {status}: {err}");
        }
        assert!(Instant::now() < deadline, "no pid file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchyard did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start(dir: &Path) -> Child {
    Command::new(BIN)
        .args([
            "-p",
            &format!("{}/", dir.display()),
            "-c",
            "sy.conf",
            "-e",
            "error.log",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard")
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

#[test]
fn cli_version_lists_modules_it_lacks() {
    let o = run(&["-V"]);
    assert!(o.status.success());
    let e = stderr(&o);
    assert!(e.contains("switchyard version: switchyard/"), "{e}");
    assert!(
        e.contains("configure arguments: --with-http_ssl_module"),
        "{e}"
    );
    assert!(e.contains("--without-http_ssi_module"), "{e}");
    assert!(e.contains("--with-http_auth_request_module"), "{e}");
    assert!(e.contains("--with-http_realip_module"), "{e}");
    // Implemented modules are not listed.
    assert!(!e.contains("--without-http_gzip_module"), "{e}");
    assert!(!e.contains("--without-http_auth_basic_module"), "{e}");
    assert!(!e.contains("--without-http_access_module"), "{e}");
    assert!(!e.contains("--without-http_limit_req_module"), "{e}");
    assert!(!e.contains("--without-http_proxy_module"), "{e}");
    assert!(!e.contains("=dynamic"), "{e}");
}

#[test]
fn cli_test_reports_success_and_failure_like_nginx() {
    let dir = TempDir::new();
    let good = dir.write("good.conf", conf(dir.path(), 0, "x"));
    let o = run(&["-t", "-c", good.to_str().unwrap()]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(&format!(
            "the configuration file {} syntax is ok",
            good.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "configuration file {} test is successful",
            good.display()
        )),
        "{e}"
    );
    let bad = dir.write(
        "bad.conf",
        "events {}\nhttp {\n  server {\n    locaton / {}\n  }\n}\n",
    );
    let o = run(&["-t", "-c", bad.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        e.contains(&format!(
            "[emerg] unknown directive \"locaton\" in {}:4",
            bad.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("configuration file {} test failed", bad.display())),
        "{e}"
    );
    let o = run(&["-tq", "-c", good.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
}

#[test]
fn cli_dump_prints_every_file() {
    let dir = TempDir::new();
    dir.write("inc.conf", "# included\n");
    let main = dir.write("m.conf", "events {}\ninclude inc.conf;\n");
    let o = run(&["-T", "-c", main.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "# configuration file {}:\nevents {{}}\ninclude inc.conf;",
            main.display()
        )),
        "{out}"
    );
    assert!(out.contains("# included"), "{out}");
}

#[test]
fn cli_bad_options_and_missing_pid_file() {
    let o = run(&["-x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid option: \"x\""));
    let dir = TempDir::new();
    let c = dir.write("sy.conf", conf(dir.path(), 0, "x"));
    let o = run(&["-c", c.to_str().unwrap(), "-s", "reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("sy.pid\" failed (2: No such file or directory)"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn cli_runs_reloads_and_quits_through_the_pid_file() {
    let dir = TempDir::new();
    let port = 0;
    dir.write("sy.conf", conf(dir.path(), port, "one"));
    let mut child = start(dir.path());
    let pid = wait_for_pid(dir.path(), &mut child).await;
    assert_eq!(pid, child.id(), "the pid file names the process itself");
    let addr = find_listening(pid).expect("listening as soon as the pid file exists");
    // Listening as soon as the pid file exists.
    assert_eq!(get_response(addr, "/").await.body, "one");

    // A good reload switches configuration.
    dir.write("sy.conf", conf(dir.path(), port, "two"));
    let c = dir.path().join("sy.conf");
    let o = run(&["-c", c.to_str().unwrap(), "-s", "reload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        eventually(|| std::fs::read_to_string(dir.path().join("error.log"))
            .unwrap_or_default()
            .contains("reconfigured"))
        .await
    );
    assert_eq!(get_response(addr, "/").await.body, "two");

    // A bad reload is logged and the old configuration keeps serving.
    dir.write("sy.conf", "events {}\nhttp { bogus; }\n");
    signal(pid, nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(|| std::fs::read_to_string(dir.path().join("error.log"))
            .unwrap_or_default()
            .contains("unknown directive \"bogus\""))
        .await
    );
    assert_eq!(get_response(addr, "/").await.body, "two");

    // Log rotation: the moved files keep what they had, `-s reopen`
    // starts new ones where the configuration says.
    let access = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&access, &rotated).unwrap();
    dir.write("sy.conf", conf(dir.path(), port, "two"));
    let o = run(&["-c", c.to_str().unwrap(), "-s", "reopen"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        eventually(|| access.exists()).await,
        "access.log was not reopened"
    );
    assert_eq!(get_response(addr, "/").await.body, "two");

    // Graceful stop; the pid file goes away.

    let o = run(&["-c", c.to_str().unwrap(), "-s", "quit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    assert!(!dir.path().join("sy.pid").exists());
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 3, "{old}");
    let new = std::fs::read_to_string(&access).unwrap();
    assert_eq!(new.lines().count(), 1, "{new}");
}

/// Waits (10 s at most) for the process to exit with status 0.
async fn exits_cleanly(child: &mut Child) {
    let status = wait_exit(child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// Starts the binary with a server on port 0 proxying to `backend`
/// (`extra` goes into the location); returns its directory, process, pid
/// and address.
async fn start_proxying_to(
    backend: std::net::SocketAddr,
    extra: &str,
) -> (TempDir, Child, u32, std::net::SocketAddr) {
    let dir = TempDir::new();
    dir.write("sy.conf", proxy_conf(dir.path(), backend, extra));
    let mut child = start(dir.path());
    let pid = wait_for_pid(dir.path(), &mut child).await;
    let addr = listening_addr(pid).await;
    (dir, child, pid, addr)
}

fn proxy_conf(dir: &Path, backend: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "daemon off;\npid {d}/sy.pid;\nerror_log {d}/error.log info;\nevents {{}}\nhttp {{ access_log off; server {{ listen 127.0.0.1:0; location / {{ proxy_pass http://{backend}; {extra} }} location /v {{ return 200 \"{extra}\"; }} }} }}\n",
        d = dir.display()
    )
}

#[tokio::test]
async fn cli_sighup_reload_keeps_open_websockets() {
    let (backend, _) = ws_echo().await;
    let (dir, mut child, pid, addr) = start_proxying_to(backend, "").await;
    let mut ws = ws_connect(addr, "/").await.unwrap();
    assert_echo(&mut ws, "before").await;
    dir.write(
        "sy.conf",
        proxy_conf(dir.path(), backend, "add_header X-Gen two;"),
    );
    signal(pid, nix::sys::signal::Signal::SIGHUP);
    // The new configuration answers new requests...
    assert!(
        eventually(|| std::fs::read_to_string(dir.path().join("error.log"))
            .unwrap_or_default()
            .contains("reconfigured"))
        .await,
        "no reload logged"
    );
    assert_eq!(get_response(addr, "/v").await.body, "add_header X-Gen two;");
    // ...and the tunnel opened before it still carries messages.
    for i in 0..3 {
        assert_echo(&mut ws, &format!("after {i}")).await;
    }
    drop(ws);
    signal(pid, nix::sys::signal::Signal::SIGQUIT);
    exits_cleanly(&mut child).await;
}

#[tokio::test]
async fn cli_quit_finishes_an_http_request_in_flight() {
    // The backend answers a second after it has the request; the quit
    // arrives in between and the client still gets the whole answer.
    let mut backend = Backend::with_delay(Duration::from_secs(1), |_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nslow but sure".to_vec()
    })
    .await;
    let (dir, mut child, _pid, addr) = start_proxying_to(backend.addr, "").await;
    let client = tokio::spawn(async move { get_response(addr, "/slow").await });
    backend.next().await;
    let c = dir.path().join("sy.conf");
    let o = run(&["-c", c.to_str().unwrap(), "-s", "quit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = bounded("the answer", client).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow but sure"));
    exits_cleanly(&mut child).await;
}

#[tokio::test]
async fn cli_quit_waits_for_websockets_and_term_does_not() {
    let (backend, _) = ws_echo().await;
    for (sig, waits) in [
        (nix::sys::signal::Signal::SIGQUIT, true),
        (nix::sys::signal::Signal::SIGTERM, false),
    ] {
        let (dir, mut child, pid, addr) = start_proxying_to(backend, "").await;
        let mut ws = ws_connect(addr, "/").await.unwrap();
        signal(pid, sig);
        if waits {
            // Once the signal is handled (logged), the open tunnel is still
            // served while new connections are refused.
            let log = dir.path().join("error.log");
            assert!(
                eventually(|| std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("(SIGQUIT) received"))
                .await,
                "SIGQUIT not logged"
            );
            assert!(
                eventually(|| std::net::TcpStream::connect(addr).is_err()).await,
                "still accepting after SIGQUIT"
            );
            assert!(child.try_wait().unwrap().is_none());
            assert_echo(&mut ws, "during shutdown").await;
            drop(ws);
            assert!(
                wait_exit(&mut child, Duration::from_secs(10))
                    .await
                    .success()
            );
        } else {
            assert!(
                wait_exit(&mut child, Duration::from_secs(3))
                    .await
                    .success()
            );
        }
    }
}

#[tokio::test]
async fn cli_daemon_detaches_and_stops() {
    let dir = TempDir::new();
    let text = conf(dir.path(), 0, "daemon").replace("daemon off;\n", "");
    let c = dir.write("sy.conf", text);
    let o = run(&["-c", c.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pid: i32 = std::fs::read_to_string(dir.path().join("sy.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let addr = listening_addr(pid as u32).await;
    assert_eq!(get_response(addr, "/").await.body, "daemon");
    let o = run(&["-c", c.to_str().unwrap(), "-s", "stop"]);
    assert!(o.status.success());
    assert!(
        eventually(|| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()).await
    );
}

#[tokio::test]
async fn cli_startup_errors_are_reported() {
    let dir = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    dir.write("sy.conf", conf(dir.path(), port, "x"));
    let mut child = start(dir.path());
    let status = wait_exit(&mut child, Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap();
    assert!(
        log.contains("[emerg]")
            && log.contains(&format!(
                "bind() to 127.0.0.1:{port} failed (98: Address already in use)"
            )),
        "{log}"
    );
    assert!(!dir.path().join("sy.pid").exists());
}

#[tokio::test]
async fn cli_logs_to_standard_streams_share_the_redirected_file() {
    // `access_log /dev/stdout` and `error_log stderr` with both streams
    // redirected to one file (`> out 2>&1`): every line arrives whole.
    let dir = TempDir::new();
    dir.write(
        "sy.conf",
        format!(
            "daemon off;\npid {d}/sy.pid;\nerror_log stderr info;\nevents {{}}\nhttp {{\n access_log /dev/stdout;\n server {{ listen 127.0.0.1:0; root {d}/www; }}\n}}\n",
            d = dir.path().display()
        ),
    );
    let out = std::fs::File::create(dir.path().join("out")).unwrap();
    let mut child = Command::new(BIN)
        .args(["-c", dir.path().join("sy.conf").to_str().unwrap()])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let pid = wait_for_pid(dir.path(), &mut child).await;
    let addr = listening_addr(pid).await;
    for _ in 0..3 {
        // A missing file: one error line, then one access line.
        assert_eq!(get_response(addr, "/missing").await.status, 404);
    }
    signal(child.id(), nix::sys::signal::Signal::SIGQUIT);
    assert!(
        wait_exit(&mut child, Duration::from_secs(10))
            .await
            .success()
    );
    let text = std::fs::read_to_string(dir.path().join("out")).unwrap();
    let access = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[[^]]+\] "GET /missing HTTP/1\.0" 404 \d+ "-" "-"$"#,
    )
    .unwrap();
    let error = regex::Regex::new(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: ").unwrap();
    for line in text.lines() {
        assert!(
            access.is_match(line) || error.is_match(line),
            "mangled line {line:?} in\n{text}"
        );
    }
    assert_eq!(
        text.lines().filter(|l| access.is_match(l)).count(),
        3,
        "{text}"
    );
    assert_eq!(text.matches("open() \"").count(), 3, "{text}");
    assert!(text.contains("(SIGQUIT) received, shutting down"), "{text}");
}

#[tokio::test]
async fn cli_buffered_access_log_is_written_on_reopen_and_at_exit() {
    // buffer= without flush=: lines wait for a full buffer, `-s reopen`
    // (SIGUSR1) or the end of the process, whichever comes first.
    let dir = TempDir::new();
    dir.write(
        "sy.conf",
        format!(
            "daemon off;\npid {d}/sy.pid;\nerror_log {d}/error.log info;\nevents {{}}\nhttp {{\n log_format plain $uri;\n access_log {d}/access.log plain buffer=1m;\n server {{ listen 127.0.0.1:0; location / {{ return 200 ok; }} }}\n}}\n",
            d = dir.path().display()
        ),
    );
    let log = dir.path().join("access.log");
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut child = start(dir.path());
    let pid = wait_for_pid(dir.path(), &mut child).await;
    let addr = listening_addr(pid).await;
    assert_eq!(get_response(addr, "/before-rotation").await.status, 200);
    assert_eq!(read(&log), "", "written before the buffer was due");
    // Rotation: the file is moved, then the server is told to reopen; the
    // buffered line belongs to the old file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    assert!(eventually(|| read(&rotated) == "/before-rotation\n").await);
    assert!(eventually(|| log.exists()).await, "not reopened");
    assert_eq!(get_response(addr, "/after-rotation").await.status, 200);
    signal(pid, nix::sys::signal::Signal::SIGQUIT);
    exits_cleanly(&mut child).await;
    assert_eq!(read(&log), "/after-rotation\n");
    assert_eq!(read(&rotated), "/before-rotation\n");
}

/// Runs `switchyard demo` on port 0; returns once it listens.
async fn start_demo() -> (Child, std::net::SocketAddr) {
    let (child, addr, _) = start_demo_and_backend().await;
    (child, addr)
}

/// [`start_demo`], also returning the address of its chat backend.
async fn start_demo_and_backend() -> (Child, std::net::SocketAddr, std::net::SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The demo prints the proxy's address first; a thread keeps reading so
    // the demo never writes into a closed pipe.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        for _ in lines {}
    });
    let first = bounded("the demo's first line", rx).await.unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no proxy address in {first:?}"));
    let backend = first
        .split("chat backend on ")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no backend address in {first:?}"));
    (child, addr, backend)
}

/// A backend process frozen with SIGSTOP answers no ping: a proxy with
/// keepalive pings gives the client close 1011 within interval + timeout.
/// The backend is the chat backend of a `switchyard demo` process (the
/// proxy under test runs in this process).
#[tokio::test]
async fn cli_websocket_to_a_sigstopped_backend_process_gets_1011() {
    let (mut demo, _, backend) = start_demo_and_backend().await;
    let proxy = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0;
                   location /ws/ {{ proxy_pass http://{backend};
                                    websocket_ping_interval 300ms; websocket_pong_timeout 700ms; }} }}"
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws/chat").await.unwrap();
    // Alive: pings come and are answered by both ends for a while.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(m) = tokio::time::timeout_at(until, ws.next()).await {
        assert!(matches!(m, Some(Ok(Message::Ping(_)))), "{m:?}");
    }
    signal(demo.id(), nix::sys::signal::Signal::SIGSTOP);
    let stopped = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(Some(f)))) => return Ok(u16::from(f.code)),
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let waited = stopped.elapsed();
    // Resumed and stopped before any verdict: no frozen process is left.
    signal(demo.id(), nix::sys::signal::Signal::SIGCONT);
    signal(demo.id(), nix::sys::signal::Signal::SIGINT);
    let _ = wait_exit(&mut demo, Duration::from_secs(5)).await;
    let code = got
        .expect("no close frame within 8 s of the stop")
        .unwrap_or_else(|other| panic!("expected a close frame, got {other}"));
    assert_eq!(code, 1011);
    // At most interval + timeout after the stop, plus slack for a loaded
    // machine.
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    // Logged when the tunnel ends (after the close grace).
    proxy
        .assert_error_logged("upstream did not answer a WebSocket ping in time")
        .await;
}

#[tokio::test]
async fn cli_demo_serves_the_chat_page_and_chat() {
    let (mut child, addr) = start_demo().await;
    let page = get_response(addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/ws/chat"), "{}", page.body);
    let mut a = ws_connect(addr, "/ws/chat").await.unwrap();
    let mut b = ws_connect(addr, "/ws/chat").await.unwrap();
    // Wait until both subscriptions are live, then chat.
    a.send(Message::text("{\"from\":\"a\",\"text\":\"ready\"}"))
        .await
        .unwrap();
    assert_eq!(
        bounded("a WebSocket message", a.next())
            .await
            .unwrap()
            .unwrap(),
        Message::text("{\"from\":\"a\",\"text\":\"ready\"}")
    );
    loop {
        b.send(Message::text("{\"from\":\"b\",\"text\":\"hello a\"}"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if got == Message::text("{\"from\":\"b\",\"text\":\"hello a\"}") {
            break;
        }
    }
    let mut echo = ws_connect(addr, "/ws/echo").await.unwrap();
    echo.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        bounded("a WebSocket message", echo.next())
            .await
            .unwrap()
            .unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    assert!(
        wait_exit(&mut child, Duration::from_secs(5))
            .await
            .success()
    );
}

/// The demo page in a real browser: two headless Chromium tabs chat
/// through the proxy (`tests/browser/demo-chat.mjs`). Needs Node.js,
/// Chromium and `npm ci --prefix tests/browser`, so a plain `cargo test`
/// lists it as ignored; `.ci/run` installs them and runs the ignored tests,
/// where a missing piece is a failure, never a skip.
#[tokio::test]
#[ignore = "needs Chromium, Node.js and playwright-core; run with --ignored (CI does)"]
async fn cli_demo_chat_works_in_a_browser() {
    browser_setup();
    let (mut demo, addr) = start_demo().await;
    // Shorter than the script's own limit: the demo is stopped either way.
    let out = tokio::time::timeout(
        Duration::from_secs(85),
        browser_script("demo-chat.mjs", &format!("http://{addr}/")),
    )
    .await;
    signal(demo.id(), nix::sys::signal::Signal::SIGINT);
    let _ = wait_exit(&mut demo, Duration::from_secs(5)).await;
    let out = out.expect("browser test timed out");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Out of file descriptors (EMFILE): accepting pauses with an error line
/// (at most one per 100 ms, not a spin), the process stays up, and once
/// descriptors are free again new clients are served.
#[tokio::test]
async fn cli_out_of_descriptors_pauses_accepting_and_recovers() {
    let dir = TempDir::new();
    dir.write(
        "sy.conf",
        format!(
            "daemon off;\nworker_rlimit_nofile 48;\npid {d}/sy.pid;\nerror_log {d}/error.log info;\nevents {{}}\nhttp {{ access_log off; server {{ listen 127.0.0.1:0; location / {{ return 200 \"served\"; }} }} }}\n",
            d = dir.path().display()
        ),
    );
    let mut child = start(dir.path());
    let pid = wait_for_pid(dir.path(), &mut child).await;
    let addr = listening_addr(pid).await;
    // Silent clients, more than the limit: the later ones wait in the
    // listen queue while accept() fails.
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(
            bounded("connect", tokio::net::TcpStream::connect(addr))
                .await
                .unwrap(),
        );
    }
    let log = dir.path().join("error.log");
    let full = bounded("accept() to fail with EMFILE", async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("accept() failed (24: Too many open files)") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    full.await;
    let paused_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let failures = |text: &str| text.matches("accept() failed").count();
    let during = failures(&std::fs::read_to_string(&log).unwrap());
    let elapsed = paused_at.elapsed().as_millis() as usize;
    assert!(
        during <= elapsed / 100 + 3,
        "{during} accept() failures logged in {elapsed} ms: accepting spins"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "exited when out of descriptors"
    );
    drop(held);
    let r = Response::parse(&get(addr, "/").await);
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, "served");
    signal(pid, nix::sys::signal::Signal::SIGQUIT);
    exits_cleanly(&mut child).await;
}
