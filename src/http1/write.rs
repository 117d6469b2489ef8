//! Serialising message heads exactly as they will appear on the wire.
//!
//! Switchyard writes heads itself (rather than through a generic HTTP
//! library) so that header names keep the spelling they were configured or
//! received with, their order is nginx's, and the byte count of every head
//! is known exactly for `$bytes_sent`.

use std::io::Write;

use http::{Method, Version};

use super::headers::Headers;

/// The reason phrase nginx uses for a status (empty for unknown codes).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Time-out",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// Appends `HTTP/1.1 <status> <reason>\r\n<headers>\r\n` to `out`.
/// `reason` overrides the standard phrase (nginx passes a backend's own
/// phrase through).
pub fn response_head(
    out: &mut Vec<u8>,
    status: u16,
    reason_phrase: Option<&[u8]>,
    headers: &Headers,
) {
    let _ = write!(out, "HTTP/1.1 {status:03} ");
    match reason_phrase {
        Some(r) => out.extend_from_slice(r),
        None => out.extend_from_slice(reason(status).as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    header_lines(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends `METHOD target HTTP/1.x\r\n<headers>\r\n` to `out`.
pub fn request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    version: Version,
    headers: &Headers,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    header_lines(out, headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends `Name: value\r\n` for each of `headers` (a head's lines, or a
/// chunked body's trailer section).
pub fn header_lines(out: &mut Vec<u8>, headers: &Headers) {
    for h in headers {
        out.extend_from_slice(&h.raw);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::headers::HeaderValue;

    #[test]
    fn write_heads_keep_spelling_and_order() {
        let mut h = Headers::new();
        h.append_str("X-IP", HeaderValue::from_static("127.0.0.1"));
        h.append_str("Connection", HeaderValue::from_static("close"));
        let mut out = Vec::new();
        response_head(&mut out, 200, None, &h);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nX-IP: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        response_head(&mut out, 101, Some(b"Switching"), &Headers::new());
        assert_eq!(out, b"HTTP/1.1 101 Switching\r\n\r\n");
        out.clear();
        request_head(&mut out, &Method::GET, "/x", Version::HTTP_10, &h);
        assert!(out.starts_with(b"GET /x HTTP/1.0\r\nX-IP: "));
    }
}
