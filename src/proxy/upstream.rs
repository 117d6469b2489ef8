//! Backend connections: connecting (with `proxy_connect_timeout`), TLS to
//! `https://` backends, the `keepalive` cache, and reading a response body.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use super::error::ProxyError;
use crate::config::Keepalive;
use crate::http1::BodyReader;
use crate::http1::parse::BodyKind;
use crate::net::UpstreamIo;

/// An open connection to a backend.
pub struct UpstreamConn {
    /// The socket.
    pub io: UpstreamIo,
    /// Bytes read but not yet consumed.
    pub buf: BytesMut,
    /// The peer.
    pub peer: SocketAddr,
    /// Requests sent on it so far.
    pub requests: u64,
    /// When it was opened (`keepalive_time`).
    pub created: Instant,
    /// Whether it came from the keepalive cache (a failure on it is retried
    /// without counting against the peer, as nginx does).
    pub cached: bool,
    /// The peer counts this connection as active while it is in use.
    pub lease: Option<crate::balance::Lease>,
}

/// Opens a TCP connection within `limit`.
pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, ProxyError> {
    match timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => Err(ProxyError::ConnectTimeout),
        Ok(Err(e)) => Err(ProxyError::Connect(e)),
        Ok(Ok(s)) => {
            // Small messages are the point of a WebSocket: never delay them.
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// The `keepalive N` cache of one upstream group: idle connections ready
/// for reuse, newest last.
#[derive(Debug)]
pub struct Pool {
    settings: Keepalive,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle")
            .field("peer", &self.conn.peer)
            .finish()
    }
}

impl Pool {
    /// A cache with the group's settings.
    pub fn new(settings: Keepalive) -> Pool {
        Pool {
            settings,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Takes an idle connection to `peer` that is still open.
    pub fn take(&self, peer: SocketAddr) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        idle.retain(|i| now.duration_since(i.since) < self.settings.timeout);
        while let Some(pos) = idle.iter().rposition(|i| i.conn.peer == peer) {
            let mut entry = idle.remove(pos);
            if still_open(&mut entry.conn) {
                entry.conn.cached = true;
                return Some(entry.conn);
            }
        }
        None
    }

    /// Returns a connection after a complete exchange. Connections past
    /// `keepalive_requests` or `keepalive_time` are closed instead; the
    /// oldest idle one is dropped when the cache is full.
    pub fn put(&self, mut conn: UpstreamConn) {
        if conn.requests >= self.settings.requests
            || conn.created.elapsed() >= self.settings.time
            || !conn.buf.is_empty()
        {
            return;
        }
        conn.cached = false;
        conn.lease = None;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() >= self.settings.max_cached {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

/// Whether a cached connection is still usable: the backend has neither
/// closed it nor sent anything unsolicited.
fn still_open(conn: &mut UpstreamConn) -> bool {
    match &conn.io {
        UpstreamIo::Tcp(s) => {
            let mut probe = [0u8; 1];
            matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        // For TLS, a close_notify or EOF shows up on the next read; the
        // exchange is retried on a fresh connection then.
        UpstreamIo::Tls(_) => true,
    }
}

/// A backend response body being streamed to the client.
pub struct UpstreamBody {
    conn: Option<UpstreamConn>,
    reader: BodyReader,
    read_timeout: Duration,
    /// Where to return the connection when the body ends cleanly.
    pool: Option<Arc<Pool>>,
}

impl UpstreamBody {
    /// A body framed as `kind` on `conn`. `reusable` says whether the
    /// response allows the connection to be cached afterwards.
    pub fn new(
        conn: UpstreamConn,
        kind: BodyKind,
        read_timeout: Duration,
        pool: Option<Arc<Pool>>,
    ) -> UpstreamBody {
        UpstreamBody {
            conn: Some(conn),
            reader: BodyReader::new(kind),
            read_timeout,
            pool,
        }
    }

    /// The `Content-Length`, when the backend sent one.
    pub fn content_length(&self) -> Option<u64> {
        match self.reader.kind() {
            BodyKind::Length(n) => Some(n),
            BodyKind::None => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body; `Ok(None)` at its end (the connection
    /// then goes back to the cache if it can).
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let next = timeout(
            self.read_timeout,
            self.reader.next(&mut conn.io, &mut conn.buf),
        )
        .await;
        match next {
            Err(_) => {
                self.conn = None;
                Err(BodyError::Timeout)
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(BodyError::Io(e))
            }
            Ok(Ok(Some(b))) => Ok(Some(b)),
            Ok(Ok(None)) => {
                if let (Some(conn), Some(pool)) = (self.conn.take(), self.pool.take())
                    && self.reader.kind() != BodyKind::Close
                {
                    pool.put(conn);
                }
                Ok(None)
            }
        }
    }
}

/// A failure while streaming a backend's body.
#[derive(Debug)]
pub enum BodyError {
    /// Nothing arrived for `proxy_read_timeout`.
    Timeout,
    /// The backend closed early or sent a malformed body.
    Io(io::Error),
}

impl BodyError {
    /// The error log message (nginx's wording).
    pub fn message(&self) -> String {
        match self {
            BodyError::Timeout => {
                "upstream timed out (110: Connection timed out) while reading upstream".into()
            }
            BodyError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "upstream prematurely closed connection while reading upstream".into()
            }
            BodyError::Io(e) => {
                format!("upstream sent invalid response body ({e}) while reading upstream")
            }
        }
    }
}
