//! Reload: new configuration for new requests, open WebSockets untouched,
//! bad configurations refused, `worker_shutdown_timeout` honoured.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

fn conf(backend: std::net::SocketAddr, port: u16, text: &str, extra_main: &str) -> String {
    format!(
        "error_log {{dir}}/error.log info;\n{extra_main}\nevents {{}}\nhttp {{ access_log off;
            server {{ listen 127.0.0.1:{port};
                location /ws {{ proxy_pass http://{backend}; }}
                location /v {{ return 200 \"{text}\"; }} }} }}"
    )
}

#[tokio::test]
async fn reload_keeps_open_websockets_and_switches_configuration() {
    let (backend, _) = ws_echo().await;
    let port = free_port();
    let proxy = Proxy::start(&conf(backend, port, "one", "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    proxy.reload(&conf(backend, port, "two", "")).unwrap();
    assert_eq!(get_response(proxy.addr(), "/v").await.body, "two");
    for i in 0..3 {
        ws.send(Message::text(format!("after {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("after {i}"))
        );
    }
}

#[tokio::test]
async fn reload_refuses_a_bad_configuration_and_keeps_serving() {
    let (backend, _) = ws_echo().await;
    let port = free_port();
    let proxy = Proxy::start(&conf(backend, port, "one", "")).await;
    let err = proxy
        .reload("events {}\nhttp { server { listen 127.0.0.1:1 bogus; } }")
        .unwrap_err();
    assert!(err.contains("invalid parameter \"bogus\""), "{err}");
    assert_eq!(get_response(proxy.addr(), "/v").await.body, "one");
}

#[tokio::test]
async fn reload_binds_new_addresses_and_releases_old_ones() {
    let (backend, _) = ws_echo().await;
    let (p1, p2) = (free_port(), free_port());
    let proxy = Proxy::start(&conf(backend, p1, "one", "")).await;
    proxy.reload(&conf(backend, p2, "two", "")).unwrap();
    let new_addr: std::net::SocketAddr = format!("127.0.0.1:{p2}").parse().unwrap();
    assert_eq!(get_response(new_addr, "/v").await.body, "two");
    let old_addr: std::net::SocketAddr = format!("127.0.0.1:{p1}").parse().unwrap();
    assert!(
        eventually(|| std::net::TcpStream::connect(old_addr).is_err()).await,
        "old listener still open"
    );
}

#[tokio::test]
async fn reload_with_worker_shutdown_timeout_closes_old_tunnels() {
    let (backend, _) = ws_echo().await;
    let port = free_port();
    let main = "worker_shutdown_timeout 200ms;";
    let proxy = Proxy::start(&conf(backend, port, "one", main)).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    proxy.reload(&conf(backend, port, "two", main)).unwrap();
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
    let port = free_port();
    let proxy = Proxy::start(&conf(
        backend,
        port,
        "one",
        "worker_shutdown_timeout 500ms;",
    ))
    .await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    let start = std::time::Instant::now();
    proxy.handle.graceful_stop().await;
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
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
    let port = free_port();
    let proxy = Proxy::start(&conf(backend, port, "one", "")).await;
    let mut ws = ws_connect(proxy.addr(), "/ws").await.unwrap();
    proxy.reload(&conf(backend, port, "two", "")).unwrap();
    proxy.reload(&conf(backend, port, "three", "")).unwrap();
    proxy.handle.stop_now();
    let end = tokio::time::timeout(Duration::from_secs(3), ws.next())
        .await
        .expect("the tunnel outlived the stop");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}
