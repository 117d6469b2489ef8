//! # Switchyard
//!
//! A WebSocket-first reverse proxy that runs nginx configurations.
//!
//! # Layout
//!
//! Modules in layers, bottom to top. A module imports modules of its own
//! layer or of layers below, never above, and there is no import cycle
//! (`tests/it/layout.rs` checks both, and that this list, `pub mod` below
//! and the README's "Source layout" agree).
//!
//! 1. Foundation: the wire and process-wide primitives
//!    - [`log`]: error and access log files, levels, nginx's error line format.
//!    - [`signal`]: one-shot stop signals that tunnels wait on.
//!    - [`stats`]: connection and request counters (`stub_status`, `$connections_*`).
//!    - [`http1`]: HTTP/1.x heads and bodies on the wire, both directions.
//!    - [`limits`]: the shared zones of `limit_conn` and `limit_req`.
//!    - [`tls`]: certificates, the TLS acceptor, the backend TLS client.
//! 2. Configuration
//!    - [`config`]: nginx's configuration language, from text to a typed model.
//! 3. Runtime state
//!    - [`net`]: listening sockets and the client and backend stream types.
//!    - [`balance`]: choosing a peer (round robin, hashes, least_conn) and failures.
//!    - [`request`]: per-connection and per-request state, and `$variables`.
//!    - [`upstream`]: backend connections, the keepalive cache, response bodies.
//!    - [`resolver`]: names resolved at run time (`resolver`), with nginx's DNS behaviour.
//!    - [`state`]: configuration generations and what every task shares.
//! 4. Exchange
//!    - [`exchange`]: the request being answered, and the client-protocol seam.
//!    - [`gzip`]: the gzip response filter.
//!    - [`access_log`]: access log lines, rendered and written.
//!    - [`response`]: replies, error pages, the response filters (conditional requests, headers, charset, ranges), and sending them.
//! 5. Request phases
//!    - [`route`]: server and location selection, URI normalisation.
//!    - [`rewrite`]: the rewrite script (`set`, `return`, `rewrite`, `if`).
//!    - [`access`]: `allow`/`deny` and the real client address.
//!    - [`error_page`]: `error_page`, internal redirects to error pages.
//!    - [`static_files`]: `root`, `alias`, `index`, `try_files`.
//!    - [`proxy`]: forwarding to backends, upgrades, tunnels and the relay.
//!    - [`handler`]: nginx's phases in order, for one request.
//! 6. Client protocols
//!    - [`client`]: client connections (HTTP/1.x) turned into exchanges.
//! 7. Server
//!    - [`server`]: listeners, accept loops, reload and shutdown.
//! 8. Application
//!    - [`demo`]: the built-in chat demo.
//!    - [`docs`]: generated documentation (the directive and variable tables).
//!    - [`check`]: `switchyard check`, the linter for the ways WebSockets break.
//!    - [`probe`]: `switchyard probe` and `client`, talking to a live WebSocket endpoint.
//!    - [`cli`]: the command line.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod access_log;
pub mod balance;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod docs;
pub mod error_page;
pub mod exchange;
pub mod gzip;
pub mod handler;
pub mod http1;
pub mod limits;
pub mod log;
pub mod net;
pub mod probe;
pub mod proxy;
pub mod request;
pub mod resolver;
pub mod response;
pub mod rewrite;
pub mod route;
pub mod server;
pub mod signal;
pub mod state;
pub mod static_files;
pub mod stats;
pub mod tls;
pub mod upstream;

/// The version Switchyard reports for `$nginx_version` and `-V`: the nginx
/// release whose proxy semantics it follows.
pub const NGINX_COMPAT_VERSION: &str = "1.22.1";

/// Switchyard's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
