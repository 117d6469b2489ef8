//! Proxying to backends (nginx's proxy module): forwarding a request,
//! upgrading it, relaying the tunnel.
//!
//! - [`mod@forward`]: builds the upstream request, picks peers, retries per
//!   `proxy_next_upstream`, filters the response.
//! - [`request_body`]: the client's body on its way upstream (buffered or
//!   streamed).
//! - [`tunnel`]: an upgraded connection from its `101` to its end.
//! - [`relay`]: moving bytes between the two sides of a tunnel.
//! - [`error`]: failures, their statuses and log lines.

pub mod error;
pub mod forward;
pub mod relay;
pub mod request_body;
pub mod tunnel;

pub use error::ProxyError;
pub use forward::{AccelRedirect, Proxied, forward};
