//! Proxying to backends: forwarding requests, upgrades, and the relay.
//!
//! - [`forward`]: builds the upstream request, picks peers, retries per
//!   `proxy_next_upstream`, filters the response.
//! - [`relay`]: the byte relay of upgraded (WebSocket) connections.
//! - [`error`]: failures, their statuses and log lines.

pub mod error;
pub mod forward;
pub mod relay;

pub use error::ProxyError;
pub use forward::{Proxied, forward};
