//! Message heads (request from clients, response from backends) and how
//! their bodies are framed (RFC 9112 §6, with nginx's checks). The heads
//! are scanned by [`super::head`].

use http::{Method, Version};

pub use super::head::{
    HeadError, HeadLimits, RequestHead, RequestParser, ResponseHead, parse_response,
};
use super::headers::{HeaderValue, Headers};

/// Parses a request head at the start of `buf` with nginx's default
/// limits (a convenience for tests and tools; connections keep a
/// [`RequestParser`]).
pub fn parse_request(buf: &mut bytes::BytesMut) -> Result<Option<RequestHead>, HeadError> {
    RequestParser::new(HeadLimits::default()).parse(buf)
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

/// The `Content-Length` as nginx reads it: digits only (the scanner has
/// already skipped the spaces around the value; a tab or a sign makes it
/// invalid), at most the largest file offset, one header line.
pub fn content_length(headers: &Headers) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in headers.get_all(&http::header::CONTENT_LENGTH) {
        let s = v.as_bytes();
        let n = (!s.is_empty() && s.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(s).ok()?.parse::<i64>().ok())
            .flatten()
            .ok_or("client sent invalid \"Content-Length\" header")?;
        if found.is_some() {
            return Err("client sent duplicate header line: \"Content-Length\"");
        }
        found = Some(n as u64);
    }
    Ok(found)
}

/// Body framing of a request (RFC 9112 §6.3, nginx's checks and order).
pub fn request_body_kind(head: &RequestHead) -> Result<BodyKind, FramingError> {
    let te: Vec<&HeaderValue> = head
        .headers
        .get_all(&http::header::TRANSFER_ENCODING)
        .collect();
    if te.len() > 1 {
        return Err(FramingError::Bad(
            "client sent duplicate header line: \"Transfer-Encoding\"",
        ));
    }
    let cl = content_length(&head.headers).map_err(FramingError::Bad)?;
    if let Some(te) = te.first() {
        if head.version != Version::HTTP_11 {
            return Err(FramingError::Bad(
                "client sent HTTP/1.0 request with \"Transfer-Encoding\" header",
            ));
        }
        // Exactly `chunked`: a list, a parameter or a tab is unknown (501).
        if !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::UnknownCoding);
        }
        if cl.is_some() {
            return Err(FramingError::Bad(
                "client sent \"Content-Length\" and \"Transfer-Encoding\" headers at the same time",
            ));
        }
        return Ok(BodyKind::Chunked);
    }
    // An explicit `Content-Length: 0` stays a length: nginx passes it on.
    Ok(cl.map_or(BodyKind::None, BodyKind::Length))
}

/// Body framing of a response to a request with `method`, as nginx frames
/// a backend's: chunked when any `Transfer-Encoding` names `chunked`
/// (whatever the version), otherwise by `Content-Length` (`identity` or an
/// unknown coding does not change that), otherwise until the backend
/// closes. An invalid or repeated `Content-Length` is refused (502), as
/// nginx does since 1.23: nginx 1.22 read such a body until close.
pub fn response_body_kind(head: &ResponseHead, method: &Method) -> Result<BodyKind, &'static str> {
    if *method == Method::HEAD || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyKind::None);
    }
    let chunked = head
        .headers
        .get_all(&http::header::TRANSFER_ENCODING)
        .any(|v| {
            v.as_bytes()
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
        });
    if chunked {
        return Ok(BodyKind::Chunked);
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
    use bytes::{Bytes, BytesMut};

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
        // Any Transfer-Encoding naming chunked, in any case, whatever the
        // version; otherwise the length frames the body.
        let mut buf = BytesMut::from(
            &b"HTTP/1.0 200 OK\r\nTransfer-Encoding: GZIP, Chunked\r\nContent-Length: 3\r\n\r\n"[..],
        );
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(
            response_body_kind(&head, &Method::GET),
            Ok(BodyKind::Chunked)
        );
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n"[..],
        );
        let head = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!(
            response_body_kind(&head, &Method::GET),
            Ok(BodyKind::Length(3))
        );
    }
}
