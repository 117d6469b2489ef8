//! The byte relay: the hot path of the product. It is frame-transparent
//! and built so an idle tunnel costs as little as possible:
//!
//! * **No buffer is held while idle.** Each read borrows the worker
//!   thread's scratch buffer for the duration of one `poll`, and writes it
//!   straight to the other socket. `tokio`'s `poll_read` returns `Pending`
//!   without a syscall when the socket is not readable, so waiting costs
//!   nothing but the registration.
//! * **One read and one write per message**, no copy in between: the
//!   scratch buffer is the write source. Only when the destination cannot
//!   take everything (backpressure) are the remaining bytes copied into a
//!   spill buffer from a per-thread pool, and the source is not read again
//!   until that spill is flushed. That keeps memory bounded at one spill
//!   per direction.
//! * **No extra `read` after a short read**: tokio clears readiness when a
//!   read returns less than asked (edge-triggered epoll), so the next poll
//!   waits for a new edge instead of issuing a read that would return
//!   `EAGAIN`.
//! * **No per-message timer work.** The idle deadline is checked lazily:
//!   activity only records `Instant::now()`; the single timer is re-armed
//!   when it fires early (nginx's lazy timer idea).
//!

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::ReadBuf;
use tokio::time::Sleep;

use super::frames::Tracker;
use super::websocket::{CloseOrder, Options, Reason, Timer, Ws};
use super::{By, End, Outcome, Peer, Timeouts, Transport};
use crate::signal::StopWaiter;
use crate::stats::TunnelProgress;

mod splice;
use splice::Pipe;
#[cfg(test)]
use splice::{SPLICE_CALLS, SPLICED};

/// Size of the per-thread scratch buffer each read goes through: 256 KiB
/// lets a bulk transfer move a socket buffer's worth per syscall pair.
pub const SCRATCH_SIZE: usize = 256 * 1024;

/// Spill buffers kept per thread for reuse (each at most `SCRATCH_SIZE`):
/// few, so that the memory of many stalled tunnels is given back when they
/// close.
const SPILL_POOL_MAX: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH_SIZE].into_boxed_slice());
    static SPILLS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn spill_from(bytes: &[u8]) -> Vec<u8> {
    let mut v = SPILLS
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(SCRATCH_SIZE));
    v.clear();
    v.extend_from_slice(bytes);
    v
}

fn spill_release(mut v: Vec<u8>) {
    if v.capacity() > SCRATCH_SIZE * 2 {
        return;
    }
    v.clear();
    SPILLS.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < SPILL_POOL_MAX {
            pool.push(v);
        }
    });
}

/// `Timeouts` in milliseconds: 12 bytes per tunnel instead of 48.
#[derive(Clone, Copy, Debug)]
struct Limits {
    idle_ms: u32,
    client_ms: u32,
    upstream_ms: u32,
}

impl Limits {
    fn ms(d: Duration) -> u32 {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
    }

    fn d(ms: u32) -> Duration {
        Duration::from_millis(ms as u64)
    }
}

impl From<Timeouts> for Limits {
    fn from(t: Timeouts) -> Limits {
        Limits {
            idle_ms: Self::ms(t.idle),
            client_ms: Self::ms(t.client_send),
            upstream_ms: Self::ms(t.upstream_send),
        }
    }
}

/// One direction of the tunnel. Idle, it is two words: everything about
/// backpressure lives behind one pointer that exists only while bytes wait.
#[derive(Debug, Default)]
struct Half {
    /// Bytes read but not yet written (backpressure, or leftovers from the
    /// handshake).
    spill: Option<Box<Spill>>,
    /// The splice pipe of a bulk transfer in progress.
    pipe: Option<Box<Pipe>>,
    /// Bytes written to the destination.
    written: u64,
    /// The source reached end-of-stream.
    eof: bool,
    /// End-of-stream was propagated to the destination.
    done: bool,
    /// Bytes went into a destination that buffers writes (TLS) and have
    /// not been flushed yet.
    unflushed: bool,
    /// The source's receive buffer is held small while the destination is
    /// blocked (see [`THROTTLED_RCVBUF`]).
    throttled: bool,
    /// The relay closes the WebSocket: what is spilled goes out, then the
    /// destination is shut down and the source read to its end unseen.
    closing: bool,
    /// While closing, the source is gone: it is not waited for.
    src_dead: bool,
}

/// Data frames at least this long continue with splice(2) when a tunnel
/// follows frames: the payload moves unseen, up to the next header, which
/// is read with a read of [`HEADER_READ`] bytes; a frame shorter than this
/// ends the splicing.
const SPLICE_MIN_PAYLOAD: u64 = 16 * 1024;

impl Tracker {
    /// The current frame's payload is too short to splice.
    fn short(&self) -> bool {
        self.payload_left() < SPLICE_MIN_PAYLOAD
    }
}

/// The read that takes the header after a spliced payload: the longest
/// frame header.
const HEADER_READ: usize = 14;

/// Receive buffer of a source socket whose destination has taken nothing
/// for [`STALL`]. A client that stops reading would otherwise let the
/// kernel queue, on the backend socket, as much as autotuning grew its
/// buffer to while the bytes flowed (megabytes): with this, a stalled
/// direction holds about what nginx's does. When the destination takes
/// bytes again the buffer is set to `net.core.rmem_max`: autotuning stays
/// off for that socket, so on a host with a small `rmem_max` a tunnel that
/// once stalled is slower afterwards. Destinations that are only slow (they
/// take some bytes within each `STALL`) are never throttled.
const THROTTLED_RCVBUF: usize = 64 * 1024;

/// How long a destination must take nothing before its source is
/// throttled.
const STALL: Duration = Duration::from_secs(1);

/// `net.core.rmem_max`, the receive buffer a throttled socket gets back.
fn rmem_max() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4 * 1024 * 1024)
    })
}

/// Bytes waiting for a blocked destination.
#[derive(Debug)]
struct Spill {
    buf: Vec<u8>,
    pos: usize,
    /// When the destination stopped taking bytes (`*send_timeout`).
    since: Instant,
}

/// Which side an I/O error came from.
enum Side {
    Src(io::Error),
    Dst(io::Error),
    /// A frame broke a WebSocket limit: nothing more is forwarded, the
    /// relay must close.
    Stop,
}

impl Side {
    /// How a failure of the direction that reads the client
    /// (`from_client`) or the backend ends the relay; `None` for
    /// [`Side::Stop`], which is a close under way rather than a failure.
    fn end(self, from_client: bool) -> Option<End> {
        match (self, from_client) {
            (Side::Stop, _) => None,
            (Side::Src(e), true) | (Side::Dst(e), false) => Some(End::ClientError(e)),
            (Side::Src(e), false) | (Side::Dst(e), true) => Some(End::UpstreamError(e)),
        }
    }
}

impl Half {
    fn with_leftover(bytes: Vec<u8>) -> Half {
        Half {
            spill: (!bytes.is_empty()).then(|| {
                Box::new(Spill {
                    buf: bytes,
                    pos: 0,
                    since: Instant::now(),
                })
            }),
            ..Half::default()
        }
    }

    /// The destination has taken nothing for [`STALL`]: hold the source's
    /// receive buffer small.
    fn throttle<S: Transport>(&mut self, src: &S) {
        if self.throttled {
            return;
        }
        // Marked even without a TCP socket (TLS): the stall is handled.
        self.throttled = true;
        if let Some(tcp) = src.tcp() {
            let _ = socket2::SockRef::from(tcp).set_recv_buffer_size(THROTTLED_RCVBUF);
        }
    }

    /// The destination took the waiting bytes: give the buffer back.
    fn unthrottle<S: Transport>(&mut self, src: &S) {
        if self.throttled {
            self.throttled = false;
            if let Some(tcp) = src.tcp() {
                let _ = socket2::SockRef::from(tcp).set_recv_buffer_size(rmem_max());
            }
        }
    }

    /// When the destination stopped taking this direction's bytes, if
    /// bytes are waiting for it.
    fn blocked_since(&self) -> Option<Instant> {
        match (&self.spill, &self.pipe) {
            (Some(s), _) => Some(s.since),
            (None, Some(p)) if p.buffered > 0 => Some(p.since),
            _ => None,
        }
    }

    /// Moves bytes from `src` to `dst` until one of them would block.
    /// Returns `Ready(Ok(()))` once end-of-stream has been propagated.
    fn poll_copy<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
        activity: &mut bool,
        other_done: bool,
        mut track: Option<&mut Tracker>,
    ) -> Poll<Result<(), Side>>
    where
        S: Transport,
        D: Transport,
    {
        loop {
            if let Some(spill) = &mut self.spill {
                while spill.pos < spill.buf.len() {
                    match Pin::new(&mut *dst).poll_write(cx, &spill.buf[spill.pos..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(Side::Dst(io::ErrorKind::WriteZero.into())));
                        }
                        Poll::Ready(Ok(n)) => {
                            // `*send_timeout` bounds each blocked write, not
                            // the whole backlog: progress restarts it.
                            spill.since = Instant::now();
                            spill.pos += n;
                            self.written += n as u64;
                            self.unflushed = dst.buffers_writes();
                            *activity = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(Side::Dst(e))),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                if let Some(spill) = self.spill.take() {
                    spill_release(spill.buf);
                }
            }
            if self.throttled && self.blocked_since().is_none() {
                self.unthrottle(src);
            }
            if self.closing {
                return self.poll_close(cx, src, dst);
            }
            // Following frames, a spliced payload that ended leaves the pipe
            // for the next frame: its header is looked at first. Whole
            // frames gather in the pipe (see [`Half::poll_splice`]).
            let needs_header =
                track.as_deref().is_some_and(|t| t.at_boundary()) && self.pipe.is_some();
            if self.pipe.is_some() && !self.eof && !needs_header {
                match self.poll_splice(cx, src, dst, activity, track.as_deref_mut()) {
                    Poll::Ready(Ok(())) => continue,
                    other => return other,
                }
            }
            if needs_header
                && !self.eof
                && let Some(t) = track.as_deref_mut()
                && ready!(self.poll_next_frame(cx, src, dst, activity, t))?
            {
                continue;
            }
            // Whatever comes next (an ordinary read, end of stream) goes
            // after the bytes waiting in the pipe.
            ready!(self.poll_drain(cx, dst, activity))?;
            let needs_header = needs_header && self.pipe.is_some();
            if self.eof {
                // When the other direction has finished too, both sockets
                // are about to be closed, and close() sends the FIN: skip
                // the shutdown() syscall.
                if !self.done && (!other_done || dst.needs_final_shutdown()) {
                    // Flushing is a no-op for TCP; TLS needs it before
                    // close_notify.
                    ready!(Pin::new(&mut *dst).poll_flush(cx)).map_err(Side::Dst)?;
                    match ready!(Pin::new(&mut *dst).poll_shutdown(cx)) {
                        Ok(()) => {}
                        // The peer may already be gone; the other direction
                        // will notice.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                        Err(e) => return Poll::Ready(Err(Side::Dst(e))),
                    }
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let step = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                // Bytes of a frame head the last read cut go first.
                let held = track.as_deref().map_or(0, |t| t.held().len());
                if let Some(t) = track.as_deref().filter(|_| held > 0) {
                    scratch[..held].copy_from_slice(t.held());
                }
                let limit = if needs_header {
                    held + HEADER_READ
                } else {
                    scratch.len()
                };
                let mut rb = ReadBuf::new(&mut scratch[held..limit]);
                match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Side::Src(e))),
                    Poll::Ready(Ok(())) => {}
                }
                let got = rb.filled().len();
                let full = held + got == scratch.len();
                let mut n = held + got;
                let mut stop = false;
                if let Some(t) = track.as_deref_mut() {
                    t.clear_held();
                    if got > 0 {
                        let scan = t.scan(&mut scratch[..n]);
                        n = scan.forward;
                        stop = scan.violation.is_some();
                    }
                }
                if got == 0 {
                    self.eof = true;
                    // A frame cut by the end of the stream goes as it is.
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                } else {
                    *activity = true;
                }
                let mut off = 0;
                while off < n {
                    match Pin::new(&mut *dst).poll_write(cx, &scratch[off..n]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(Side::Dst(io::ErrorKind::WriteZero.into())));
                        }
                        Poll::Ready(Ok(w)) => off += w,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(Side::Dst(e))),
                        Poll::Pending => break,
                    }
                }
                self.written += off as u64;
                if off > 0 && dst.buffers_writes() {
                    self.unflushed = true;
                }
                if needs_header && track.as_deref().is_some_and(Tracker::short) {
                    self.pipe = None; // not a bulk frame: back to ordinary reads
                }
                if full
                    && !stop
                    && src.tcp().is_some()
                    && dst.tcp().is_some()
                    && !track.as_deref().is_some_and(Tracker::short)
                {
                    // A full buffer: a bulk transfer. Continue it with
                    // splice(2).
                    self.pipe = Pipe::new();
                }
                if off < n {
                    self.spill = Some(Box::new(Spill {
                        buf: spill_from(&scratch[off..n]),
                        pos: 0,
                        since: Instant::now(),
                    }));
                }
                if stop {
                    return Poll::Ready(Err(Side::Stop));
                }
                Poll::Ready(Ok(()))
            });
            match step {
                Poll::Pending => {
                    if needs_header {
                        // Idle between frames: hold no pipe.
                        self.pipe = None;
                    }
                    // The source has nothing more for now: what a TLS
                    // destination holds must go out (it would otherwise
                    // wait for the next message in this direction).
                    if self.unflushed {
                        match Pin::new(&mut *dst).poll_flush(cx) {
                            Poll::Ready(Ok(())) => self.unflushed = false,
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(Side::Dst(e))),
                            Poll::Pending => {}
                        }
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

impl Half {
    /// Whether a frame of the relay's own may go to the destination now:
    /// what was forwarded ends between two frames.
    fn can_inject(&self, track: &Tracker) -> bool {
        !self.closing
            && !self.eof
            && track.at_boundary()
            && self.pipe.as_ref().is_none_or(|p| p.buffered == 0)
    }

    /// Queues `frame` for the destination, after what waits already.
    fn inject(&mut self, frame: &[u8]) {
        match &mut self.spill {
            Some(spill) => spill.buf.extend_from_slice(frame),
            None => {
                self.spill = Some(Box::new(Spill {
                    // Not from the pool: a control frame is a few bytes.
                    buf: frame.to_vec(),
                    pos: 0,
                    since: Instant::now(),
                }));
            }
        }
    }

    /// Closing: (what is spilled went out) the destination is shut down,
    /// then the source is read to its end and its bytes dropped. Errors
    /// end the wait: the tunnel is ending anyway.
    fn poll_close<S: Transport, D: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
    ) -> Poll<Result<(), Side>> {
        self.pipe = None;
        if !self.done {
            if ready!(Pin::new(&mut *dst).poll_flush(cx)).is_ok() {
                let _ = ready!(Pin::new(&mut *dst).poll_shutdown(cx));
            }
            self.done = true;
        }
        while !self.eof && !self.src_dead {
            let step = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut rb = ReadBuf::new(&mut scratch[..]);
                match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => Poll::Ready(false),
                    Poll::Ready(_) => Poll::Ready(true),
                }
            });
            self.eof = ready!(step);
        }
        Poll::Ready(Ok(()))
    }
}

/// A tunnel between a client stream and a backend stream.
pub struct Relay<C, U> {
    client: C,
    upstream: U,
    /// Client to backend.
    up: Half,
    /// Backend to client.
    down: Half,
    limits: Limits,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    stop: StopWaiter,
    /// The side whose end of stream came first.
    first_eof: Option<By>,
    /// Following WebSocket frames (only when a feature needs it).
    ws: Option<Box<Ws>>,
    /// Where the running totals go for the metrics.
    progress: Option<Arc<TunnelProgress>>,
}

/// What one pass of [`Relay::poll`] leads to.
enum Step {
    Done(Outcome),
    Again,
    Wait,
}

impl<C: Transport, U: Transport> Relay<C, U> {
    /// Joins `client` and `upstream`. `client_leftover` are bytes the client
    /// sent after its request head (pipelined frames) and go to the backend
    /// first; `upstream_leftover` are bytes the backend sent after its 101.
    /// The tunnel also ends when `stop` fires.
    pub fn new(
        client: C,
        client_leftover: Vec<u8>,
        upstream: U,
        upstream_leftover: Vec<u8>,
        timeouts: Timeouts,
        stop: StopWaiter,
    ) -> Self {
        let now = Instant::now();
        Relay {
            client,
            upstream,
            up: Half::with_leftover(client_leftover),
            down: Half::with_leftover(upstream_leftover),
            limits: Limits::from(timeouts),
            last_activity: now,
            timer: Box::pin(tokio::time::sleep(timeouts.idle)),
            stop,
            first_eof: None,
            ws: None,
            progress: None,
        }
    }

    /// Publishes the tunnel's totals to `progress` each time the relay
    /// goes back to waiting, and at its end.
    pub fn with_progress(mut self, progress: Arc<TunnelProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    fn publish(&self) {
        if let Some(p) = &self.progress {
            let messages = self
                .ws
                .as_deref()
                .map(|w| (w.from_client.messages(), w.from_backend.messages()));
            p.publish(self.up.written, self.down.written, messages);
        }
    }

    /// Follows the WebSocket frames of the tunnel for `options`: pings,
    /// limits, close frames, message counts.
    pub fn with_websocket(mut self, options: Options) -> Self {
        self.ws = Some(Box::new(Ws::new(options)));
        self
    }

    /// The relay closes the WebSocket: close frames to the sides that can
    /// take one now, then each side is shut down and waited for.
    fn start_close(&mut self, order: &CloseOrder) {
        let Some(ws) = self.ws.as_deref_mut() else {
            return;
        };
        if let Some(code) = order.to_client
            && self.down.can_inject(&ws.from_backend)
        {
            self.down
                .inject(super::frames::Control::close(code, None).as_bytes());
        }
        if let Some(code) = order.to_backend
            && self.up.can_inject(&ws.from_client)
        {
            let mask = (super::websocket::random() as u32).to_ne_bytes();
            self.up
                .inject(super::frames::Control::close(code, Some(mask)).as_bytes());
        }
        let dead = order.dead();
        self.up.closing = true;
        self.up.src_dead = dead == Some(Peer::Client);
        self.down.closing = true;
        self.down.src_dead = dead == Some(Peer::Backend);
        ws.start_close(order);
    }

    /// Sends the pings that are due where a frame boundary allows;
    /// whether one went.
    fn send_pings(&mut self) -> bool {
        let Some(ws) = self.ws.as_deref_mut() else {
            return false;
        };
        let mut sent = false;
        if self.down.can_inject(&ws.from_backend)
            && let Some(ping) = ws.take_ping(Peer::Client)
        {
            self.down.inject(ping.as_bytes());
            sent = true;
        }
        if self.up.can_inject(&ws.from_client)
            && let Some(ping) = ws.take_ping(Peer::Backend)
        {
            self.up.inject(ping.as_bytes());
            sent = true;
        }
        sent
    }

    fn outcome(&mut self, end: End) -> Outcome {
        for half in [&mut self.up, &mut self.down] {
            if let Some(spill) = half.spill.take() {
                spill_release(spill.buf);
            }
        }
        let end = match self.ws.as_deref().and_then(Ws::reason) {
            Some(reason) => End::WebSocket(reason),
            None => end,
        };
        let websocket = self.ws.as_deref().map(Ws::summary);
        let closed_by = match (&end, websocket.and_then(|w| w.close_by)) {
            (_, Some(by)) => by,
            (End::ClientError(_), _) => By::Client,
            (End::UpstreamError(_), _) => By::Backend,
            (End::Closed, _) => self.first_eof.unwrap_or(By::Client),
            _ => By::Proxy,
        };
        Outcome {
            to_client: self.down.written,
            to_upstream: self.up.written,
            end,
            closed_by,
            websocket,
        }
    }

    /// When a blocked, not yet throttled direction counts as stalled.
    fn stall_check(&self) -> Option<Instant> {
        [&self.up, &self.down]
            .into_iter()
            .filter(|h| !h.throttled)
            .filter_map(|h| h.blocked_since())
            .map(|t| t + STALL)
            .min()
    }

    /// Throttles the sources of directions blocked for [`STALL`].
    fn throttle_stalled(&mut self, now: Instant) {
        if self.up.blocked_since().is_some_and(|t| t + STALL <= now) {
            self.up.throttle(&self.client);
        }
        if self.down.blocked_since().is_some_and(|t| t + STALL <= now) {
            self.down.throttle(&self.upstream);
        }
    }

    /// The instant the timer must fire by: a limit, or a stall check.
    fn wake(&self) -> Instant {
        let (deadline, _) = self.deadline();
        self.stall_check().map_or(deadline, |s| s.min(deadline))
    }

    /// The earliest instant at which some limit is reached.
    fn deadline(&self) -> (Instant, End) {
        let mut best = (
            self.last_activity + Limits::d(self.limits.idle_ms),
            End::IdleTimeout,
        );
        if let Some(t) = self.down.blocked_since() {
            let d = t + Limits::d(self.limits.client_ms);
            if d < best.0 {
                best = (d, End::ClientSendTimeout);
            }
        }
        if let Some(t) = self.up.blocked_since() {
            let d = t + Limits::d(self.limits.upstream_ms);
            if d < best.0 {
                best = (d, End::UpstreamSendTimeout);
            }
        }
        best
    }
}

impl<C: Transport, U: Transport> Relay<C, U> {
    /// One pass: both directions, then signals and timers.
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let mut activity = false;
        let (from_client, from_backend) = match self.ws.as_deref_mut() {
            Some(ws) => (Some(&mut ws.from_client), Some(&mut ws.from_backend)),
            None => (None, None),
        };
        let up = self.up.poll_copy(
            cx,
            &mut self.client,
            &mut self.upstream,
            &mut activity,
            self.down.done,
            from_client,
        );
        // A stop in one direction (a close under way) leaves the other
        // unpolled this pass.
        let (up, stopped) = match up {
            Poll::Ready(Err(side)) => match side.end(true) {
                Some(end) => return Step::Done(self.outcome(end)),
                None => (Poll::Pending, true),
            },
            other => (other, false),
        };
        let down = if stopped {
            Poll::Pending
        } else {
            self.down.poll_copy(
                cx,
                &mut self.upstream,
                &mut self.client,
                &mut activity,
                self.up.done,
                from_backend,
            )
        };
        let down = match down {
            Poll::Ready(Err(side)) => match side.end(false) {
                Some(end) => return Step::Done(self.outcome(end)),
                None => Poll::Pending,
            },
            other => other,
        };
        if self.first_eof.is_none() {
            if self.up.eof {
                self.first_eof = Some(By::Client);
            } else if self.down.eof {
                self.first_eof = Some(By::Backend);
            }
        }
        if matches!((&up, &down), (Poll::Ready(Ok(())), Poll::Ready(Ok(())))) {
            return Step::Done(self.outcome(End::Closed));
        }
        if activity {
            self.last_activity = Instant::now();
        }
        if let Some(ws) = self.ws.as_deref_mut() {
            if let Some(order) = ws.observe(cx) {
                self.start_close(&order);
                return Step::Again;
            }
            if ws.ping_due() && self.send_pings() {
                // Pings went into the halves: write them.
                return Step::Again;
            }
        }
        if self.stop.poll_stopped(cx) {
            if self.ws.as_deref().is_some_and(|ws| !ws.is_closing()) {
                self.start_close(&CloseOrder::new(Reason::Shutdown));
                return Step::Again;
            }
            if self.ws.is_none() {
                return Step::Done(self.outcome(End::Shutdown));
            }
        }
        // A blocked write has its own, usually shorter, limit: the timer
        // must fire by then. (Only while blocked; idle tunnels skip this.)
        if self.up.blocked_since().is_some() || self.down.blocked_since().is_some() {
            let wake = self.wake();
            if wake < self.timer.deadline() {
                self.timer.as_mut().reset(wake);
            }
        }
        if let Some(wake) = self.ws.as_deref().and_then(Ws::wake)
            && wake < self.timer.deadline()
        {
            self.timer.as_mut().reset(wake);
        }
        // Lazy timer: only when it fires do we look at the real deadline.
        let mut again = false;
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.throttle_stalled(now);
            let (deadline, why) = self.deadline();
            if deadline <= now {
                return Step::Done(self.outcome(why));
            }
            if let Some(ws) = self.ws.as_deref_mut() {
                match ws.on_timer(now) {
                    Timer::GraceOver => return Step::Done(self.outcome(End::Shutdown)),
                    Timer::Close(order) => {
                        self.start_close(&order);
                        again = true;
                    }
                    Timer::Nothing => again |= ws.ping_due(),
                }
            }
            let mut wake = self.wake();
            if let Some(w) = self.ws.as_deref().and_then(Ws::wake) {
                wake = wake.min(w);
            }
            self.timer.as_mut().reset(wake);
        }
        if again {
            self.send_pings();
            return Step::Again;
        }
        Step::Wait
    }
}

impl<C: Transport, U: Transport> Future for Relay<C, U> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        loop {
            match this.step(cx) {
                Step::Done(outcome) => {
                    this.publish();
                    return Poll::Ready(outcome);
                }
                Step::Again => {}
                Step::Wait => {
                    this.publish();
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
