//! HTTP/2 on client connections (ngx_http_v2_module), and WebSockets over
//! HTTP/2 (RFC 8441, ours).

use super::{Args, Directive, HS, HSL, T1, arg_number, invalid_value, loc_flag, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("http2", HS, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.http2), "HTTP/2 for the server (nginx 1.25.1's form): offered by ALPN on TLS addresses (chosen by SNI), taken with prior knowledge (h2c) beside HTTP/1.x on plain ones, where the address's default server decides. `listen ... http2` does the same for every server of the address."),
    d!("http2_max_concurrent_streams", HS, T1, set_max_concurrent_streams, "Streams a client may have open at once on one connection (default 128)."),
    d!("http2_body_preread_size", HS, T1, set_preread_size, "Window each stream starts with (SETTINGS_INITIAL_WINDOW_SIZE, default 64k): what a client may send of a body before it is read."),
    d!("http2_chunk_size", HSL, T1, set_chunk_size, "Largest DATA frame of a response body (default 8k)."),
    d!("http2_websocket", HS, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.http2_websocket), "Switchyard's: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL and take WebSockets as extended CONNECT streams (RFC 8441), bridged to HTTP/1.1 upgrades to the backend (default on)."),
    noop!("http2_recv_buffer_size", super::HTTP, T1, "nginx's per-worker read buffer size (no effect: the HTTP/2 implementation sizes its own)."),
    noop!("http2_pool_size", HS, T1, "nginx's per-connection memory pool size (no effect)."),
    noop!("http2_streams_index_size", HS, T1, "nginx's stream index size (no effect)."),
    obsolete!("http2_max_field_size", HS, T1, "large_client_header_buffers", "Obsolete since nginx 1.19.7 and ignored, as there: `large_client_header_buffers` bounds HTTP/2 header fields."),
    obsolete!("http2_max_header_size", HS, T1, "large_client_header_buffers", "Obsolete since nginx 1.19.7 and ignored, as there: `large_client_header_buffers` bounds HTTP/2 header lists."),
    obsolete!("http2_max_requests", HS, T1, "keepalive_requests", "Obsolete since nginx 1.19.7 and ignored, as there: `keepalive_requests` bounds the streams of a connection."),
    obsolete!("http2_idle_timeout", HS, T1, "keepalive_timeout", "Obsolete since nginx 1.19.7 and ignored, as there: `keepalive_timeout` bounds an idle HTTP/2 connection."),
    obsolete!("http2_recv_timeout", HS, T1, "client_header_timeout", "Obsolete since nginx 1.19.7 and ignored, as there: `client_header_timeout` bounds the wait for the first request."),
    d!("http2_push", HSL, T1, set_push, "Server push: only `off` is taken (push was removed from nginx in 1.25.1 and from browsers)."),
    d!("http2_push_preload", HSL, Args::Flag, set_push, "Server push of `Link: preload`: only `off` is taken (push was removed from nginx in 1.25.1 and from browsers)."),
    d!("http2_max_concurrent_pushes", HS, T1, set_push_count, "Server push limit: taken (nothing is pushed), as nginx 1.25.1 does."),
];

fn set_max_concurrent_streams(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)?;
    let n = u32::try_from(n).map_err(|_| invalid_value(st, 0))?;
    put(&mut b.loc().http2_max_concurrent_streams, n, st)
}

fn set_preread_size(b: &mut Builder, st: &Statement) -> Result<()> {
    let size = super::arg_size(st, 0)?;
    // nginx: "the value is too large" beyond the largest HTTP/2 window.
    if size > (1 << 31) - 1 {
        return Err(ConfigError::at(
            &st.span,
            format!("\"{}\" directive the maximum value is 2147483647", st.name),
        ));
    }
    put(&mut b.loc().http2_body_preread_size, size, st)
}

fn set_chunk_size(b: &mut Builder, st: &Statement) -> Result<()> {
    let size = super::arg_size(st, 0)?;
    if size == 0 {
        return Err(ConfigError::at(
            &st.span,
            "the http2 chunk size cannot be zero",
        ));
    }
    put(&mut b.loc().http2_chunk_size, size, st)
}

fn set_push(_: &mut Builder, st: &Statement) -> Result<()> {
    if st.args[0].value == "off" {
        return Ok(());
    }
    Err(ConfigError::unsupported(
        &st.span,
        format!(
            "\"{} {}\": HTTP/2 server push is not supported by switchyard (nginx removed it in 1.25.1, browsers no longer accept it); remove the directive",
            st.name, st.args[0].value
        ),
    ))
}

fn set_push_count(_: &mut Builder, st: &Statement) -> Result<()> {
    arg_number(st, 0)?;
    Ok(())
}
