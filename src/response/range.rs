//! nginx's range filter: `Range: bytes=...` on a 200 response of known
//! length that allows ranges (static files; proxied ones with
//! `proxy_force_ranges`, one range at most) becomes a 206 with
//! `Content-Range`, or a `multipart/byteranges` body framed as nginx frames
//! it, or a 416; `If-Range` sends the whole response when the validator
//! differs. A response that does not serve a range says `Accept-Ranges:
//! bytes` when it could have.
//!
//! It runs after gzip: a compressed response has no known length, so it is
//! never range-served.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderName;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};

use super::{Ranges, Reply, httptime};
use crate::config::LocConf;
use crate::http1::headers::HeaderValue;
use crate::request::RequestCtx;

/// One piece of the body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// These bytes (multipart framing).
    Data(Bytes),
    /// `len` bytes of the content from `start`.
    Slice {
        /// Offset in the content.
        start: u64,
        /// Length.
        len: u64,
    },
}

/// What the filter decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the whole content (the headers may have gained
    /// `Accept-Ranges`).
    Whole,
    /// A 206: send these parts, `length` bytes in all.
    Partial {
        /// In order.
        parts: Vec<Part>,
        /// Sum of the parts.
        length: u64,
    },
    /// A 416: no range can be served from `length` bytes.
    Unsatisfiable {
        /// The content's length.
        length: u64,
    },
}

/// Boundaries of multipart responses: nginx numbers them from one
/// process-wide counter (its temporary file number), zero-padded to 20
/// digits.
static BOUNDARY: AtomicU64 = AtomicU64::new(0);

/// Why a `Range` value is not served as asked.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Send the whole response instead.
    Declined,
    /// Answer 416.
    NotSatisfiable,
}

/// nginx's `ngx_http_range_parse` on what follows `bytes=`: ranges as
/// `[start, end)` within `len` bytes, at most `limit` of them.
fn parse(spec: &[u8], len: u64, limit: u32) -> Result<Vec<(u64, u64)>, Refusal> {
    use Refusal::*;
    let at = |i: usize| spec.get(i).copied().unwrap_or(0);
    let number = |p: &mut usize| -> Result<u64, Refusal> {
        let mut n: u64 = 0;
        while at(*p).is_ascii_digit() {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(at(*p) - b'0')))
                .filter(|n| *n <= i64::MAX as u64)
                .ok_or(NotSatisfiable)?;
            *p += 1;
        }
        Ok(n)
    };
    let mut ranges = Vec::new();
    let mut left = limit;
    let mut size: u64 = 0;
    let mut p = 0;
    loop {
        while at(p) == b' ' {
            p += 1;
        }
        let (start, mut end);
        let mut open = false;
        if at(p) == b'-' {
            p += 1;
            if !at(p).is_ascii_digit() {
                return Err(NotSatisfiable);
            }
            let suffix = number(&mut p)?;
            start = len.saturating_sub(suffix);
            end = len.saturating_sub(1);
        } else {
            if !at(p).is_ascii_digit() {
                return Err(NotSatisfiable);
            }
            start = number(&mut p)?;
            while at(p) == b' ' {
                p += 1;
            }
            if at(p) != b'-' {
                return Err(NotSatisfiable);
            }
            p += 1;
            while at(p) == b' ' {
                p += 1;
            }
            if matches!(at(p), b',' | 0) {
                end = len;
                open = true;
            } else {
                if !at(p).is_ascii_digit() {
                    return Err(NotSatisfiable);
                }
                end = number(&mut p)?;
            }
        }
        if !open {
            while at(p) == b' ' {
                p += 1;
            }
            if !matches!(at(p), b',' | 0) {
                return Err(NotSatisfiable);
            }
            end = if end >= len { len } else { end + 1 };
        }
        if start < end {
            ranges.push((start, end));
            size = size
                .checked_add(end - start)
                .filter(|s| *s <= i64::MAX as u64)
                .ok_or(NotSatisfiable)?;
            if left == 0 {
                return Err(Declined);
            }
            left -= 1;
        } else if start == 0 {
            return Err(Declined);
        }
        if at(p) != b',' {
            break;
        }
        p += 1;
    }
    if ranges.is_empty() {
        return Err(NotSatisfiable);
    }
    if size > len {
        return Err(Declined);
    }
    Ok(ranges)
}

/// Applies the filter to `reply`, whose content is `length` bytes
/// (`None`: unknown).
pub fn apply(reply: &mut Reply, req: &RequestCtx, conf: &LocConf, length: Option<u64>) -> Outcome {
    let (Some(len), 200) = (length, reply.status) else {
        return Outcome::Whole;
    };
    let limit = match (reply.entity.ranges, conf.filters.max_ranges) {
        (Ranges::No, _) | (_, Some(0)) => return Outcome::Whole,
        (Ranges::Single, _) => 1,
        (Ranges::Multi, max) => max.unwrap_or(i32::MAX as u32),
    };
    let spec = req
        .headers
        .get(&http::header::RANGE)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() >= 7 && v[..6].eq_ignore_ascii_case(b"bytes="));
    let outcome = match spec {
        Some(spec) if if_range_holds(reply, req) => match parse(&spec[6..], len, limit) {
            Ok(ranges) => Some(partial(reply, &ranges, len)),
            Err(Refusal::NotSatisfiable) => Some(Outcome::Unsatisfiable { length: len }),
            Err(Refusal::Declined) => None,
        },
        _ => None,
    };
    outcome.unwrap_or_else(|| {
        reply
            .headers
            .append_str("Accept-Ranges", HeaderValue::from_static("bytes"));
        Outcome::Whole
    })
}

/// `If-Range`: an entity tag (a value ending in `"`) must equal the
/// `ETag` exactly; a date must equal the modification time.
fn if_range_holds(reply: &Reply, req: &RequestCtx) -> bool {
    let Some(v) = req.headers.get(&http::header::IF_RANGE) else {
        return true;
    };
    let v = v.as_bytes();
    if v.len() >= 2 && v.ends_with(b"\"") {
        return reply.headers.get(&ETAG).is_some_and(|e| e.as_bytes() == v);
    }
    match reply.entity.last_modified {
        Some(lm) => httptime::parse(v) == Some(lm),
        None => false,
    }
}

/// Turns `reply` into a 206 for `ranges` of `len` bytes.
fn partial(reply: &mut Reply, ranges: &[(u64, u64)], len: u64) -> Outcome {
    reply.status = 206;
    reply.reason = None;
    reply.headers.remove(&CONTENT_LENGTH);
    if let [(start, end)] = ranges {
        let value = format!("bytes {start}-{}/{len}", end - 1);
        reply
            .headers
            .append_str("Content-Range", HeaderValue::from_string(value));
        return Outcome::Partial {
            parts: vec![Part::Slice {
                start: *start,
                len: end - start,
            }],
            length: end - start,
        };
    }
    let boundary = BOUNDARY.fetch_add(1, Ordering::Relaxed) + 1;
    let mut head = format!("\r\n--{boundary:020}\r\n");
    if let Some(ct) = reply.headers.get(&CONTENT_TYPE).filter(|v| !v.is_empty()) {
        head.push_str("Content-Type: ");
        head.push_str(&String::from_utf8_lossy(ct.as_bytes()));
        head.push_str("\r\n");
    }
    head.push_str("Content-Range: bytes ");
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut length = 0;
    for (start, end) in ranges {
        let framing = format!("{head}{start}-{}/{len}\r\n\r\n", end - 1);
        length += framing.len() as u64 + (end - start);
        parts.push(Part::Data(Bytes::from(framing)));
        parts.push(Part::Slice {
            start: *start,
            len: end - start,
        });
    }
    let last = format!("\r\n--{boundary:020}--\r\n");
    length += last.len() as u64;
    parts.push(Part::Data(Bytes::from(last)));
    let ct = HeaderValue::from_string(format!("multipart/byteranges; boundary={boundary:020}"));
    if reply.headers.contains(&CONTENT_TYPE) {
        reply.headers.set(CONTENT_TYPE, ct);
    } else {
        reply.headers.append_str("Content-Type", ct);
    }
    Outcome::Partial { parts, length }
}

/// nginx's 416: the error page, with the headers the response had so far
/// except its validators and `Accept-Ranges`, and `Content-Range: bytes
/// */LENGTH`.
pub fn not_satisfiable(reply: Reply, length: u64, server_tokens: bool) -> Reply {
    let mut page = Reply::error(416, server_tokens);
    let dropped = [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        ETAG,
        http::header::ACCEPT_RANGES,
        http::header::LAST_MODIFIED,
    ];
    let mut headers = crate::http1::Headers::with_capacity(reply.headers.len() + 2);
    for h in page.headers.iter() {
        headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
    }
    for h in reply.headers.iter().filter(|h| !dropped.contains(&h.name)) {
        headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
    }
    headers.append_raw(
        Bytes::from_static(b"Content-Range"),
        HeaderName::from_static("content-range"),
        HeaderValue::from_string(format!("bytes */{length}")),
    );
    page.headers = headers;
    page.pass_server = reply.pass_server;
    page.pass_date = reply.pass_date;
    page.special = false;
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use Refusal::*;

    const MAX: u32 = i32::MAX as u32;

    #[test]
    fn range_specs_as_nginx_reads_them() {
        assert_eq!(parse(b"0-8", 1000, MAX), Ok(vec![(0, 9)]));
        assert_eq!(parse(b"-10", 1000, MAX), Ok(vec![(990, 1000)]));
        assert_eq!(parse(b"990-", 1000, MAX), Ok(vec![(990, 1000)]));
        assert_eq!(parse(b"990-1990", 1000, MAX), Ok(vec![(990, 1000)]));
        assert_eq!(parse(b" 1 - 2 , 4-", 10, MAX), Ok(vec![(1, 3), (4, 10)]));
        assert_eq!(parse(b"-2000", 1000, MAX), Ok(vec![(0, 1000)]));
        // Unsatisfiable ones are skipped while others remain.
        assert_eq!(parse(b"0-1,5000-,3-4", 1000, MAX), Ok(vec![(0, 2), (3, 5)]));
        assert_eq!(parse(b"5000-", 1000, MAX), Err(NotSatisfiable));
        assert_eq!(parse(b"x", 1000, MAX), Err(NotSatisfiable));
        assert_eq!(parse(b"1-x", 1000, MAX), Err(NotSatisfiable));
        assert_eq!(parse(b"1", 1000, MAX), Err(NotSatisfiable));
        assert_eq!(parse(b"1-2 3-", 1000, MAX), Err(NotSatisfiable));
        assert_eq!(
            parse(b"99999999999999999999-", 1000, MAX),
            Err(NotSatisfiable)
        );
        // More than the content in all: the whole response.
        assert_eq!(parse(b"0-999,0-0", 1000, MAX), Err(Declined));
        // Beyond the limit: the whole response.
        assert_eq!(parse(b"0-1,2-3", 1000, 1), Err(Declined));
        assert_eq!(parse(b"0-1,2-3", 1000, 2), Ok(vec![(0, 2), (2, 4)]));
        // An empty body: `0-` and `-N` are declined, others unsatisfiable.
        assert_eq!(parse(b"0-", 0, MAX), Err(Declined));
        assert_eq!(parse(b"0-0", 0, MAX), Err(Declined));
        assert_eq!(parse(b"1-2", 0, MAX), Err(NotSatisfiable));
        // A start after the end.
        assert_eq!(parse(b"5-2", 1000, MAX), Err(NotSatisfiable));
    }
}
