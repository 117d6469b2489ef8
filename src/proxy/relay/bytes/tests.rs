//! The byte relay's tests (and the frame-following mode's).

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

fn timeouts(secs: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(secs),
        client_send: Duration::from_secs(secs),
        upstream_send: Duration::from_secs(secs),
    }
}

#[tokio::test]
async fn relay_moves_bytes_both_ways_with_leftovers_first() {
    let (client, mut client_peer) = duplex(64);
    let (upstream, mut upstream_peer) = duplex(64);
    let relay = tokio::spawn(Relay::new(
        client,
        b"early".to_vec(),
        upstream,
        b"hello".to_vec(),
        timeouts(5),
        crate::signal::StopSignal::new().waiter(),
    ));
    let mut buf = [0u8; 5];
    upstream_peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"early");
    client_peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    client_peer.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    upstream_peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    // Half-close: client EOF reaches the backend, which can still answer.
    client_peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    upstream_peer.write_all(b"bye").await.unwrap();
    upstream_peer.shutdown().await.unwrap();
    assert_eq!(upstream_peer.read_to_end(&mut rest).await.unwrap(), 0);
    client_peer.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"bye");
    let out = relay.await.unwrap();
    assert!(matches!(out.end, End::Closed), "{:?}", out.end);
    assert_eq!(out.to_client, 8);
    assert_eq!(out.to_upstream, 9);
}

#[tokio::test]
async fn relay_handles_backpressure_without_losing_bytes() {
    // Tiny pipes force partial writes and spills.
    let (client, mut client_peer) = duplex(7);
    let (upstream, mut upstream_peer) = duplex(5);
    let relay = tokio::spawn(Relay::new(
        client,
        Vec::new(),
        upstream,
        Vec::new(),
        timeouts(5),
        crate::signal::StopSignal::new().waiter(),
    ));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        client_peer.write_all(&data).await.unwrap();
        client_peer.shutdown().await.unwrap();
        client_peer
    });
    let mut got = Vec::new();
    upstream_peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, expect);
    upstream_peer.shutdown().await.unwrap();
    drop(writer.await.unwrap());
    let out = relay.await.unwrap();
    assert_eq!(out.to_upstream, 100_000);
}

/// A relay whose backend side is a tiny pipe (it fills after 8 bytes),
/// with `upstream_send` as `proxy_send_timeout` and long other limits.
fn with_narrow_backend(
    upstream_send: Duration,
) -> (
    tokio::io::DuplexStream,
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<Outcome>,
) {
    let (client, client_peer) = duplex(1 << 16);
    let (upstream, upstream_peer) = duplex(8);
    let relay = tokio::spawn(Relay::new(
        client,
        Vec::new(),
        upstream,
        Vec::new(),
        Timeouts {
            upstream_send,
            ..timeouts(30)
        },
        crate::signal::StopSignal::new().waiter(),
    ));
    (client_peer, upstream_peer, relay)
}

/// A backend that stops reading is cut after `proxy_send_timeout`, not
/// after the (much longer) idle timeout.
#[tokio::test]
async fn relay_cuts_a_blocked_write_at_its_send_timeout() {
    let (mut client_peer, _upstream_peer, relay) = with_narrow_backend(Duration::from_millis(200));
    client_peer.write_all(&[7u8; 1000]).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .expect("blocked write outlived proxy_send_timeout")
        .unwrap();
    assert!(matches!(out.end, End::UpstreamSendTimeout), "{:?}", out.end);
}

/// A slow reader that keeps taking bytes is not a blocked write: the
/// send timeout restarts with each bit of progress.
#[tokio::test]
async fn relay_keeps_a_slow_but_steady_reader() {
    let (mut client_peer, mut upstream_peer, relay) =
        with_narrow_backend(Duration::from_millis(300));
    client_peer.write_all(&[7u8; 160]).await.unwrap();
    let mut got = 0;
    let mut buf = [0u8; 8];
    while got < 160 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        got += upstream_peer.read(&mut buf).await.unwrap();
    }
    assert!(!relay.is_finished(), "a steady reader was cut");
    client_peer.shutdown().await.unwrap();
    upstream_peer.shutdown().await.unwrap();
    let out = relay.await.unwrap();
    assert!(matches!(out.end, End::Closed), "{:?}", out.end);
    assert_eq!(out.to_upstream, 160);
}

/// Two ends of a loopback TCP connection.
async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = tokio::net::TcpStream::connect(l.local_addr().unwrap())
        .await
        .unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

/// A relay between two TCP connections (following frames with
/// `websocket`), spawned: the client's peer, the backend's peer, the relay.
async fn tcp_relay(
    websocket: Option<Options>,
) -> (
    tokio::net::TcpStream,
    tokio::net::TcpStream,
    tokio::task::JoinHandle<Outcome>,
) {
    let (client_peer, client) = tcp_pair().await;
    let (upstream, upstream_peer) = tcp_pair().await;
    (
        client_peer,
        upstream_peer,
        spawn_relay(client, upstream, websocket),
    )
}

/// Spawns a relay between `client` and `upstream` (30 s timeouts).
fn spawn_relay(
    client: tokio::net::TcpStream,
    upstream: tokio::net::TcpStream,
    websocket: Option<Options>,
) -> tokio::task::JoinHandle<Outcome> {
    use crate::net::{ClientIo, UpstreamIo};
    let mut relay = Relay::new(
        ClientIo::Tcp(client),
        Vec::new(),
        UpstreamIo::Tcp(upstream),
        Vec::new(),
        timeouts(30),
        crate::signal::StopSignal::new().waiter(),
    );
    if let Some(options) = websocket {
        relay = relay.with_websocket(options);
    }
    tokio::spawn(relay)
}

/// A client that stops reading while the backend floods: after
/// [`STALL`] the backend socket's receive buffer is held small, and
/// given back (as `rmem_max`) once the client reads again; every byte
/// still arrives in order.
#[tokio::test]
async fn relay_throttles_the_source_of_a_stalled_direction() {
    let (mut client_peer, client) = tcp_pair().await;
    let (upstream, mut upstream_peer) = tcp_pair().await;
    // The same socket as the relay's backend side, to watch its buffer.
    let watch = socket2::SockRef::from(&upstream).try_clone().unwrap();
    let before = watch.recv_buffer_size().unwrap();
    let relay = spawn_relay(client, upstream, None);
    let total: usize = 64 * 1024 * 1024;
    let flood = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..65536u32).map(|i| (i % 253) as u8).collect();
        let mut sent = 0;
        while sent < total {
            upstream_peer.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        upstream_peer.shutdown().await.unwrap();
        upstream_peer
    });
    // The client reads nothing for three stall periods.
    tokio::time::sleep(STALL * 3).await;
    let held = watch.recv_buffer_size().unwrap();
    assert!(
        held <= 2 * THROTTLED_RCVBUF && held < before.max(2 * THROTTLED_RCVBUF + 1),
        "receive buffer {held} while stalled (was {before})"
    );
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let mut expect_byte = 0usize;
    loop {
        let n = client_peer.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            assert_eq!(b as usize, (expect_byte % 65536) % 253, "byte {got}");
            expect_byte += 1;
        }
        got += n;
        if got == total {
            break;
        }
    }
    assert_eq!(got, total);
    assert!(
        watch.recv_buffer_size().unwrap() > 2 * THROTTLED_RCVBUF,
        "the buffer was not given back"
    );
    drop(flood.await.unwrap());
    client_peer.shutdown().await.unwrap();
    let out = relay.await.unwrap();
    assert_eq!(out.to_client as usize, total);
}

/// Over real TCP sockets, a large transfer switches to splice(2);
/// every byte must arrive, in order, in both directions.
#[tokio::test]
async fn relay_splices_bulk_transfers_exactly() {
    let (mut client_peer, mut upstream_peer, relay) = tcp_relay(None).await;
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let expect = data.clone();
    // The backend echoes everything back.
    let echo = tokio::spawn(async move {
        let (mut r, mut w) = upstream_peer.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let (mut r, mut w) = client_peer.split();
    let writer = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut got = Vec::new();
    let reader = async {
        r.read_to_end(&mut got).await.unwrap();
    };
    tokio::join!(writer, reader);
    assert!(got == expect, "spliced bytes differ");
    assert!(
        SPLICED.with(std::cell::Cell::get) > 1_000_000,
        "the splice path was not taken"
    );
    echo.await.unwrap();
    let out = relay.await.unwrap();
    assert!(matches!(out.end, End::Closed), "{:?}", out.end);
    assert_eq!(out.to_upstream, 20_000_000);
    assert_eq!(out.to_client, 20_000_000);
}

/// A masked binary frame of `len` payload bytes (mask `1 2 3 4`).
fn masked_frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0x82u8];
    match len {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[1, 2, 3, 4]);
    f.extend(std::iter::repeat_n(fill, len));
    f
}

/// Following frames, long payloads are still spliced (headers peeked
/// at in the socket), short frames between them read and scanned, and
/// every byte arrives in order with every message counted.
#[tokio::test]
async fn frame_relay_splices_long_frames_and_counts_every_message() {
    let (mut client_peer, mut upstream_peer, relay) = tcp_relay(Some(Options::default())).await;
    let mut data = Vec::new();
    let mut frames = 0;
    // Per group of five, the first read takes the short frame and most
    // of the next; the rest of that one and the three after it are
    // spliced (about 420 KB of 690 KB).
    for i in 0..150usize {
        let len = match i % 5 {
            0 => 10,
            1 | 2 => 300_000,
            3 => 70_000,
            _ => 17_000 + i,
        };
        data.extend(masked_frame(len, i as u8));
        frames += 1;
    }
    let expect = data.clone();
    let upstream_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        upstream_peer.shutdown().await.unwrap();
        got
    });
    let before = SPLICED.with(std::cell::Cell::get);
    client_peer.write_all(&data).await.unwrap();
    client_peer.shutdown().await.unwrap();
    let got = upstream_reader.await.unwrap();
    assert!(got == expect, "frames differ after the relay");
    let mut rest = Vec::new();
    client_peer.read_to_end(&mut rest).await.unwrap();
    let out = relay.await.unwrap();
    assert!(
        SPLICED.with(std::cell::Cell::get) - before > 8_000_000,
        "long frames were not spliced"
    );
    assert_eq!(out.websocket.unwrap().messages_in, frames);
    assert_eq!(out.to_upstream, expect.len() as u64);
}

/// Following frames, spliced frames gather in the pipe while more come;
/// when the source pauses between two frames what was gathered goes out
/// at once. Each burst (a long frame, then five that are spliced after a
/// peek at their heads) is written only when the backend has the one
/// before, so bytes left waiting in the pipe would stall the test.
#[tokio::test]
async fn frame_relay_sends_what_it_gathered_when_the_source_pauses() {
    let (mut client_peer, mut upstream_peer, relay) = tcp_relay(Some(Options::default())).await;
    for burst in 0..10u8 {
        let mut data = masked_frame(400_000, burst);
        for i in 0..5 {
            data.extend(masked_frame(20_000 + i, burst ^ i as u8));
        }
        let mut got = vec![0u8; data.len()];
        let (w, r) = tokio::join!(
            client_peer.write_all(&data),
            tokio::time::timeout(Duration::from_secs(10), upstream_peer.read_exact(&mut got))
        );
        w.unwrap();
        r.expect("the end of a burst stayed in the relay").unwrap();
        assert!(got == data, "bytes differ after the relay");
    }
    assert!(
        SPLICED.with(std::cell::Cell::get) > 0,
        "nothing was spliced"
    );
    client_peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    upstream_peer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    upstream_peer.shutdown().await.unwrap();
    let out = relay.await.unwrap();
    assert_eq!(out.websocket.unwrap().messages_in, 60);
}

#[tokio::test(start_paused = true)]
async fn relay_cuts_idle_tunnels_and_activity_extends_them() {
    let (client, mut client_peer) = duplex(64);
    let (upstream, mut upstream_peer) = duplex(64);
    let relay = tokio::spawn(Relay::new(
        client,
        Vec::new(),
        upstream,
        Vec::new(),
        timeouts(10),
        crate::signal::StopSignal::new().waiter(),
    ));
    tokio::time::sleep(Duration::from_secs(6)).await;
    client_peer.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    upstream_peer.read_exact(&mut b).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !relay.is_finished(),
        "activity in one direction keeps the tunnel"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = relay.await.unwrap();
    assert!(matches!(out.end, End::IdleTimeout), "{:?}", out.end);
}

#[tokio::test]
async fn relay_ends_on_shutdown_signal() {
    let (client, _client_peer) = duplex(64);
    let (upstream, _upstream_peer) = duplex(64);
    let signal = crate::signal::StopSignal::new();
    let relay = tokio::spawn(Relay::new(
        client,
        Vec::new(),
        upstream,
        Vec::new(),
        timeouts(60),
        signal.waiter(),
    ));
    signal.trigger();
    let out = relay.await.unwrap();
    assert!(matches!(out.end, End::Shutdown));
}

#[test]
fn spill_buffers_are_reused_up_to_the_pool_size() {
    let first = spill_from(b"abc");
    let at = first.as_ptr();
    spill_release(first);
    let again = spill_from(b"xy");
    assert_eq!(
        (again.as_ptr(), &again[..]),
        (at, &b"xy"[..]),
        "the pooled buffer, cleared"
    );
    spill_release(again);
    // A buffer grown past twice the scratch size is not kept.
    spill_release(Vec::with_capacity(3 * SCRATCH_SIZE));
    assert_eq!(SPILLS.with(|p| p.borrow().len()), 1);
    let many: Vec<Vec<u8>> = (0..SPILL_POOL_MAX + 2).map(|_| spill_from(b"z")).collect();
    for v in many {
        spill_release(v);
    }
    assert_eq!(SPILLS.with(|p| p.borrow().len()), SPILL_POOL_MAX);
}

#[test]
fn splicing_stops_when_less_than_its_minimum_is_left() {
    let mut t = Tracker::default();
    assert!(t.short(), "nothing left: read the next header");
    let frame = masked_frame(20_000, 0);
    assert_eq!(
        t.splice_header(&frame[..HEADER_READ], SPLICE_MIN_PAYLOAD),
        Peeked::Splice
    );
    // Header (8 bytes) and payload are spliced together.
    assert_eq!(t.payload_left(), 20_008);
    t.skip(20_008 - SPLICE_MIN_PAYLOAD);
    assert!(!t.short(), "exactly the minimum left: still spliced");
    t.skip(1);
    assert!(t.short());
}
