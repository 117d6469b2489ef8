//! Sending a [`Reply`] through a [`Downstream`]: the filters that shape
//! the body (`charset`, gzip, ranges), `limit_rate` pacing, streaming from
//! memory, files and backends, exact byte counts, and the access log line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout};

use super::range::{self, Part};
use super::{Body, Reply, charset, http_date, httptime, server_token};
use crate::config::LocConf;
use crate::exchange::{Downstream, Exchange, ResponseHead};
use crate::http1::Headers;
use crate::http1::headers::HeaderValue;
use crate::log::Level;

/// A response body smaller than this goes out in the same write as its head.
const COALESCE: usize = 16 * 1024;

/// Whether the status never has a body.
pub fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Our `Server` and `Date`, unless passed through from a backend.
pub fn own_headers(reply: &Reply, conf: &LocConf) -> Headers {
    let mut out = Headers::with_capacity(2);
    if !reply.pass_server {
        out.append_str(
            "Server",
            HeaderValue::from_string(String::from(&server_token(conf.server_tokens))),
        );
    }
    if !reply.pass_date {
        out.append_str("Date", http_date());
    }
    out
}

/// The filters that run as the head is written, in nginx's order:
/// `charset`, gzip, ranges. Returns what the body writer needs, or `None`
/// when the response must fail (a `charset` variable not found).
struct Filtered {
    /// The gzip decision.
    gzip: crate::gzip::Decision,
    /// The body's length as sent, when known in advance.
    length: Option<u64>,
    /// The parts of the content to send (`None`: all of it).
    parts: Option<Vec<Part>>,
    /// Convert body bytes through this table (`charset_map`).
    recode: Option<Arc<[u8; 256]>>,
}

fn filter<D: Downstream>(ex: &mut Exchange<'_, D>, reply: &mut Reply) -> Option<Filtered> {
    let conf = ex.conf.clone();
    let charset = match charset::apply(reply, &mut ex.ctx, &conf) {
        Ok(outcome) => outcome,
        Err(charset::Failed) => return None,
    };
    if let Some(why) = &charset.complaint {
        ex.log(Level::Error, why, None);
    }
    let mut known = match reply.body {
        // A backend's answer to HEAD: its Content-Length, if any, is among
        // the headers.
        Body::Empty if reply.entity.from_backend => None,
        ref body => body.known_len(),
    };
    let mut length = match reply.headers.get(&http::header::CONTENT_LENGTH) {
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse().ok()),
        None => known,
    };
    // A HEAD response announces what GET would send (as nginx, whose
    // gzip filter runs before HEAD drops the body).
    let gzip = crate::gzip::decide(
        &conf.gzip,
        &ex.ctx,
        reply.status,
        &reply.headers,
        length,
        !bodiless(reply.status),
    );
    if gzip.compress {
        crate::gzip::adjust_headers(&mut reply.headers);
        known = None;
        length = None;
    }
    let mut parts = None;
    match range::apply(reply, &ex.ctx, &conf, length) {
        range::Outcome::Whole => {}
        range::Outcome::Partial { parts: p, length } => {
            parts = Some(p);
            known = Some(length);
        }
        range::Outcome::Unsatisfiable { length } => {
            let page = std::mem::replace(reply, Reply::empty(416));
            *reply = range::not_satisfiable(page, length, conf.server_tokens);
            // nginx sends the error page through its header filters again.
            super::headers::apply(reply, &conf, &mut ex.ctx);
            let _ = charset::apply(reply, &mut ex.ctx, &conf);
            known = reply.body.known_len();
        }
    }
    Some(Filtered {
        gzip,
        length: known,
        parts,
        recode: charset.recode,
    })
}

/// Writes `reply`, logs the request, and says whether the connection may
/// serve another request.
pub async fn respond<D: Downstream>(ex: &mut Exchange<'_, D>, mut reply: Reply) -> bool {
    let conf = ex.conf.clone();
    ex.down.set_location(&conf);
    let filtered = if reply.status == 444 {
        None
    } else {
        filter(ex, &mut reply)
    };
    let Some(Filtered {
        gzip,
        length,
        parts,
        recode,
    }) = filtered
    else {
        // 444, or a response nginx would fail: the connection closes
        // without one.
        ex.ctx.response.status = reply.status;
        crate::access_log::write(&mut ex.ctx, &conf, &ex.generation.access_logs);
        return false;
    };
    let head_only = ex.is_head();
    let keepalive = ex.keepalive
        && !reply.close
        && !conf.keepalive_timeout.is_zero()
        && ex.down.requests() < conf.keepalive_requests
        && !ex.down.draining();
    let status = reply.status;
    // A static file's modification time, where nginx writes it.
    let last_modified = reply
        .entity
        .last_modified
        .filter(|_| {
            matches!(status, 200 | 206 | 304)
                && !reply.headers.contains(&http::header::LAST_MODIFIED)
        })
        .map(|t| HeaderValue::from_string(httptime::format(t)));
    let success = super::headers::is_success_like(status);
    let trailers = conf
        .add_trailers
        .iter()
        .any(|t| success || t.always)
        .then(|| (conf.add_trailers.clone(), success));
    let started = ex.down.start_response(ResponseHead {
        status,
        reason: reply.reason.as_deref(),
        own: own_headers(&reply, &conf),
        headers: &reply.headers,
        length,
        has_body: !bodiless(status),
        head_only,
        keepalive,
        vary: gzip.vary,
        last_modified,
        chunked: conf.filters.chunked,
        trailers: trailers.is_some(),
    });
    let head_len = started.head_len;
    ex.ctx.response.status = status;
    ex.ctx.response.headers = Some(started.headers);

    let send_body = !head_only && !bodiless(status);
    let mut body = BodyWriter {
        throttle: Throttle {
            rate: ex.ctx.effective_limit_rate(),
            after: conf.limit_rate_after,
            start: ex.ctx.start,
        },
        body_bytes: 0,
        wire_bytes: head_len,
        gzip: (gzip.compress && send_body).then(|| crate::gzip::Encoder::new(conf.gzip.level)),
        recode: None,
        limit: conf.send_timeout,
        trailers,
    };
    if let Body::Full(b) = &reply.body {
        // In memory: the parts chosen, converted and compressed whole,
        // then sent like any small body.
        let mut b = match &parts {
            Some(parts) => assemble(b, parts),
            None => b.clone(),
        };
        if let Some(table) = &recode {
            b = Bytes::from(charset::recode(table, &b));
        }
        if let Some(mut enc) = body.gzip.take() {
            let mut out = enc.push(&b, false).to_vec();
            let (last, bytes_in, bytes_out) = enc.finish();
            out.extend_from_slice(&last);
            ex.ctx.response.gzip = Some((bytes_in, bytes_out));
            b = Bytes::from(out);
        }
        reply.body = Body::Full(b);
    } else {
        body.recode = recode;
    }
    let ok = match reply.body {
        Body::Full(b)
            if send_body
                && b.len() <= COALESCE
                && body.throttle.rate == 0
                && body.trailers.is_none() =>
        {
            // Small bodies leave in the same write as the head.
            body.wire_bytes += ex.down.queue_body(&b);
            body.body_bytes = b.len() as u64;
            flush(ex, body.limit).await
        }
        Body::Empty => {
            flush(ex, body.limit).await
                && (!send_body || body.trailers.is_none() || body.finish(ex).await)
        }
        Body::Full(b) => {
            flush(ex, body.limit).await
                && (!send_body || (body.write(ex, &b, false).await && body.finish(ex).await))
        }
        Body::File(file, len) => {
            let parts = parts.unwrap_or_else(|| vec![Part::Slice { start: 0, len }]);
            flush(ex, body.limit).await && (!send_body || body.file(ex, file, &parts).await)
        }
        Body::Upstream(up) => {
            let slice = match parts.as_deref() {
                Some([Part::Slice { start, len }]) => Some((*start, *len)),
                _ => None,
            };
            flush(ex, body.limit).await && (!send_body || body.upstream(ex, up, slice).await)
        }
    };
    ex.down.end_response();
    let (body_bytes, wire_bytes) = (body.body_bytes, body.wire_bytes);
    if let (Some(started), Some(last)) =
        (ex.ctx.upstream.started, ex.ctx.upstream.attempts.last_mut())
    {
        last.response = Some(started.elapsed());
    }
    ex.ctx.response.bytes_sent = if ok {
        wire_bytes
    } else {
        wire_bytes.min(head_len + body_bytes)
    };
    ex.ctx.response.body_bytes_sent = body_bytes;
    crate::access_log::write(&mut ex.ctx, &conf, &ex.generation.access_logs);
    ok && started.keepalive
}

/// The bytes of `parts` of an in-memory body.
fn assemble(body: &Bytes, parts: &[Part]) -> Bytes {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Data(d) => out.extend_from_slice(d),
            Part::Slice { start, len } => {
                let start = usize::try_from(*start)
                    .unwrap_or(usize::MAX)
                    .min(body.len());
                let end = start
                    .saturating_add(usize::try_from(*len).unwrap_or(usize::MAX))
                    .min(body.len());
                out.extend_from_slice(&body[start..end]);
            }
        }
    }
    Bytes::from(out)
}

/// `limit_rate`: nginx lets a response send `rate * (elapsed + 1)` bytes
/// after the first `limit_rate_after`; writes beyond that wait.
struct Throttle {
    rate: u64,
    after: u64,
    start: Instant,
}

impl Throttle {
    async fn pace(&self, body_sent: u64) {
        if self.rate == 0 || body_sent <= self.after {
            return;
        }
        let allowed = self.rate as f64 * (self.start.elapsed().as_secs_f64() + 1.0);
        let over = (body_sent - self.after) as f64 - allowed;
        if over > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(over / self.rate as f64)).await;
        }
    }
}

/// Writes a response body: compression, `limit_rate` pacing, and exact
/// byte counts; the downstream frames each piece.
struct BodyWriter {
    throttle: Throttle,
    body_bytes: u64,
    wire_bytes: u64,
    gzip: Option<crate::gzip::Encoder>,
    /// `charset_map` conversion of streamed bodies.
    recode: Option<Arc<[u8; 256]>>,
    /// `send_timeout`, per write.
    limit: Duration,
    /// `add_trailer` entries, when some apply, and whether the status is
    /// one they apply to without `always`.
    trailers: Option<(Arc<Vec<crate::config::AddHeader>>, bool)>,
}

impl BodyWriter {
    /// Writes `data` (compressed first when gzip applies; `flush` makes
    /// everything compressed so far leave now).
    async fn write<D: Downstream>(
        &mut self,
        ex: &mut Exchange<'_, D>,
        data: &[u8],
        flush: bool,
    ) -> bool {
        let converted;
        let data = match &self.recode {
            Some(table) => {
                converted = charset::recode(table, data);
                &converted[..]
            }
            None => data,
        };
        let Some(mut enc) = self.gzip.take() else {
            return self.write_raw(ex, data).await;
        };
        let ok = self.write_raw(ex, enc.push(data, flush)).await;
        self.gzip = Some(enc);
        ok
    }

    async fn write_raw<D: Downstream>(&mut self, ex: &mut Exchange<'_, D>, data: &[u8]) -> bool {
        if data.is_empty() {
            return true;
        }
        let step = if self.throttle.rate == 0 {
            data.len().max(1)
        } else {
            self.throttle.rate.clamp(1, 16 * 1024) as usize
        };
        for piece in data.chunks(step) {
            // A client that closes while a paced response waits is noticed
            // then, not at the next write (nginx tests for reading too).
            tokio::select! {
                () = self.throttle.pace(self.body_bytes) => {}
                () = ex.down.client_gone() => return false,
            }
            let res = timeout(self.limit, ex.down.send_body(piece)).await;
            let Some(n) = settle(ex, res) else {
                return false;
            };
            self.body_bytes += piece.len() as u64;
            self.wire_bytes += n;
        }
        true
    }

    async fn finish<D: Downstream>(&mut self, ex: &mut Exchange<'_, D>) -> bool {
        if let Some(enc) = self.gzip.take() {
            let (last, bytes_in, bytes_out) = enc.finish();
            ex.ctx.response.gzip = Some((bytes_in, bytes_out));
            if !self.write_raw(ex, &last).await {
                return false;
            }
        }
        let trailers = self.trailers(ex);
        let res = timeout(self.limit, ex.down.send_end(&trailers)).await;
        match settle(ex, res) {
            Some(n) => {
                self.wire_bytes += n;
                true
            }
            None => false,
        }
    }

    /// The trailers, evaluated now that the body is sent, in order (each
    /// sees those before it as `$sent_trailer_*`); empty values add none.
    fn trailers<D: Downstream>(&self, ex: &mut Exchange<'_, D>) -> Headers {
        let Some((list, success)) = &self.trailers else {
            return Headers::new();
        };
        ex.ctx.response.trailers = Some(Headers::with_capacity(list.len()));
        for t in list.iter().filter(|t| *success || t.always) {
            let value = ex.ctx.render(&t.value);
            if value.is_empty() {
                continue;
            }
            if let Some(sent) = ex.ctx.response.trailers.as_mut() {
                sent.append_raw(
                    Bytes::copy_from_slice(t.display.as_bytes()),
                    t.name.clone(),
                    HeaderValue::from_bytes(&value),
                );
            }
        }
        ex.ctx.response.trailers.clone().unwrap_or_default()
    }

    /// Sends `parts` of `file`: framing as given, and exactly the
    /// announced bytes of each slice (a file that grew meanwhile is cut
    /// there, one that shrank ends the connection: the client must not
    /// take it as complete).
    async fn file<D: Downstream>(
        &mut self,
        ex: &mut Exchange<'_, D>,
        mut file: tokio::fs::File,
        parts: &[Part],
    ) -> bool {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut chunk = vec![0u8; 64 * 1024];
        let mut at = 0;
        for part in parts {
            let (start, len) = match part {
                Part::Data(d) => {
                    if !self.write(ex, d, false).await {
                        return false;
                    }
                    continue;
                }
                Part::Slice { start, len } => (*start, *len),
            };
            if start != at && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
                return false;
            }
            let mut left = len;
            while left > 0 {
                let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match file.read(&mut chunk[..want]).await {
                    Ok(0) => {
                        ex.log(
                            Level::Crit,
                            &format!(
                                "file was truncated while being sent: {left} of {len} bytes missing"
                            ),
                            None,
                        );
                        return false;
                    }
                    Ok(n) => {
                        left -= n as u64;
                        if !self.write(ex, &chunk[..n], false).await {
                            return false;
                        }
                    }
                    Err(e) => {
                        ex.log(
                            Level::Crit,
                            &format!("read() failed {}", crate::log::os_error(&e)),
                            None,
                        );
                        return false;
                    }
                }
            }
            at = start + len;
        }
        self.finish(ex).await
    }

    /// Relays a backend's body as it arrives, each read flushed; with
    /// `slice`, only those bytes of it (the response ends with them).
    async fn upstream<D: Downstream>(
        &mut self,
        ex: &mut Exchange<'_, D>,
        mut up: Box<crate::upstream::UpstreamBody>,
        slice: Option<(u64, u64)>,
    ) -> bool {
        let (from, to) = slice.map_or((0, u64::MAX), |(s, l)| (s, s + l));
        let mut offset = 0u64;
        loop {
            if offset >= to {
                return self.finish(ex).await;
            }
            match up.next().await {
                Ok(Some(data)) => {
                    let (start, end) = (offset, offset + data.len() as u64);
                    offset = end;
                    if let Some(last) = ex.ctx.upstream.attempts.last_mut() {
                        last.length = end;
                    }
                    let lo = from.clamp(start, end) - start;
                    let hi = to.clamp(start, end) - start;
                    if lo < hi && !self.write(ex, &data[lo as usize..hi as usize], true).await {
                        return false;
                    }
                }
                Ok(None) => return self.finish(ex).await,
                Err(e) => {
                    let url = ex
                        .ctx
                        .upstream
                        .attempts
                        .last()
                        .map(|a| format!("http://{}{}", a.addr, ex.ctx.request_uri));
                    ex.log(Level::Error, &e.message(), url.as_deref());
                    return false;
                }
            }
        }
    }
}

/// Writes what the downstream has queued within `limit` (`send_timeout`).
pub async fn flush<D: Downstream>(ex: &mut Exchange<'_, D>, limit: Duration) -> bool {
    let res = timeout(limit, ex.down.flush()).await;
    settle(ex, res).is_some()
}

/// The outcome of one write bounded by `send_timeout`; a timeout is logged
/// as nginx logs it.
fn settle<D: Downstream, T>(
    ex: &Exchange<'_, D>,
    res: Result<std::io::Result<T>, tokio::time::error::Elapsed>,
) -> Option<T> {
    match res {
        Ok(Ok(v)) => Some(v),
        Ok(Err(_)) => None,
        Err(_) => {
            ex.log(
                Level::Info,
                "client timed out (110: Connection timed out) while sending to client",
                None,
            );
            None
        }
    }
}
