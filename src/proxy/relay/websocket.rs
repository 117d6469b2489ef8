//! The WebSocket mode of the relay: what a tunnel that follows frames
//! decides, and when. [`super::bytes::Relay`] moves the bytes and asks
//! [`Ws`] what to send (pings, close frames) and when to stop; `Ws` holds
//! no buffer and never touches a socket.
//!
//! * **Pings**: every `interval` each side gets a ping of the relay's own
//!   (masked towards the backend, as a client's frames must be), sent
//!   between two frames; its pong is taken out of the stream. A side that
//!   does not answer within `timeout` is dead: the other side gets a close
//!   frame (1011 when the backend died, 1001 when the client did).
//! * **Limits** broken by a side: it gets 1009 (size) or 1008 (rate), the
//!   other side 1001.
//! * **Drain**: once the server drains, at a random moment within the
//!   window, both sides get 1001, so that clients do not all reconnect at
//!   once.
//!
//! After a close frame of the relay's own, neither side's bytes are
//! forwarded any more; the tunnel ends when both sides closed or after
//! [`CLOSE_GRACE`].

use std::cell::Cell;
use std::time::Duration;

use tokio::time::Instant;

use super::frames::{Control, Limits, Tracker, Violation, close};
use super::{By, Peer};
use crate::signal::StopWaiter;

/// How long both sides get to close after the relay's close frames.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Close grace when the server stops (its last moment is short).
pub const STOP_GRACE: Duration = Duration::from_millis(300);

/// Keepalive pings (`websocket_ping_interval`, `websocket_pong_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Time between two pings to a side.
    pub interval: Duration,
    /// How long a pong may take.
    pub timeout: Duration,
}

/// What a tunnel following frames is asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// Keepalive pings to both sides.
    pub ping: Option<Ping>,
    /// Limits on the client's messages.
    pub client_limits: Limits,
    /// Limits on the backend's messages.
    pub backend_limits: Limits,
    /// Close with 1001 when this fires (the server drains), at a random
    /// moment within the window.
    pub drain: Option<(StopWaiter, Duration)>,
    /// Where ping round trips are counted.
    pub stats: Option<std::sync::Arc<crate::stats::Stats>>,
    /// Fires when a reload changes where the WebSocket's location goes:
    /// closed with 1001 within the drain window too.
    pub route: Option<StopWaiter>,
}

/// Why the relay closed a WebSocket itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A side did not answer a ping in time.
    PongTimeout(Peer),
    /// A side broke a limit.
    Limit(Peer, Violation),
    /// The server drains (`websocket_drain_window`).
    Drained,
    /// The server stops, or the configuration was retired.
    Shutdown,
}

/// Close frames to send, and which sides to wait for.
#[derive(Clone, Copy, Debug)]
pub struct CloseOrder {
    /// The client's close code (`None`: it gets none: it is dead).
    pub to_client: Option<u16>,
    /// The backend's close code.
    pub to_backend: Option<u16>,
    /// How long both sides get to close.
    pub grace: Duration,
    /// Why.
    pub reason: Reason,
}

impl CloseOrder {
    /// The close frames for `reason`.
    pub fn new(reason: Reason) -> CloseOrder {
        let (to_client, to_backend) = match reason {
            Reason::PongTimeout(Peer::Client) => (None, Some(close::GOING_AWAY)),
            Reason::PongTimeout(Peer::Backend) => (Some(close::INTERNAL), None),
            Reason::Limit(Peer::Client, v) => (Some(v.code()), Some(close::GOING_AWAY)),
            Reason::Limit(Peer::Backend, v) => (Some(close::GOING_AWAY), Some(v.code())),
            Reason::Drained | Reason::Shutdown => {
                (Some(close::GOING_AWAY), Some(close::GOING_AWAY))
            }
        };
        CloseOrder {
            to_client,
            to_backend,
            grace: if reason == Reason::Shutdown {
                STOP_GRACE
            } else {
                CLOSE_GRACE
            },
            reason,
        }
    }

    /// The side that gets no close frame: it is gone.
    pub fn dead(&self) -> Option<Peer> {
        match self.reason {
            Reason::PongTimeout(p) => Some(p),
            _ => None,
        }
    }
}

/// What a timer tick of [`Ws::on_timer`] asks for.
#[derive(Debug)]
pub enum Timer {
    /// Nothing (pings may have fallen due: see [`Ws::ping_due`]).
    Nothing,
    /// Start closing.
    Close(CloseOrder),
    /// The close grace is over: the tunnel ends now.
    GraceOver,
}

/// Where one side's keepalive stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Nothing to send.
    Idle,
    /// A ping is due and waits for a frame boundary.
    Due,
    /// A ping went out at this instant.
    Sent(Instant),
}

#[derive(Debug)]
struct Pinger {
    stats: Option<std::sync::Arc<crate::stats::Stats>>,
    ping: Ping,
    next: Instant,
    client: Wait,
    backend: Wait,
}

#[derive(Debug)]
struct Drain {
    waiter: StopWaiter,
    route: Option<StopWaiter>,
    window: Duration,
    at: Option<Instant>,
}

/// A summary of a WebSocket for its access log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages from the client.
    pub messages_in: u64,
    /// Messages to the client (from the backend).
    pub messages_out: u64,
    /// The first close code seen or sent.
    pub close_code: Option<u16>,
    /// Who sent the first close frame.
    pub close_by: Option<By>,
}

/// The WebSocket state of a tunnel.
#[derive(Debug)]
pub struct Ws {
    /// Frames from the client.
    pub from_client: Tracker,
    /// Frames from the backend.
    pub from_backend: Tracker,
    pinger: Option<Pinger>,
    /// Boxed: most WebSockets have none, and an idle one should be small.
    drain: Option<Box<Drain>>,
    /// The relay sent its close frames: when to give up waiting, and why.
    closing: Option<(Instant, Reason)>,
    first_close: Option<(u16, By)>,
}

impl Ws {
    /// The state for `options`.
    pub fn new(options: Options) -> Ws {
        Ws {
            from_client: Tracker::new(options.client_limits),
            from_backend: Tracker::new(options.backend_limits),
            pinger: options.ping.map(|ping| Pinger {
                stats: options.stats,
                ping,
                next: Instant::now() + ping.interval,
                client: Wait::Idle,
                backend: Wait::Idle,
            }),
            drain: options.drain.map(|(waiter, window)| {
                Box::new(Drain {
                    waiter,
                    route: options.route,
                    window,
                    at: None,
                })
            }),
            closing: None,
            first_close: None,
        }
    }

    /// The relay is closing the WebSocket itself.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Why the relay closed, if it did.
    pub fn reason(&self) -> Option<Reason> {
        self.closing.map(|(_, r)| r)
    }

    /// Takes in what the trackers saw since the last call: pongs, close
    /// frames, a broken limit (which starts the close).
    pub fn observe(&mut self, cx: &mut std::task::Context<'_>) -> Option<CloseOrder> {
        if let Some(p) = &mut self.pinger {
            for (pong, wait) in [
                (self.from_client.take_pong(), &mut p.client),
                (self.from_backend.take_pong(), &mut p.backend),
            ] {
                if !pong {
                    continue;
                }
                if let (Wait::Sent(t), Some(stats)) = (*wait, &p.stats) {
                    stats.ping_rtt(t.elapsed());
                }
                *wait = Wait::Idle;
            }
        }
        if self.first_close.is_none() {
            if let Some(code) = self.from_client.close_code() {
                self.first_close = Some((code, By::Client));
            } else if let Some(code) = self.from_backend.close_code() {
                self.first_close = Some((code, By::Backend));
            }
        }
        if self.closing.is_some() {
            return None;
        }
        if let Some(v) = self.from_client.violation() {
            return Some(CloseOrder::new(Reason::Limit(Peer::Client, v)));
        }
        if let Some(v) = self.from_backend.violation() {
            return Some(CloseOrder::new(Reason::Limit(Peer::Backend, v)));
        }
        if let Some(d) = &mut self.drain {
            // Both polled, so that both register the task.
            let stopping = d.waiter.poll_stopped(cx);
            let rerouted = d.route.as_mut().is_some_and(|r| r.poll_stopped(cx));
            if d.at.is_none() && (stopping || rerouted) {
                d.at = Some(Instant::now() + jitter(d.window));
            }
        }
        None
    }

    /// The ping due to `peer`, if one is and may go now; counts it sent.
    pub fn take_ping(&mut self, peer: Peer) -> Option<Control> {
        if self.closing.is_some() {
            return None;
        }
        let p = self.pinger.as_mut()?;
        let wait = match peer {
            Peer::Client => &mut p.client,
            Peer::Backend => &mut p.backend,
        };
        if *wait != Wait::Due {
            return None;
        }
        *wait = Wait::Sent(Instant::now());
        let payload = random().to_be_bytes();
        Some(match peer {
            Peer::Client => {
                self.from_client.expect_pong(payload);
                Control::ping(payload, None)
            }
            Peer::Backend => {
                self.from_backend.expect_pong(payload);
                Control::ping(payload, Some(mask()))
            }
        })
    }

    /// Whether a ping waits for a frame boundary.
    pub fn ping_due(&self) -> bool {
        self.pinger
            .as_ref()
            .is_some_and(|p| p.client == Wait::Due || p.backend == Wait::Due)
    }

    /// The relay starts closing for `order`.
    pub fn start_close(&mut self, order: &CloseOrder) {
        self.closing = Some((Instant::now() + order.grace, order.reason));
        if self.first_close.is_none()
            && let Some(code) = order.to_client.or(order.to_backend)
        {
            self.first_close = Some((code, By::Proxy));
        }
    }

    /// Timers: pings fall due, pongs time out, the drain moment comes,
    /// the close grace ends.
    pub fn on_timer(&mut self, now: Instant) -> Timer {
        if let Some((until, _)) = self.closing {
            return if now >= until {
                Timer::GraceOver
            } else {
                Timer::Nothing
            };
        }
        if let Some(p) = &mut self.pinger {
            for (peer, wait) in [
                (Peer::Client, &mut p.client),
                (Peer::Backend, &mut p.backend),
            ] {
                if let Wait::Sent(t) = *wait
                    && now >= t + p.ping.timeout
                {
                    return Timer::Close(CloseOrder::new(Reason::PongTimeout(peer)));
                }
            }
            if now >= p.next {
                for wait in [&mut p.client, &mut p.backend] {
                    if *wait == Wait::Idle {
                        *wait = Wait::Due;
                    }
                }
                p.next = now + p.ping.interval;
            }
        }
        if self
            .drain
            .as_ref()
            .and_then(|d| d.at)
            .is_some_and(|at| now >= at)
        {
            return Timer::Close(CloseOrder::new(Reason::Drained));
        }
        Timer::Nothing
    }

    /// The next instant [`Ws::on_timer`] has something to do.
    pub fn wake(&self) -> Option<Instant> {
        if let Some((until, _)) = self.closing {
            return Some(until);
        }
        let mut best = self.drain.as_ref().and_then(|d| d.at);
        if let Some(p) = &self.pinger {
            let mut consider = |t: Instant| best = Some(best.map_or(t, |b: Instant| b.min(t)));
            consider(p.next);
            for w in [p.client, p.backend] {
                if let Wait::Sent(t) = w {
                    consider(t + p.ping.timeout);
                }
            }
        }
        best
    }

    /// The access log's view of the WebSocket.
    pub fn summary(&self) -> Summary {
        Summary {
            messages_in: self.from_client.messages(),
            messages_out: self.from_backend.messages(),
            close_code: self.first_close.map(|(c, _)| c),
            close_by: self.first_close.map(|(_, b)| b),
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A fast per-thread pseudo-random number (xorshift64*, seeded from the
/// system's generator): masks, ping payloads and drain jitter need no
/// secrecy, only variety.
pub fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            let mut seed = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
            x = u64::from_le_bytes(seed) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn mask() -> [u8; 4] {
    (random() as u32).to_ne_bytes()
}

/// A uniformly random moment within `window`.
pub fn jitter(window: Duration) -> Duration {
    let ns = window.as_nanos().min(u128::from(u64::MAX)) as u64;
    if ns == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(random() % ns)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;
    use std::task::{Context, Waker};

    use super::*;
    use crate::signal::StopSignal;

    const PING: Ping = Ping {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
    };

    /// A WebSocket with keepalive pings, and when it started.
    fn pinging() -> (Instant, Ws) {
        let ws = Ws::new(Options {
            ping: Some(PING),
            ..Options::default()
        });
        (Instant::now(), ws)
    }

    fn observe(ws: &mut Ws) -> Option<CloseOrder> {
        ws.observe(&mut Context::from_waker(Waker::noop()))
    }

    /// The pong a peer sends back for `ping` (a frame of the relay's own),
    /// masked when it comes from the client.
    fn pong_for(ping: &Control, masked: bool) -> Vec<u8> {
        let b = ping.as_bytes();
        let at = if b[1] & 0x80 != 0 { 6 } else { 2 };
        let payload: Vec<u8> = (0..8)
            .map(|i| b[at + i] ^ if at == 6 { b[2 + i % 4] } else { 0 })
            .collect();
        let key = [9u8, 8, 7, 6];
        let mut out = vec![0x8A, if masked { 0x80 | 8 } else { 8 }];
        if masked {
            out.extend_from_slice(&key);
        }
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, p)| if masked { p ^ key[i % 4] } else { *p }),
        );
        out
    }

    #[test]
    fn close_orders_name_each_sides_code() {
        let cases = [
            (
                Reason::PongTimeout(Peer::Client),
                None,
                Some(1001),
                Some(Peer::Client),
            ),
            (
                Reason::PongTimeout(Peer::Backend),
                Some(1011),
                None,
                Some(Peer::Backend),
            ),
            (
                Reason::Limit(Peer::Client, Violation::Rate),
                Some(1008),
                Some(1001),
                None,
            ),
            (
                Reason::Limit(Peer::Backend, Violation::FrameTooBig(9)),
                Some(1001),
                Some(1009),
                None,
            ),
            (Reason::Drained, Some(1001), Some(1001), None),
            (Reason::Shutdown, Some(1001), Some(1001), None),
        ];
        for (reason, client, backend, dead) in cases {
            let o = CloseOrder::new(reason);
            assert_eq!(
                (o.to_client, o.to_backend, o.dead()),
                (client, backend, dead),
                "{reason:?}"
            );
            let grace = if reason == Reason::Shutdown {
                STOP_GRACE
            } else {
                CLOSE_GRACE
            };
            assert_eq!(o.grace, grace, "{reason:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_fall_due_then_a_silent_side_is_closed() {
        let (t0, mut ws) = pinging();
        assert_eq!(ws.wake(), Some(t0 + PING.interval));
        assert!(matches!(
            ws.on_timer(t0 + Duration::from_millis(9_999)),
            Timer::Nothing
        ));
        assert!(!ws.ping_due() && ws.take_ping(Peer::Client).is_none());
        assert!(matches!(ws.on_timer(t0 + PING.interval), Timer::Nothing));
        assert!(ws.ping_due());
        // Unmasked to the client, masked to the backend; one each.
        let to_client = ws.take_ping(Peer::Client).unwrap();
        assert_eq!(to_client.as_bytes()[..2], [0x89, 8]);
        assert!(ws.ping_due(), "the backend's is still due");
        let to_backend = ws.take_ping(Peer::Backend).unwrap();
        assert_eq!(to_backend.as_bytes()[..2], [0x89, 0x80 | 8]);
        assert!(!ws.ping_due() && ws.take_ping(Peer::Client).is_none());
        // Sent at t0 (paused time): the pongs are due at t0 + 5 s, before
        // the next ping at t0 + 20 s.
        assert_eq!(ws.wake(), Some(t0 + PING.timeout));
        // The client answers; the backend stays silent.
        let mut pong = pong_for(&to_client, true);
        let scan = ws.from_client.scan(&mut pong);
        assert!(scan.pong && scan.forward == 0, "our pong is not forwarded");
        assert!(observe(&mut ws).is_none());
        assert!(matches!(
            ws.on_timer(t0 + PING.timeout - Duration::from_millis(1)),
            Timer::Nothing
        ));
        match ws.on_timer(t0 + PING.timeout) {
            Timer::Close(o) => assert_eq!(o.reason, Reason::PongTimeout(Peer::Backend)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answered_pings_keep_the_websocket_and_come_again() {
        let (t0, mut ws) = pinging();
        ws.on_timer(t0 + PING.interval);
        let c = ws.take_ping(Peer::Client).unwrap();
        let b = ws.take_ping(Peer::Backend).unwrap();
        ws.from_client.scan(&mut pong_for(&c, true));
        ws.from_backend.scan(&mut pong_for(&b, false));
        assert!(observe(&mut ws).is_none());
        assert!(!ws.ping_due());
        assert_eq!(
            ws.wake(),
            Some(t0 + 2 * PING.interval),
            "only the next ping"
        );
        assert!(matches!(
            ws.on_timer(t0 + 2 * PING.interval),
            Timer::Nothing
        ));
        assert!(ws.ping_due());
        // A ping that never went out (no frame boundary) cannot time out.
        assert!(matches!(
            ws.on_timer(t0 + 3 * PING.interval),
            Timer::Nothing
        ));
        assert!(!ws.is_closing());
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_limit_closes_both_sides() {
        let limits = Limits {
            max_frame: NonZeroU64::new(3),
            ..Limits::default()
        };
        let mut ws = Ws::new(Options {
            backend_limits: limits,
            ..Options::default()
        });
        let mut ok = vec![0x81, 3, b'a', b'b', b'c'];
        assert_eq!(ws.from_backend.scan(&mut ok).forward, 5);
        assert!(observe(&mut ws).is_none());
        let mut big = vec![0x81, 4, b'a', b'b', b'c', b'd'];
        assert_eq!(ws.from_backend.scan(&mut big).forward, 0);
        let order = observe(&mut ws).expect("a close order");
        assert_eq!(
            (order.reason, order.to_client, order.to_backend),
            (
                Reason::Limit(Peer::Backend, Violation::FrameTooBig(4)),
                Some(1001),
                Some(1009)
            )
        );
        let t0 = Instant::now();
        ws.start_close(&order);
        assert!(
            ws.is_closing() && observe(&mut ws).is_none(),
            "ordered once"
        );
        assert_eq!(ws.reason(), Some(order.reason));
        assert_eq!(ws.wake(), Some(t0 + CLOSE_GRACE));
        assert!(matches!(
            ws.on_timer(t0 + CLOSE_GRACE - Duration::from_millis(1)),
            Timer::Nothing
        ));
        assert!(matches!(ws.on_timer(t0 + CLOSE_GRACE), Timer::GraceOver));
        let s = ws.summary();
        assert_eq!(
            (s.messages_out, s.close_code, s.close_by),
            (1, Some(1001), Some(By::Proxy))
        );
    }

    #[test]
    fn the_first_close_frame_names_who_closed() {
        let mut ws = Ws::new(Options::default());
        ws.from_backend.scan(&mut [0x88, 2, 0x03, 0xe8]);
        ws.from_client.scan(&mut [0x81, 0x80 | 1, 0, 0, 0, 0, b'x']);
        observe(&mut ws);
        ws.from_client
            .scan(&mut [0x88, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xe9]);
        observe(&mut ws);
        ws.start_close(&CloseOrder::new(Reason::Shutdown));
        let s = ws.summary();
        assert_eq!(
            (s.messages_in, s.messages_out, s.close_code, s.close_by),
            (1, 0, Some(1000), Some(By::Backend))
        );
        let mut ws = Ws::new(Options::default());
        ws.from_client
            .scan(&mut [0x88, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xe9]);
        ws.from_backend.scan(&mut [0x88, 2, 0x03, 0xe8]);
        observe(&mut ws);
        assert_eq!(
            ws.summary().close_by,
            Some(By::Client),
            "the client's is read first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_closes_within_its_window() {
        let stop = StopSignal::new();
        let window = Duration::from_secs(30);
        let mut ws = Ws::new(Options {
            drain: Some((stop.waiter(), window)),
            ..Options::default()
        });
        assert!(observe(&mut ws).is_none());
        assert_eq!(ws.wake(), None, "nothing to wait for before the drain");
        let t0 = Instant::now();
        stop.trigger();
        assert!(observe(&mut ws).is_none());
        let at = ws.wake().expect("a drain moment");
        assert!(at >= t0 && at < t0 + window, "{:?}", at - t0);
        observe(&mut ws);
        assert_eq!(ws.wake(), Some(at), "chosen once");
        if at > t0 {
            assert!(matches!(
                ws.on_timer(at - Duration::from_nanos(1)),
                Timer::Nothing
            ));
        }
        match ws.on_timer(at) {
            Timer::Close(o) => assert_eq!(o.reason, Reason::Drained),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jitter_stays_in_its_window_and_varies() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        let window = Duration::from_millis(1000);
        let picks: Vec<Duration> = (0..200).map(|_| jitter(window)).collect();
        assert!(picks.iter().all(|d| *d < window));
        assert!(picks.iter().any(|d| *d < window / 4) && picks.iter().any(|d| *d > window * 3 / 4));
        assert_ne!(random(), random());
    }

    /// Masks and ping payloads vary: 10,000 draws are all different and
    /// every bit is set in about half of them; masks are not repeated.
    #[test]
    fn random_numbers_and_masks_vary() {
        let draws: Vec<u64> = (0..10_000).map(|_| random()).collect();
        let distinct: std::collections::HashSet<u64> = draws.iter().copied().collect();
        assert_eq!(distinct.len(), draws.len());
        for bit in 0..64 {
            let set = draws.iter().filter(|d| *d >> bit & 1 == 1).count();
            assert!((4_000..6_000).contains(&set), "bit {bit} set {set} times");
        }
        let masks: std::collections::HashSet<[u8; 4]> = (0..1000).map(|_| mask()).collect();
        assert!(masks.len() > 990, "{} distinct masks of 1000", masks.len());
    }
}
