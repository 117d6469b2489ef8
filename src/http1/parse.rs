//! Parsing message heads (request from clients, response from backends)
//! with `httparse`, and deciding how the body is framed (RFC 9112 §6).
//!
//! Parsing is zero-copy: the head is split off the read buffer and header
//! names and values become slices of it. Line endings may be CRLF or bare
//! LF, as nginx accepts.

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Version};

use super::headers::{HeaderValue, Headers};

/// Most header lines accepted in one head.
pub const MAX_HEADERS: usize = 128;

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// The request target as sent (`/path?query`, or absolute form).
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Header lines.
    pub headers: Headers,
    /// Bytes of the head on the wire (`$request_length` counts them).
    pub len: usize,
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

/// Why a head could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP.
    Invalid(&'static str),
    /// More header lines than [`MAX_HEADERS`].
    TooManyHeaders,
    /// An HTTP major version above 1 (505).
    UnsupportedVersion,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Invalid(why) => f.write_str(why),
            HeadError::TooManyHeaders => f.write_str("too many header lines"),
            HeadError::UnsupportedVersion => f.write_str("invalid version"),
        }
    }
}

fn offset(base: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

fn version_of(v: Option<u8>) -> Version {
    match v {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    }
}

fn map_err(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Invalid("invalid HTTP version"),
        httparse::Error::Token => HeadError::Invalid("invalid method or header name"),
        httparse::Error::HeaderName => HeadError::Invalid("invalid header name"),
        httparse::Error::HeaderValue => HeadError::Invalid("invalid header value"),
        httparse::Error::NewLine => HeadError::Invalid("invalid line ending"),
        httparse::Error::Status => HeadError::Invalid("invalid status line"),
    }
}

/// Whether the request line ends in `HTTP/<major>[.<minor>]` with a major
/// version above 1 (answered with 505, not 400).
fn newer_major(buf: &[u8]) -> bool {
    let line = match memchr::memchr(b'\n', buf) {
        Some(i) => &buf[..i],
        None => buf,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(at) = memchr::memmem::rfind(line, b" HTTP/") else {
        return false;
    };
    let version = &line[at + 6..];
    let digits = version.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = &version[digits..];
    let valid_rest = rest.is_empty()
        || (rest[0] == b'.' && rest.len() > 1 && rest[1..].iter().all(u8::is_ascii_digit));
    digits > 0
        && valid_rest
        && std::str::from_utf8(&version[..digits])
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
            .is_none_or(|major| major > 1)
}

/// Parses a request head at the start of `buf`. On success the head is
/// removed from `buf` (what follows, e.g. the body or a pipelined request,
/// stays). `Ok(None)` means more bytes are needed.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) if newer_major(buf) => {
            return Err(HeadError::UnsupportedVersion);
        }
        Err(e) => return Err(map_err(e)),
    };
    // Methods are upper-case letters, `_` and `-`, as nginx's parser
    // takes them: `get` is not `GET`.
    let method = req.method.unwrap_or("");
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(HeadError::Invalid("invalid method"));
    }
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Invalid("invalid method"))?;
    let target = req.path.unwrap_or("").to_string();
    let version = version_of(req.version);
    let parsed_headers: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = req
        .headers
        .iter()
        .map(|h| (offset(buf, h.name.as_bytes()), offset(buf, h.value)))
        .collect();
    let frozen = buf.split_to(len).freeze();
    let mut headers = Headers::with_capacity(parsed_headers.len());
    for (n, v) in parsed_headers {
        let raw = frozen.slice(n);
        let name =
            HeaderName::from_bytes(&raw).map_err(|_| HeadError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_shared(frozen.slice(v));
        headers.append_raw(raw, name, value);
    }
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
        len,
    }))
}

/// Parses a response head at the start of `buf`, like [`parse_request`].
pub fn parse_response(buf: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match httparse::ParserConfig::default()
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .parse_response(&mut resp, buf)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_err(e)),
    };
    let status = resp.code.ok_or(HeadError::Invalid("invalid status line"))?;
    if !(100..=999).contains(&status) {
        return Err(HeadError::Invalid("invalid status code"));
    }
    let version = version_of(resp.version);
    let reason_range = resp.reason.map(|r| offset(buf, r.as_bytes()));
    // Offsets are taken before the buffer is split: httparse borrows it.
    let ranges: Vec<_> = resp
        .headers
        .iter()
        .map(|h| (offset(buf, h.name.as_bytes()), offset(buf, h.value)))
        .collect();
    let frozen = buf.split_to(len).freeze();
    let mut headers = Headers::with_capacity(ranges.len());
    for (n, v) in ranges {
        let raw = frozen.slice(n);
        let name =
            HeaderName::from_bytes(&raw).map_err(|_| HeadError::Invalid("invalid header name"))?;
        let value = HeaderValue::from_shared(frozen.slice(v));
        headers.append_raw(raw, name, value);
    }
    let reason = reason_range.map(|r| frozen.slice(r)).unwrap_or_default();
    Ok(Some(ResponseHead {
        version,
        status,
        reason,
        headers,
        len,
    }))
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// Why a request's body framing is unacceptable; each maps to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Malformed or conflicting framing headers (400).
    Bad(&'static str),
    /// A transfer coding other than chunked (501).
    UnknownCoding,
}

fn content_length(headers: &Headers) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(&http::header::CONTENT_LENGTH) {
        let s = v.as_bytes().trim_ascii();
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) || s.len() > 19 {
            return Err("client sent invalid \"Content-Length\" header");
        }
        let n: u64 = std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("client sent invalid \"Content-Length\" header")?;
        if found.is_some() {
            return Err("client sent duplicate header line: \"Content-Length\"");
        }
        found = Some(n);
    }
    Ok(found)
}

/// Body framing of a request (RFC 9112 §6.3, nginx's checks).
pub fn request_body_kind(head: &RequestHead) -> Result<BodyKind, FramingError> {
    let te: Vec<&HeaderValue> = head
        .headers
        .get_all(&http::header::TRANSFER_ENCODING)
        .collect();
    let cl = content_length(&head.headers).map_err(FramingError::Bad)?;
    if te.len() > 1 {
        return Err(FramingError::Bad(
            "client sent duplicate header line: \"Transfer-Encoding\"",
        ));
    }
    if !te.is_empty() {
        if head.version == Version::HTTP_10 {
            return Err(FramingError::Bad(
                "client sent \"Transfer-Encoding\" header in HTTP/1.0 request",
            ));
        }
        if cl.is_some() {
            return Err(FramingError::Bad(
                "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time",
            ));
        }
        if te[0]
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
        {
            return Ok(BodyKind::Chunked);
        }
        return Err(FramingError::UnknownCoding);
    }
    Ok(match cl {
        Some(0) | None => BodyKind::None,
        Some(n) => BodyKind::Length(n),
    })
}

/// Body framing of a response to a request with `method`.
pub fn response_body_kind(head: &ResponseHead, method: &Method) -> Result<BodyKind, &'static str> {
    if *method == Method::HEAD || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyKind::None);
    }
    let chunked = head
        .headers
        .get_all(&http::header::TRANSFER_ENCODING)
        .last()
        .map(|v| super::headers::has_token(v.as_bytes(), "chunked"));
    match chunked {
        Some(true) if head.version == Version::HTTP_11 => return Ok(BodyKind::Chunked),
        Some(_) => return Ok(BodyKind::Close),
        None => {}
    }
    match content_length(&head.headers) {
        Ok(Some(n)) => Ok(BodyKind::Length(n)),
        Ok(None) => Ok(BodyKind::Close),
        Err(_) => Err("upstream sent invalid \"Content-Length\" header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_request_with_lf_only_lines_and_leftovers() {
        let mut buf = BytesMut::from(&b"GET /a?b HTTP/1.0\nHost: localhost\nX-IP: 1\n\nNEXT"[..]);
        let head = parse_request(&mut buf).unwrap().unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.target, "/a?b");
        assert_eq!(head.version, Version::HTTP_10);
        assert_eq!(head.headers.iter().nth(1).unwrap().raw, Bytes::from("X-IP"));
        assert_eq!(&buf[..], b"NEXT");
        assert_eq!(request_body_kind(&head), Ok(BodyKind::None));
    }

    #[test]
    fn parse_request_needs_more_and_rejects_garbage() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
        assert!(parse_request(&mut buf).unwrap().is_none());
        let mut buf = BytesMut::from(&b"\x00\x01 garbage\r\n\r\n"[..]);
        assert!(parse_request(&mut buf).is_err());
    }

    #[test]
    fn request_framing_follows_rfc9112() {
        let head = |text: &str| {
            parse_request(&mut BytesMut::from(text.as_bytes()))
                .unwrap()
                .unwrap()
        };
        let h = head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(request_body_kind(&h), Ok(BodyKind::Length(5)));
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(request_body_kind(&h), Ok(BodyKind::Chunked));
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(request_body_kind(&h), Err(FramingError::UnknownCoding));
        let h = head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert!(matches!(request_body_kind(&h), Err(FramingError::Bad(_))));
        let h = head("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert!(matches!(request_body_kind(&h), Err(FramingError::Bad(_))));
        let h = head("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(request_body_kind(&h), Err(FramingError::Bad(_))));
    }

    #[test]
    fn parse_response_keeps_reason_and_framing() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 101 Tunnel Open Now\nUpgrade: chat-v2\n\nfirst tunnel bytes"[..],
        );
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.reason, Bytes::from("Tunnel Open Now"));
        assert_eq!(&buf[..], b"first tunnel bytes");
        assert_eq!(response_body_kind(&head, &Method::GET), Ok(BodyKind::None));
        let mut buf = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(response_body_kind(&head, &Method::GET), Ok(BodyKind::Close));
        assert_eq!(response_body_kind(&head, &Method::HEAD), Ok(BodyKind::None));
    }
}
