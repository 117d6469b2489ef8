//! nginx's not-modified filter: a 200 response answers the request's
//! `If-Unmodified-Since` and `If-Match` (412 when they fail), then
//! `If-Modified-Since` and `If-None-Match` (304 when the content has not
//! changed), from its modification time and `ETag`.
//!
//! It runs before `add_header` and `expires` (which then apply to the 304),
//! on statuses set by `error_page` too, and never on proxied responses
//! (nginx answers those only from its cache).

use http::header::{
    ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE,
};

use super::{Body, Reply, httptime};
use crate::config::{IfModifiedSince, LocConf};
use crate::request::RequestCtx;

/// Answers the conditional headers of `req` for `reply`: the same reply,
/// a 304 built from it, or nginx's 412 page.
pub fn not_modified(mut reply: Reply, req: &RequestCtx, conf: &LocConf) -> Reply {
    if reply.status != 200 || !reply.entity.conditional {
        return reply;
    }
    let headers = &req.headers;
    let etag = reply.headers.get(&ETAG).map(|v| v.as_bytes().to_vec());
    let lm = reply.entity.last_modified;
    if let Some(v) = headers.get(&IF_UNMODIFIED_SINCE)
        && !unmodified_since(v.as_bytes(), lm)
    {
        return Reply::error(412, conf.server_tokens);
    }
    if let Some(v) = headers.get(&IF_MATCH)
        && !matches(v.as_bytes(), etag.as_deref(), false)
    {
        return Reply::error(412, conf.server_tokens);
    }
    let ims = headers.get(&IF_MODIFIED_SINCE);
    let inm = headers.get(&IF_NONE_MATCH);
    if ims.is_none() && inm.is_none() {
        return reply;
    }
    if let Some(v) = ims
        && modified_since(v.as_bytes(), lm, conf.filters.if_modified_since)
    {
        return reply;
    }
    if let Some(v) = inm
        && !matches(v.as_bytes(), etag.as_deref(), true)
    {
        return reply;
    }
    reply.status = 304;
    reply.reason = None;
    for name in [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        ACCEPT_RANGES,
        CONTENT_ENCODING,
    ] {
        reply.headers.remove(&name);
    }
    reply.body = Body::Empty;
    reply
}

/// nginx's `ngx_http_test_if_unmodified`: true when the content has not
/// changed since the date (a date that does not parse counts as -1, so
/// it fails).
fn unmodified_since(value: &[u8], lm: Option<i64>) -> bool {
    let Some(lm) = lm else {
        return false;
    };
    httptime::parse(value).unwrap_or(-1) >= lm
}

/// nginx's `ngx_http_test_if_modified`: true when the response must be
/// sent in full.
fn modified_since(value: &[u8], lm: Option<i64>, mode: IfModifiedSince) -> bool {
    let Some(lm) = lm else {
        return true;
    };
    if mode == IfModifiedSince::Off {
        return true;
    }
    let ims = httptime::parse(value).unwrap_or(-1);
    if ims == lm {
        return false;
    }
    mode == IfModifiedSince::Exact || ims < lm
}

/// nginx's `ngx_http_test_if_match`: whether the list (`*`, or entity
/// tags separated by commas, spaces and tabs) names the response's `ETag`.
/// `weak` (for `If-None-Match`) ignores a `W/` on either side.
pub fn matches(list: &[u8], etag: Option<&[u8]>, weak: bool) -> bool {
    if list == b"*" {
        return true;
    }
    let Some(mut etag) = etag else {
        return false;
    };
    if weak && etag.len() > 2 && etag.starts_with(b"W/") {
        etag = &etag[2..];
    }
    let end = list.len();
    let mut p = 0;
    while p < end {
        if weak && end - p > 2 && list[p..].starts_with(b"W/") {
            p += 2;
        }
        if etag.len() > end - p {
            return false;
        }
        if list[p..].starts_with(etag) {
            let mut q = p + etag.len();
            while q < end && matches!(list[q], b' ' | b'\t') {
                q += 1;
            }
            if q == end || list[q] == b',' {
                return true;
            }
            p = q;
        }
        while p < end && list[p] != b',' {
            p += 1;
        }
        while p < end && matches!(list[p], b' ' | b'\t' | b',') {
            p += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_entity_tag_lists() {
        let tag: &[u8] = b"\"5f1-c\"";
        assert!(matches(b"\"5f1-c\"", Some(tag), false));
        assert!(matches(
            b"\"a\", \"b\",\t\"5f1-c\" , \"z\"",
            Some(tag),
            false
        ));
        assert!(matches(b"*", Some(tag), false));
        assert!(matches(b"*", None, false));
        assert!(!matches(b"\"a\"", Some(tag), false));
        assert!(!matches(b"\"a\"", None, true));
        // Weak comparison only for If-None-Match.
        assert!(matches(b"W/\"5f1-c\"", Some(tag), true));
        assert!(!matches(b"W/\"5f1-c\"", Some(tag), false));
        assert!(matches(b"\"5f1-c\"", Some(b"W/\"5f1-c\""), true));
        // A tag must be followed by the end or a comma.
        assert!(!matches(b"\"5f1-c\"x", Some(tag), false));
        assert!(!matches(b" *", Some(tag), false));
    }

    #[test]
    fn conditional_dates() {
        assert!(unmodified_since(
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            Some(784_111_777)
        ));
        assert!(!unmodified_since(
            b"Sun, 06 Nov 1994 08:49:36 GMT",
            Some(784_111_777)
        ));
        assert!(!unmodified_since(b"junk", Some(784_111_777)));
        assert!(!unmodified_since(b"Sun, 06 Nov 1994 08:49:37 GMT", None));
        let exact = IfModifiedSince::Exact;
        let before = IfModifiedSince::Before;
        let t = b"Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(!modified_since(t, Some(784_111_777), exact));
        assert!(modified_since(t, Some(784_111_776), exact));
        assert!(!modified_since(t, Some(784_111_776), before));
        assert!(modified_since(t, Some(784_111_778), before));
        assert!(modified_since(t, Some(784_111_777), IfModifiedSince::Off));
        assert!(modified_since(t, None, exact));
    }
}
