//! The message-head scanners: request heads from clients, response heads
//! from backends, byte by byte, with nginx's verdicts.
//!
//! A proxy in front of other HTTP servers must read a head exactly as the
//! reference server does, or a request it forwards can mean something else
//! to the server behind it. So this is a state machine with nginx's rules
//! (not a general-purpose parser): which bytes end a method, a target, a
//! version; which header names are invalid (dropped under
//! `ignore_invalid_headers`, kept otherwise) and which bytes make the whole
//! head invalid (400); where spaces are skipped; which versions get 505.
//!
//! Request heads are scanned incrementally: [`RequestParser`] remembers
//! where it stopped, so a head that arrives a byte at a time costs one
//! pass. It also keeps the books of nginx's header buffers
//! (`client_header_buffer_size`, then up to `large_client_header_buffers`
//! of the large size, a line never split across two), so the limits give
//! the same 414 or 400 whatever way the bytes were split into reads.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Version};

use super::headers::{HeaderValue, Headers};

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// The request target as sent (`/path?query`, or absolute form).
    pub target: String,
    /// HTTP/0.9, HTTP/1.0 or HTTP/1.1 (later 1.x minors count as 1.1).
    pub version: Version,
    /// Header lines.
    pub headers: Headers,
    /// Bytes of the head on the wire (`$request_length` counts them).
    pub len: usize,
    /// Header lines dropped for an invalid name (`ignore_invalid_headers`),
    /// as sent, for the error log.
    pub dropped: Vec<Bytes>,
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent (nginx passes it on).
    pub reason: Bytes,
    /// Header lines.
    pub headers: Headers,
    /// Bytes of the head on the wire.
    pub len: usize,
}

/// Why a head could not be parsed; each maps to nginx's status and log
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed (400, or 502 from a backend); the text is nginx's.
    Invalid(&'static str),
    /// The request line does not fit in a large header buffer (414).
    UriTooLong,
    /// A header line does not fit in a large header buffer, or the head
    /// in all of them (400 "Request Header Or Cookie Too Large").
    HeaderTooLarge(&'static str),
    /// An HTTP major version above 1 (505).
    UnsupportedVersion,
    /// An HTTP/0.9 request with a method other than GET (400, answered
    /// the HTTP/0.9 way: the page alone).
    NineMethod,
    /// A backend's answer does not start with a status line.
    NoStatusLine,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Invalid(why) | HeadError::HeaderTooLarge(why) => f.write_str(why),
            HeadError::UriTooLong => f.write_str("client sent too long URI"),
            HeadError::UnsupportedVersion => f.write_str("client sent invalid version"),
            HeadError::NineMethod => f.write_str("client sent invalid method in HTTP/0.9 request"),
            HeadError::NoStatusLine => f.write_str("upstream sent no valid HTTP/1.0 header"),
        }
    }
}

/// How request heads are read: nginx's buffer sizes and header-name rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// `client_header_buffer_size`: the first buffer.
    pub first: usize,
    /// `large_client_header_buffers` size: the longest request line or
    /// header line.
    pub large: usize,
    /// `large_client_header_buffers` number.
    pub large_count: usize,
    /// `underscores_in_headers`: `_` is valid in a name.
    pub underscores: bool,
    /// `ignore_invalid_headers`: header lines with invalid names are
    /// dropped (when off they are kept).
    pub ignore_invalid: bool,
}

impl Default for HeadLimits {
    /// nginx's defaults: 1k, 4 × 8k, no underscores, invalid names dropped.
    fn default() -> Self {
        HeadLimits {
            first: 1024,
            large: 8192,
            large_count: 4,
            underscores: false,
            ignore_invalid: true,
        }
    }
}

/// What a byte does to a header line.
enum Step {
    /// Part of the line.
    More,
    /// The line ended.
    Line,
    /// The empty line: the head ended.
    End,
    /// The head is invalid.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LineState {
    /// At the first byte of a line.
    #[default]
    Start,
    Name,
    SpaceBeforeValue,
    Value,
    SpaceAfterValue,
    /// A duplicated status line from a backend (`HTTP/1.1 ...` again).
    IgnoreLine,
    /// After the CR of a header line.
    AlmostDone,
    /// After the CR of the empty line.
    HeadAlmostDone,
}

/// One header line being scanned; positions are offsets into the head.
#[derive(Debug, Clone, Default)]
struct HeaderLine {
    state: LineState,
    start: usize,
    name_end: usize,
    value: Range<usize>,
    /// A byte nginx does not take in a name (dropped or kept by
    /// `ignore_invalid_headers`).
    invalid: bool,
}

/// Bytes nginx takes in header names: letters, digits and `-`.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl HeaderLine {
    /// Scans byte `b` at offset `p`. `underscores`: `_` is a name byte;
    /// `upstream`: a response (duplicated status lines are skipped).
    fn step(&mut self, buf: &[u8], p: usize, underscores: bool, upstream: bool) -> Step {
        let b = buf[p];
        match self.state {
            LineState::Start => {
                self.start = p;
                self.invalid = false;
                match b {
                    b'\r' => self.state = LineState::HeadAlmostDone,
                    b'\n' => return Step::End,
                    _ if name_byte(b) => self.state = LineState::Name,
                    b'_' => {
                        self.invalid = !underscores;
                        self.state = LineState::Name;
                    }
                    _ if b <= 0x20 || b == 0x7f || b == b':' => return Step::Bad,
                    _ => {
                        self.invalid = true;
                        self.state = LineState::Name;
                    }
                }
            }
            LineState::Name => match b {
                _ if name_byte(b) => {}
                b'_' => self.invalid |= !underscores,
                b':' => {
                    self.name_end = p;
                    self.state = LineState::SpaceBeforeValue;
                }
                b'\r' | b'\n' => {
                    // A line without a colon: a header with an empty value.
                    self.name_end = p;
                    self.value = p..p;
                    return self.line_end(b);
                }
                b'/' if upstream && &buf[self.start..p] == b"HTTP" => {
                    self.state = LineState::IgnoreLine;
                }
                _ if b <= 0x20 || b == 0x7f => return Step::Bad,
                _ => self.invalid = true,
            },
            LineState::SpaceBeforeValue => match b {
                b' ' => {}
                b'\r' | b'\n' => {
                    self.value = p..p;
                    return self.line_end(b);
                }
                0 => return Step::Bad,
                _ => {
                    self.value = p..p + 1;
                    self.state = LineState::Value;
                }
            },
            LineState::Value => match b {
                b' ' => {
                    self.value.end = p;
                    self.state = LineState::SpaceAfterValue;
                }
                b'\r' | b'\n' => {
                    self.value.end = p;
                    return self.line_end(b);
                }
                0 => return Step::Bad,
                _ => {}
            },
            LineState::SpaceAfterValue => match b {
                b' ' => {}
                b'\r' | b'\n' => return self.line_end(b),
                0 => return Step::Bad,
                _ => self.state = LineState::Value,
            },
            LineState::IgnoreLine => {
                if b == b'\n' {
                    self.state = LineState::Start;
                }
            }
            LineState::AlmostDone => match b {
                b'\n' => {
                    self.state = LineState::Start;
                    return Step::Line;
                }
                b'\r' => {}
                _ => return Step::Bad,
            },
            LineState::HeadAlmostDone => {
                return if b == b'\n' { Step::End } else { Step::Bad };
            }
        }
        Step::More
    }

    fn line_end(&mut self, b: u8) -> Step {
        if b == b'\r' {
            self.state = LineState::AlmostDone;
            Step::More
        } else {
            self.state = LineState::Start;
            Step::Line
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LineOfRequest {
    /// Before the method (empty lines are skipped).
    #[default]
    Start,
    Method,
    SpacesBeforeTarget,
    Scheme,
    SchemeSlash,
    SchemeSlashSlash,
    HostStart,
    Host,
    HostIpLiteral,
    /// After `]` of an IP literal.
    HostEnd,
    Port,
    Path,
    /// Spaces after the target: the version or the end of an HTTP/0.9 line.
    AfterTarget,
    /// Inside the literal `HTTP/` (how many bytes of it were seen).
    Protocol(u8),
    FirstMajor,
    Major,
    FirstMinor,
    Minor,
    SpacesAfterVersion,
    AlmostDone,
    /// The request line is complete; header lines follow.
    Done,
}

/// A request head read incrementally from a connection's buffer.
///
/// Feed it the same buffer as bytes arrive ([`RequestParser::parse`]);
/// offsets stay valid because nothing is removed from the buffer before the
/// head is complete.
#[derive(Debug, Clone)]
pub struct RequestParser {
    limits: HeadLimits,
    /// Next byte to scan.
    pos: usize,
    line: LineOfRequest,
    request_start: usize,
    method_end: usize,
    target: Range<usize>,
    major: u32,
    minor: u32,
    header: HeaderLine,
    headers: Vec<(Range<usize>, Range<usize>)>,
    dropped: Vec<Range<usize>>,
    /// End of nginx's current header buffer, as an offset into the stream.
    buffer_end: usize,
    /// Large buffers taken so far.
    large_used: usize,
}

impl RequestParser {
    /// A parser for the next request on a connection.
    pub fn new(limits: HeadLimits) -> RequestParser {
        RequestParser {
            limits,
            pos: 0,
            line: LineOfRequest::Start,
            request_start: 0,
            method_end: 0,
            target: 0..0,
            major: 0,
            minor: 0,
            header: HeaderLine::default(),
            headers: Vec::new(),
            dropped: Vec::new(),
            buffer_end: limits.first.max(1),
            large_used: 0,
        }
    }

    /// Whether no byte of a request has been seen (empty lines aside).
    pub fn is_idle(&self) -> bool {
        self.line == LineOfRequest::Start
    }

    /// Scans what `buf` holds. On success the head is split off `buf` and
    /// the parser is ready for the next request; `Ok(None)` means more
    /// bytes are needed.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
        loop {
            let limit = buf.len().min(self.buffer_end);
            while self.pos < limit {
                let p = self.pos;
                self.pos += 1;
                if self.line != LineOfRequest::Done {
                    if self.request_line_step(buf, p)? {
                        return Ok(Some(self.finish(buf)));
                    }
                    continue;
                }
                match self.header.step(buf, p, self.limits.underscores, false) {
                    Step::More => {}
                    Step::Line => {
                        let h = &self.header;
                        if h.invalid && self.limits.ignore_invalid {
                            self.dropped.push(h.start..h.value.end.max(h.name_end));
                        } else {
                            self.headers.push((h.start..h.name_end, h.value.clone()));
                        }
                    }
                    Step::End => return Ok(Some(self.finish(buf))),
                    Step::Bad => return Err(HeadError::Invalid("client sent invalid header line")),
                }
            }
            if self.pos < self.buffer_end {
                return Ok(None);
            }
            self.next_buffer()?;
        }
    }

    /// nginx's buffer is full and the head is incomplete: move to a large
    /// buffer, carrying the incomplete line, or refuse.
    fn next_buffer(&mut self) -> Result<(), HeadError> {
        let in_request_line = self.line != LineOfRequest::Done;
        if in_request_line && self.line == LineOfRequest::Start {
            // Only empty lines so far: the buffer starts over.
            self.buffer_end = self.pos + self.limits.first.max(1);
            return Ok(());
        }
        let (old, mid_line) = if in_request_line {
            (self.request_start, true)
        } else {
            (self.header.start, self.header.state != LineState::Start)
        };
        let too_long = if in_request_line {
            HeadError::UriTooLong
        } else {
            HeadError::HeaderTooLarge("client sent too long header line")
        };
        if mid_line && self.pos - old >= self.limits.large {
            return Err(too_long);
        }
        if self.large_used >= self.limits.large_count {
            return Err(if mid_line {
                too_long
            } else {
                HeadError::HeaderTooLarge("client sent too large request")
            });
        }
        self.large_used += 1;
        self.buffer_end = if mid_line { old } else { self.pos } + self.limits.large.max(1);
        Ok(())
    }

    /// Scans one byte of the request line; `Ok(true)` ends an HTTP/0.9
    /// request (no headers follow).
    fn request_line_step(&mut self, buf: &[u8], p: usize) -> Result<bool, HeadError> {
        use LineOfRequest as L;
        let b = buf[p];
        let bad = HeadError::Invalid("client sent invalid request");
        match self.line {
            L::Start => {
                if b == b'\r' || b == b'\n' {
                    return Ok(false);
                }
                self.request_start = p;
                if !(b.is_ascii_uppercase() || b == b'_' || b == b'-') {
                    return Err(HeadError::Invalid("client sent invalid method"));
                }
                self.line = L::Method;
            }
            L::Method => {
                if b == b' ' {
                    self.method_end = p;
                    self.line = L::SpacesBeforeTarget;
                } else if !(b.is_ascii_uppercase() || b == b'_' || b == b'-') {
                    return Err(HeadError::Invalid("client sent invalid method"));
                }
            }
            L::SpacesBeforeTarget => match b {
                b'/' => {
                    self.target.start = p;
                    self.line = L::Path;
                }
                b' ' => {}
                _ if b.is_ascii_alphabetic() => {
                    self.target.start = p;
                    self.line = L::Scheme;
                }
                _ => return Err(bad),
            },
            L::Scheme => match b {
                _ if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.') => {}
                b':' => self.line = L::SchemeSlash,
                _ => return Err(bad),
            },
            L::SchemeSlash | L::SchemeSlashSlash if b != b'/' => return Err(bad),
            L::SchemeSlash => self.line = L::SchemeSlashSlash,
            L::SchemeSlashSlash => self.line = L::HostStart,
            L::HostStart if b == b'[' => self.line = L::HostIpLiteral,
            L::HostStart | L::Host => {
                self.line = L::Host;
                if !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                    return self.after_host(b, p);
                }
            }
            L::HostEnd => return self.after_host(b, p),
            L::HostIpLiteral => match b {
                b']' => self.line = L::HostEnd,
                _ if b.is_ascii_alphanumeric() => {}
                b':' | b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')'
                | b'*' | b'+' | b',' | b';' | b'=' => {}
                _ => return Err(bad),
            },
            L::Port => match b {
                b'0'..=b'9' => {}
                b'/' | b'?' => self.line = L::Path,
                b' ' => {
                    self.target.end = p;
                    self.line = L::AfterTarget;
                }
                _ => return Err(bad),
            },
            L::Path => match b {
                b' ' => {
                    self.target.end = p;
                    self.line = L::AfterTarget;
                }
                b'\r' => {
                    self.target.end = p;
                    self.minor = 9;
                    self.line = L::AlmostDone;
                }
                b'\n' => {
                    self.target.end = p;
                    self.minor = 9;
                    return self.line_done(buf);
                }
                _ if b < 0x20 || b == 0x7f => return Err(bad),
                _ => {}
            },
            L::AfterTarget => match b {
                b' ' => {}
                b'\r' => {
                    self.minor = 9;
                    self.line = L::AlmostDone;
                }
                b'\n' => {
                    self.minor = 9;
                    return self.line_done(buf);
                }
                b'H' => self.line = L::Protocol(1),
                _ => return Err(bad),
            },
            L::Protocol(_)
            | L::FirstMajor
            | L::Major
            | L::FirstMinor
            | L::Minor
            | L::SpacesAfterVersion => return self.version_step(buf, p),
            L::AlmostDone => {
                if b != b'\n' {
                    return Err(bad);
                }
                return self.line_done(buf);
            }
            L::Done => unreachable!("header lines are scanned by HeaderLine"),
        }
        Ok(false)
    }

    /// Scans one byte of `HTTP/major.minor` and what may follow it.
    fn version_step(&mut self, buf: &[u8], p: usize) -> Result<bool, HeadError> {
        use LineOfRequest as L;
        let b = buf[p];
        let bad = HeadError::Invalid("client sent invalid request");
        match self.line {
            L::Protocol(seen) => {
                if b != b"HTTP/"[seen as usize] {
                    return Err(bad);
                }
                self.line = if seen == 4 {
                    L::FirstMajor
                } else {
                    L::Protocol(seen + 1)
                };
            }
            L::FirstMajor => match b {
                b'1'..=b'9' => {
                    self.major = u32::from(b - b'0');
                    if self.major > 1 {
                        return Err(HeadError::UnsupportedVersion);
                    }
                    self.line = L::Major;
                }
                _ => return Err(bad),
            },
            L::Major => match b {
                b'.' => self.line = L::FirstMinor,
                b'0'..=b'9' => {
                    self.major = self.major * 10 + u32::from(b - b'0');
                    if self.major > 1 {
                        return Err(HeadError::UnsupportedVersion);
                    }
                }
                _ => return Err(bad),
            },
            L::FirstMinor => match b {
                b'0'..=b'9' => {
                    self.minor = u32::from(b - b'0');
                    self.line = L::Minor;
                }
                _ => return Err(bad),
            },
            L::Minor => match b {
                b'\r' => self.line = L::AlmostDone,
                b'\n' => return self.line_done(buf),
                b' ' => self.line = L::SpacesAfterVersion,
                b'0'..=b'9' if self.minor <= 99 => {
                    self.minor = self.minor * 10 + u32::from(b - b'0')
                }
                _ => return Err(bad),
            },
            L::SpacesAfterVersion => match b {
                b' ' => {}
                b'\r' => self.line = L::AlmostDone,
                b'\n' => return self.line_done(buf),
                _ => return Err(bad),
            },
            _ => unreachable!("not in the version"),
        }
        Ok(false)
    }

    /// After the host of an absolute-form target.
    fn after_host(&mut self, b: u8, p: usize) -> Result<bool, HeadError> {
        use LineOfRequest as L;
        match b {
            b':' => self.line = L::Port,
            b'/' | b'?' => self.line = L::Path,
            b' ' => {
                self.target.end = p;
                self.line = L::AfterTarget;
            }
            _ => return Err(HeadError::Invalid("client sent invalid request")),
        }
        Ok(false)
    }

    /// The request line ended; `Ok(true)` when it was HTTP/0.9.
    fn line_done(&mut self, buf: &[u8]) -> Result<bool, HeadError> {
        self.line = LineOfRequest::Done;
        if self.major == 0 {
            if &buf[self.request_start..self.method_end] != b"GET" {
                return Err(HeadError::NineMethod);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Splits the complete head off `buf` and resets for the next request.
    fn finish(&mut self, buf: &mut BytesMut) -> RequestHead {
        let len = self.pos;
        let frozen = buf.split_to(len).freeze();
        let method =
            Method::from_bytes(&frozen[self.request_start..self.method_end]).unwrap_or(Method::GET);
        let target = String::from_utf8_lossy(&frozen[self.target.clone()]).into_owned();
        let version = match (self.major, self.minor) {
            (0, _) => Version::HTTP_09,
            (1, 0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let mut headers = Headers::with_capacity(self.headers.len());
        let mut dropped: Vec<Bytes> = self.dropped.drain(..).map(|r| frozen.slice(r)).collect();
        for (name, value) in self.headers.drain(..) {
            let raw = frozen.slice(name.clone());
            match HeaderName::from_bytes(&raw) {
                Ok(n) => headers.append_raw(raw, n, HeaderValue::from_shared(frozen.slice(value))),
                // Kept by `ignore_invalid_headers off` but not a token
                // (`@`, bytes above 0x7f): no variable or rule could name
                // it, so it is dropped as if the directive were on.
                Err(_) => dropped.push(frozen.slice(name.start..value.end.max(name.end))),
            }
        }
        *self = RequestParser::new(self.limits);
        RequestHead {
            method,
            target,
            version,
            headers,
            len,
            dropped,
        }
    }
}

/// Parses a response head at the start of `buf` with nginx's rules for
/// backend responses: `_` and other bytes are kept in names, a duplicated
/// status line is skipped, a byte at or below space in a name, a NUL in a
/// value, a line starting with white space (obs-fold) or a CR not followed
/// by LF makes the head invalid (502). On success the head is split off
/// `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    let Some((status_end, status, major, minor, reason)) = status_line(buf)? else {
        return Ok(None);
    };
    let mut line = HeaderLine::default();
    let mut ranges = Vec::new();
    let mut len = None;
    for p in status_end..buf.len() {
        match line.step(buf, p, true, true) {
            Step::More => {}
            Step::Line => ranges.push((line.start..line.name_end, line.value.clone())),
            Step::End => {
                len = Some(p + 1);
                break;
            }
            Step::Bad => return Err(HeadError::Invalid("upstream sent invalid header")),
        }
    }
    let Some(len) = len else {
        return Ok(None);
    };
    let frozen = buf.split_to(len).freeze();
    let mut headers = Headers::with_capacity(ranges.len());
    for (n, v) in ranges {
        let raw = frozen.slice(n);
        // nginx passes names with any byte above space; one that is not a
        // token (`@`, bytes above 0x7f) is dropped here, since no rule,
        // variable or client could rely on it.
        if let Ok(name) = HeaderName::from_bytes(&raw) {
            headers.append_raw(raw, name, HeaderValue::from_shared(frozen.slice(v)));
        }
    }
    Ok(Some(ResponseHead {
        version: if major == 1 && minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        status,
        reason: frozen.slice(reason),
        headers,
        len,
    }))
}

/// A status line as nginx reads it: `HTTP/` major `.` minor, spaces, three
/// digits, then space, `.` (IIS's `403.1`) or the line end. Returns the
/// offset after the line, the status, the version and the reason's range.
#[allow(clippy::type_complexity)]
fn status_line(buf: &[u8]) -> Result<Option<(usize, u16, u32, u32, Range<usize>)>, HeadError> {
    let bad = HeadError::NoStatusLine;
    let mut i = 0;
    let at = |i: usize| buf.get(i).copied();
    for &expected in b"HTTP/" {
        match at(i) {
            None => return Ok(None),
            Some(b) if b == expected => i += 1,
            Some(_) => return Err(bad),
        }
    }
    let number = |i: &mut usize, first: std::ops::RangeInclusive<u8>, end: u8| {
        let mut n: u32 = 0;
        let mut digits = 0;
        loop {
            match at(*i) {
                None => return Ok(None),
                Some(b) if digits > 0 && b == end => {
                    *i += 1;
                    return Ok(Some(n));
                }
                Some(b)
                    if (digits == 0 && first.contains(&b))
                        || (digits > 0 && b.is_ascii_digit()) =>
                {
                    if n > 99 {
                        return Err(HeadError::NoStatusLine);
                    }
                    n = n * 10 + u32::from(b - b'0');
                    digits += 1;
                    *i += 1;
                }
                Some(_) => return Err(HeadError::NoStatusLine),
            }
        }
    };
    let Some(major) = number(&mut i, b'1'..=b'9', b'.')? else {
        return Ok(None);
    };
    let Some(minor) = number(&mut i, b'0'..=b'9', b' ')? else {
        return Ok(None);
    };
    while at(i) == Some(b' ') {
        i += 1;
    }
    let mut status: u16 = 0;
    for _ in 0..3 {
        match at(i) {
            None => return Ok(None),
            Some(b) if b.is_ascii_digit() => status = status * 10 + u16::from(b - b'0'),
            Some(_) => return Err(bad),
        }
        i += 1;
    }
    let reason_start = match at(i) {
        None => return Ok(None),
        Some(b' ') | Some(b'.') => i + 1,
        Some(b'\r') | Some(b'\n') => i,
        Some(_) => return Err(bad),
    };
    let Some(lf) = memchr::memchr(b'\n', &buf[reason_start.min(buf.len())..]) else {
        return Ok(None);
    };
    let lf = reason_start + lf;
    // A CR ends the text; it must be followed by the LF.
    let reason_end = match memchr::memchr(b'\r', &buf[reason_start..lf]) {
        Some(cr) if reason_start + cr + 1 != lf => return Err(bad),
        Some(cr) => reason_start + cr,
        None => lf,
    };
    Ok(Some((
        lf + 1,
        status,
        major,
        minor,
        reason_start..reason_end,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &[u8], limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
        RequestParser::new(limits).parse(&mut BytesMut::from(text))
    }

    fn parse(text: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_all(text, HeadLimits::default())
    }

    /// The verdict is the same for every way of splitting the bytes.
    fn parse_split(text: &[u8], limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
        let whole = parse_all(text, limits).map(|h| h.map(|h| h.len));
        for cut in 1..text.len() {
            let mut parser = RequestParser::new(limits);
            let mut buf = BytesMut::from(&text[..cut]);
            let first = parser.parse(&mut buf);
            let verdict = match first {
                Ok(None) => {
                    buf.extend_from_slice(&text[cut..]);
                    parser.parse(&mut buf).map(|h| h.map(|h| h.len))
                }
                other => other.map(|h| h.map(|h| h.len)),
            };
            assert_eq!(verdict, whole, "split at {cut}");
        }
        parse_all(text, limits)
    }

    #[test]
    fn request_line_forms_as_nginx_takes_them() {
        let h = parse(b"\r\n\nGET  /a?b  HTTP/1.1  \r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method, h.target.as_str()), (Method::GET, "/a?b"));
        let h = parse(b"PUT http://[::1]:80/x HTTP/1.10\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.target.as_str(), h.version),
            ("http://[::1]:80/x", Version::HTTP_11)
        );
        let h = parse(b"GET http://host?q HTTP/1.2\n\n").unwrap().unwrap();
        assert_eq!(h.target, "http://host?q");
        let h = parse(b"GET /nine\r\n").unwrap().unwrap();
        assert_eq!(h.version, Version::HTTP_09);
        assert_eq!(parse(b"POST /nine\r\n").err(), Some(HeadError::NineMethod));
        assert_eq!(
            parse(b"get / HTTP/1.1\r\n\r\n").err(),
            Some(HeadError::Invalid("client sent invalid method"))
        );
        for bad in [
            &b"GET * HTTP/1.1\r\n\r\n"[..],
            b"GET /a\x01 HTTP/1.1\r\n\r\n",
            b"GET /a\x7f HTTP/1.1\r\n\r\n",
            b"GET http://a_b/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET / HTTP/01.1\r\n\r\n",
            b"GET / HTTP/1.1000\r\n\r\n",
            b"GET / HTTP/1.1\rX\r\n\r\n",
            b"GET / XTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HeadError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n").err(),
            Some(HeadError::UnsupportedVersion)
        );
        assert_eq!(
            parse(b"GET / HTTP/10.0\r\n\r\n").err(),
            Some(HeadError::UnsupportedVersion)
        );
        // Errors come as soon as the byte arrives, not at the line end.
        assert!(parse(b"\x00\x01 garbage").is_err());
    }

    #[test]
    fn header_lines_as_nginx_takes_them() {
        let h = parse(b"GET / HTTP/1.1\r\nA:  v w  \r\nNo-Colon\r\nX_Y: 1\r\nX@Y: 2\r\nZ:\t\x7f\xff\r\r\n\r\n")
            .unwrap()
            .unwrap();
        let got: Vec<(String, String)> = h
            .headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.raw).into(),
                    String::from_utf8_lossy(h.value.as_bytes()).into(),
                )
            })
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ("A".into(), "v w".into()));
        assert_eq!(got[1], ("No-Colon".into(), "".into()));
        assert_eq!(
            h.headers.iter().nth(2).unwrap().value.as_bytes(),
            b"\t\x7f\xff"
        );
        assert_eq!(h.dropped.len(), 2);
        let kept = HeadLimits {
            underscores: true,
            ..HeadLimits::default()
        };
        let h = parse_all(b"GET / HTTP/1.1\r\nX_Y: 1\r\n\r\n", kept)
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.len(), 1);
        for bad in [
            &b"GET / HTTP/1.1\r\n folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\tfolded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA B: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nA\t: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\n: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\x002\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\rX\r\n\r\n",
            b"GET / HTTP/1.1\r\n\rX",
        ] {
            assert!(
                matches!(parse(bad), Err(HeadError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn header_buffers_are_counted_as_nginx_does_whatever_the_reads() {
        let limits = HeadLimits {
            first: 16,
            large: 64,
            large_count: 2,
            ..HeadLimits::default()
        };
        // A request line that fits in one large buffer, then one that does not.
        let line = |n: usize| format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(n));
        assert!(parse_split(line(40).as_bytes(), limits).unwrap().is_some());
        assert_eq!(
            parse_split(line(70).as_bytes(), limits).err(),
            Some(HeadError::UriTooLong)
        );
        // Header lines of 50 bytes: one per large buffer, so two fit.
        let head = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\n");
            for i in 0..n {
                s += &format!("H{i}: {}\r\n", "v".repeat(44));
            }
            s + "\r\n"
        };
        assert!(parse_split(head(2).as_bytes(), limits).unwrap().is_some());
        assert!(matches!(
            parse_split(head(3).as_bytes(), limits),
            Err(HeadError::HeaderTooLarge(_))
        ));
        let long = format!("GET / HTTP/1.1\r\nH: {}\r\n\r\n", "v".repeat(70));
        assert_eq!(
            parse_split(long.as_bytes(), limits).err(),
            Some(HeadError::HeaderTooLarge(
                "client sent too long header line"
            ))
        );
        // Empty lines before a request never fill the buffers.
        let mut padded = "\r\n".repeat(200);
        padded += "GET / HTTP/1.1\r\n\r\n";
        assert!(parse_split(padded.as_bytes(), limits).unwrap().is_some());
    }

    #[test]
    fn pipelined_requests_each_get_their_head() {
        let mut buf = BytesMut::from(
            &b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\nGE"[..],
        );
        let mut parser = RequestParser::new(HeadLimits::default());
        assert_eq!(parser.parse(&mut buf).unwrap().unwrap().target, "/1");
        assert_eq!(parser.parse(&mut buf).unwrap().unwrap().target, "/2");
        assert!(parser.parse(&mut buf).unwrap().is_none());
        assert_eq!(&buf[..], b"GE");
    }

    #[test]
    fn response_heads_as_nginx_takes_them() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1  403.1 Forbidden\r\nX_Y: 1\r\nHTTP/1.1 200 OK\r\nA@B: 2\r\n\r\nbody"[..],
        );
        let h = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(h.status, 403);
        assert_eq!(&h.reason[..], b"1 Forbidden");
        assert_eq!(h.headers.len(), 1, "A@B is not a token: dropped");
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA:1\r\n folded\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut buf).err(),
            Some(HeadError::Invalid("upstream sent invalid header"))
        );
        let mut buf = BytesMut::from(&b"ICY 200 OK\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut buf).err(),
            Some(HeadError::NoStatusLine)
        );
        let mut buf = BytesMut::from(&b"HTTP/1.1 200"[..]);
        assert!(parse_response(&mut buf).unwrap().is_none());
    }
}
