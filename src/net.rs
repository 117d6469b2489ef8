//! Sockets: listeners with nginx's `listen` options, the addresses of a
//! client connection's ends, and the stream types that carry client and
//! backend connections (plain TCP, TLS, unix-domain sockets).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{Cidr, ListenAddr, ListenOpts};

/// nginx's default listen backlog on Linux.
pub const DEFAULT_BACKLOG: i32 = 511;

/// One end of a client connection: a TCP address (canonical form), or a
/// unix-domain socket. A unix client has no name of its own; nginx calls
/// it `unix:`, and so do `$remote_addr`, error lines and `allow unix:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnAddr {
    /// A TCP address.
    Inet(SocketAddr),
    /// A unix-domain socket.
    Unix,
}

impl ConnAddr {
    /// The IP address, unless this is a unix-domain socket.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ConnAddr::Inet(a) => Some(a.ip()),
            ConnAddr::Unix => None,
        }
    }

    /// Whether `block` holds this address: an address block holds IP
    /// clients, the block `unix:` holds unix-domain clients.
    pub fn in_block(&self, block: &Cidr) -> bool {
        match self.ip() {
            Some(ip) => block.contains(ip),
            None => *block == Cidr::Unix,
        }
    }

    /// The port, unless this is a unix-domain socket.
    pub fn port(&self) -> Option<u16> {
        match self {
            ConnAddr::Inet(a) => Some(a.port()),
            ConnAddr::Unix => None,
        }
    }
}

/// The address as nginx prints a client's: the IP alone, or `unix:`.
impl fmt::Display for ConnAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnAddr::Inet(a) => a.ip().fmt(f),
            ConnAddr::Unix => f.write_str("unix:"),
        }
    }
}

/// The client address a list of forwarding proxies reports
/// (`X-Forwarded-For`, read from the right), nginx's walk for
/// `set_real_ip_from` and `geo`'s `proxy`: while the address at hand is
/// one of `trusted`, the element before it is believed (only the last
/// one unless `recursive`). `None` when `peer` is not trusted or the list
/// holds no address where one was looked for; a port in an element
/// (`addr:port`, `[v6]:port`) is kept, 0 without one.
pub fn forwarded_addr(
    peer: ConnAddr,
    mut list: &[u8],
    trusted: &[Cidr],
    recursive: bool,
) -> Option<ConnAddr> {
    let is_trusted = |addr: ConnAddr| trusted.iter().any(|c| addr.in_block(c));
    let separator = |b: &u8| *b == b' ' || *b == b',';
    let mut current = peer;
    let mut found = None;
    loop {
        if !is_trusted(current) {
            return found;
        }
        // The last element, without trailing separators.
        let end = list
            .iter()
            .rposition(|b| !separator(b))
            .map_or(0, |i| i + 1);
        let start = list[..end].iter().rposition(separator).map_or(0, |i| i + 1);
        let Some(addr) = parse_addr_port(&list[start..end]).map(ConnAddr::Inet) else {
            return found;
        };
        current = addr;
        found = Some(addr);
        list = &list[..start];
        if !recursive || list.iter().all(separator) {
            return found;
        }
    }
}

/// `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]` or `[v6]:port`, canonical.
fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    if let Ok(ip) = bare.unwrap_or(text).parse::<IpAddr>() {
        return Some(canonical(SocketAddr::new(ip, 0)));
    }
    text.parse().ok().map(canonical)
}

/// A bound listening socket, before the runtime registers it.
#[derive(Debug)]
pub enum StdListener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// A unix-domain socket.
    Unix(std::os::unix::net::UnixListener),
}

impl StdListener {
    /// Another descriptor for the same socket (one per worker).
    pub fn try_clone(&self) -> io::Result<StdListener> {
        Ok(match self {
            StdListener::Tcp(l) => StdListener::Tcp(l.try_clone()?),
            StdListener::Unix(l) => StdListener::Unix(l.try_clone()?),
        })
    }

    /// The TCP address it is bound to, unless it is a unix-domain socket.
    pub fn local_inet(&self) -> Option<SocketAddr> {
        match self {
            StdListener::Tcp(l) => l.local_addr().ok(),
            StdListener::Unix(_) => None,
        }
    }
}

/// Binds a `listen` address: [`bind_listener`] for TCP, [`bind_unix`] for
/// `unix:PATH`.
pub fn bind(addr: &ListenAddr, opts: &ListenOpts) -> io::Result<StdListener> {
    match addr {
        ListenAddr::Inet(a) => bind_listener(*a, opts).map(StdListener::Tcp),
        ListenAddr::Unix(path) => bind_unix(path, opts).map(StdListener::Unix),
    }
}

/// Binds a unix-domain listening socket at `path`, readable and writable
/// by everyone (mode 0666, as nginx sets it: who may connect is the
/// directory's permissions' business). A file already at `path` is an
/// error ("Address already in use"), as in nginx; the socket file is
/// removed when the server stops listening on it ([`remove_unix_socket`]).
pub fn bind_unix(path: &Path, opts: &ListenOpts) -> io::Result<std::os::unix::net::UnixListener> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    if let Some(n) = opts.rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    if let Some(n) = opts.sndbuf {
        socket.set_send_buffer_size(n)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    socket.listen(opts.backlog.unwrap_or(DEFAULT_BACKLOG))?;
    Ok(socket.into())
}

/// Removes the socket file of a unix-domain listener that is closed.
pub fn remove_unix_socket(addr: &ListenAddr) {
    if let ListenAddr::Unix(path) = addr {
        let _ = std::fs::remove_file(path);
    }
}

/// Binds a listening socket with `listen` options. The socket is returned
/// as a std listener (non-blocking) so it can be created before the async
/// runtime starts, as nginx binds before daemonizing.
pub fn bind_listener(addr: SocketAddr, opts: &ListenOpts) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if opts.reuseport {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(opts.ipv6only.unwrap_or(true))?;
    }
    if let Some(n) = opts.rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    if let Some(n) = opts.sndbuf {
        socket.set_send_buffer_size(n)?;
    }
    if opts.so_keepalive {
        socket.set_keepalive(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux:
    // one setsockopt here instead of one per connection. Small messages
    // are the point of a WebSocket; they must never wait for Nagle.
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog.unwrap_or(DEFAULT_BACKLOG))?;
    Ok(socket.into())
}

/// Writes all of `data` and flushes it. TLS streams accept bytes into
/// the TLS layer even when the socket cannot take them yet, and send them
/// only when flushed: without the flush the tail of a response can sit in
/// the TLS buffer indefinitely. For plain TCP the flush costs nothing.
pub async fn write_flushed<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(data).await?;
    w.flush().await
}

/// A client connection: plain TCP, TLS-terminated, or a unix-domain
/// socket.
pub enum ClientIo {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A unix-domain socket.
    Unix(UnixStream),
}

/// A backend connection: plain TCP, TLS, a unix domain socket, or TLS
/// over one.
pub enum UpstreamIo {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A unix domain socket.
    Unix(UnixStream),
    /// TLS over a unix domain socket (`proxy_pass https://unix:...`).
    TlsUnix(Box<tokio_rustls::client::TlsStream<UnixStream>>),
}

impl UpstreamIo {
    /// Whether TLS runs over the connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, UpstreamIo::Tls(_) | UpstreamIo::TlsUnix(_))
    }
}

macro_rules! delegate_io {
    ($ty:ident: $($v:ident),+) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $($ty::$v(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $($ty::$v(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

delegate_io!(ClientIo: Tcp, Tls, Unix);
delegate_io!(UpstreamIo: Tcp, Tls, Unix, TlsUnix);

/// Copies bytes waiting on a unix stream into `buf` without taking them,
/// now: `Ok(0)` at the end of the stream, `WouldBlock` when nothing is
/// there yet (tokio has no peek for unix streams).
pub fn peek_unix_now(s: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    nix::sys::socket::recv(s.as_raw_fd(), buf, nix::sys::socket::MsgFlags::MSG_PEEK)
        .map_err(io::Error::from)
}

impl ClientIo {
    /// Copies bytes waiting on a plain connection into `buf` without
    /// taking them; `Ok(0)` at the end of the stream. A TLS connection has
    /// nothing readable to peek at in its socket: this never resolves then.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientIo::Tcp(s) => s.peek(buf).await,
            ClientIo::Unix(s) => loop {
                s.readable().await?;
                // try_io clears the readiness on WouldBlock (no spin).
                match s.try_io(tokio::io::Interest::READABLE, || peek_unix_now(s, buf)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            },
            ClientIo::Tls(_) => std::future::pending().await,
        }
    }
}

/// The IPv4 form of an IPv4-mapped IPv6 address (what a dual-stack socket
/// reports for IPv4 peers).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}
