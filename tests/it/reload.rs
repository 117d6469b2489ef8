//! Reload: new configuration for new requests, open WebSockets untouched,
//! bad configurations refused, `worker_shutdown_timeout` honoured.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

/// A server on `ip` port 0: a reload to a configuration with the same
/// `listen` keeps the socket, so no test names a port.
fn conf(backend: std::net::SocketAddr, ip: &str, text: &str, extra_main: &str) -> String {
    format!(
        "error_log {{dir}}/error.log info;\n{extra_main}\nevents {{}}\nhttp {{ access_log off;
            server {{ listen {ip}:0;
                location /ws {{ proxy_pass http://{backend}; }}
                location /v {{ return 200 \"{text}\"; }} }} }}"
    )
}

#[tokio::test]
async fn reload_keeps_open_websockets_and_switches_configuration() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::start(&conf(backend, "127.0.0.1", "one", "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(
        bounded("echo", ws.next()).await.unwrap().unwrap(),
        Message::text("before")
    );

    proxy
        .reload(&conf(backend, "127.0.0.1", "two", ""))
        .unwrap();
    assert_eq!(get_response(proxy.addr(), "/v").await.body, "two");
    for i in 0..3 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(
            bounded("echo", ws.next()).await.unwrap().unwrap(),
            Message::text(format!("after {i}"))
        );
    }
}

#[tokio::test]
async fn reload_refuses_a_bad_configuration_and_keeps_serving() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::start(&conf(backend, "127.0.0.1", "one", "")).await;
    let err = proxy
        .reload("events {}\nhttp { server { listen 127.0.0.1:1 bogus; } }")
        .unwrap_err();
    assert!(err.contains("invalid parameter \"bogus\""), "{err}");
    assert_eq!(get_response(proxy.addr(), "/v").await.body, "one");
}

#[tokio::test]
async fn reload_binds_new_addresses_and_releases_old_ones() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::start(&conf(backend, "127.0.0.1", "one", "")).await;
    let old_addr = proxy.addr();
    proxy
        .reload(&conf(backend, "127.0.0.2", "two", ""))
        .unwrap();
    let now = proxy.handle.local_addrs();
    assert_eq!(now.len(), 1, "{now:?}");
    let new_addr = now[0].1;
    assert_eq!(new_addr.ip().to_string(), "127.0.0.2");
    assert_eq!(get_response(new_addr, "/v").await.body, "two");
    assert!(
        eventually(|| std::net::TcpStream::connect(old_addr).is_err()).await,
        "old listener still open"
    );
}

#[tokio::test]
async fn reload_with_worker_shutdown_timeout_closes_old_tunnels() {
    let (backend, _) = ws_echo().await;
    let main = "worker_shutdown_timeout 200ms;";
    let proxy = Proxy::start(&conf(backend, "127.0.0.1", "one", main)).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    proxy
        .reload(&conf(backend, "127.0.0.1", "two", main))
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("tunnel was not closed");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

#[tokio::test]
async fn reload_graceful_stop_waits_for_tunnels_until_the_timeout() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::start(&conf(
        backend,
        "127.0.0.1",
        "one",
        "worker_shutdown_timeout 500ms;",
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let start = std::time::Instant::now();
    // Bounded: a stop that ignores the timeout fails; only the lower bound
    // is timed, since load can only make the stop later.
    bounded("the graceful stop", proxy.handle.graceful_stop()).await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    let end = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

/// A tunnel opened under a configuration that a reload replaced (and that
/// nothing else uses any more) still closes on a final stop.
#[tokio::test]
async fn reload_stop_closes_tunnels_of_replaced_configurations() {
    let (backend, _) = ws_echo().await;
    let proxy = Proxy::start(&conf(backend, "127.0.0.1", "one", "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    proxy
        .reload(&conf(backend, "127.0.0.1", "two", ""))
        .unwrap();
    proxy
        .reload(&conf(backend, "127.0.0.1", "three", ""))
        .unwrap();
    proxy.handle.stop_now();
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("the tunnel outlived the stop");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}
