//! HTTP/1.x client connections: reading request heads, serving each
//! request through the handler, and handing upgraded connections to their
//! tunnel.
//!
//! One task serves a connection from accept to close. Timeouts are nginx's:
//! `client_header_timeout` while a head arrives, `keepalive_timeout` while
//! idle between requests, `send_timeout` per write (applied by the
//! exchange). When a connection is upgraded, the tunnel runs in a fresh,
//! small task so that the memory of the HTTP phase is released for the
//! whole life of the tunnel.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Version;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

use crate::exchange::Refusal;
use crate::handler::Next;
use crate::http1::body::{self, BodyReader};
use crate::http1::headers::HeaderValue;
use crate::http1::parse::{
    BodyKind, FramingError, HeadError, HeadLimits, RequestParser, request_body_kind,
};
use crate::http1::{Headers, RequestHead, write};
use crate::log::Level;
use crate::net::ClientIo;
use crate::request::ConnInfo;
use crate::response::{Body, Reply, http_date, server_token};
use crate::state::{Active, RunState, Shared};

mod downstream;

/// What the default server of the listening address decides for a
/// connection before any request names its server.
#[derive(Debug, Clone, Copy)]
pub struct ConnDefaults {
    /// `client_header_timeout`.
    pub header_timeout: Duration,
    /// `server_tokens` (for answers to heads that never reach a server).
    pub server_tokens: bool,
    /// Header buffers and name rules.
    pub limits: HeadLimits,
}

/// An HTTP/1.x client connection.
pub struct ClientConn {
    /// The socket.
    pub io: ClientIo,
    /// Bytes read but not yet parsed (pipelined requests, bodies).
    pub buf: BytesMut,
    /// The request head being scanned in `buf`.
    parser: RequestParser,
    /// Facts for variables and logs.
    pub info: Arc<ConnInfo>,
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
    /// The current request's body, not yet read.
    body: BodyReader,
    /// The current request's version (framing of its response).
    version: Version,
    /// The response being written: its head, a small body, chunk framing.
    out: Vec<u8>,
    /// The current response's body goes out in chunks.
    chunked: bool,
    state: watch::Receiver<RunState>,
    active: Active,
}

impl ClientConn {
    /// Wraps an accepted connection.
    pub fn new(
        io: ClientIo,
        info: Arc<ConnInfo>,
        active: Active,
        defaults: ConnDefaults,
    ) -> ClientConn {
        let ConnDefaults {
            header_timeout,
            server_tokens,
            limits,
        } = defaults;
        let state = active.shared().state.subscribe();
        ClientConn {
            io,
            buf: BytesMut::new(),
            parser: RequestParser::new(limits),
            info,
            requests: 0,
            keepalive_timeout: Duration::from_secs(75),
            header_timeout,
            server_tokens,
            linger: false,
            body: BodyReader::new(BodyKind::None),
            version: Version::HTTP_11,
            out: Vec::new(),
            chunked: false,
            state,
            active,
        }
    }

    /// Whether a graceful stop is in progress.
    pub fn draining(&self) -> bool {
        *self.state.borrow() != RunState::Running
    }
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
                bad_request(&mut conn, status, &why).await;
                return;
            }
        };
        conn.requests += 1;
        shared.stats.request();
        let writing = shared.stats.writing();
        conn.version = head.version;
        let framing = match request_body_kind(&head) {
            Ok(kind) => {
                conn.body = BodyReader::new(kind);
                Ok(())
            }
            Err(e) => {
                conn.body = BodyReader::new(BodyKind::None);
                Err(match e {
                    FramingError::Bad(why) => Refusal { status: 400, why },
                    FramingError::UnknownCoding => Refusal {
                        status: 501,
                        why: "client sent unknown \"Transfer-Encoding\"",
                    },
                })
            }
        };
        // Boxed per request: the connection task itself stays small (it is
        // copied into the runtime at spawn).
        let next = Box::pin(crate::handler::handle(&shared, &mut conn, head, framing)).await;
        drop(writing);
        match next {
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

/// Answers a head that could not be parsed (nginx logs these at `info`)
/// and closes.
async fn bad_request(conn: &mut ClientConn, status: u16, why: &str) {
    let mut reply = Reply::error(status, conn.server_tokens);
    reply.close = true;
    conn.info
        .log(Level::Info, &format!("{why}, client: {}", conn.info.remote));
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
    // An HTTP/0.9 client gets the page alone.
    if conn.version != Version::HTTP_09 {
        write::response_head(&mut out, reply.status, None, &headers);
    }
    out.extend_from_slice(&body);
    let _ = timeout(
        Duration::from_secs(5),
        crate::net::write_flushed(&mut conn.io, &out),
    )
    .await;
    // The rest of a bad head may still be arriving.
    conn.linger = true;
    close(conn).await;
}

async fn read_head(conn: &mut ClientConn) -> HeadRead {
    conn.version = Version::HTTP_11;
    let idle = conn.buf.is_empty() && conn.requests > 0;
    let mut deadline = Instant::now()
        + if idle {
            conn.keepalive_timeout
        } else {
            conn.header_timeout
        };
    let mut waiting_first_byte = idle;
    // Counted as reading from the first byte of the head on.
    let mut reading = None;
    loop {
        if !conn.buf.is_empty() {
            reading.get_or_insert_with(|| conn.info.stats.reading());
            match conn.parser.parse(&mut conn.buf) {
                Ok(Some(head)) => {
                    for line in &head.dropped {
                        conn.info.log(
                            Level::Info,
                            &format!(
                                "client sent invalid header line: \"{}\", client: {}",
                                String::from_utf8_lossy(line).escape_debug(),
                                conn.info.remote
                            ),
                        );
                    }
                    return HeadRead::Head(head);
                }
                Ok(None) => {}
                Err(e @ HeadError::UriTooLong) => return HeadRead::Bad(414, e.to_string()),
                Err(e @ HeadError::HeaderTooLarge(_)) => return HeadRead::Bad(494, e.to_string()),
                Err(e @ HeadError::UnsupportedVersion) => return HeadRead::Bad(505, e.to_string()),
                Err(e @ HeadError::NineMethod) => {
                    conn.version = Version::HTTP_09;
                    return HeadRead::Bad(400, e.to_string());
                }
                Err(e) => return HeadRead::Bad(400, e.to_string()),
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
                            conn.info.remote
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

/// Resolves when the client has closed its connection. Pipelined data
/// means the client is still there: then this never resolves.
async fn client_gone(io: &ClientIo) {
    let mut b = [0u8; 1];
    match io.peek(&mut b).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending::<()>().await,
    }
}
