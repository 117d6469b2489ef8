//! A client connection: reading request heads, writing responses, and
//! handing upgraded connections to the relay.
//!
//! One task serves a connection from accept to close. Timeouts are nginx's:
//! `client_header_timeout` while a head arrives, `keepalive_timeout` while
//! idle between requests, `send_timeout` per write. When a connection is
//! upgraded, the relay runs in a fresh, small task so that the memory of
//! the HTTP phase is released for the whole life of the tunnel.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Version};

use crate::http1::headers::HeaderValue;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

use crate::config::LocConf;
use crate::handler::Exchange;
use crate::http1::body::{self, BodyReader, LAST_CHUNK, encode_chunk};
use crate::http1::parse::{HeadError, parse_request};
use crate::http1::{Headers, RequestHead, write};
use crate::log::Level;
use crate::net::{ClientIo, UpstreamIo};
use crate::proxy::relay::{self, Relay};
use crate::request::ConnInfo;
use crate::response::{Body, Reply, http_date, server_token};
use crate::state::{Active, RunState, Shared};
use crate::upstream::UpstreamConn;

/// Longest request head accepted (nginx's `large_client_header_buffers 4
/// 8k` allows about this much).
const MAX_HEAD: usize = 32 * 1024;
/// Longest request line (nginx answers 414 beyond one 8k buffer).
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// A response body smaller than this goes out in the same write as its head.
const COALESCE: usize = 16 * 1024;

/// What the connection does after a request.
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close.
    Close,
    /// Become a tunnel.
    Upgrade(Box<Tunnel>),
}

/// A client connection.
pub struct ClientConn {
    /// The socket.
    pub io: ClientIo,
    /// Bytes read but not yet parsed (pipelined requests, bodies).
    pub buf: BytesMut,
    /// Facts for variables and logs.
    pub info: Arc<ConnInfo>,
    /// The configured listen address it arrived on.
    pub key: std::net::SocketAddr,
    /// Requests served so far.
    pub requests: u64,
    /// Idle time allowed before the next request (the last location's
    /// `keepalive_timeout`).
    pub keepalive_timeout: Duration,
    /// Time allowed for a request head (`client_header_timeout`).
    pub header_timeout: Duration,
    /// `server_tokens` of the address's default server (for responses to
    /// requests that never reached a server).
    pub server_tokens: bool,
    /// Request bytes may still be on their way (an unread body): close
    /// with a lingering read so they do not turn the close into a reset.
    pub linger: bool,
    state: watch::Receiver<RunState>,
    active: Active,
}

impl ClientConn {
    /// Wraps an accepted connection.
    pub fn new(
        io: ClientIo,
        info: Arc<ConnInfo>,
        key: std::net::SocketAddr,
        active: Active,
        header_timeout: Duration,
        server_tokens: bool,
    ) -> ClientConn {
        let state = active_state(&active);
        ClientConn {
            io,
            buf: BytesMut::new(),
            info,
            key,
            requests: 0,
            keepalive_timeout: Duration::from_secs(75),
            header_timeout,
            server_tokens,
            linger: false,
            state,
            active,
        }
    }

    /// Whether a graceful stop is in progress.
    pub fn draining(&self) -> bool {
        *self.state.borrow() != RunState::Running
    }
}

fn active_state(active: &Active) -> watch::Receiver<RunState> {
    active.shared().state.subscribe()
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Bad(u16, String),
}

/// Serves requests until the connection closes or is upgraded.
pub async fn serve(shared: Arc<Shared>, mut conn: ClientConn) {
    loop {
        let head = match read_head(&mut conn).await {
            HeadRead::Head(h) => h,
            HeadRead::Closed => return,
            HeadRead::Bad(status, why) => {
                let mut reply = Reply::error(status, conn.server_tokens);
                reply.close = true;
                log::bad_request(&conn, &why);
                let mut out = Vec::new();
                let mut headers = Headers::new();
                headers.append_str(
                    "Server",
                    HeaderValue::from_string(String::from(&server_token(conn.server_tokens))),
                );
                headers.append_str("Date", http_date());
                for h in reply.headers.iter() {
                    headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
                }
                let body = match &reply.body {
                    Body::Full(b) => b.clone(),
                    _ => Bytes::new(),
                };
                headers.append_str("Content-Length", HeaderValue::from(body.len()));
                headers.append_str("Connection", HeaderValue::from_static("close"));
                write::response_head(&mut out, reply.status, None, &headers);
                out.extend_from_slice(&body);
                let _ = timeout(
                    Duration::from_secs(5),
                    crate::net::write_flushed(&mut conn.io, &out),
                )
                .await;
                // The rest of a bad head may still be arriving.
                conn.linger = true;
                close(&mut conn).await;
                return;
            }
        };
        conn.requests += 1;
        // Boxed per request: the connection task itself stays small (it is
        // copied into the runtime at spawn).
        match Box::pin(crate::handler::handle(&shared, &mut conn, head)).await {
            Next::KeepAlive if !conn.draining() => continue,
            Next::KeepAlive | Next::Close => {
                close(&mut conn).await;
                return;
            }
            Next::Upgrade(tunnel) => {
                // Only what the tunnel needs moves to its task: the socket,
                // the exact bytes pipelined behind the handshake (usually
                // none), and the connection count. The read buffer is freed.
                let ClientConn {
                    io, buf, active, ..
                } = conn;
                let leftover = buf.to_vec();
                drop(buf);
                tokio::spawn(tunnel.run(io, leftover, active));
                return;
            }
        }
    }
}

mod log {
    use super::*;

    /// nginx logs malformed requests at `info`.
    pub fn bad_request(conn: &ClientConn, why: &str) {
        conn.info.log(
            Level::Info,
            &format!("{why}, client: {}", conn.info.remote.ip()),
        );
    }
}

async fn read_head(conn: &mut ClientConn) -> HeadRead {
    let idle = conn.buf.is_empty() && conn.requests > 0;
    let mut deadline = Instant::now()
        + if idle {
            conn.keepalive_timeout
        } else {
            conn.header_timeout
        };
    let mut waiting_first_byte = idle;
    loop {
        if !conn.buf.is_empty() {
            match parse_request(&mut conn.buf) {
                Ok(Some(head)) => return HeadRead::Head(head),
                Ok(None) => {
                    if conn.buf.len() > MAX_HEAD {
                        return HeadRead::Bad(494, "client sent too long header line".into());
                    }
                    if conn.buf.len() > MAX_REQUEST_LINE
                        && memchr::memchr(b'\n', &conn.buf).is_none()
                    {
                        return HeadRead::Bad(414, "client sent too long URI".into());
                    }
                }
                Err(HeadError::TooManyHeaders) => {
                    return HeadRead::Bad(494, "client sent too many header lines".into());
                }
                Err(HeadError::UnsupportedVersion) => {
                    return HeadRead::Bad(505, "client sent invalid version".into());
                }
                Err(e) => return HeadRead::Bad(400, format!("client sent invalid request ({e})")),
            }
        }
        let draining = conn.buf.is_empty() && conn.draining();
        if draining {
            return HeadRead::Closed;
        }
        let can_drain = conn.buf.is_empty();
        let mut state = conn.state.clone();
        let read = tokio::select! {
            r = timeout_at(deadline, body::fill(&mut conn.io, &mut conn.buf)) => r,
            _ = state.changed(), if can_drain => continue,
        };
        match read {
            Err(_) => {
                if !conn.buf.is_empty() {
                    conn.info.log(
                        Level::Info,
                        &format!(
                            "client timed out (110: Connection timed out) while reading client request headers, client: {}",
                            conn.info.remote.ip()
                        ),
                    );
                }
                return HeadRead::Closed;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(_)) => {
                if waiting_first_byte {
                    waiting_first_byte = false;
                    deadline = Instant::now() + conn.header_timeout;
                }
            }
        }
    }
}

/// nginx's `lingering_time` and `lingering_timeout`.
const LINGERING_TIME: Duration = Duration::from_secs(30);
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes the connection. When request bytes may still arrive (pipelined
/// data, an unread body, a bad head), the write side is closed first and
/// what arrives is read and dropped until the client closes, for at most
/// `LINGERING_TIME` (`LINGERING_TIMEOUT` of silence ends it sooner), as
/// nginx's lingering close: closing with unread data makes the kernel
/// send a reset, which can destroy the response before the client reads
/// it.
async fn close(conn: &mut ClientConn) {
    let _ = timeout(Duration::from_secs(1), conn.io.shutdown()).await;
    if !conn.linger && conn.buf.is_empty() {
        return;
    }
    conn.buf.clear();
    let deadline = Instant::now() + LINGERING_TIME;
    let mut scratch = [0u8; 4096];
    loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(LINGERING_TIMEOUT);
        match timeout(
            wait,
            tokio::io::AsyncReadExt::read(&mut conn.io, &mut scratch),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Reads and discards the rest of a request body (within `limit` per
/// read). Returns false when it could not (the connection must close).
pub async fn discard_body(conn: &mut ClientConn, reader: &mut BodyReader, limit: Duration) -> bool {
    if reader.is_done() {
        return true;
    }
    // Large unread bodies are not worth reading just to keep the
    // connection; closing is cheaper.
    if let crate::http1::BodyKind::Length(n) = reader.kind()
        && reader.remaining() > 64 * 1024
        && n > 64 * 1024
    {
        return false;
    }
    matches!(
        timeout(
            limit,
            crate::proxy::forward::drain(reader, &mut conn.io, &mut conn.buf)
        )
        .await,
        Ok(Ok(()))
    )
}

/// Whether the status never has a body.
fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Appends our `Server` and `Date` unless passed through from a backend.
fn own_headers(out: &mut Headers, reply: &Reply, conf: &LocConf) {
    if !reply.pass_server {
        out.append_str(
            "Server",
            HeaderValue::from_string(String::from(&server_token(conf.server_tokens))),
        );
    }
    if !reply.pass_date {
        out.append_str("Date", http_date());
    }
}

/// Writes `reply`, logs the request, and says what the connection does
/// next.
pub async fn respond(mut ex: Box<Exchange<'_>>, mut reply: Reply) -> Next {
    let conf = ex.conf.clone();
    ex.conn.keepalive_timeout = conf.keepalive_timeout;
    if reply.status == 444 {
        ex.ctx.response.status = 444;
        crate::access_log::write(&mut ex.ctx, &conf, &ex.generation);
        return Next::Close;
    }
    let head_only = ex.ctx.method == Method::HEAD;
    let mut keepalive = ex.keepalive
        && !reply.close
        && !conf.keepalive_timeout.is_zero()
        && ex.conn.requests < conf.keepalive_requests
        && !ex.conn.draining();
    let status = reply.status;
    let mut known = reply.body.known_len();
    let gzip = {
        let length = match reply.headers.get(&http::header::CONTENT_LENGTH) {
            Some(v) => v.to_str().ok().and_then(|v| v.trim().parse().ok()),
            None => known,
        };
        // A HEAD response announces what GET would send (as nginx, whose
        // gzip filter runs before HEAD drops the body).
        let has_body = !bodiless(status);
        crate::gzip::decide(
            &conf.gzip,
            &ex.ctx,
            status,
            &reply.headers,
            length,
            has_body,
        )
    };
    if gzip.compress {
        crate::gzip::adjust_headers(&mut reply.headers);
        known = None;
    }
    let has_length = reply.headers.contains(&http::header::CONTENT_LENGTH);
    let chunked =
        !bodiless(status) && known.is_none() && !head_only && ex.ctx.version == Version::HTTP_11;
    if !bodiless(status) && known.is_none() && !head_only && !chunked {
        // HTTP/1.0 client, length unknown: the body ends at close.
        keepalive = false;
    }

    // nginx's order: Server, Date, Content-Type, Content-Length or
    // Transfer-Encoding, Connection, then the rest.
    let mut headers = Headers::with_capacity(reply.headers.len() + 5);
    own_headers(&mut headers, &reply, &conf);
    if let Some(ct) = reply
        .headers
        .iter()
        .find(|h| h.name == http::header::CONTENT_TYPE)
    {
        headers.append_raw(ct.raw.clone(), ct.name.clone(), ct.value.clone());
    }
    if !bodiless(status) && !has_length {
        if let Some(n) = known {
            headers.append_str("Content-Length", HeaderValue::from(n));
        } else if chunked {
            headers.append_str("Transfer-Encoding", HeaderValue::from_static("chunked"));
        }
    }
    headers.append_str(
        "Connection",
        HeaderValue::from_static(if keepalive { "keep-alive" } else { "close" }),
    );
    if gzip.vary {
        headers.append_str("Vary", HeaderValue::from_static("Accept-Encoding"));
    }
    for h in reply.headers.iter() {
        if h.name == http::header::CONTENT_TYPE {
            continue;
        }
        headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
    }
    let mut out = Vec::with_capacity(512);
    write::response_head(&mut out, status, reply.reason.as_deref(), &headers);
    let head_len = out.len() as u64;
    ex.ctx.response.status = status;
    ex.ctx.response.headers = Some(headers);

    let send_timeout = conf.send_timeout;
    let send_body = !head_only && !bodiless(status);
    let mut body = BodyWriter {
        chunked,
        throttle: Throttle {
            rate: ex.ctx.effective_limit_rate(),
            after: conf.limit_rate_after,
            start: ex.ctx.start,
        },
        frame: Vec::new(),
        body_bytes: 0,
        wire_bytes: head_len,
        gzip: (gzip.compress && send_body).then(|| crate::gzip::Encoder::new(conf.gzip.level)),
    };
    if let Body::Full(b) = &reply.body
        && let Some(mut enc) = body.gzip.take()
    {
        // In memory: compress it whole, then send it like any small body.
        let mut out = enc.push(b, false).to_vec();
        let (last, bytes_in, bytes_out) = enc.finish();
        out.extend_from_slice(&last);
        ex.ctx.response.gzip = Some((bytes_in, bytes_out));
        reply.body = Body::Full(Bytes::from(out));
    }
    let ok = match reply.body {
        Body::Full(b) if send_body && b.len() <= COALESCE && body.throttle.rate == 0 => {
            // Small bodies leave in the same write as the head.
            if chunked {
                encode_chunk(&mut out, &b);
                out.extend_from_slice(LAST_CHUNK);
            } else {
                out.extend_from_slice(&b);
            }
            body.wire_bytes = out.len() as u64;
            body.body_bytes = b.len() as u64;
            send(&mut ex, &out, send_timeout).await
        }
        Body::Empty => send(&mut ex, &out, send_timeout).await,
        Body::Full(b) => {
            send(&mut ex, &out, send_timeout).await
                && (!send_body
                    || (body.write(&mut ex, &b, false, send_timeout).await
                        && body.finish(&mut ex, send_timeout).await))
        }
        Body::File(mut file, len) => {
            let mut sent = send(&mut ex, &out, send_timeout).await;
            if sent && send_body {
                // Exactly the announced length is sent: a file that grew
                // meanwhile is cut there, one that shrank ends the
                // connection (the client must not take it as complete).
                let mut chunk = vec![0u8; 64 * 1024];
                let mut left = len;
                loop {
                    use tokio::io::AsyncReadExt;
                    if left == 0 {
                        sent = body.finish(&mut ex, send_timeout).await;
                        break;
                    }
                    let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    match file.read(&mut chunk[..want]).await {
                        Ok(0) => {
                            ex.log(
                                Level::Crit,
                                &format!(
                                    "file was truncated while being sent: {} of {len} bytes missing",
                                    left
                                ),
                                None,
                            );
                            sent = false;
                            break;
                        }
                        Ok(n) => {
                            left -= n as u64;
                            if !body.write(&mut ex, &chunk[..n], false, send_timeout).await {
                                sent = false;
                                break;
                            }
                        }
                        Err(e) => {
                            ex.log(
                                Level::Crit,
                                &format!("read() failed {}", crate::log::os_error(&e)),
                                None,
                            );
                            sent = false;
                            break;
                        }
                    }
                }
            }
            sent
        }
        Body::Upstream(mut up) => {
            let mut sent = send(&mut ex, &out, send_timeout).await;
            if sent && send_body {
                loop {
                    match up.next().await {
                        Ok(Some(data)) => {
                            if !body.write(&mut ex, &data, true, send_timeout).await {
                                sent = false;
                                break;
                            }
                        }
                        Ok(None) => {
                            sent = body.finish(&mut ex, send_timeout).await;
                            break;
                        }
                        Err(e) => {
                            let url = ex
                                .ctx
                                .upstream
                                .attempts
                                .last()
                                .map(|a| format!("http://{}{}", a.addr, ex.ctx.request_uri));
                            ex.log(Level::Error, &e.message(), url.as_deref());
                            sent = false;
                            break;
                        }
                    }
                }
            }
            sent
        }
    };
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
    crate::access_log::write(&mut ex.ctx, &conf, &ex.generation);
    if ok && keepalive {
        Next::KeepAlive
    } else {
        Next::Close
    }
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

/// Writes a response body: compression, chunk framing for HTTP/1.1 bodies
/// of unknown length, `limit_rate` pacing, and exact byte counts.
struct BodyWriter {
    chunked: bool,
    throttle: Throttle,
    frame: Vec<u8>,
    body_bytes: u64,
    wire_bytes: u64,
    gzip: Option<crate::gzip::Encoder>,
}

impl BodyWriter {
    /// Writes `data` (compressed first when gzip applies; `flush` makes
    /// everything compressed so far leave now).
    async fn write(
        &mut self,
        ex: &mut Exchange<'_>,
        data: &[u8],
        flush: bool,
        limit: Duration,
    ) -> bool {
        let Some(mut enc) = self.gzip.take() else {
            return self.write_raw(ex, data, limit).await;
        };
        let ok = self.write_raw(ex, enc.push(data, flush), limit).await;
        self.gzip = Some(enc);
        ok
    }

    async fn write_raw(&mut self, ex: &mut Exchange<'_>, data: &[u8], limit: Duration) -> bool {
        if data.is_empty() {
            return true;
        }
        let step = if self.throttle.rate == 0 {
            data.len().max(1)
        } else {
            self.throttle.rate.clamp(1, 16 * 1024) as usize
        };
        for piece in data.chunks(step) {
            self.throttle.pace(self.body_bytes).await;
            let bytes: &[u8] = if self.chunked {
                self.frame.clear();
                encode_chunk(&mut self.frame, piece);
                &self.frame
            } else {
                piece
            };
            let n = bytes.len() as u64;
            if !send(ex, bytes, limit).await {
                return false;
            }
            self.body_bytes += piece.len() as u64;
            self.wire_bytes += n;
        }
        true
    }

    async fn finish(&mut self, ex: &mut Exchange<'_>, limit: Duration) -> bool {
        if let Some(enc) = self.gzip.take() {
            let (last, bytes_in, bytes_out) = enc.finish();
            ex.ctx.response.gzip = Some((bytes_in, bytes_out));
            if !self.write_raw(ex, &last, limit).await {
                return false;
            }
        }
        if !self.chunked {
            return true;
        }
        self.wire_bytes += LAST_CHUNK.len() as u64;
        send(ex, LAST_CHUNK, limit).await
    }
}

/// Writes `data` to the client within `send_timeout`.
async fn send(ex: &mut Exchange<'_>, data: &[u8], limit: Duration) -> bool {
    match timeout(limit, crate::net::write_flushed(&mut ex.conn.io, data)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            ex.log(
                Level::Info,
                "client timed out (110: Connection timed out) while sending to client",
                None,
            );
            false
        }
    }
}

/// Sends the `101` and prepares the tunnel.
pub async fn upgrade(mut ex: Box<Exchange<'_>>, reply: Reply, upstream: UpstreamConn) -> Next {
    let conf = ex.conf.clone();
    // nginx: Server, Date, Connection: upgrade, then the backend's headers.
    let mut headers = Headers::with_capacity(reply.headers.len() + 3);
    own_headers(&mut headers, &reply, &conf);
    headers.append_str("Connection", HeaderValue::from_static("upgrade"));
    for h in reply.headers.iter() {
        headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
    }
    let mut out = Vec::with_capacity(256);
    write::response_head(&mut out, 101, reply.reason.as_deref(), &headers);
    ex.ctx.response.status = 101;
    ex.ctx.response.headers = Some(headers);
    if !send(&mut ex, &out, conf.send_timeout).await {
        ex.ctx.response.bytes_sent = 0;
        crate::access_log::write(&mut ex.ctx, &conf, &ex.generation);
        return Next::Close;
    }
    // Everything the tunnel needs at its end is rendered now, so the
    // request (headers, buffers) is freed while the tunnel lives.
    let UpstreamConn {
        io,
        buf,
        peer,
        lease,
        ..
    } = upstream;
    let url = format!("http://{peer}{}", ex.ctx.request_uri);
    let context = ex.context(Some(&url)).into_boxed_str();
    let lines = crate::access_log::prerender(&mut ex.ctx, &conf, &ex.generation);
    Next::Upgrade(Box::new(Tunnel {
        upstream: io,
        upstream_leftover: buf.to_vec(),
        timeouts: relay::Timeouts {
            idle: conf.proxy.read_timeout,
            client_send: conf.send_timeout,
            upstream_send: conf.proxy.send_timeout,
        },
        retired: ex.generation.retired.waiter(),
        end: TunnelEnd {
            lines,
            errors: conf.error_log.clone(),
            context,
            conn_id: ex.ctx.conn.id,
            head_len: out.len() as u64,
            start: ex.ctx.start,
            upstream_started: ex.ctx.upstream.started,
            _slots: std::mem::take(&mut ex.slots),
            _lease: lease,
        },
    }))
}

/// An upgraded connection waiting for its relay: the backend side, and
/// what its end needs.
pub struct Tunnel {
    upstream: UpstreamIo,
    upstream_leftover: Vec<u8>,
    timeouts: relay::Timeouts,
    retired: crate::signal::StopWaiter,
    end: TunnelEnd,
}

impl Tunnel {
    /// The task that relays until both sides are done, then logs the
    /// request. It is a plain struct future (not an `async fn`) so that an
    /// idle tunnel's task holds the relay and what its end needs, once.
    pub fn run(self, client: ClientIo, client_leftover: Vec<u8>, active: Active) -> TunnelTask {
        TunnelTask {
            relay: Relay::new(
                client,
                client_leftover,
                self.upstream,
                self.upstream_leftover,
                self.timeouts,
                self.retired,
            ),
            end: Some(self.end),
            _active: active,
        }
    }
}

/// A running tunnel.
pub struct TunnelTask {
    relay: Relay<ClientIo, UpstreamIo>,
    end: Option<TunnelEnd>,
    _active: Active,
}

/// What a tunnel needs once it ends: its log lines and context.
struct TunnelEnd {
    lines: Vec<crate::access_log::PendingLine>,
    errors: Arc<Vec<crate::log::ErrorLogTarget>>,
    context: Box<str>,
    conn_id: u64,
    head_len: u64,
    start: Instant,
    upstream_started: Option<Instant>,
    _slots: Vec<crate::limits::Slot>,
    /// The backend peer counts the tunnel as an active connection.
    _lease: Option<crate::balance::Lease>,
}

impl std::future::Future for TunnelTask {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let outcome = std::task::ready!(std::pin::Pin::new(&mut self.relay).poll(cx));
        if let Some(end) = self.end.take() {
            end.finish(outcome);
        }
        std::task::Poll::Ready(())
    }
}

impl TunnelEnd {
    fn finish(self, outcome: relay::Outcome) {
        let why = match &outcome.end {
            relay::End::IdleTimeout | relay::End::UpstreamSendTimeout => Some((
                Level::Error,
                "upstream timed out (110: Connection timed out) while proxying upgraded connection"
                    .to_string(),
            )),
            relay::End::ClientSendTimeout => Some((
                Level::Info,
                "client timed out (110: Connection timed out) while proxying upgraded connection"
                    .to_string(),
            )),
            relay::End::UpstreamError(e) => Some((
                Level::Error,
                format!(
                    "recv() failed {} while proxying upgraded connection",
                    crate::log::os_error(e)
                ),
            )),
            relay::End::ClientError(e) => Some((
                Level::Info,
                format!(
                    "recv() failed {} while proxying upgraded connection",
                    crate::log::os_error(e)
                ),
            )),
            relay::End::Closed | relay::End::Shutdown => None,
        };
        if let Some((level, msg)) = why {
            crate::log::error_to(
                &self.errors,
                level,
                self.conn_id,
                &format!("{msg}{}", self.context),
            );
        }
        crate::access_log::finish(
            &self.lines,
            crate::access_log::Totals {
                bytes_sent: self.head_len + outcome.to_client,
                body_bytes_sent: outcome.to_client,
                request_time: self.start.elapsed(),
                upstream_time: self.upstream_started.map(|s| s.elapsed()),
            },
        );
    }
}
