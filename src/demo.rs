//! `switchyard demo`: the proxy in front of a built-in chat backend, with a
//! chat page, so a newcomer sees WebSockets flow in a browser.
//!
//! Nothing here is special-cased in the proxy: the demo writes an ordinary
//! nginx configuration (a static `location /` and a `location /ws/` with a
//! bare `proxy_pass`, relying on the WebSocket-first default) and serves it
//! with the same code as `switchyard -c`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::server::{self, Handle};

/// The chat page.
pub const PAGE: &str = include_str!("demo/index.html");

/// Starts the demo backend on `127.0.0.1:0`: `/ws/chat` broadcasts every
/// message to every connected client, `/ws/echo` echoes. Returns its
/// address.
pub async fn start_backend() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, _) = broadcast::channel::<Message>(1024);
    let tx = Arc::new(tx);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                #[allow(clippy::result_large_err)] // the callback type is tungstenite's
                let callback = |req: &Request, resp: Response| {
                    path = req.uri().path().to_string();
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let (mut sink, mut source) = ws.split();
                if path.ends_with("/echo") {
                    while let Some(Ok(msg)) = source.next().await {
                        if msg.is_close() {
                            let _ = sink.send(msg).await;
                            return;
                        }
                        if (msg.is_text() || msg.is_binary()) && sink.send(msg).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                let mut rx = tx.subscribe();
                loop {
                    tokio::select! {
                        incoming = source.next() => match incoming {
                            Some(Ok(msg)) if msg.is_text() || msg.is_binary() => { let _ = tx.send(msg); }
                            Some(Ok(msg)) if msg.is_close() => { let _ = sink.send(msg).await; return; }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        outgoing = rx.recv() => match outgoing {
                            Ok(msg) => if sink.send(msg).await.is_err() { return },
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return,
                        },
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// The demo's configuration: static page and a WebSocket location.
pub fn config_text(listen: &str, root: &std::path::Path, backend: SocketAddr) -> String {
    format!(
        r#"daemon off;
error_log stderr notice;
pid {root}/switchyard.pid;
events {{ worker_connections 1024; }}
http {{
    access_log /dev/stdout;
    server {{
        listen {listen};
        location / {{
            root {root};
            index index.html;
        }}
        # No Upgrade/Connection lines and no proxy_http_version 1.1:
        # WebSocket handshakes are upgraded by default.
        location /ws/ {{
            proxy_pass http://{backend};
            proxy_read_timeout 3600s;
            # Our own pings keep idle chats and find dead peers; frames
            # followed, so the status page shows close codes.
            websocket_ping_interval 30s;
        }}
        # The live status page and the metrics, from this machine only.
        location = /status {{ status_page; allow 127.0.0.1; allow ::1; deny all; }}
        location = /metrics {{ metrics; allow 127.0.0.1; allow ::1; deny all; }}
    }}
}}
"#,
        root = root.display()
    )
}

/// Runs the demo until Ctrl-C.
pub fn main(args: &[String]) -> ExitCode {
    let mut listen = "127.0.0.1:8080".to_string();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--listen" | "-l" => {
                i += 1;
                match args.get(i) {
                    Some(v) => listen = v.clone(),
                    None => {
                        eprintln!(
                            "switchyard demo: --listen needs an address, e.g. 127.0.0.1:8080"
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            "-h" | "--help" => {
                println!("usage: switchyard demo [--listen ADDR]   (default 127.0.0.1:8080)");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("switchyard demo: unknown argument \"{other}\"");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard demo: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        // Installed before anything listens: a Ctrl-C (or the SIGINT that CI
        // sends once the page answers) must stop the demo cleanly, never
        // meet the default action.
        let mut interrupt =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("switchyard demo: cannot install the Ctrl-C handler: {e}");
                    return ExitCode::from(1);
                }
            };
        let dir = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join("index.html"), PAGE))
        {
            eprintln!(
                "switchyard demo: cannot write the chat page to {}: {e}",
                dir.display()
            );
            return ExitCode::from(1);
        }
        let backend = match start_backend().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("switchyard demo: cannot start the chat backend: {e}");
                return ExitCode::from(1);
            }
        };
        let config = match crate::config::load_str(&config_text(&listen, &dir, backend), &dir) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("switchyard demo: {e}");
                return ExitCode::from(1);
            }
        };
        let bound = match server::bind_all(&config) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("switchyard demo: {e} (try --listen 127.0.0.1:8081)");
                return ExitCode::from(1);
            }
        };
        let handle = match Handle::start(config, bound, None) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("switchyard demo: {e}");
                return ExitCode::from(1);
            }
        };
        let addr = handle.local_addrs().first().map(|(_, a)| *a);
        println!(
            "Switchyard demo (pid {}): proxy on http://{}/ , chat backend on {backend}",
            std::process::id(),
            addr.map_or(listen.clone(), |a| a.to_string())
        );
        let shown = addr.map_or(listen, |a| a.to_string());
        println!("Open http://{shown}/ in two browser windows and chat; Ctrl-C stops.");
        println!("Live status: http://{shown}/status   metrics: http://{shown}/metrics");
        interrupt.recv().await;
        handle.stop_now();
        let _ = std::fs::remove_dir_all(&dir);
        ExitCode::SUCCESS
    })
}
