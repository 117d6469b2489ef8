//! Sockets: listeners with nginx's `listen` options, and the stream types
//! that carry client and backend connections (plain TCP or TLS).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::ListenOpts;

/// nginx's default listen backlog on Linux.
pub const DEFAULT_BACKLOG: i32 = 511;

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

/// A client connection: plain TCP or TLS-terminated.
pub enum ClientIo {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A backend connection: plain TCP, TLS, or a unix domain socket.
pub enum UpstreamIo {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// A unix domain socket.
    Unix(UnixStream),
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

delegate_io!(ClientIo: Tcp, Tls);
delegate_io!(UpstreamIo: Tcp, Tls, Unix);

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
