//! What the scanners produce: parsed heads, their errors, and the limits
//! request heads are read under.

use bytes::Bytes;
use http::{Method, Version};

use crate::http1::headers::Headers;

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
