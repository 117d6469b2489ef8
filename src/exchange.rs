//! The request being answered ([`Exchange`]) and the client side it is
//! answered on ([`Downstream`]).
//!
//! The request phases (routing, rewrite, access, limits, static content,
//! proxying) see only these two: an exchange holds the request's state as
//! it moves through the phases, and a downstream is what the client
//! protocol offers them: reading the request body, `100 Continue`, writing
//! the response head and body, noticing a client that went away, and
//! accepting an upgrade. HTTP/1.1 implements it in [`crate::client::h1`];
//! another protocol implements the same trait and reuses every phase.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::config::{LocConf, Location, Server};
use crate::http1::{BodyKind, Headers};
use crate::limits;
use crate::log::Level;
use crate::request::{ConnInfo, RequestCtx};
use crate::state::{Generation, Shared};

/// The client side of an exchange, as the request phases see it.
///
/// Futures are `Send`: a connection's task may move between threads of a
/// runtime.
pub trait Downstream: Send + Sync {
    /// Facts about the client connection (addresses, TLS, number).
    fn info(&self) -> &Arc<ConnInfo>;
    /// Requests received on the connection so far, this one included.
    fn requests(&self) -> u64;
    /// Whether the server is stopping gracefully (no keep-alive then).
    fn draining(&self) -> bool;
    /// The location that answers is known: its settings for the client
    /// protocol (HTTP/1.x: `keepalive_timeout` before the next request;
    /// HTTP/2: `http2_chunk_size`).
    fn set_location(&mut self, conf: &LocConf);

    /// How the client framed the request body.
    fn body_kind(&self) -> BodyKind;
    /// Whether the whole request body has been read.
    fn body_done(&self) -> bool;
    /// The next piece of the request body; `Ok(None)` at its end. The
    /// caller bounds the wait (`client_body_timeout`).
    fn read_body(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;
    /// Reads and drops the rest of the request body, each read within
    /// `limit`, so the connection can serve another request; false when
    /// it must close instead.
    fn discard_body(&mut self, limit: Duration) -> impl Future<Output = bool> + Send;
    /// Tells a client that waits for `100 Continue` (the caller checked
    /// `Expect`) to send its body, where the protocol has that step and
    /// the client has not started sending.
    fn send_continue(&mut self) -> impl Future<Output = ()> + Send;
    /// Resolves when the client has closed its side. Never resolves while
    /// the client may still be sending (pipelined data, an unread body).
    fn client_gone(&self) -> impl Future<Output = ()> + Send;
    /// Request bytes may still be on their way: when the connection
    /// closes, read and drop them first (nginx's lingering close).
    fn linger(&mut self);

    /// Renders the response head; nothing is written until
    /// [`flush`](Downstream::flush).
    fn start_response(&mut self, head: ResponseHead<'_>) -> Started;
    /// Queues a whole body (small, in memory) and its end behind the head;
    /// returns the bytes it adds on the wire.
    fn queue_body(&mut self, data: &[u8]) -> u64;
    /// Writes what is queued.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Writes a piece of the body, framed as the protocol needs; returns
    /// the bytes put on the wire.
    fn send_body(&mut self, data: &[u8]) -> impl Future<Output = io::Result<u64>> + Send;
    /// Writes the end of the body, with `trailers` where the response
    /// announced them ([`ResponseHead::trailers`]) and the protocol carries
    /// them; returns the bytes put on the wire.
    fn send_end(&mut self, trailers: &Headers) -> impl Future<Output = io::Result<u64>> + Send;
    /// The response is over (written or abandoned): per-response buffers
    /// can go.
    fn end_response(&mut self);
    /// Renders the head that accepts an upgrade (HTTP/1.1: `101 Switching
    /// Protocols`, with the backend's reason phrase) from our own headers
    /// and the backend's; written by [`flush`](Downstream::flush).
    fn start_upgrade(&mut self, reason: Option<&[u8]>, own: Headers, backend: &Headers) -> Started;
    /// The `Sec-WebSocket-Key` this side made up for the backend when the
    /// client protocol has no handshake of its own (a WebSocket over
    /// HTTP/2, RFC 8441): the backend's `Sec-WebSocket-Accept` must answer
    /// it. `None` when the client's own key went to the backend.
    fn websocket_key(&self) -> Option<&str> {
        None
    }
}

/// A response head as the exchange decided it; the downstream adds its
/// framing (`Content-Length` or chunks, `Connection`) in nginx's order.
#[derive(Debug)]
pub struct ResponseHead<'h> {
    /// Status code.
    pub status: u16,
    /// A reason phrase to use instead of the standard one.
    pub reason: Option<&'h [u8]>,
    /// Headers Switchyard adds itself (`Server`, `Date`), first.
    pub own: Headers,
    /// The response's headers.
    pub headers: &'h Headers,
    /// The body length, when known before it is sent.
    pub length: Option<u64>,
    /// Whether the status carries a body at all (not 1xx, 204, 304).
    pub has_body: bool,
    /// A `HEAD` request: the head announces the body but none follows.
    pub head_only: bool,
    /// The exchange allows the connection to serve another request.
    pub keepalive: bool,
    /// `Vary: Accept-Encoding` is due (`gzip_vary`).
    pub vary: bool,
    /// `Last-Modified` to write from the content's modification time (a
    /// static file's), in nginx's place for it: after the length.
    pub last_modified: Option<crate::http1::headers::HeaderValue>,
    /// A body of unknown length may be chunked where the protocol has
    /// chunks (`chunked_transfer_encoding`); otherwise it ends with the
    /// connection.
    pub chunked: bool,
    /// Trailers follow the body (`add_trailer`): over HTTP/1.1 the body is
    /// chunked even when its length is known.
    pub trailers: bool,
}

/// What the downstream made of a head.
#[derive(Debug)]
pub struct Started {
    /// The headers as sent (`$sent_http_*`).
    pub headers: Headers,
    /// Bytes of the head on the wire.
    pub head_len: u64,
    /// Whether the connection stays open after the response.
    pub keepalive: bool,
}

/// A request being handled.
pub struct Exchange<'a, D> {
    /// Server state.
    pub shared: &'a Arc<Shared>,
    /// The generation serving this request.
    pub generation: Arc<Generation>,
    /// The client side.
    pub down: &'a mut D,
    /// Variables' view of the request.
    pub ctx: RequestCtx,
    /// The client asked for keep-alive (and nothing forbids it so far).
    pub keepalive: bool,
    /// Settings of the location (or server) handling the request.
    pub conf: Arc<LocConf>,
    /// `limit_conn` slots held until the request (or its tunnel) ends.
    pub slots: Vec<limits::Slot>,
    /// The URI was changed by an internal redirect (proxying then sends
    /// the new `$uri`, not the original request target).
    pub uri_changed: bool,
    /// The URI was changed by `rewrite` (proxying then ignores the URI part
    /// of `proxy_pass`, as nginx).
    pub rewritten: bool,
    /// A named location to continue in (`error_page ... @name`).
    pub next_named: Option<Arc<Location>>,
    /// Backend headers kept across an `X-Accel-Redirect`, added to the
    /// response finally sent.
    pub accel_headers: Option<crate::http1::Headers>,
    /// Set when this exchange is a subrequest (`auth_request`): what it
    /// serves.
    pub subrequest: Option<Subrequest>,
}

/// What a subrequest knows of the request it serves.
#[derive(Debug, Clone)]
pub struct Subrequest {
    /// The main request's method (for log lines: the subrequest's own is
    /// GET).
    pub main_method: Method,
    /// The URI the subrequest was made to.
    pub uri: String,
}

impl<D: Downstream> Exchange<'_, D> {
    /// Writes a line to the location's error log with nginx's request
    /// context (`, client: ..., server: ..., request: "...", upstream:
    /// "...", host: "..."`).
    pub fn log(&self, level: Level, message: &str, upstream: Option<&str>) {
        let targets = &self.conf.error_log;
        if !targets.iter().any(|t| level <= t.level) {
            return;
        }
        let mut line = String::with_capacity(message.len() + 128);
        line.push_str(message);
        line.push_str(&self.context(upstream));
        crate::log::error_to(targets, level, self.ctx.conn.id, &line);
    }

    /// nginx's request context for error lines: `, client: ..., server:
    /// ..., request: "...", upstream: "...", host: "..."`.
    pub fn context(&self, upstream: Option<&str>) -> String {
        let mut line = String::with_capacity(128);
        line.push_str(", client: ");
        line.push_str(&self.ctx.remote.to_string());
        line.push_str(", server: ");
        line.push_str(self.ctx.server.primary_name());
        line.push_str(", request: \"");
        let method = self
            .subrequest
            .as_ref()
            .map_or(&self.ctx.method, |s| &s.main_method);
        line.push_str(method.as_str());
        line.push(' ');
        line.push_str(&self.ctx.request_uri);
        line.push(' ');
        line.push_str(crate::request::vars::version_text(self.ctx.version));
        line.push('"');
        if let Some(sub) = &self.subrequest {
            line.push_str(", subrequest: \"");
            line.push_str(&sub.uri);
            line.push('"');
        }
        if let Some(u) = upstream {
            line.push_str(", upstream: \"");
            line.push_str(u);
            line.push('"');
        }
        if let Some(h) = self.ctx.headers.get(&http::header::HOST) {
            line.push_str(", host: \"");
            line.push_str(&String::from_utf8_lossy(h.as_bytes()));
            line.push('"');
        }
        line
    }

    /// `scheme://host[:port]` + `path`, as nginx builds redirects: the
    /// path alone with `absolute_redirect off`; the server's name instead
    /// of the request's host with `server_name_in_redirect on`; no port
    /// with `port_in_redirect off`.
    pub fn absolute_url(&self, path: &str) -> String {
        let r = self.conf.redirects;
        if !r.absolute {
            return path.to_string();
        }
        let scheme = if self.ctx.conn.tls { "https" } else { "http" };
        let port = self.ctx.conn.local.port();
        let default = if self.ctx.conn.tls { 443 } else { 80 };
        let host = if r.server_name {
            self.ctx.server.primary_name()
        } else {
            &self.ctx.host
        };
        match port {
            Some(port) if port != default && r.port => format!("{scheme}://{host}:{port}{path}"),
            _ => format!("{scheme}://{host}{path}"),
        }
    }

    /// The server handling the request.
    pub fn server(&self) -> &Arc<Server> {
        &self.ctx.server
    }

    /// Whether the request is `HEAD`.
    pub fn is_head(&self) -> bool {
        self.ctx.method == Method::HEAD
    }

    /// The next piece of the client's body (`None` at its end), within
    /// `limit` for this read.
    pub async fn read_body(&mut self, limit: Duration) -> Result<Option<Bytes>, BodyReadError> {
        match tokio::time::timeout(limit, self.down.read_body()).await {
            Err(_) => Err(BodyReadError::TimedOut),
            Ok(Err(e)) => Err(BodyReadError::Io(e)),
            Ok(Ok(next)) => Ok(next),
        }
    }
}

/// A request the client protocol already knows it must refuse (a body
/// framed in a way that cannot be read): answered once a server is chosen,
/// so the refusal is logged and rendered as that server's.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    /// The status to answer.
    pub status: u16,
    /// The error log line (nginx's wording).
    pub why: &'static str,
}

/// Why the client's body could not be read.
#[derive(Debug)]
pub enum BodyReadError {
    /// Nothing arrived for `client_body_timeout`.
    TimedOut,
    /// The client closed early or sent a malformed body.
    Io(io::Error),
}
