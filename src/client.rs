//! Client protocols: each turns a connection into requests for the
//! handler and implements [`crate::exchange::Downstream`] for them.
//!
//! - [`h1`]: HTTP/1.0 and HTTP/1.1, with upgrades.
//! - [`h2`]: HTTP/2 (the `h2` crate), with WebSockets over it (RFC 8441).

pub mod h1;
pub mod h2;
