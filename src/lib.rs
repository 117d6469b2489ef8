//! # Switchyard
//!
//! A WebSocket-first reverse proxy that runs nginx configurations.
//!
//! # Layout
//!
//! - [`config`]: nginx's configuration language, from text to a typed model.
//! - [`vars`]: `$variables`, resolved at load time and evaluated per request.
//! - [`request`]: per-connection and per-request state variables read.
//! - [`log`]: error and access logs in nginx's formats.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod access_log;
pub mod balance;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod docs;
pub mod exchange;
pub mod gzip;
pub mod handler;
pub mod http1;
pub mod limits;
pub mod log;
pub mod net;
pub mod proxy;
pub mod request;
pub mod response;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod signal;
pub mod state;
pub mod static_files;
pub mod tls;
pub mod upstream;

/// The version Switchyard reports for `$nginx_version` and `-V`: the nginx
/// release whose proxy semantics it follows.
pub const NGINX_COMPAT_VERSION: &str = "1.22.1";

/// Switchyard's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
