//! The byte relay's tests (and the frame-following mode's).

use super::*;
use crate::proxy::relay::frames::Peeked;
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
    let relay = spawn_between(
        client,
        upstream,
        timeouts(5),
        crate::signal::StopSignal::new().waiter(),
        None,
    );
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
    let relay = spawn_between(
        client,
        upstream,
        Timeouts {
            upstream_send,
            ..timeouts(30)
        },
        crate::signal::StopSignal::new().waiter(),
        None,
    );
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
    spawn_between(
        ClientIo::Tcp(client),
        UpstreamIo::Tcp(upstream),
        timeouts(30),
        crate::signal::StopSignal::new().waiter(),
        websocket,
    )
}

/// Spawns a relay between `client` and `upstream` (no leftovers),
/// following frames with `websocket`.
fn spawn_between<C, U>(
    client: C,
    upstream: U,
    limits: Timeouts,
    stop: crate::signal::StopWaiter,
    websocket: Option<Options>,
) -> tokio::task::JoinHandle<Outcome>
where
    C: Transport + Send + 'static,
    U: Transport + Send + 'static,
{
    let mut relay = Relay::new(client, Vec::new(), upstream, Vec::new(), limits, stop);
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
    // A pause inside a long payload, after part of it was spliced: what
    // came before the pause arrives before the rest is sent.
    let frame = masked_frame(1_000_000, 99);
    let spliced = SPLICED.with(std::cell::Cell::get);
    for half in [&frame[..600_000], &frame[600_000..]] {
        client_peer.write_all(half).await.unwrap();
        let mut got = vec![0u8; half.len()];
        tokio::time::timeout(Duration::from_secs(10), upstream_peer.read_exact(&mut got))
            .await
            .expect("half a frame stayed in the relay")
            .unwrap();
        assert!(got == half, "bytes differ after the relay");
        assert!(
            SPLICED.with(std::cell::Cell::get) > spliced,
            "the first part was not spliced"
        );
        // Paused: the relay waits for the socket, it does not poll it.
        let calls = SPLICE_CALLS.with(std::cell::Cell::get);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tried = SPLICE_CALLS.with(std::cell::Cell::get) - calls;
        assert!(tried < 10, "{tried} splices tried in a 100 ms pause");
    }
    // A close frame right after spliced frames is read, not spliced: its
    // code is seen.
    let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];
    let mut tail = masked_frame(400_000, 2);
    tail.extend(masked_frame(20_000, 3));
    tail.extend_from_slice(&close);
    let mut rest = Vec::new();
    let (w, r) = tokio::join!(
        async {
            client_peer.write_all(&tail).await?;
            client_peer.shutdown().await
        },
        tokio::time::timeout(
            Duration::from_secs(10),
            upstream_peer.read_to_end(&mut rest)
        )
    );
    w.unwrap();
    r.expect("no end of stream").unwrap();
    assert!(rest == tail, "bytes differ after the relay");
    upstream_peer.shutdown().await.unwrap();
    let out = relay.await.unwrap();
    let summary = out.websocket.unwrap();
    assert_eq!(summary.messages_in, 63);
    assert_eq!(summary.close_code, Some(1000));
    assert_eq!(out.closed_by, By::Client, "the client ended first");
}

/// A stream that ends inside a long frame: the part of it that came,
/// gathered in the pipe, is forwarded before the end of stream.
#[tokio::test]
async fn a_frame_cut_by_the_end_of_stream_is_forwarded_as_it_came() {
    let (mut client_peer, mut upstream_peer, relay) = tcp_relay(Some(Options::default())).await;
    let mut data: Vec<u8> = (0..3).flat_map(|i| masked_frame(400_000, i)).collect();
    let cut = masked_frame(1_000_000, 9);
    data.extend_from_slice(&cut[..700_000]);
    let mut got = Vec::new();
    let (w, r) = tokio::join!(
        async {
            client_peer.write_all(&data).await?;
            client_peer.shutdown().await
        },
        tokio::time::timeout(Duration::from_secs(10), upstream_peer.read_to_end(&mut got))
    );
    w.unwrap();
    r.expect("no end of stream").unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ after the relay");
    assert!(
        SPLICED.with(std::cell::Cell::get) > 0,
        "nothing was spliced"
    );
    upstream_peer.shutdown().await.unwrap();
    relay.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn relay_cuts_idle_tunnels_and_activity_extends_them() {
    let (client, mut client_peer) = duplex(64);
    let (upstream, mut upstream_peer) = duplex(64);
    let relay = spawn_between(
        client,
        upstream,
        timeouts(10),
        crate::signal::StopSignal::new().waiter(),
        None,
    );
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
    let relay = spawn_between(client, upstream, timeouts(60), signal.waiter(), None);
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
    // A buffer grown past twice the scratch size is not kept; one of
    // exactly twice is.
    spill_release(Vec::with_capacity(3 * SCRATCH_SIZE));
    assert_eq!(SPILLS.with(|p| p.borrow().len()), 1);
    spill_release(Vec::with_capacity(2 * SCRATCH_SIZE));
    assert_eq!(SPILLS.with(|p| p.borrow().len()), 2);
    SPILLS.with(|p| p.borrow_mut().pop());
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

/// Splits `bytes` into whole frames (header and payload as on the wire);
/// `None` if it ends inside one.
fn split_frames(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let b1 = *bytes.get(1)?;
        let (len, mut head) = match b1 & 0x7f {
            126 => (
                u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes.get(2..10)?.try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        if b1 & 0x80 != 0 {
            head += 4;
        }
        let frame = bytes.get(..head + len)?;
        frames.push(frame.to_vec());
        bytes = &bytes[head + len..];
    }
    Some(frames)
}

/// Following frames with pings every 100 ms, a client frame that comes
/// in pieces (its header cut after one byte and again inside, a pause of
/// 250 ms inside its payload): the backend gets it intact, and the
/// relay's pings only between frames, never inside one.
#[tokio::test]
async fn pings_wait_for_a_frame_cut_across_reads() {
    let options = Options {
        ping: Some(super::super::websocket::Ping {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(20),
        }),
        ..Options::default()
    };
    let (mut client_peer, mut upstream_peer, _relay) = tcp_relay(Some(options)).await;
    let frame = masked_frame(300, 7);
    for (piece, pause) in [(0..1, 30), (1..5, 30), (5..158, 250), (158..frame.len(), 0)] {
        client_peer.write_all(&frame[piece]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    // The backend's side: the frame, and pings (masked, opcode 9) around it.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let frames = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), upstream_peer.read(&mut buf))
            .await
            .expect("the frame did not arrive")
            .unwrap();
        assert!(n > 0, "the relay closed");
        got.extend_from_slice(&buf[..n]);
        if let Some(frames) = split_frames(&got)
            && frames.iter().any(|f| f[0] == 0x82)
            && frames.iter().any(|f| f[0] == 0x89)
        {
            break frames;
        }
    };
    let data: Vec<&Vec<u8>> = frames.iter().filter(|f| f[0] != 0x89).collect();
    assert_eq!(data.len(), 1, "frames other than pings: {}", data.len());
    assert!(*data[0] == frame, "the frame changed on its way");
    assert!(
        frames.iter().any(|f| f[0] == 0x89 && f[1] & 0x80 != 0),
        "the relay's pings to the backend are masked"
    );
}

/// Small messages go through the relay's buffer: no pipe, nothing
/// spliced (splicing starts only when a read fills the whole buffer).
#[tokio::test]
async fn small_messages_are_not_spliced() {
    let (mut client_peer, mut upstream_peer, _relay) = tcp_relay(None).await;
    let before = SPLICED.with(std::cell::Cell::get);
    for i in 0..50u8 {
        let message = vec![i; 200];
        client_peer.write_all(&message).await.unwrap();
        let mut got = vec![0u8; 200];
        tokio::time::timeout(Duration::from_secs(10), upstream_peer.read_exact(&mut got))
            .await
            .expect("a message did not arrive")
            .unwrap();
        assert_eq!(got, message);
    }
    assert_eq!(SPLICED.with(std::cell::Cell::get), before);
}

/// A client that stops reading is cut after `send_timeout`, not after
/// the (much longer) idle timeout.
#[tokio::test]
async fn relay_cuts_a_blocked_write_to_the_client_at_its_send_timeout() {
    let (client, _client_peer) = duplex(8);
    let (upstream, mut upstream_peer) = duplex(1 << 16);
    let relay = spawn_between(
        client,
        upstream,
        Timeouts {
            client_send: Duration::from_millis(200),
            ..timeouts(30)
        },
        crate::signal::StopSignal::new().waiter(),
        None,
    );
    upstream_peer.write_all(&[7u8; 1000]).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .expect("blocked write outlived send_timeout")
        .unwrap();
    assert!(matches!(out.end, End::ClientSendTimeout), "{:?}", out.end);
    assert_eq!(out.closed_by, By::Proxy);
}

/// A side whose connection fails is who ended the tunnel: writing to a
/// side that is gone is that side's error.
#[tokio::test]
async fn a_failed_side_is_who_closed() {
    for client_fails in [true, false] {
        let (client, client_peer) = duplex(1 << 16);
        let (upstream, upstream_peer) = duplex(1 << 16);
        let relay = spawn_between(
            client,
            upstream,
            timeouts(30),
            crate::signal::StopSignal::new().waiter(),
            None,
        );
        // The other side keeps its connection and sends.
        let (mut live, gone) = if client_fails {
            (upstream_peer, client_peer)
        } else {
            (client_peer, upstream_peer)
        };
        drop(gone);
        live.write_all(b"to a side that is gone").await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .expect("the relay did not end")
            .unwrap();
        if client_fails {
            assert!(matches!(out.end, End::ClientError(_)), "{:?}", out.end);
            assert_eq!(out.closed_by, By::Client);
        } else {
            assert!(matches!(out.end, End::UpstreamError(_)), "{:?}", out.end);
            assert_eq!(out.closed_by, By::Backend);
        }
        drop(live);
    }
}

/// Following frames, a stop sends close 1001 to both sides (unmasked to
/// the client, masked to the backend) instead of cutting the connections.
#[tokio::test]
async fn a_stop_sends_going_away_to_both_sides() {
    let (client, mut client_peer) = duplex(1 << 16);
    let (upstream, mut upstream_peer) = duplex(1 << 16);
    let signal = crate::signal::StopSignal::new();
    let relay = spawn_between(
        client,
        upstream,
        timeouts(30),
        signal.waiter(),
        Some(Options::default()),
    );
    signal.trigger();
    let mut to_client = [0u8; 4];
    let mut to_backend = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(5), async {
        client_peer.read_exact(&mut to_client).await.unwrap();
        upstream_peer.read_exact(&mut to_backend).await.unwrap();
    })
    .await
    .expect("no close frames");
    assert_eq!(to_client, [0x88, 0x02, 0x03, 0xE9]);
    assert_eq!(to_backend[..2], [0x88, 0x82]);
    let mask = &to_backend[2..6];
    assert_eq!(
        [to_backend[6] ^ mask[0], to_backend[7] ^ mask[1]],
        [0x03, 0xE9]
    );
    client_peer.shutdown().await.unwrap();
    upstream_peer.shutdown().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay did not end")
        .unwrap();
    assert_eq!(out.websocket.unwrap().close_code, Some(1001));
}

/// A frame over `websocket_max_frame_size`: the sender gets 1009 and the
/// other side 1001, both are shut down at once (not at the end of the
/// close grace), and the relay reads both to their ends, through the
/// close replies, before it ends.
#[tokio::test]
async fn a_broken_limit_shuts_both_sides_and_reads_them_to_their_ends() {
    let (client, mut client_peer) = duplex(1 << 16);
    let (upstream, mut upstream_peer) = duplex(1 << 16);
    let options = Options {
        client_limits: super::super::frames::Limits {
            max_frame: std::num::NonZeroU64::new(100),
            ..Default::default()
        },
        ..Options::default()
    };
    let relay = spawn_between(
        client,
        upstream,
        timeouts(30),
        crate::signal::StopSignal::new().waiter(),
        Some(options),
    );
    client_peer.write_all(&masked_frame(200, 1)).await.unwrap();
    // Each side's close frame, then its end of stream, well within the
    // 2 s close grace.
    let (to_client, to_backend) = tokio::time::timeout(Duration::from_secs(1), async {
        let mut c = Vec::new();
        let mut b = Vec::new();
        client_peer.read_to_end(&mut c).await.unwrap();
        upstream_peer.read_to_end(&mut b).await.unwrap();
        (c, b)
    })
    .await
    .expect("the sides were not shut down");
    assert_eq!(to_client, [0x88, 0x02, 0x03, 0xF1]);
    assert_eq!(to_backend.len(), 8, "{to_backend:?}");
    let mask = &to_backend[2..6];
    assert_eq!(
        [to_backend[6] ^ mask[0], to_backend[7] ^ mask[1]],
        [0x03, 0xE9]
    );
    // Their replies are read and dropped; the relay waits for their ends.
    client_peer
        .write_all(&[0x88, 0x80, 1, 2, 3, 4])
        .await
        .unwrap();
    upstream_peer.write_all(&[0x88, 0x00]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!relay.is_finished(), "the relay ended before the sides did");
    // The backend ends: the client (not dead, only closing) is still
    // waited for.
    upstream_peer.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !relay.is_finished(),
        "the relay did not wait for the client"
    );
    client_peer.shutdown().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .expect("the relay did not end")
        .unwrap();
    assert_eq!(out.websocket.unwrap().close_code, Some(1009));
}

/// Two tunnels on one thread share its read buffer: a frame head that one
/// of them holds back (cut by the end of a read) survives the other's
/// reads in between.
#[tokio::test]
async fn a_held_frame_head_survives_another_tunnels_reads() {
    let (mut a_client, mut a_backend, _a) = tcp_relay(Some(Options::default())).await;
    let (mut b_client, mut b_backend, _b) = tcp_relay(Some(Options::default())).await;
    let frame = masked_frame(300, 5);
    a_client.write_all(&frame[..3]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The other tunnel reads (into the same buffer) and forwards.
    let other = masked_frame(2000, 0xEE);
    b_client.write_all(&other).await.unwrap();
    let mut got = vec![0u8; other.len()];
    tokio::time::timeout(Duration::from_secs(10), b_backend.read_exact(&mut got))
        .await
        .expect("the other tunnel's frame did not arrive")
        .unwrap();
    assert!(got == other);
    a_client.write_all(&frame[3..]).await.unwrap();
    let mut got = vec![0u8; frame.len()];
    tokio::time::timeout(Duration::from_secs(10), a_backend.read_exact(&mut got))
        .await
        .expect("the held frame did not arrive")
        .unwrap();
    assert!(got == frame, "the held head changed");
}

/// An idle WebSocket with pings every 100 ms: pings go out to both
/// sides with no traffic to wake the relay, unmasked to the client and
/// masked to the backend.
#[tokio::test]
async fn pings_go_out_on_an_idle_websocket() {
    let options = Options {
        ping: Some(super::super::websocket::Ping {
            interval: Duration::from_millis(100),
            timeout: Duration::from_secs(20),
        }),
        ..Options::default()
    };
    let (client, mut client_peer) = duplex(1 << 16);
    let (upstream, mut upstream_peer) = duplex(1 << 16);
    let _relay = spawn_between(
        client,
        upstream,
        timeouts(30),
        crate::signal::StopSignal::new().waiter(),
        Some(options),
    );
    let mut to_client = [0u8; 2];
    let mut to_backend = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), async {
        client_peer.read_exact(&mut to_client).await.unwrap();
        upstream_peer.read_exact(&mut to_backend).await.unwrap();
    })
    .await
    .expect("no ping on an idle WebSocket within 2 s");
    assert_eq!(to_client[0], 0x89);
    assert_eq!(to_client[1] & 0x80, 0, "a ping to the client is not masked");
    assert_eq!(to_backend[0], 0x89);
    assert_eq!(
        to_backend[1] & 0x80,
        0x80,
        "a ping to the backend is masked"
    );
}

mod tls;
