//! Response heads from backends: status line and header lines.

use std::ops::Range;

use bytes::BytesMut;
use http::{HeaderName, Version};

use super::line::{HeaderLine, Step};
use super::message::{HeadError, ResponseHead};
use crate::http1::headers::{HeaderValue, Headers};

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
        // Version numbers of up to three digits, as nginx.
        let mut buf = BytesMut::from(&b"HTTP/100.100 200 OK\r\n\r\n"[..]);
        assert_eq!(parse_response(&mut buf).unwrap().unwrap().status, 200);
        let mut buf = BytesMut::from(&b"HTTP/1.00 200 OK\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut buf).unwrap().unwrap().version,
            Version::HTTP_10
        );
        for bad in [
            &b"HTTP/1000.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1000 200 OK\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                parse_response(&mut buf).err(),
                Some(HeadError::NoStatusLine)
            );
        }
    }
}
