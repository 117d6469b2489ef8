//! Switchyard's integration tests: one binary, one in-process harness.
//!
//! Each module covers one area; servers listen on port 0 with inline
//! configurations, and binary-level behaviour (command line, signals,
//! daemon) runs the built `switchyard` executable.

mod harness;

/// WebSocket handshakes, messages, closes, timeouts, WebSocket-first.
mod websocket;

/// The WebSocket-aware relay: pings, limits, Origin policy, drain, logs.
mod websocket_relay;

/// Clients on unix domain sockets (`listen unix:`).
mod unix_listen;

/// Dead links made with network namespaces: pings find a pulled cable.
mod netns;

/// `stub_status` and `$connections_*`.
mod status;

/// The Prometheus `metrics` handler.
mod metrics;

/// HTTP proxying: request and response headers, bodies, statuses.
mod proxy_http;

/// The README's generated directive table.
mod docs;

/// Configuration loading: error messages, includes, refusals.
mod config;

/// The executable: command line, pid file, signals, daemon.
mod cli;

/// Variables, maps, server and location selection, the rewrite script,
/// keep-alive.
mod variables;

/// The seed documents' configurations, end to end.
mod seeds;

/// TLS termination and TLS to backends.
mod tls;

/// HTTP/2 on client listeners, WebSockets over HTTP/2 (RFC 8441), abuse.
mod http2;

/// Reload and graceful stop with open WebSockets.
mod reload;

/// Static files, try_files, alias, add_header, expires.
mod static_files;

/// gzip compression of responses.
mod compression;

/// Conditional requests: ETag, Last-Modified, 304 and 412.
mod conditional;

/// Range requests: 206, multipart/byteranges, 416, If-Range.
mod ranges;

/// The charset filter: charset parameters and charset_map conversion.
mod charset;

/// expires (variables, @time, modified) and chunked_transfer_encoding.
mod response_filters;

/// Garbage, oversized and abandoned requests; dead backends; random
/// configurations.
mod robustness;

/// allow/deny and the real client address.
mod access;

/// geo and split_clients: variables that classify clients.
mod geo;

/// Access log paths with variables, buffering, gzip, the descriptor cache.
mod access_log;

/// auth_basic, auth_request, satisfy, auth_delay, limit_except.
mod auth;

/// limit_req: rates, bursts, delays.
mod limit_req;

/// Balancing choices and limit_conn.
mod balance;

/// The source layout: layers, no import cycle, lists in step.
mod layout;

/// X-Accel-Redirect, X-Accel-Limit-Rate and proxy_ignore_headers.
mod accel;

/// Backends on unix domain sockets.
mod unix_upstream;

/// `resolver`: names looked up at run time against a test DNS server.
mod resolver;

/// The corpus of real-world-shaped configurations in tests/configs.
mod corpus;

/// `switchyard check`: the corpus in tests/check, exit codes, formats.
mod check;

/// `switchyard probe` and `client` against broken live setups.
mod probe;

/// TLS as deployments configure it: client certificates, `ssl on`,
/// inherited and relative certificates, per-server protocols, stapling.
mod tls_clients;

/// What real nginx configurations need: lexing, copied snippets' cache
/// directives, error pages, handshake headers, errors with places.
mod dropin;

/// Raw requests and backend responses through Switchyard and a real nginx:
/// the same verdicts.
mod differential;
