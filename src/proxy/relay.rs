//! Relaying an upgraded connection (a WebSocket, or any `Upgrade`
//! protocol): after a `101 Switching Protocols`, client and backend talk
//! through two sockets joined here.
//!
//! [`bytes`] is the byte relay, frame-transparent and the hot path of the
//! product; a relay that follows WebSocket frames can sit beside it and use
//! the same [`Transport`], [`Timeouts`] and [`Outcome`].
//!
//! Semantics follow nginx's `ngx_http_upstream_process_upgraded`, with one
//! deliberate difference: end-of-stream is propagated as a half-close
//! (`shutdown(SHUT_WR)` on the peer) and the tunnel ends when both
//! directions are done, where nginx closes both sides at the first EOF.
//! Timeouts: the tunnel is cut after `proxy_read_timeout` without a byte in
//! either direction (nginx re-arms the upstream read timer on every event),
//! and a write that stays blocked longer than `send_timeout` (to the client)
//! or `proxy_send_timeout` (to the backend) ends it too.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub mod bytes;
pub mod frames;
pub mod websocket;

/// A stream the relay can carry.
pub trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Whether closing needs an explicit shutdown even when the whole
    /// tunnel is ending (TLS: to send `close_notify`). Plain TCP sends its
    /// FIN on close, so the last `shutdown()` can be skipped.
    fn needs_final_shutdown(&self) -> bool {
        true
    }

    /// The plain TCP socket, when there is one: bulk transfers between two
    /// of them use splice(2).
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }

    /// Whether written bytes may wait in a user-space layer (TLS) until
    /// flushed.
    fn buffers_writes(&self) -> bool {
        false
    }
}

impl Transport for crate::net::ClientIo {
    fn needs_final_shutdown(&self) -> bool {
        matches!(self, crate::net::ClientIo::Tls(_))
    }

    fn buffers_writes(&self) -> bool {
        matches!(self, crate::net::ClientIo::Tls(_))
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            crate::net::ClientIo::Tcp(s) => Some(s),
            crate::net::ClientIo::Tls(_) | crate::net::ClientIo::Unix(_) => None,
        }
    }
}

impl Transport for crate::net::UpstreamIo {
    fn needs_final_shutdown(&self) -> bool {
        self.is_tls()
    }

    fn buffers_writes(&self) -> bool {
        self.is_tls()
    }

    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            crate::net::UpstreamIo::Tcp(s) => Some(s),
            _ => None,
        }
    }
}

impl Transport for tokio::io::DuplexStream {}

/// Limits of a tunnel.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// No byte in either direction for this long ends the tunnel
    /// (`proxy_read_timeout`).
    pub idle: Duration,
    /// A write to the client blocked this long ends it (`send_timeout`).
    pub client_send: Duration,
    /// A write to the backend blocked this long ends it
    /// (`proxy_send_timeout`).
    pub upstream_send: Duration,
}

/// Why a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached end-of-stream and were flushed.
    Closed,
    /// Nothing moved for `Timeouts::idle`.
    IdleTimeout,
    /// A write to the client stayed blocked for `send_timeout`.
    ClientSendTimeout,
    /// A write to the backend stayed blocked for `proxy_send_timeout`.
    UpstreamSendTimeout,
    /// The client side failed (reset, ...).
    ClientError(io::Error),
    /// The backend side failed.
    UpstreamError(io::Error),
    /// The server is shutting down.
    Shutdown,
    /// The relay closed a WebSocket itself (close frames sent).
    WebSocket(websocket::Reason),
}

/// One side of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The client.
    Client,
    /// The backend.
    Backend,
}

/// Who ended a tunnel (`$websocket_closed_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The client: its close frame, its end of stream or its error.
    Client,
    /// The backend.
    Backend,
    /// Switchyard: a timeout, a limit, a stop.
    Proxy,
}

impl By {
    /// The value of `$websocket_closed_by`.
    pub fn as_str(self) -> &'static str {
        match self {
            By::Client => "client",
            By::Backend => "backend",
            By::Proxy => "proxy",
        }
    }
}

/// Bytes moved by a tunnel, and why it ended.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes written to the client (`$body_bytes_sent` of a 101).
    pub to_client: u64,
    /// Bytes written to the backend.
    pub to_upstream: u64,
    /// How it ended.
    pub end: End,
    /// Who ended it.
    pub closed_by: By,
    /// What a tunnel following WebSocket frames saw.
    pub websocket: Option<websocket::Summary>,
}
