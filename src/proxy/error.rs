//! Why proxying failed, as a status for the client and a line for the
//! error log, in one place.
//!
//! Messages use nginx's wording (`connect() failed (111: Connection
//! refused) while connecting to upstream`) so log tooling built for nginx
//! keeps working.

use std::io;

use crate::log::Level;
use crate::log::os_error;

/// Which side a failure came from (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Downstream,
    /// The backend.
    Upstream,
    /// Switchyard itself (configuration, resources).
    Internal,
}

/// A proxying failure.
#[derive(Debug)]
pub enum ProxyError {
    /// Connecting failed (refused, unreachable...): 502.
    Connect(io::Error),
    /// Connecting took longer than `proxy_connect_timeout`: 504.
    ConnectTimeout,
    /// The TLS handshake with the backend failed: 502.
    Tls(String),
    /// Writing the request failed: 502.
    Send(io::Error),
    /// Writing the request took longer than `proxy_send_timeout`: 504.
    SendTimeout,
    /// No response head within `proxy_read_timeout`: 504.
    ReadTimeout,
    /// The backend closed before a complete response head: 502.
    PrematureClose,
    /// Reading the response head failed: 502.
    Recv(io::Error),
    /// The response head is not valid HTTP: 502.
    InvalidHeader(String),
    /// The response head does not fit in `proxy_buffer_size`: 502.
    TooBigHeader,
    /// The backend switched protocols although the client did not ask: 502.
    UnexpectedUpgrade,
    /// Every server of the group is down or failed: 502.
    NoLiveUpstreams,
    /// `proxy_pass` with variables named a host that is neither an address
    /// nor an upstream group: 502.
    NoResolver(String),
    /// The `resolver` could not resolve the host: 502.
    Unresolved(String, crate::resolver::Failure),
    /// `proxy_pass` with variables produced an unusable URL: 500.
    InvalidUrl(String),
    /// The request body is larger than `client_max_body_size`: 413.
    BodyTooLarge(u64),
    /// The client's body could not be read: 400.
    ClientBody(io::Error),
    /// The client sent its body too slowly: 408.
    ClientBodyTimeout,
    /// The client went away while we waited for the backend: 499.
    ClientClosed,
    /// A temporary file for the request body could not be made: 500.
    BodyTemp(String, io::Error),
    /// Writing or reading back the request body's temporary file failed:
    /// 500.
    BodyFile(io::Error),
    /// A WebSocket handshake from an `Origin` that
    /// `websocket_allowed_origins` does not list (the value, or `None`
    /// without the header): 403, and the backend sees nothing.
    ForbiddenOrigin(Option<String>),
}

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::ConnectTimeout | ProxyError::SendTimeout | ProxyError::ReadTimeout => 504,
            ProxyError::InvalidUrl(_) | ProxyError::BodyTemp(..) | ProxyError::BodyFile(_) => 500,
            ProxyError::BodyTooLarge(_) => 413,
            ProxyError::ClientBody(_) => 400,
            ProxyError::ClientBodyTimeout => 408,
            ProxyError::ClientClosed => 499,
            ProxyError::ForbiddenOrigin(_) => 403,
            _ => 502,
        }
    }

    /// Where the failure came from.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::BodyTooLarge(_)
            | ProxyError::ClientBody(_)
            | ProxyError::ClientBodyTimeout
            | ProxyError::ClientClosed
            | ProxyError::ForbiddenOrigin(_) => Side::Downstream,
            ProxyError::InvalidUrl(_)
            | ProxyError::NoResolver(_)
            | ProxyError::Unresolved(..)
            | ProxyError::BodyTemp(..)
            | ProxyError::BodyFile(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// Whether `proxy_next_upstream timeout` covers this failure.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ProxyError::ConnectTimeout | ProxyError::SendTimeout | ProxyError::ReadTimeout
        )
    }

    /// Whether `proxy_next_upstream error` covers this failure.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::Tls(_)
                | ProxyError::Send(_)
                | ProxyError::PrematureClose
                | ProxyError::Recv(_)
        )
    }

    /// Whether `proxy_next_upstream invalid_header` covers this failure.
    pub fn is_invalid_header(&self) -> bool {
        matches!(
            self,
            ProxyError::InvalidHeader(_) | ProxyError::TooBigHeader
        )
    }

    /// The error log level nginx uses.
    pub fn level(&self) -> Level {
        match self {
            ProxyError::ClientClosed => Level::Info,
            ProxyError::BodyTooLarge(_) => Level::Error,
            _ => Level::Error,
        }
    }

    /// The error log message (context is appended by the caller).
    pub fn message(&self) -> String {
        match self {
            ProxyError::Connect(e) => format!("connect() failed {} while connecting to upstream", os_error(e)),
            ProxyError::ConnectTimeout => {
                "upstream timed out (110: Connection timed out) while connecting to upstream".into()
            }
            ProxyError::Tls(e) => format!("SSL_do_handshake() failed ({e}) while SSL handshaking to upstream"),
            ProxyError::Send(e) => format!("send() failed {} while sending request to upstream", os_error(e)),
            ProxyError::SendTimeout => {
                "upstream timed out (110: Connection timed out) while sending request to upstream".into()
            }
            ProxyError::ReadTimeout => {
                "upstream timed out (110: Connection timed out) while reading response header from upstream".into()
            }
            ProxyError::PrematureClose => {
                "upstream prematurely closed connection while reading response header from upstream".into()
            }
            ProxyError::Recv(e) => {
                format!("recv() failed {} while reading response header from upstream", os_error(e))
            }
            ProxyError::InvalidHeader(why) => {
                format!("upstream sent invalid header ({why}) while reading response header from upstream")
            }
            ProxyError::TooBigHeader => {
                "upstream sent too big header while reading response header from upstream".into()
            }
            ProxyError::UnexpectedUpgrade => {
                "upstream switched protocols although the client did not ask to upgrade while reading response header from upstream".into()
            }
            ProxyError::NoLiveUpstreams => "no live upstreams while connecting to upstream".into(),
            ProxyError::NoResolver(host) => format!("no resolver defined to resolve {host}"),
            ProxyError::Unresolved(host, why) => format!("{host} could not be resolved ({why})"),
            ProxyError::InvalidUrl(url) => format!("invalid URL prefix in \"{url}\""),
            ProxyError::BodyTooLarge(n) => format!("client intended to send too large body: {n} bytes"),
            ProxyError::ClientBody(e) => format!("client sent invalid body: {e}"),
            ProxyError::ClientBodyTimeout => "client timed out (110: Connection timed out) while reading client request body".into(),
            ProxyError::ClientClosed => {
                "client prematurely closed connection while waiting for the upstream response".into()
            }
            ProxyError::BodyTemp(path, e) => {
                format!("open() \"{path}\" failed {} while buffering the client request body", os_error(e))
            }
            ProxyError::BodyFile(e) => {
                format!("temporary file of the client request body failed {}", os_error(e))
            }
            ProxyError::ForbiddenOrigin(Some(origin)) => format!(
                "WebSocket handshake from origin \"{origin}\" forbidden by websocket_allowed_origins"
            ),
            ProxyError::ForbiddenOrigin(None) => {
                "WebSocket handshake without an Origin header forbidden by websocket_allowed_origins".into()
            }
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ProxyError {}

impl From<crate::upstream::ConnectError> for ProxyError {
    fn from(e: crate::upstream::ConnectError) -> Self {
        match e {
            crate::upstream::ConnectError::TimedOut => ProxyError::ConnectTimeout,
            crate::upstream::ConnectError::Failed(e) => ProxyError::Connect(e),
        }
    }
}
