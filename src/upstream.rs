//! Backend connections: connecting (with `proxy_connect_timeout`), TLS to
//! `https://` backends, the `keepalive` cache, and reading a response body.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::config::{Keepalive, PeerAddr};
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
    pub peer: PeerAddr,
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

/// Why a connection to a backend could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// `proxy_connect_timeout` passed.
    TimedOut,
    /// The connection failed (refused, unreachable...).
    Failed(io::Error),
}

/// Opens a connection (TCP, or a unix domain socket) within `limit`.
pub async fn connect(addr: &PeerAddr, limit: Duration) -> Result<UpstreamIo, ConnectError> {
    let opened = match addr {
        PeerAddr::Inet(a) => timeout(limit, TcpStream::connect(*a)).await.map(|r| {
            r.map(|s| {
                // Small messages are the point of a WebSocket: never
                // delay them.
                let _ = s.set_nodelay(true);
                UpstreamIo::Tcp(s)
            })
        }),
        PeerAddr::Unix(path) => timeout(limit, tokio::net::UnixStream::connect(path))
            .await
            .map(|r| r.map(UpstreamIo::Unix)),
    };
    match opened {
        Err(_) => Err(ConnectError::TimedOut),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// The `keepalive N` cache of one upstream group: idle connections ready
/// for reuse, newest last. While it holds any, a sweeper task closes those
/// past `keepalive_timeout` and those the backend closed, every second, so
/// dead connections do not linger in CLOSE_WAIT until the next request.
#[derive(Debug)]
pub struct Pool {
    settings: Keepalive,
    /// A std mutex, never held across an await, held to push or pop one
    /// idle connection (sockets are closed after it is released).
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    idle: Vec<Idle>,
    /// A sweeper task is running (it stops when the cache is empty).
    sweeping: bool,
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

/// How often idle connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Pool {
    /// A cache with the group's settings.
    pub fn new(settings: Keepalive) -> Pool {
        Pool {
            settings,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an idle connection to `peer` that is still open.
    pub fn take(&self, peer: &PeerAddr) -> Option<UpstreamConn> {
        let mut dead = Vec::new();
        let found = {
            let mut cache = self.lock();
            let now = Instant::now();
            let mut found = None;
            while let Some(pos) = cache.idle.iter().rposition(|i| i.conn.peer == *peer) {
                let mut entry = cache.idle.remove(pos);
                if now.duration_since(entry.since) < self.settings.timeout
                    && still_open(&mut entry.conn)
                {
                    entry.conn.cached = true;
                    found = Some(entry.conn);
                    break;
                }
                dead.push(entry);
            }
            found
        };
        // Closed outside the lock.
        drop(dead);
        found
    }

    /// Returns a connection after a complete exchange. Connections past
    /// `keepalive_requests` or `keepalive_time` are closed instead; the
    /// oldest idle one is dropped when the cache is full.
    pub fn put(self: &Arc<Self>, mut conn: UpstreamConn) {
        if conn.requests >= self.settings.requests
            || conn.created.elapsed() >= self.settings.time
            || !conn.buf.is_empty()
        {
            return;
        }
        conn.cached = false;
        conn.lease = None;
        let evicted = {
            let mut cache = self.lock();
            let evicted =
                (cache.idle.len() >= self.settings.max_cached).then(|| cache.idle.remove(0));
            cache.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
            if !cache.sweeping {
                cache.sweeping = true;
                tokio::spawn(sweep(Arc::downgrade(self)));
            }
            evicted
        };
        drop(evicted);
    }

    /// Closes expired and dead connections; false once the cache is empty
    /// (the sweeper then stops).
    fn sweep(&self) -> bool {
        let now = Instant::now();
        let mut cache = self.lock();
        let (keep, dead): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut cache.idle)
            .into_iter()
            .partition(|i| now.duration_since(i.since) < self.settings.timeout);
        cache.idle = keep;
        cache.idle.retain_mut(|i| still_open(&mut i.conn));
        let busy = !cache.idle.is_empty();
        cache.sweeping = busy;
        drop(cache);
        drop(dead);
        busy
    }
}

async fn sweep(pool: std::sync::Weak<Pool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        match pool.upgrade() {
            Some(pool) if pool.sweep() => {}
            _ => return,
        }
    }
}

/// Whether a cached connection is still usable: the backend has neither
/// closed it nor (over plain TCP) sent anything unsolicited. The socket is
/// only peeked, so a TLS stream is left intact: there, bytes may be a
/// session ticket, and only end-of-stream or an error rules it out.
fn still_open(conn: &mut UpstreamConn) -> bool {
    let (tcp, tls) = match &conn.io {
        UpstreamIo::Tcp(s) => (s, false),
        UpstreamIo::Tls(s) => (s.get_ref().0, true),
        UpstreamIo::Unix(s) => return unix_still_open(s, false),
        UpstreamIo::TlsUnix(s) => return unix_still_open(s.get_ref().0, true),
    };
    let mut probe = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match tcp.poll_peek(&mut cx, &mut buf) {
        std::task::Poll::Pending => true,
        std::task::Poll::Ready(Ok(0)) | std::task::Poll::Ready(Err(_)) => false,
        std::task::Poll::Ready(Ok(_)) => tls,
    }
}

/// [`still_open`] for a unix domain socket (non-blocking: nothing to read
/// is WouldBlock).
fn unix_still_open(s: &tokio::net::UnixStream, tls: bool) -> bool {
    let mut probe = [0u8; 1];
    match crate::net::peek_unix_now(s, &mut probe) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        Ok(0) => false,
        Ok(_) => tls,
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
