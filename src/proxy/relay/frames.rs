//! Following WebSocket frames (RFC 6455 §5.2) as they pass through the
//! relay, one [`Tracker`] per direction.
//!
//! The tracker reads frame headers and skips payloads: data frames are
//! never unmasked, copied or changed (extensions such as permessage-deflate
//! pass through, RSV bits included). Only control frames (at most 125
//! bytes) are looked into: a pong that answers the relay's own ping is
//! taken out of the stream, and a close frame's code is kept. A header or a
//! control frame cut by the end of a read is held back, unforwarded, until
//! the rest arrives; so what the relay has forwarded always ends at a frame
//! boundary or inside a data payload, and frames of the relay's own can be
//! put between two frames.
//!
//! Limits are checked on the header, before any byte of the frame is
//! forwarded: frame and message sizes are declared up front.

use std::num::{NonZeroU32, NonZeroU64};

use tokio::time::Instant;

/// Largest payload of a control frame.
pub const MAX_CONTROL: usize = 125;
/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Close codes the relay sends (RFC 6455 §7.4.1).
pub mod close {
    /// The endpoint (here: the proxy) is going away.
    pub const GOING_AWAY: u16 = 1001;
    /// A message broke a policy (the message rate).
    pub const POLICY: u16 = 1008;
    /// A frame or message was too big.
    pub const TOO_BIG: u16 = 1009;
    /// The other side failed (did not answer a ping).
    pub const INTERNAL: u16 = 1011;
    /// A close frame without a code (reported, never sent).
    pub const NO_CODE: u16 = 1005;
}

const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Per-direction limits (`websocket_max_frame_size`,
/// `websocket_max_message_size`, `websocket_message_rate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame: Option<NonZeroU64>,
    /// Largest message (the payloads of its frames together).
    pub max_message: Option<NonZeroU64>,
    /// Messages per second, nginx's leaky bucket.
    pub rate: Option<Rate>,
}

/// A message rate: `per_sec_milli` thousandths of a message per second,
/// `burst` messages above it tolerated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Thousandths of a message per second.
    pub per_sec_milli: NonZeroU32,
    /// Messages tolerated above the rate.
    pub burst: u32,
}

/// A limit a frame broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Its payload is larger than `websocket_max_frame_size`.
    FrameTooBig(u64),
    /// Its message grew larger than `websocket_max_message_size`.
    MessageTooBig(u64),
    /// Messages came faster than `websocket_message_rate`.
    Rate,
}

impl Violation {
    /// The close code the sender gets.
    pub fn code(self) -> u16 {
        match self {
            Violation::FrameTooBig(_) | Violation::MessageTooBig(_) => close::TOO_BIG,
            Violation::Rate => close::POLICY,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::FrameTooBig(n) => {
                write!(
                    f,
                    "WebSocket frame of {n} bytes exceeds websocket_max_frame_size"
                )
            }
            Violation::MessageTooBig(n) => write!(
                f,
                "WebSocket message of {n} bytes or more exceeds websocket_max_message_size"
            ),
            Violation::Rate => write!(f, "WebSocket messages exceed websocket_message_rate"),
        }
    }
}

/// What one [`Tracker::scan`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Bytes at the start of the buffer to forward. Consumed pongs were
    /// cut out; an incomplete frame at the end is held by the tracker.
    pub forward: usize,
    /// The pong of the relay's own ping came.
    pub pong: bool,
    /// A close frame passed.
    pub closed: bool,
    /// The frame at `forward` broke a limit: nothing from there on may be
    /// forwarded.
    pub violation: Option<Violation>,
}

/// What [`Tracker::splice_header`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    /// A long data frame: splice it, header and payload.
    Splice,
    /// Anything else: read it the ordinary way.
    No,
    /// It breaks a limit: nothing of it may pass.
    Violation,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    size: usize,
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let (len, mut size) = match b[1] & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if b[1] & 0x80 != 0 {
        let m: [u8; 4] = b.get(size..size + 4)?.try_into().ok()?;
        size += 4;
        Some(m)
    } else {
        None
    };
    Some(Header {
        fin: b[0] & 0x80 != 0,
        opcode: b[0] & 0x0f,
        mask,
        len,
        size,
    })
}

/// The payload byte `i` of a control frame, unmasked.
fn unmasked(payload: &[u8], mask: Option<[u8; 4]>, i: usize) -> u8 {
    payload[i] ^ mask.map_or(0, |m| m[i % 4])
}

/// The frames of one direction.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// Payload bytes of the current message so far.
    message_bytes: u64,
    /// Whole messages (data frames with FIN) that passed.
    messages: u64,
    /// An incomplete header or control frame, not forwarded yet.
    held: Option<Box<[u8]>>,
    /// The payload of the relay's ping whose pong this direction carries.
    expect_pong: Option<[u8; 8]>,
    /// The code of the first close frame that passed.
    close_code: Option<u16>,
    limits: Limits,
    /// The relay's pong came (taken by [`Tracker::take_pong`]).
    pong: bool,
    /// The limit a frame broke; nothing more is forwarded.
    violation: Option<Violation>,
    /// Leaky bucket of the message rate: excess in thousandths, and when
    /// it was last updated.
    excess: u64,
    last: Option<Instant>,
}

impl Tracker {
    /// A tracker enforcing `limits` on the frames it sees.
    pub fn new(limits: Limits) -> Tracker {
        Tracker {
            limits,
            ..Tracker::default()
        }
    }

    /// Whole messages seen.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The code of the first close frame seen.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// What was forwarded ends between two frames: a frame of the relay's
    /// own may be sent now.
    pub fn at_boundary(&self) -> bool {
        self.payload_left == 0
    }

    /// Payload bytes of the current data frame not yet passed: that many
    /// may move without being looked at (spliced).
    pub fn payload_left(&self) -> u64 {
        self.payload_left
    }

    /// Counts `n` payload bytes that passed without a scan.
    pub fn skip(&mut self, n: u64) {
        self.payload_left -= n.min(self.payload_left);
    }

    /// Whether the relay's pong came since the last call.
    pub fn take_pong(&mut self) -> bool {
        std::mem::take(&mut self.pong)
    }

    /// The limit a frame broke, if one did.
    pub fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// Looks at the head of the next frame, still in the socket (`peeked`):
    /// a data frame with a payload of at least `min` bytes is counted and
    /// passes whole (header included) without a scan, spliced.
    pub fn splice_header(&mut self, peeked: &[u8], min: u64) -> Peeked {
        debug_assert!(self.at_boundary() && self.held.is_none());
        match parse_header(peeked) {
            Some(h) if h.opcode < OP_CLOSE && h.len >= min => {
                if let Some(v) = self.account(&h) {
                    self.violation = Some(v);
                    return Peeked::Violation;
                }
                self.payload_left = h.size as u64 + h.len;
                Peeked::Splice
            }
            _ => Peeked::No,
        }
    }

    /// Waits for a pong carrying `payload` in this direction.
    pub fn expect_pong(&mut self, payload: [u8; 8]) {
        self.expect_pong = Some(payload);
    }

    /// Bytes held back from the last scan: they go before the next read.
    pub fn held(&self) -> &[u8] {
        self.held.as_deref().unwrap_or(&[])
    }

    /// Forgets the held bytes (they were put before a new read, or
    /// forwarded as they are at end of stream).
    pub fn clear_held(&mut self) {
        self.held = None;
    }

    /// Follows the frames in `buf` (held bytes first), cutting out a pong
    /// of the relay's own ping and holding back an incomplete frame head.
    pub fn scan(&mut self, buf: &mut [u8]) -> Scan {
        let mut n = buf.len();
        let mut p = 0;
        let mut out = Scan::default();
        loop {
            if self.payload_left > 0 {
                let take = self.payload_left.min((n - p) as u64);
                p += take as usize;
                self.payload_left -= take;
            }
            if p == n {
                break;
            }
            let Some(h) = parse_header(&buf[p..n]) else {
                self.hold(&buf[p..n]);
                n = p;
                break;
            };
            if h.opcode >= OP_CLOSE && h.len <= MAX_CONTROL as u64 {
                let end = p + h.size + h.len as usize;
                if end > n {
                    self.hold(&buf[p..n]);
                    n = p;
                    break;
                }
                let payload = &buf[p + h.size..end];
                if h.opcode == OP_PONG && self.is_our_pong(payload, h.mask) {
                    self.expect_pong = None;
                    out.pong = true;
                    buf.copy_within(end..n, p);
                    n -= end - p;
                    continue;
                }
                if h.opcode == OP_CLOSE {
                    out.closed = true;
                    if self.close_code.is_none() {
                        self.close_code = Some(if payload.len() >= 2 {
                            u16::from_be_bytes([
                                unmasked(payload, h.mask, 0),
                                unmasked(payload, h.mask, 1),
                            ])
                        } else {
                            close::NO_CODE
                        });
                    }
                }
                p = end;
                continue;
            }
            if h.opcode < OP_CLOSE
                && let Some(v) = self.account(&h)
            {
                out.violation = Some(v);
                n = p;
                break;
            }
            p += h.size;
            self.payload_left = h.len;
        }
        out.forward = n;
        self.pong |= out.pong;
        if out.violation.is_some() {
            self.violation = out.violation;
        }
        out
    }

    fn hold(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= MAX_HEADER + MAX_CONTROL);
        self.held = Some(bytes.into());
    }

    fn is_our_pong(&self, payload: &[u8], mask: Option<[u8; 4]>) -> bool {
        self.expect_pong.is_some_and(|want| {
            payload.len() == want.len()
                && (0..want.len()).all(|i| unmasked(payload, mask, i) == want[i])
        })
    }

    /// Counts a data frame into its message; the limit it breaks, if any.
    fn account(&mut self, h: &Header) -> Option<Violation> {
        let starts = h.opcode != 0;
        if starts {
            if let Some(rate) = self.limits.rate
                && !self.admit(rate)
            {
                return Some(Violation::Rate);
            }
            self.message_bytes = 0;
        }
        if self.limits.max_frame.is_some_and(|max| h.len > max.get()) {
            return Some(Violation::FrameTooBig(h.len));
        }
        self.message_bytes = self.message_bytes.saturating_add(h.len);
        if self
            .limits
            .max_message
            .is_some_and(|max| self.message_bytes > max.get())
        {
            return Some(Violation::MessageTooBig(self.message_bytes));
        }
        if h.fin {
            self.messages += 1;
        }
        None
    }

    /// nginx's leaky bucket for one more message.
    fn admit(&mut self, rate: Rate) -> bool {
        let now = Instant::now();
        let drained = self.last.map_or(0, |t| {
            let ms = now.duration_since(t).as_millis() as u64;
            u64::from(rate.per_sec_milli.get()).saturating_mul(ms) / 1000
        });
        let excess = self.excess.saturating_sub(drained) + 1000;
        if excess > u64::from(rate.burst) * 1000 + 1000 {
            return false;
        }
        self.excess = excess;
        self.last = Some(now);
        true
    }
}

/// A control frame of the relay's own, ready to write.
#[derive(Clone, Copy)]
pub struct Control {
    bytes: [u8; 2 + 4 + 8],
    len: u8,
}

impl Control {
    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn new(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Control {
        debug_assert!(payload.len() <= 8);
        let mut bytes = [0u8; 14];
        bytes[0] = 0x80 | opcode;
        bytes[1] = payload.len() as u8 | if mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if let Some(m) = mask {
            bytes[2..6].copy_from_slice(&m);
            at = 6;
        }
        for (i, b) in payload.iter().enumerate() {
            bytes[at + i] = b ^ mask.map_or(0, |m| m[i % 4]);
        }
        Control {
            bytes,
            len: (at + payload.len()) as u8,
        }
    }

    /// A ping with `payload`; masked when sent to a server.
    pub fn ping(payload: [u8; 8], mask: Option<[u8; 4]>) -> Control {
        Control::new(OP_PING, &payload, mask)
    }

    /// A close frame with `code`; masked when sent to a server.
    pub fn close(code: u16, mask: Option<[u8; 4]>) -> Control {
        Control::new(OP_CLOSE, &code.to_be_bytes(), mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a peer would send it.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut v = vec![if fin { 0x80 } else { 0 } | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => v.push(m | n as u8),
            n if n < 65536 => {
                v.push(m | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(m | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if let Some(k) = mask {
            v.extend_from_slice(&k);
        }
        v.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask.map_or(0, |k| k[i % 4])),
        );
        v
    }

    const KEY: Option<[u8; 4]> = Some([1, 2, 3, 4]);

    #[test]
    fn data_frames_pass_unchanged_in_any_split() {
        let mut stream = frame(true, 1, b"hello", KEY);
        stream.extend(frame(false, 2, &[7u8; 300], KEY));
        stream.extend(frame(true, 0, &[9u8; 70_000], KEY));
        stream.extend(frame(true, OP_PING, b"theirs", KEY));
        for cut in [1, 2, 3, 7, 13, 100, 311, 5000] {
            let mut t = Tracker::default();
            let mut out = Vec::new();
            for chunk in stream.chunks(cut) {
                let mut buf = t.held().to_vec();
                t.clear_held();
                buf.extend_from_slice(chunk);
                let s = t.scan(&mut buf);
                assert_eq!(s.violation, None);
                assert!(!s.pong);
                out.extend_from_slice(&buf[..s.forward]);
            }
            assert!(t.held().is_empty(), "cut {cut}");
            assert_eq!(out, stream, "cut {cut}");
            assert_eq!(t.messages(), 2, "cut {cut}");
            assert!(t.at_boundary());
        }
    }

    #[test]
    fn our_pong_is_cut_out_and_theirs_passes() {
        let ours = *b"sy000001";
        let mut stream = frame(true, 1, b"a", KEY);
        stream.extend(frame(true, OP_PONG, b"their-pong", KEY));
        // As long as ours, but not ours: it passes.
        stream.extend(frame(true, OP_PONG, b"sy000002", KEY));
        stream.extend(frame(true, OP_PONG, &ours, KEY));
        stream.extend(frame(true, 1, b"b", KEY));
        let mut expect = frame(true, 1, b"a", KEY);
        expect.extend(frame(true, OP_PONG, b"their-pong", KEY));
        expect.extend(frame(true, OP_PONG, b"sy000002", KEY));
        expect.extend(frame(true, 1, b"b", KEY));
        for cut in [1, 5, 9, 1000] {
            let mut t = Tracker::default();
            t.expect_pong(ours);
            let (mut out, mut pongs) = (Vec::new(), 0);
            for chunk in stream.chunks(cut) {
                let mut buf = t.held().to_vec();
                t.clear_held();
                buf.extend_from_slice(chunk);
                let s = t.scan(&mut buf);
                pongs += usize::from(s.pong);
                out.extend_from_slice(&buf[..s.forward]);
            }
            assert_eq!(out, expect, "cut {cut}");
            assert_eq!(pongs, 1);
        }
    }

    #[test]
    fn close_code_is_read_through_the_mask() {
        let mut t = Tracker::default();
        let mut buf = frame(true, OP_CLOSE, &[0x03, 0xe8, b'o', b'k'], KEY);
        let s = t.scan(&mut buf);
        assert!(s.closed);
        assert_eq!(t.close_code(), Some(1000));
        let mut t = Tracker::default();
        let mut buf = frame(true, OP_CLOSE, &[], None);
        t.scan(&mut buf);
        assert_eq!(t.close_code(), Some(close::NO_CODE));
    }

    #[test]
    fn limits_stop_before_the_offending_frame() {
        let limits = Limits {
            max_frame: NonZeroU64::new(1000),
            max_message: NonZeroU64::new(1500),
            rate: None,
        };
        let mut t = Tracker::new(limits);
        let mut buf = frame(true, 2, &[0; 10], None);
        let first = buf.len();
        buf.extend(frame(true, 2, &[0; 1001], None));
        let s = t.scan(&mut buf);
        assert_eq!(s.forward, first);
        assert_eq!(s.violation, Some(Violation::FrameTooBig(1001)));

        let mut t = Tracker::new(limits);
        let mut buf = frame(false, 2, &[0; 1000], None);
        let first = buf.len();
        buf.extend(frame(true, 0, &[0; 600], None));
        let s = t.scan(&mut buf);
        assert_eq!(s.forward, first);
        assert_eq!(s.violation, Some(Violation::MessageTooBig(1600)));
    }

    #[test]
    fn message_rate_allows_the_burst_then_refuses() {
        let mut t = Tracker::new(Limits {
            rate: Some(Rate {
                per_sec_milli: NonZeroU32::new(1000).unwrap(),
                burst: 2,
            }),
            ..Limits::default()
        });
        let one = frame(true, 1, b"x", None);
        let mut buf: Vec<u8> = one.repeat(4);
        let s = t.scan(&mut buf);
        assert_eq!(s.violation, Some(Violation::Rate));
        assert_eq!(s.forward, one.len() * 3);
    }

    /// The bucket drains with time, as nginx's: at 2 messages a second
    /// with no burst, one message passes, another 100 ms later is refused
    /// (a tenth of a message drained), and 500 ms after the first one
    /// passes again.
    #[tokio::test(start_paused = true)]
    async fn message_rate_drains_with_time() {
        let mut t = Tracker::new(Limits {
            rate: Some(Rate {
                per_sec_milli: NonZeroU32::new(2000).unwrap(),
                burst: 0,
            }),
            ..Limits::default()
        });
        let one = frame(true, 1, b"x", None);
        assert_eq!(t.scan(&mut one.clone()).violation, None);
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert_eq!(t.scan(&mut one.clone()).violation, Some(Violation::Rate));
        let mut t = Tracker::new(t.limits);
        assert_eq!(t.scan(&mut one.clone()).violation, None);
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert_eq!(t.scan(&mut one.clone()).violation, None);
    }

    #[test]
    fn control_frames_are_well_formed() {
        let ping = Control::ping(*b"12345678", KEY);
        let h = parse_header(ping.as_bytes()).unwrap();
        assert_eq!((h.opcode, h.len, h.mask), (OP_PING, 8, KEY));
        let mut t = Tracker::default();
        let mut buf = Control::close(1001, None).as_bytes().to_vec();
        t.scan(&mut buf);
        assert_eq!(t.close_code(), Some(1001));
    }
}
