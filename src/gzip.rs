//! Response compression: nginx's `gzip` filter.
//!
//! Whether a response is compressed is decided in two steps, as nginx
//! does. The response must qualify (`gzip on`, status 200, 403 or 404, no
//! `Content-Encoding` yet, a length unknown or at least `gzip_min_length`,
//! a type in `gzip_types`, a status that has a body); then `Vary: Accept-Encoding` is
//! due when `gzip_vary` is on, whatever the client. Then the request must
//! accept it: `gzip` in `Accept-Encoding` with a non-zero quality, an HTTP
//! version of at least `gzip_http_version`, `gzip_proxied` for requests
//! that came through another proxy (`Via`), and no `gzip_disable` match on
//! the `User-Agent`.
//!
//! A compressed response loses `Content-Length` and `Accept-Ranges`, gets
//! `Content-Encoding: gzip`, and its `ETag` turns weak. Bodies streamed from
//! a backend are compressed as they arrive, each read flushed to the client
//! (responses are never buffered, so compression must not hold bytes back).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::config::{Disable, GzipConf};
use crate::http1::Headers;
use crate::http1::headers::HeaderValue;
use crate::request::RequestCtx;

/// What to do with one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    /// Add `Vary: Accept-Encoding`.
    pub vary: bool,
    /// Compress the body.
    pub compress: bool,
}

/// Decides for a response with `status`, `headers` and a body of `length`
/// bytes (`None`: unknown). `has_body` is false for bodiless statuses.
pub fn decide(
    conf: &GzipConf,
    req: &RequestCtx,
    status: u16,
    headers: &Headers,
    length: Option<u64>,
    has_body: bool,
) -> Decision {
    let qualifies = conf.enable
        && matches!(status, 200 | 403 | 404)
        && headers
            .get(&http::header::CONTENT_ENCODING)
            .is_none_or(|v| v.is_empty())
        && length.is_none_or(|n| n >= conf.min_length)
        && type_matches(conf, headers)
        && has_body;
    if !qualifies {
        return Decision::default();
    }
    Decision {
        vary: conf.vary,
        compress: request_accepts(conf, req, headers),
    }
}

fn type_matches(conf: &GzipConf, headers: &Headers) -> bool {
    let Some(types) = &conf.types else {
        return true;
    };
    let Some(ct) = headers.get(&http::header::CONTENT_TYPE) else {
        return false;
    };
    let ct = ct.as_bytes();
    let end = memchr::memchr(b';', ct).unwrap_or(ct.len());
    let mime = ct[..end].trim_ascii();
    types
        .iter()
        .any(|t| t.as_bytes().eq_ignore_ascii_case(mime))
}

/// nginx's `ngx_http_gzip_ok`: whether the client and the path to it take
/// a compressed response.
fn request_accepts(conf: &GzipConf, req: &RequestCtx, resp: &Headers) -> bool {
    let Some(ae) = req.headers.get(&http::header::ACCEPT_ENCODING) else {
        return false;
    };
    if !accepts_gzip(ae.as_bytes()) {
        return false;
    }
    let ua = req
        .headers
        .get(&http::header::USER_AGENT)
        .map(|v| v.as_bytes());
    if conf.disable.iter().any(|d| matches!(d, Disable::Msie6)) && ua.is_some_and(is_msie6) {
        return false;
    }
    if req.version < conf.http_version {
        return false;
    }
    if req.headers.contains(&http::header::VIA) && !proxied_ok(conf.proxied, req, resp) {
        return false;
    }
    let regex_hit = |d: &Disable| match d {
        Disable::Regex(re) => ua.is_some_and(|ua| re.regex.is_match(ua)),
        Disable::Msie6 => false,
    };
    !conf.disable.iter().any(regex_hit)
}

/// `gzip_proxied` for a request that carries `Via`.
fn proxied_ok(flags: u16, req: &RequestCtx, resp: &Headers) -> bool {
    use crate::config::proxied::*;
    if flags & OFF != 0 {
        return false;
    }
    if flags & ANY != 0 {
        return true;
    }
    if flags & AUTH != 0 && req.headers.contains(&http::header::AUTHORIZATION) {
        return true;
    }
    if let Some(expires) = resp.get(&http::header::EXPIRES) {
        if flags & EXPIRED == 0 {
            return false;
        }
        let parse = |v: &HeaderValue| {
            v.to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
        };
        let Some(expires) = parse(expires) else {
            return false;
        };
        let date = match resp.get(&http::header::DATE) {
            Some(d) => match parse(d) {
                Some(d) => d,
                None => return false,
            },
            None => std::time::SystemTime::now(),
        };
        return expires < date;
    }
    let cache_control: Vec<&HeaderValue> = resp.get_all(&http::header::CACHE_CONTROL).collect();
    if !cache_control.is_empty() {
        let has = |token: &str| {
            cache_control
                .iter()
                .any(|v| crate::http1::headers::has_token(v.as_bytes(), token))
        };
        return (flags & NO_CACHE != 0 && has("no-cache"))
            || (flags & NO_STORE != 0 && has("no-store"))
            || (flags & PRIVATE != 0 && has("private"));
    }
    if flags & NO_LAST_MODIFIED != 0 && resp.contains(&http::header::LAST_MODIFIED) {
        return false;
    }
    if flags & NO_ETAG != 0 && resp.contains(&http::header::ETAG) {
        return false;
    }
    true
}

/// `gzip` listed in `Accept-Encoding` as a token (case-insensitive) whose
/// quality, if given, is valid and above zero.
pub fn accepts_gzip(value: &[u8]) -> bool {
    for item in value.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        if !coding.eq_ignore_ascii_case(b"gzip") {
            continue;
        }
        return match parts.next() {
            None => true,
            Some(param) => {
                let param = param.trim_ascii();
                let Some(q) = param
                    .strip_prefix(b"q=")
                    .or_else(|| param.strip_prefix(b"Q="))
                else {
                    return false;
                };
                quality_above_zero(q.trim_ascii())
            }
        };
    }
    false
}

/// A quality value (`0`, `0.5`, `1.000`) that is valid and not zero.
fn quality_above_zero(q: &[u8]) -> bool {
    let (int, frac) = match memchr::memchr(b'.', q) {
        Some(dot) => (&q[..dot], &q[dot + 1..]),
        None => (q, &b""[..]),
    };
    if int.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match int[0] {
        b'0' => frac.iter().any(|&d| d != b'0'),
        b'1' => frac.iter().all(|&d| d == b'0'),
        _ => false,
    }
}

/// nginx's MSIE 4–6 detection (`MSIE 6.x` with `SV1` excepted, Opera
/// pretending to be MSIE excepted).
fn is_msie6(ua: &[u8]) -> bool {
    if memchr::memmem::find(ua, b"Opera").is_some() {
        return false;
    }
    let Some(at) = memchr::memmem::find(ua, b"MSIE ") else {
        return false;
    };
    let rest = &ua[at..];
    if rest.len() <= 7 || rest[6] != b'.' {
        return false;
    }
    match rest[5] {
        b'4' | b'5' => true,
        b'6' => memchr::memmem::find(&rest[8..], b"SV1").is_none(),
        _ => false,
    }
}

/// Rewrites the headers of a response about to be compressed.
pub fn adjust_headers(headers: &mut Headers) {
    headers.remove(&http::header::CONTENT_LENGTH);
    headers.remove(&http::header::ACCEPT_RANGES);
    if let Some(etag) = headers.get(&http::header::ETAG).cloned() {
        let v = etag.as_bytes();
        if v.starts_with(b"\"") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(v);
            headers.set(http::header::ETAG, HeaderValue::from_bytes(&weak));
        } else if !v.starts_with(b"W/") {
            headers.remove(&http::header::ETAG);
        }
    }
    headers.append_str("Content-Encoding", HeaderValue::from_static("gzip"));
}

/// A streaming gzip compressor that counts what goes in and out (for
/// `$gzip_ratio`).
pub struct Encoder {
    inner: GzEncoder<Vec<u8>>,
    /// Bytes compressed so far.
    pub bytes_in: u64,
    /// Compressed bytes produced so far.
    pub bytes_out: u64,
}

impl Encoder {
    /// A compressor at `level` (1–9).
    pub fn new(level: u32) -> Encoder {
        Encoder {
            inner: GzEncoder::new(Vec::new(), Compression::new(level)),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Compresses `data`; with `flush`, everything so far becomes output
    /// the client can decode now. Returns the output produced (possibly
    /// empty); the buffer is reused by the next call.
    pub fn push(&mut self, data: &[u8], flush: bool) -> &[u8] {
        self.inner.get_mut().clear();
        self.bytes_in += data.len() as u64;
        // Writing into a Vec cannot fail.
        let _ = self.inner.write_all(data);
        if flush {
            let _ = self.inner.flush();
        }
        let out = self.inner.get_ref();
        self.bytes_out += out.len() as u64;
        out
    }

    /// Ends the stream (gzip trailer) and returns the last output.
    pub fn finish(mut self) -> (Vec<u8>, u64, u64) {
        self.inner.get_mut().clear();
        let out = self.inner.finish().unwrap_or_default();
        let total = self.bytes_out + out.len() as u64;
        (out, self.bytes_in, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_tokens_and_qualities() {
        for yes in [
            &b"gzip"[..],
            b"gzip, deflate, br",
            b"deflate,gzip",
            b"br;q=1.0, GZIP;q=0.5",
            b"gzip;q=1",
            b"gzip; q=0.001",
        ] {
            assert!(accepts_gzip(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"deflate",
            b"gzip;q=0",
            b"gzip;q=0.000",
            b"gzip;q=1.5",
            b"gzip;q=2",
            b"x-gzip",
            b"gzipx",
            b"gzip;level=1",
        ] {
            assert!(!accepts_gzip(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn msie6_detection_follows_nginx() {
        assert!(is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.0)"
        ));
        assert!(is_msie6(b"Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"));
        assert!(!is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"
        ));
        assert!(!is_msie6(
            b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)"
        ));
        assert!(!is_msie6(b"Opera/9.80 (compatible; MSIE 6.0)"));
        assert!(!is_msie6(b"curl/8.0"));
    }

    #[test]
    fn encoder_output_decodes_and_flushes_are_decodable_prefixes() {
        use std::io::Read;
        let mut enc = Encoder::new(1);
        let mut wire = Vec::new();
        wire.extend_from_slice(enc.push(b"hello ", true));
        // After a flush the receiver can already decode what was sent.
        let mut partial = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(&wire[..]);
        let _ = dec.read_to_end(&mut partial);
        assert_eq!(partial, b"hello ");
        wire.extend_from_slice(enc.push(b"world", false));
        let (last, bytes_in, bytes_out) = enc.finish();
        wire.extend_from_slice(&last);
        assert_eq!((bytes_in, bytes_out), (11, wire.len() as u64));
        let mut all = String::new();
        flate2::read::GzDecoder::new(&wire[..])
            .read_to_string(&mut all)
            .unwrap();
        assert_eq!(all, "hello world");
    }
}
