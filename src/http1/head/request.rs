//! Request heads, scanned incrementally, with nginx's buffer accounting.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Version};

use super::line::{HeaderLine, LineState, Step};
use super::message::{HeadError, HeadLimits, RequestHead};
use crate::http1::headers::{HeaderValue, Headers};

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
                // The first digit was 1 (any other is refused above), so
                // a second one makes a major version of 10 or more.
                b'0'..=b'9' => return Err(HeadError::UnsupportedVersion),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &[u8], limits: HeadLimits) -> Result<Option<RequestHead>, HeadError> {
        RequestParser::new(limits).parse(&mut BytesMut::from(text))
    }

    fn parse(text: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_all(text, HeadLimits::default())
    }

    /// Each head is refused as invalid (400).
    fn assert_invalid(heads: &[&[u8]]) {
        for &bad in heads {
            assert!(
                matches!(parse(bad), Err(HeadError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
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
        for nine in [
            &b"GET /nine\r\n"[..],
            b"GET /nine\n",
            b"GET /nine  \r\n",
            b"GET /nine \n",
        ] {
            let h = parse(nine).unwrap().unwrap();
            assert_eq!(
                (h.version, h.target.as_str()),
                (Version::HTTP_09, "/nine"),
                "{:?}",
                String::from_utf8_lossy(nine)
            );
        }
        // Up to three digits of minor version, as nginx.
        let h = parse(b"GET / HTTP/1.100\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(parse(b"POST /nine\r\n").err(), Some(HeadError::NineMethod));
        assert_eq!(
            parse(b"get / HTTP/1.1\r\n\r\n").err(),
            Some(HeadError::Invalid("client sent invalid method"))
        );
        assert_invalid(&[
            &b"GET * HTTP/1.1\r\n\r\n"[..],
            b"GET /a\x01 HTTP/1.1\r\n\r\n",
            b"GET /a\x7f HTTP/1.1\r\n\r\n",
            b"GET http://a_b/ HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET / HTTP/01.1\r\n\r\n",
            b"GET / HTTP/1.1000\r\n\r\n",
            b"GET / HTTP/1.1\rX\r\n\r\n",
            b"GET / XTTP/1.1\r\n\r\n",
        ]);
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
        let h = parse_all(b"GET / HTTP/1.1\r\nX_Y: 1\r\n_Z: 2\r\n\r\n", kept)
            .unwrap()
            .unwrap();
        assert_eq!((h.headers.len(), h.dropped.len()), (2, 0));
        // At the start of a name too: `_` is dropped unless allowed, any
        // other byte nginx does not take drops the line, `:` is invalid.
        let h = parse(b"GET / HTTP/1.1\r\n_Z: 2\r\n@Y: 3\r\nA: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.headers.len(), h.dropped.len()), (1, 2));
        assert_invalid(&[
            &b"GET / HTTP/1.1\r\n folded\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\tfolded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA B: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nA\t: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\n: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\x002\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\rX\r\n\r\n",
            b"GET / HTTP/1.1\r\n\rX",
        ]);
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
        // Empty lines before a request never fill the buffers, and the
        // request line after them has the same limits.
        let padded = "\r\n".repeat(200);
        let after = padded.clone() + "GET / HTTP/1.1\r\n\r\n";
        assert!(parse_split(after.as_bytes(), limits).unwrap().is_some());
        let after = padded + &line(70);
        assert_eq!(
            parse_split(after.as_bytes(), limits).err(),
            Some(HeadError::UriTooLong)
        );
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
}
