//! nginx's headers filter: `expires`, then `add_header`, for statuses
//! 200, 201, 204, 206, 301, 302, 303, 304, 307 and 308 (`add_header ...
//! always`: every status).

use bytes::Bytes;
use chrono::TimeZone;
use http::HeaderName;

use super::{Reply, httptime};
use crate::config::{Expires, LocConf};
use crate::http1::headers::HeaderValue;
use crate::request::RequestCtx;

/// Statuses `add_header` (without `always`) and `expires` apply to.
pub fn is_success_like(status: u16) -> bool {
    matches!(
        status,
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// Applies `expires` and `add_header` of `conf` to `reply`.
pub fn apply(reply: &mut Reply, conf: &LocConf, ctx: &mut RequestCtx) {
    let ok = is_success_like(reply.status);
    if ok && let Some(e) = &conf.expires {
        expires(reply, e, ctx);
    }
    for h in conf.add_headers.iter() {
        if !(ok || h.always) {
            continue;
        }
        let value = ctx.render(&h.value);
        let raw = Bytes::copy_from_slice(h.display.as_bytes());
        match h.name.as_str() {
            // These replace the response's own (nginx's
            // `ngx_http_set_response_header`); an empty value removes it.
            "last-modified" | "etag" => {
                if h.name == http::header::LAST_MODIFIED {
                    reply.entity.last_modified = httptime::parse(&value);
                }
                replace(reply, raw, &h.name, &value);
            }
            _ if value.is_empty() => {}
            _ => {
                let v = HeaderValue::from_bytes(&value);
                reply.headers.append_raw(raw, h.name.clone(), v);
            }
        }
    }
}

/// Sets the first `name` header to `value` (spelled `raw`), dropping any
/// other; appends it when missing; removes them all when `value` is empty.
fn replace(reply: &mut Reply, raw: Bytes, name: &HeaderName, value: &[u8]) {
    if value.is_empty() {
        reply.headers.remove(name);
        return;
    }
    let v = HeaderValue::from_bytes(value);
    if !reply.headers.contains(name) {
        reply.headers.append_raw(raw, name.clone(), v);
        return;
    }
    let mut out = crate::http1::Headers::with_capacity(reply.headers.len());
    let mut done = false;
    for h in reply.headers.iter() {
        if h.name != *name {
            out.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        } else if !done {
            out.append_raw(raw.clone(), name.clone(), v.clone());
            done = true;
        }
    }
    reply.headers = out;
}

/// What `expires` writes: the `Expires` time (or a fixed text) and the
/// `Cache-Control` value.
enum Stamp {
    Fixed(&'static str, &'static str),
    At(i64, String),
}

/// nginx's `ngx_http_set_expires`: `Expires` and `Cache-Control` replace the
/// first of the response's own (other `Cache-Control` lines go), or are
/// appended.
fn expires(reply: &mut Reply, e: &Expires, ctx: &mut RequestCtx) {
    let (e, static_negative) = match e {
        Expires::Var { value, modified } => {
            let value = ctx.render(value);
            match Expires::parse(&String::from_utf8_lossy(&value), *modified) {
                Ok(parsed) => (parsed, false),
                Err(_) => return,
            }
        }
        Expires::After { secs, .. } => (e.clone(), *secs < 0),
        other => (other.clone(), false),
    };
    let now = httptime::now();
    let stamp = match e {
        Expires::Off | Expires::Var { .. } => return,
        Expires::Epoch => Stamp::Fixed("Thu, 01 Jan 1970 00:00:01 GMT", "no-cache"),
        Expires::Max => Stamp::Fixed("Thu, 31 Dec 2037 23:55:55 GMT", "max-age=315360000"),
        Expires::After { secs: 0, .. } => Stamp::At(now, "max-age=0".into()),
        Expires::Daily { secs } => {
            let at = next_time(secs, now);
            Stamp::At(at, max_age(at - now, false))
        }
        Expires::After { secs, modified } => match reply.entity.last_modified {
            Some(lm) if modified => Stamp::At(lm + secs, max_age(lm + secs - now, static_negative)),
            _ => Stamp::At(now + secs, max_age(secs, static_negative)),
        },
    };
    let (expires, cc) = match stamp {
        Stamp::Fixed(e, cc) => (HeaderValue::from_static(e), HeaderValue::from_static(cc)),
        Stamp::At(t, cc) => (
            HeaderValue::from_string(httptime::format(t)),
            HeaderValue::from_string(cc),
        ),
    };
    set_first(reply, "Expires", http::header::EXPIRES, expires);
    set_first(reply, "Cache-Control", http::header::CACHE_CONTROL, cc);
}

fn max_age(secs: i64, negative: bool) -> String {
    if negative || secs < 0 {
        "no-cache".into()
    } else {
        format!("max-age={secs}")
    }
}

/// Replaces the value of the first `name` header (keeping its place and
/// spelling) and drops the others, or appends one spelled `raw`.
fn set_first(reply: &mut Reply, raw: &'static str, name: HeaderName, value: HeaderValue) {
    if reply.headers.contains(&name) {
        reply.headers.set(name, value);
    } else {
        reply.headers.append_str(raw, value);
    }
}

/// nginx's `ngx_next_time`: the next time the clock shows `secs` past
/// midnight (local time), today if still ahead, else tomorrow.
fn next_time(secs: i64, now: i64) -> i64 {
    let local = chrono::Local
        .timestamp_opt(now, 0)
        .single()
        .unwrap_or_else(chrono::Local::now);
    let at_day = |date: chrono::NaiveDate| {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        let naive = midnight + chrono::Duration::seconds(secs);
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map_or(now, |t| t.timestamp())
    };
    let today = at_day(local.date_naive());
    if today > now {
        return today;
    }
    at_day(local.date_naive() + chrono::Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_next_time_is_ahead_and_within_a_day() {
        let now = httptime::now();
        for secs in [0, 33, 55_833, 86_399] {
            let t = next_time(secs, now);
            assert!(t > now && t <= now + 86_400 + 3600, "{secs}: {t} vs {now}");
            let local = chrono::Local.timestamp_opt(t, 0).single().unwrap();
            use chrono::Timelike;
            assert_eq!(i64::from(local.num_seconds_from_midnight()), secs);
        }
    }
}
