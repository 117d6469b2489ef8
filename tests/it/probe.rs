//! `switchyard probe` against deliberately broken live setups, each of
//! which must get the diagnosis the symptom table gives it; and
//! `switchyard client` in a script. The setups run on Switchyard itself;
//! the same ones behind a real nginx are in `probe_nginx_*` (ignored
//! unless nginx is installed: `.ci/run` installs it and runs them).

use std::net::SocketAddr;
use std::time::Duration;

use switchyard::probe::{Options, Report, probe};

use crate::harness::*;

fn opts() -> Options {
    Options {
        timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// A proxy in front of `backend` for `/ws`, with `extra` in the location.
async fn proxy_to(backend: SocketAddr, extra: &str) -> Proxy {
    Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; location /ws {{ proxy_pass http://{backend}; {extra} }} }}"
    ))
    .await
}

/// A TCP socket bound to a port and never listening: connections to it
/// are refused (kept alive so nothing else takes the port).
fn dead_port() -> (socket2::Socket, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

fn step<'r>(r: &'r Report, name: &str) -> &'r switchyard::probe::Step {
    r.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} step:\n{}", r.text()))
}

#[tokio::test]
async fn probe_reports_a_working_websocket_step_by_step() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "").await;
    let url = format!("ws://{}/ws", proxy.addr());
    let mut o = opts();
    o.size = Some(1 << 20);
    let r = probe(&url, &o).await;
    assert!(r.works, "{}", r.text());
    assert_eq!(r.diagnosis, "the WebSocket works");
    for name in [
        "dns", "tcp", "request", "response", "accept", "ping", "message",
    ] {
        assert!(step(&r, name).ok, "{name}:\n{}", r.text());
    }
    assert!(step(&r, "response").detail.contains("101"), "{}", r.text());
    assert!(
        step(&r, "message").detail.contains("1048576 bytes echoed"),
        "{}",
        r.text()
    );
    assert!(step(&r, "request").detail.contains("Upgrade: websocket"));
    let json = r.json();
    assert_eq!(json["works"], true);
    assert_eq!(json["steps"][0]["step"], "dns");
}

#[tokio::test]
async fn probe_diagnoses_a_dead_backend_behind_the_proxy() {
    let (_dead, addr) = dead_port();
    let proxy = proxy_to(addr, "").await;
    let r = probe(&format!("ws://{}/ws", proxy.addr()), &opts()).await;
    assert!(!r.works);
    assert!(
        r.diagnosis
            .starts_with("502: the proxy could not reach its backend"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn probe_diagnoses_nothing_listening() {
    let (_dead, addr) = dead_port();
    let r = probe(&format!("ws://{addr}/ws"), &opts()).await;
    assert!(!r.works);
    assert!(
        r.diagnosis
            .starts_with(&format!("nothing listens at {addr}")),
        "{}",
        r.text()
    );
    assert!(!step(&r, "tcp").ok);
}

#[tokio::test]
async fn probe_diagnoses_a_short_read_timeout_with_the_idle_test() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "proxy_read_timeout 1s;").await;
    let mut o = opts();
    o.idle = Some(Duration::from_secs(4));
    let r = probe(&format!("ws://{}/ws", proxy.addr()), &o).await;
    assert!(!r.works, "{}", r.text());
    let idle = step(&r, "idle");
    assert!(!idle.ok);
    let cut = idle.elapsed.unwrap();
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(4),
        "{cut:?}"
    );
    assert!(r.diagnosis.starts_with("closed after 1."), "{}", r.text());
    assert!(
        r.diagnosis.contains("a read timeout of about 1 s"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn probe_idle_test_passes_when_nothing_cuts() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "proxy_read_timeout 10s;").await;
    let mut o = opts();
    o.idle = Some(Duration::from_millis(1500));
    let r = probe(&format!("ws://{}/ws", proxy.addr()), &o).await;
    assert!(r.works, "{}", r.text());
    assert!(
        step(&r, "idle")
            .detail
            .starts_with("still open after 1.5 s")
    );
}

#[tokio::test]
async fn probe_diagnoses_a_backend_that_is_not_a_websocket_server() {
    let backend = Backend::with(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
            .to_vec()
    })
    .await;
    let proxy = proxy_to(backend.addr, "").await;
    let r = probe(&format!("ws://{}/ws", proxy.addr()), &opts()).await;
    assert!(!r.works);
    assert!(
        r.diagnosis.starts_with(
            "handshake answered 200: the backend (or a static location) is not a WebSocket endpoint"
        ),
        "{}",
        r.text()
    );
}

/// A WebSocket server's answer to a request without `Upgrade` (as
/// Node's `ws` answers it): 400.
async fn refuses_plain_requests() -> Backend {
    Backend::with(|seen| {
        assert!(seen.header("upgrade").is_none(), "{}", seen.head);
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 39\r\nConnection: close\r\n\r\nMissing or invalid Upgrade header field"
            .to_vec()
    })
    .await
}

#[tokio::test]
async fn probe_diagnoses_upgrade_headers_that_did_not_reach_the_backend() {
    // Switchyard forwards upgrades by default; `Upgrade ""` makes it send
    // what nginx sends without the Upgrade lines, and the backend refuses.
    let mut backend = refuses_plain_requests().await;
    let proxy = proxy_to(backend.addr, "proxy_set_header Upgrade \"\";").await;
    let r = probe(&format!("ws://{}/ws", proxy.addr()), &opts()).await;
    assert!(!r.works);
    assert!(r.diagnosis.starts_with("400 from"), "{}", r.text());
    assert!(
        r.diagnosis
            .contains("did not forward the Upgrade and Connection headers"),
        "{}",
        r.text()
    );
    assert!(
        bounded("a WebSocket message", backend.next())
            .await
            .header("upgrade")
            .is_none()
    );
}

fn self_signed(dir: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let k = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        dir.write("self.crt", k.cert.pem()),
        dir.write("self.key", k.signing_key.serialize_pem()),
    )
}

#[tokio::test]
async fn probe_diagnoses_a_self_signed_certificate_and_insecure_goes_past_it() {
    let (backend, _) = ws_echo().await;
    let dir = TempDir::new();
    let (crt, key) = self_signed(&dir);
    let proxy = Proxy::start_in(
        dir,
        &http_conf(&format!(
            "server {{ listen 127.0.0.1:0 ssl; ssl_certificate {}; ssl_certificate_key {}; location /ws {{ proxy_pass http://{backend}; }} }}",
            crt.display(),
            key.display()
        )),
    )
    .await
    .unwrap();
    let url = format!("wss://localhost:{}/ws", proxy.addr().port());
    let r = probe(&url, &opts()).await;
    assert!(!r.works);
    assert!(
        r.diagnosis
            .starts_with("the server's certificate is not trusted"),
        "{}",
        r.text()
    );
    let tls = step(&r, "tls");
    assert!(tls.detail.contains("subject CN="), "{}", tls.detail);
    assert!(tls.detail.contains("names localhost"), "{}", tls.detail);
    let mut o = opts();
    o.insecure = true;
    let r = probe(&url, &o).await;
    assert!(r.works, "{}", r.text());
    assert!(
        step(&r, "tls").detail.starts_with("TLSv1.3, ALPN http/1.1"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn probe_diagnoses_wss_to_a_plain_port() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "").await;
    let r = probe(
        &format!("wss://localhost:{}/ws", proxy.addr().port()),
        &opts(),
    )
    .await;
    assert!(!r.works);
    assert!(
        r.diagnosis.starts_with("wss:// to a plain-HTTP port"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn probe_diagnoses_a_name_that_does_not_resolve() {
    let r = probe("ws://no-such-host.invalid/ws", &opts()).await;
    assert!(!r.works);
    assert!(
        r.diagnosis
            .starts_with("\"no-such-host.invalid\" does not resolve"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn probe_command_exits_zero_only_when_the_websocket_works() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "").await;
    let good = format!("ws://{}/ws", proxy.addr());
    let (_dead, addr) = dead_port();
    let bad = format!("ws://{addr}/ws");
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
                .args(["probe", "--format", "json", &url])
                .output()
                .unwrap()
        })
    };
    let ok = run(good).await.unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["diagnosis"], "the WebSocket works");
    let failed = run(bad).await.unwrap();
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
}

#[tokio::test]
async fn client_sends_stdin_lines_and_prints_replies() {
    let (backend, _) = ws_echo().await;
    let proxy = proxy_to(backend, "").await;
    let url = format!("ws://{}/ws", proxy.addr());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["client", "--wait", "2s", &url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"first line\nsecond line\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first line\nsecond line\n"
    );
}

// --- The same setups behind a real nginx.

pub mod nginx {
    //! Runs Debian's nginx (`/usr/sbin/nginx`) with a configuration in a
    //! test directory, in the foreground, stopped by its PID on drop.

    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::time::Duration;

    use crate::harness::TempDir;

    pub struct Nginx {
        child: Child,
        /// `{port}` in the configuration.
        pub port: u16,
        /// `{tls_port}` in the configuration (`port` + 1000).
        pub tls_port: u16,
        /// Holds the configuration and logs until nginx is stopped.
        _dir: TempDir,
    }

    impl Drop for Nginx {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Ports below the kernel's ephemeral range (32768 up), so no outgoing
    /// connection holds one; a port that turns out to be taken makes nginx
    /// exit at once, and the next one is tried.
    fn next_port() -> u16 {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let base = 20000 + (std::process::id() % 500) as u16 * 20;
        base + NEXT.fetch_add(1, Ordering::Relaxed) % 20
    }

    /// Starts nginx with `server` (a server block using `{port}`) inside a
    /// minimal http block.
    pub fn start(server: &str) -> Nginx {
        for _ in 0..10 {
            let dir = TempDir::new();
            let port = next_port();
            let conf = format!(
                "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{}}\nhttp {{\n    access_log {d}/access.log;\n    client_body_temp_path {d};\n    proxy_temp_path {d};\n    {server}\n}}\n",
                d = dir.path().display(),
                server = server
                    .replace("{port}", &port.to_string())
                    .replace("{tls_port}", &(port + 1000).to_string())
            );
            let path = dir.write("nginx.conf", conf);
            let mut child = Command::new("/usr/sbin/nginx")
                .args([
                    "-p",
                    dir.path().to_str().unwrap(),
                    "-c",
                    path.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run /usr/sbin/nginx (apt-get install nginx)");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            for _ in 0..100 {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Nginx {
                        child,
                        port,
                        tls_port: port + 1000,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nginx did not start on any of ten ports");
    }
}

#[tokio::test]
#[ignore = "needs nginx (apt-get install nginx); .ci/run runs it"]
async fn probe_nginx_diagnoses_each_broken_setup() {
    let (backend, _) = ws_echo().await;
    let refusing = refuses_plain_requests().await;
    let (_dead, dead) = dead_port();
    let dir = TempDir::new();
    let (crt, key) = self_signed(&dir);
    let server = format!(
        "server {{ listen 127.0.0.1:{{port}};
            location /missing-headers {{ proxy_pass http://{refusing}; }}
            location /dead {{ proxy_pass http://{dead}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}
            location /short {{ proxy_pass http://{backend}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; proxy_read_timeout 1s; }}
            location /plain {{ return 200 'not a websocket'; }}
        }}
        server {{ listen 127.0.0.1:{{tls_port}} ssl; ssl_certificate {c}; ssl_certificate_key {k};
            location /ws {{ proxy_pass http://{backend}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}
        }}",
        refusing = refusing.addr,
        c = crt.display(),
        k = key.display()
    );
    let n = tokio::task::spawn_blocking(move || nginx::start(&server))
        .await
        .unwrap();
    let base = format!("ws://127.0.0.1:{}", n.port);
    let tls_port = n.tls_port;
    let cases: Vec<(String, Options, &str)> = vec![
        (
            format!("{base}/missing-headers"),
            opts(),
            "400 from \"nginx",
        ),
        (
            format!("{base}/dead"),
            opts(),
            "502: the proxy could not reach its backend",
        ),
        (format!("{base}/plain"), opts(), "handshake answered 200"),
        (
            format!("wss://localhost:{tls_port}/ws"),
            opts(),
            "the server's certificate is not trusted",
        ),
        (
            format!("wss://localhost:{}/ws", n.port),
            opts(),
            "wss:// to a plain-HTTP port",
        ),
        (
            format!("ws://127.0.0.1:{tls_port}/ws"),
            opts(),
            "ws:// to an HTTPS port",
        ),
        (
            format!("{base}/short"),
            Options {
                idle: Some(Duration::from_secs(4)),
                ..opts()
            },
            "closed after 1.",
        ),
    ];
    for (url, o, want) in cases {
        let r = probe(&url, &o).await;
        assert!(!r.works, "{url}: {}", r.text());
        assert!(
            r.diagnosis.starts_with(want),
            "{url}: wanted \"{want}\", got:\n{}",
            r.text()
        );
    }
    let mut o = opts();
    o.insecure = true;
    let r = probe(&format!("wss://localhost:{tls_port}/ws"), &o).await;
    assert!(r.works, "{}", r.text());
}
