//! HTTP/2 client connections, framed by the `h2` crate: each stream becomes
//! an exchange for the handler, and a WebSocket sent as an extended CONNECT
//! stream (RFC 8441) becomes an HTTP/1.1 upgrade to the backend, relayed
//! through the same tunnel as an HTTP/1.1 one.
//!
//! One task drives the connection (reading frames, writing what streams
//! queued, accepting streams); each stream runs in a task of its own, so a
//! slow stream never holds up the others. Limits are nginx's:
//! `http2_max_concurrent_streams`, `http2_body_preread_size` as each
//! stream's initial window, `large_client_header_buffers` as the header
//! list limit, `keepalive_requests` streams per connection, then `GOAWAY`;
//! `client_header_timeout` until the first stream, `keepalive_timeout`
//! while no stream is open. A graceful stop or reload sends `GOAWAY`:
//! open streams finish on the configuration they started with.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderName, Method, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::config::model::Http2Conf;
use crate::exchange::{Downstream, ResponseHead, Started};
use crate::handler::Next;
use crate::http1::headers::HeaderValue;
use crate::http1::{BodyKind, Headers, RequestHead};
use crate::log::Level;
use crate::net::ClientIo;
use crate::request::ConnInfo;
use crate::state::{Active, RunState, Shared};

/// The HTTP/2 connection preface a client with prior knowledge starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a connection that sent `GOAWAY` and has no stream left may
/// take to close (its client acknowledging the `GOAWAY`).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How often a connection that sent `GOAWAY` checks for its last stream.
const GOING_AWAY_TICK: Duration = Duration::from_millis(50);

/// What the server the connection belongs to decides for it.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// `http2_*` settings.
    pub http2: Http2Conf,
    /// `client_header_timeout`: the wait for the first stream.
    pub header_timeout: Duration,
    /// `keepalive_timeout`: idle time with no stream open.
    pub keepalive_timeout: Duration,
    /// `keepalive_requests`: streams before `GOAWAY`.
    pub keepalive_requests: u64,
    /// `large_client_header_buffers` (number, size): the header list
    /// limit is their product, as nginx's.
    pub header_buffers: (usize, usize),
}

impl ConnSettings {
    /// The settings `conf` (a server's) gives its connections.
    pub fn of(conf: &crate::config::LocConf) -> ConnSettings {
        ConnSettings {
            http2: conf.http2,
            header_timeout: conf.client_header_timeout,
            keepalive_timeout: conf.keepalive_timeout,
            keepalive_requests: conf.keepalive_requests,
            header_buffers: conf.large_client_header_buffers,
        }
    }
}

/// Whether a plain connection starts with the HTTP/2 preface. Waits for
/// enough bytes to tell (at most `limit`); false for anything else.
pub async fn starts_with_preface(io: &crate::net::ClientIo, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, io.peek(&mut seen)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || seen[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // A prefix of the preface so far: wait for the rest (rare: clients
        // send the preface in one write).
        tokio::time::sleep(Duration::from_millis(5)).await;
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Serves an HTTP/2 connection until it closes.
pub async fn serve(
    shared: Arc<Shared>,
    io: ClientIo,
    info: Arc<ConnInfo>,
    active: Active,
    settings: ConnSettings,
) {
    let h = settings.http2;
    let list_limit = settings.header_buffers.0 * settings.header_buffers.1;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(h.max_concurrent_streams)
        .initial_window_size(h.preread_size)
        .initial_connection_window_size(
            (u64::from(h.max_concurrent_streams.max(1)) * u64::from(h.preread_size))
                .clamp(65_535, (1 << 31) - 1) as u32,
        )
        .max_header_list_size(u32::try_from(list_limit).unwrap_or(u32::MAX))
        // Bounded queues of reset streams (CVE-2023-44487, rapid reset).
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024))
        .max_send_buffer_size(h.chunk_size.max(16 * 1024) * 4);
    if h.websocket {
        builder.enable_connect_protocol();
    }
    let mut conn = match tokio::time::timeout(settings.header_timeout, builder.handshake(io)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            info.log(
                Level::Info,
                &format!(
                    "client sent invalid HTTP/2 connection preface ({e}), client: {}",
                    info.remote
                ),
            );
            return;
        }
        Err(_) => return,
    };
    let mut state = shared.state.subscribe();
    let mut reloads = shared.reloads.subscribe();
    let mut streams: u64 = 0;
    let mut going_away = false;
    // Set once `GOAWAY` was sent and no stream task is left: the
    // connection closes by itself, or is cut at this instant.
    let mut closing: Option<Instant> = None;
    let mut idle_since = Some(Instant::now());
    let mut idle_limit = settings.header_timeout;
    let streams_open = Arc::new(());
    loop {
        // An idle connection (no stream open) is closed after
        // `client_header_timeout` before its first stream, then
        // `keepalive_timeout`.
        let open = Arc::strong_count(&streams_open) > 1;
        if open {
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
            idle_limit = settings.keepalive_timeout;
        }
        if going_away && !open && closing.is_none() {
            // Nothing left to serve: the crate flushes what streams left
            // queued and closes once the client acknowledges the GOAWAY;
            // a client that never answers is cut after `CLOSE_GRACE`.
            closing = Some(Instant::now() + CLOSE_GRACE);
        }
        if closing.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        let deadline = idle_since.map(|t| t + idle_limit);
        let draining = *state.borrow() != RunState::Running;
        if draining && !going_away {
            going_away = true;
            conn.graceful_shutdown();
        }
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    streams += 1;
                    if streams >= settings.keepalive_requests && !going_away {
                        going_away = true;
                        conn.graceful_shutdown();
                    }
                    let stream = Stream {
                        shared: shared.clone(),
                        info: info.clone(),
                        number: streams,
                        chunk_size: h.chunk_size,
                        websocket: h.websocket,
                        open: streams_open.clone(),
                    };
                    tokio::spawn(stream.serve(request, respond));
                }
                Some(Err(e)) => {
                    if !e.is_io() {
                        info.log(
                            Level::Info,
                            &format!("client sent invalid HTTP/2 data ({e}), client: {}", info.remote),
                        );
                    }
                    break;
                }
                None => break,
            },
            _ = state.changed(), if !going_away => {}
            _ = reloads.changed(), if !going_away => {
                // Open streams finish on the configuration they started
                // with; new ones go to a new connection.
                going_away = true;
                conn.graceful_shutdown();
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && !going_away => {
                going_away = true;
                conn.graceful_shutdown();
            }
            // While going away, look again now and then: streams end in
            // their own tasks.
            _ = tokio::time::sleep(GOING_AWAY_TICK), if going_away => {}
        }
    }
    drop(active);
}

/// What a stream's task knows of its connection.
struct Stream {
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    number: u64,
    chunk_size: usize,
    websocket: bool,
    /// Held while the stream lives: the connection counts open streams by
    /// this handle's references.
    open: Arc<()>,
}

impl Stream {
    async fn serve(self, request: http::Request<RecvStream>, mut respond: SendResponse<Bytes>) {
        self.shared.stats.request();
        let _writing = self.shared.stats.writing();
        let (parts, body) = request.into_parts();
        let protocol = parts.extensions.get::<h2::ext::Protocol>().cloned();
        let mut ws_key = None;
        let mut head = request_head(&parts);
        let mut refusal = None;
        if parts.method == Method::CONNECT {
            match protocol.as_ref().map(h2::ext::Protocol::as_str) {
                Some(p) if p.eq_ignore_ascii_case("websocket") && self.websocket => {
                    let key = fresh_key();
                    websocket_head(&mut head, &key);
                    ws_key = Some(key);
                }
                Some(_) => {
                    // An extended CONNECT for a protocol we cannot bridge.
                    let mut resp = http::Response::new(());
                    *resp.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
                    let _ = respond.send_response(resp, true);
                    return;
                }
                None => {
                    // A plain CONNECT: nginx refuses the method.
                    head.target = "/".into();
                    refusal = Some(crate::exchange::Refusal {
                        status: 405,
                        why: "client sent invalid method",
                    });
                }
            }
        }
        if refusal.is_none()
            && let Some(why) = host_refusal(&parts)
        {
            refusal = Some(crate::exchange::Refusal { status: 400, why });
        }
        let length = crate::http1::parse::content_length(&head.headers);
        let body_kind = if body.is_end_stream() {
            match length {
                Ok(Some(0)) => BodyKind::Length(0),
                _ => BodyKind::None,
            }
        } else if ws_key.is_some() {
            // The CONNECT stream's DATA is the tunnel, not a body.
            BodyKind::None
        } else {
            match length {
                Ok(Some(n)) => BodyKind::Length(n),
                _ => BodyKind::Chunked,
            }
        };
        let framing = match (refusal, length) {
            (Some(r), _) => Err(r),
            (None, Ok(_)) => Ok(()),
            (None, Err(why)) => Err(crate::exchange::Refusal { status: 400, why }),
        };
        let state = self.shared.state.subscribe();
        let mut down = H2Down {
            info: self.info.clone(),
            number: self.number,
            state,
            body: Some(body),
            body_kind,
            body_done: matches!(body_kind, BodyKind::None | BodyKind::Length(0)),
            respond,
            send: None,
            pending: None,
            queued: None,
            ended: false,
            upgraded: false,
            answered: false,
            chunk_size: self.chunk_size,
            ws_key,
        };
        let next = Box::pin(crate::handler::handle(
            &self.shared,
            &mut down,
            head,
            framing,
        ))
        .await;
        if !down.answered {
            // Closed without an answer (`return 444`, a client body that
            // stopped arriving): the stream is reset, the connection stays.
            let reason = if down.body_done {
                Reason::INTERNAL_ERROR
            } else {
                Reason::PROTOCOL_ERROR
            };
            down.respond.send_reset(reason);
            return;
        }
        if let Next::Upgrade(tunnel) = next
            && let (Some(send), Some(recv)) = (down.send.take(), down.body.take())
            && let Some(active) = self.shared.enter(false)
        {
            let io = H2Io::new(send, recv, self.chunk_size);
            drop(down);
            let _open = self.open;
            tunnel.run(io, Vec::new(), active).await;
        }
    }
}

/// nginx's 400s for the host of an HTTP/2 request: neither `:authority`
/// nor `Host`, an empty `:authority`, or both with different values (RFC
/// 9113 §8.3.1: they must agree).
fn host_refusal(parts: &http::request::Parts) -> Option<&'static str> {
    let authority = parts.uri.authority().map(|a| a.as_str());
    match (authority, parts.headers.get(http::header::HOST)) {
        (None, None) => {
            Some("client sent HTTP/2 request without \":authority\" or \"Host\" header")
        }
        (Some(""), _) => Some("client sent invalid \":authority\" header"),
        (Some(a), Some(host)) if !a.as_bytes().eq_ignore_ascii_case(host.as_bytes()) => {
            Some("client sent \":authority\" and \"Host\" headers with different values")
        }
        _ => None,
    }
}

/// The request head the phases see: `:authority` as `Host` (when the
/// client sent no `Host`), cookies joined as nginx joins them.
fn request_head(parts: &http::request::Parts) -> RequestHead {
    let mut headers = Headers::with_capacity(parts.headers.len() + 1);
    let mut len = parts.method.as_str().len() + 1;
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
    {
        headers.append_raw(
            Bytes::from_static(b"host"),
            http::header::HOST,
            HeaderValue::from_bytes(authority.as_str().as_bytes()),
        );
        len += authority.as_str().len();
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        len += name.as_str().len() + value.len() + 2;
        if *name == http::header::COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        headers.append_raw(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            name.clone(),
            HeaderValue::from_bytes(value.as_bytes()),
        );
    }
    if !cookies.is_empty() {
        headers.append_raw(
            Bytes::from_static(b"cookie"),
            http::header::COOKIE,
            HeaderValue::from_bytes(&cookies.join(&b"; "[..])),
        );
    }
    let target = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_string(),
        None => parts
            .uri
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_string()),
    };
    len += target.len();
    RequestHead {
        method: parts.method.clone(),
        target,
        version: Version::HTTP_2,
        headers,
        len,
        dropped: Vec::new(),
    }
}

/// Turns an RFC 8441 CONNECT into the HTTP/1.1 handshake it stands for:
/// `GET` with `Upgrade: websocket`, `Connection: upgrade` and our key.
fn websocket_head(head: &mut RequestHead, key: &str) {
    head.method = Method::GET;
    head.headers
        .retain(|h| h.name != http::header::SEC_WEBSOCKET_KEY);
    head.headers
        .append_str("Upgrade", HeaderValue::from_static("websocket"));
    head.headers
        .append_str("Connection", HeaderValue::from_static("upgrade"));
    head.headers.append_str(
        "Sec-WebSocket-Key",
        HeaderValue::from_string(key.to_string()),
    );
    if !head.headers.contains(&http::header::SEC_WEBSOCKET_VERSION) {
        head.headers
            .append_str("Sec-WebSocket-Version", HeaderValue::from_static("13"));
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
fn fresh_key() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source");
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// Header names HTTP/2 forbids (RFC 9113 §8.2.2); never sent.
fn connection_specific(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// A stream as the request phases see it.
struct H2Down {
    info: Arc<ConnInfo>,
    number: u64,
    state: watch::Receiver<RunState>,
    body: Option<RecvStream>,
    body_kind: BodyKind,
    body_done: bool,
    respond: SendResponse<Bytes>,
    send: Option<SendStream<Bytes>>,
    /// The head to send at the next flush, and whether a body follows.
    pending: Option<(http::Response<()>, bool)>,
    queued: Option<Bytes>,
    ended: bool,
    upgraded: bool,
    /// A response head went out.
    answered: bool,
    chunk_size: usize,
    ws_key: Option<String>,
}

fn h2_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("HTTP/2 I/O error"));
    }
    if e.reason() == Some(Reason::NO_ERROR) || e.reason() == Some(Reason::CANCEL) {
        return io::Error::new(io::ErrorKind::ConnectionReset, e);
    }
    io::Error::new(io::ErrorKind::ConnectionAborted, e)
}

/// Sends `data` on `send` as the window allows, in DATA frames of at most
/// `chunk` bytes.
async fn send_all(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    chunk: usize,
    end: bool,
) -> io::Result<()> {
    if data.is_empty() {
        return send.send_data(data, end).map_err(h2_error);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len().min(chunk));
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(h2_error(e)),
            None => return Err(io::ErrorKind::ConnectionReset.into()),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(chunk).min(data.len()));
        let last = end && data.is_empty();
        send.send_data(piece, last).map_err(h2_error)?;
    }
    Ok(())
}

/// An HTTP/2 response head from our headers, without the ones HTTP/2
/// forbids (or values it cannot carry); with the headers as sent.
fn response(status: u16, headers: &Headers) -> (http::Response<()>, Headers) {
    let mut resp = http::Response::new(());
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    *resp.version_mut() = Version::HTTP_2;
    let (map, sent) = header_map(headers);
    *resp.headers_mut() = map;
    (resp, sent)
}

/// `headers` as an HTTP/2 field list, without the ones HTTP/2 forbids (or
/// values it cannot carry); with the headers as sent.
fn header_map(headers: &Headers) -> (http::HeaderMap, Headers) {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    let mut sent = Headers::with_capacity(headers.len());
    for h in headers.iter() {
        if connection_specific(&h.name) {
            continue;
        }
        if let Ok(v) = http::HeaderValue::from_bytes(h.value.as_bytes()) {
            map.append(h.name.clone(), v);
            sent.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
    }
    (map, sent)
}

/// Bytes a header list takes before HPACK, roughly as nginx counts it.
fn head_len(headers: &Headers) -> u64 {
    9 + 1
        + headers
            .iter()
            .map(|h| (h.name.as_str().len() + h.value.as_bytes().len() + 2) as u64)
            .sum::<u64>()
}

impl Downstream for H2Down {
    fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }

    fn requests(&self) -> u64 {
        self.number
    }

    fn draining(&self) -> bool {
        *self.state.borrow() != RunState::Running
    }

    fn set_location(&mut self, conf: &crate::config::LocConf) {
        self.chunk_size = conf.http2.chunk_size;
    }

    fn body_kind(&self) -> BodyKind {
        self.body_kind
    }

    fn body_done(&self) -> bool {
        self.body_done
    }

    async fn read_body(&mut self) -> io::Result<Option<Bytes>> {
        if self.body_done {
            return Ok(None);
        }
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    if body.is_end_stream() {
                        self.body_done = true;
                    }
                    if data.is_empty() && !self.body_done {
                        continue;
                    }
                    return Ok(Some(data));
                }
                Some(Err(e)) => return Err(h2_error(e)),
                None => {
                    self.body_done = true;
                    return Ok(None);
                }
            }
        }
    }

    async fn discard_body(&mut self, _: Duration) -> bool {
        // Streams are independent: an unread body is refused with
        // RST_STREAM when the response ends, the connection stays.
        true
    }

    async fn send_continue(&mut self) {
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::CONTINUE;
        let _ = self.respond.send_informational(resp);
    }

    async fn client_gone(&self) {
        std::future::pending::<()>().await;
    }

    fn linger(&mut self) {}

    fn start_response(&mut self, head: ResponseHead<'_>) -> Started {
        let mut all = head.own;
        all.reserve(head.headers.len() + 3);
        if let Some(ct) = head
            .headers
            .iter()
            .find(|h| h.name == http::header::CONTENT_TYPE)
        {
            all.append_raw(ct.raw.clone(), ct.name.clone(), ct.value.clone());
        }
        let written_length = head.has_body && head.length.is_some();
        if let (true, Some(n)) = (written_length, head.length) {
            all.append_str("Content-Length", HeaderValue::from(n));
        }
        if let Some(lm) = head.last_modified {
            all.append_str("Last-Modified", lm);
        }
        for h in head.headers.iter() {
            if h.name == http::header::CONTENT_TYPE
                || (written_length && h.name == http::header::CONTENT_LENGTH)
            {
                continue;
            }
            all.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
        if head.vary {
            all.append_str("Vary", HeaderValue::from_static("Accept-Encoding"));
        }
        let (resp, sent) = response(head.status, &all);
        let body_follows =
            head.has_body && !head.head_only && (head.length != Some(0) || head.trailers);
        self.pending = Some((resp, body_follows));
        Started {
            head_len: head_len(&sent),
            headers: sent,
            keepalive: true,
        }
    }

    fn queue_body(&mut self, data: &[u8]) -> u64 {
        self.queued = Some(Bytes::copy_from_slice(data));
        data.len() as u64
    }

    async fn flush(&mut self) -> io::Result<()> {
        let Some((resp, body_follows)) = self.pending.take() else {
            return Ok(());
        };
        let queued = self.queued.take();
        let end_now = !body_follows && queued.is_none();
        let mut send = self
            .respond
            .send_response(resp, end_now)
            .map_err(h2_error)?;
        self.answered = true;
        if end_now {
            self.ended = true;
            return Ok(());
        }
        if let Some(data) = queued {
            send_all(&mut send, data, self.chunk_size, true).await?;
            self.ended = true;
        }
        self.send = Some(send);
        Ok(())
    }

    async fn send_body(&mut self, data: &[u8]) -> io::Result<u64> {
        let Some(send) = self.send.as_mut() else {
            return Ok(0);
        };
        send_all(send, Bytes::copy_from_slice(data), self.chunk_size, false).await?;
        Ok(data.len() as u64)
    }

    async fn send_end(&mut self, trailers: &Headers) -> io::Result<u64> {
        if self.ended {
            return Ok(0);
        }
        self.ended = true;
        let Some(send) = self.send.as_mut() else {
            return Ok(0);
        };
        if trailers.is_empty() {
            send.send_data(Bytes::new(), true).map_err(h2_error)?;
            return Ok(0);
        }
        // A HEADERS frame that ends the stream (CONTINUATION frames follow
        // when the list exceeds the frame size).
        let (map, sent) = header_map(trailers);
        send.send_trailers(map).map_err(h2_error)?;
        Ok(head_len(&sent) - 1)
    }

    fn end_response(&mut self) {
        if self.upgraded || self.ended {
            return;
        }
        // Abandoned midway (a backend that failed): the client must not
        // take what it got for the whole body.
        if let Some(send) = self.send.as_mut() {
            send.send_reset(Reason::INTERNAL_ERROR);
        }
        self.ended = true;
    }

    fn start_upgrade(&mut self, _: Option<&[u8]>, own: Headers, backend: &Headers) -> Started {
        // RFC 8441: `200` accepts the CONNECT; the backend's subprotocol
        // and extensions travel on, its handshake details do not.
        let mut all = own;
        for h in backend.iter() {
            if h.name == http::header::SEC_WEBSOCKET_ACCEPT
                || h.name == http::header::CONTENT_LENGTH
                || connection_specific(&h.name)
            {
                continue;
            }
            all.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
        let (resp, sent) = response(200, &all);
        self.pending = Some((resp, true));
        self.upgraded = true;
        Started {
            head_len: head_len(&sent),
            headers: sent,
            keepalive: false,
        }
    }

    fn websocket_key(&self) -> Option<&str> {
        self.ws_key.as_deref()
    }
}

/// A CONNECT stream as a byte stream for the tunnel: DATA frames in,
/// DATA frames out within the peer's window, END_STREAM as the half-close.
pub struct H2Io {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// What is left of the last DATA frame read.
    chunk: Bytes,
    ended: bool,
    max_write: usize,
}

impl H2Io {
    /// Joins the two halves of a stream; writes go out in DATA frames of
    /// at most `max_write` bytes (at least 16 KiB). Either side of a
    /// connection can use it (the tests' RFC 8441 client does).
    pub fn new(send: SendStream<Bytes>, recv: RecvStream, max_write: usize) -> H2Io {
        H2Io {
            send,
            recv,
            chunk: Bytes::new(),
            ended: false,
            max_write,
        }
    }
}

impl AsyncRead for H2Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.chunk.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.chunk = data;
                }
                Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.chunk.len().min(buf.remaining());
        buf.put_slice(&this.chunk.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(this.max_write.max(16 * 1024));
        if this.send.capacity() == 0 {
            this.send.reserve_capacity(want);
            loop {
                match ready!(this.send.poll_capacity(cx)) {
                    Some(Ok(0)) => continue,
                    Some(Ok(_)) => break,
                    Some(Err(e)) => return Poll::Ready(Err(h2_error(e))),
                    None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                }
            }
        }
        let n = this.send.capacity().min(want);
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.send.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl crate::proxy::relay::Transport for H2Io {}
