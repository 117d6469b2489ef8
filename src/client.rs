//! Client protocols: each turns a connection into requests for the
//! handler and implements [`crate::exchange::Downstream`] for them.
//!
//! - [`h1`]: HTTP/1.0 and HTTP/1.1, with upgrades.

pub mod h1;
