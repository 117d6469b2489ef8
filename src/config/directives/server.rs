//! Virtual servers and their connections: `server`, `listen`, `server_name`,
//! `location`, client timeouts and sizes, keep-alive, error pages
//! (ngx_http_core_module).

use super::{
    Args, Ctx, Directive, HS, HSL, HSLI, HTTP, LOCATION, SERVER, SL, T1, T2, T12, arg_number,
    arg_template, arg_time, duplicate, invalid_value, loc_flag, loc_size, loc_time, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{Builder, ListenRaw, LocationRaw};
use crate::config::values::{parse_flag, parse_size};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    block!("server", HTTP, Args::None, set_server, Ctx::SERVER, leave_server, "A virtual server."),
    noop!("server_names_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("server_names_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
    d!("listen", SERVER, Args::AtLeast(1), set_listen, "Address and port (`8080`, `127.0.0.1:80`, `[::]:443`) or `unix:PATH`, with `default_server`, `ssl`, `http2`, `backlog=`, `rcvbuf=`, `sndbuf=`, `reuseport`, `ipv6only=`, `so_keepalive=`."),
    d!("server_name", SERVER, Args::AtLeast(1), set_server_name, "Names: exact, `*.example.com`, `example.*`, `.example.com`, `~regex`; default server selection as nginx."),
    block!("location", SL, T12, set_location, Ctx::LOCATION, leave_location, "Prefix, `=`, `^~`, `~`, `~*` and `@named` locations, nested; nginx's selection order."),
    d!("client_header_buffer_size", HS, T1, |b, st| loc_size(b, st, |l| &mut l.client_header_buffer_size), "First buffer of a request head (default 1k); a head that does not fit moves to the large buffers. The listening address's default server decides."),
    d!("large_client_header_buffers", HS, T2, set_large_client_header_buffers, "Number and size of the buffers for long heads (default `4 8k`): a request line longer than the size gets 414, a header line longer than it or a head that fills them all 400, counted as nginx does."),
    d!("client_header_timeout", HS, T1, |b, st| loc_time(b, st, |l| &mut l.client_header_timeout), "Time allowed for a TLS handshake and a request head (default 60s; the listening address's default server decides)."),
    noop!("merge_slashes", HS, Args::Flag, "Slashes in URIs are always merged."),
    d!("underscores_in_headers", HS, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.underscores_in_headers), "Takes `_` in request header names (default off: such headers are invalid, so dropped)."),
    d!("ignore_invalid_headers", HS, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ignore_invalid_headers), "Drops request header lines whose names hold bytes other than letters, digits and `-` (default on; when off they are passed on, except names that are not HTTP tokens)."),
    d!("send_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.send_timeout), "Bound on each write to the client (default 60s)."),
    d!("keepalive_timeout", Ctx(4 | 8 | 16 | 32), T12, set_keepalive_timeout, "Idle time of client keep-alive connections (default 75s); in `upstream`, of cached backend connections (60s)."),
    d!("keepalive_requests", Ctx(4 | 8 | 16 | 32), T1, set_keepalive_requests, "Requests per keep-alive connection (default 1000)."),
    d!("keepalive_time", Ctx(4 | 8 | 16 | 32), T1, set_keepalive_time, "In `upstream`: lifetime of a cached backend connection (default 1h)."),
    d!("client_max_body_size", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.client_max_body_size), "Largest request body (default 1m; 0 = unlimited); larger gets 413."),
    d!("client_body_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.client_body_timeout), "Client silence allowed while sending a body (default 60s)."),
    d!("client_body_buffer_size", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.client_body_buffer_size), "A request body read before proxying (`proxy_request_buffering on`, or chunked to an HTTP/1.0 backend) stays in memory up to this size (default 16k) and goes to a temporary file beyond."),
    d!("server_tokens", HSL, T1, set_server_tokens, "Show the version in `Server` and error pages."),
    d!("error_page", HSLI, Args::AtLeast(2), set_error_page, "URI or named location for error statuses, with optional `=code`."),
    d!("internal", LOCATION, Args::None, set_internal, "Location reachable only by internal redirects."),
    d!("absolute_redirect", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.absolute_redirect), "Redirects Switchyard makes (`return`, `rewrite`, a directory without its slash, a relative `Location` from a backend) name scheme, host and port (default on); off: the path alone."),
    d!("server_name_in_redirect", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.server_name_in_redirect), "Those redirects name the server's first `server_name` instead of the request's host (default off)."),
    d!("port_in_redirect", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.port_in_redirect), "Those redirects name the port, unless it is the scheme's own (default on)."),
    d!("recursive_error_pages", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.recursive_error_pages), "Lets an error page's own error use `error_page` again (bounded by the internal redirect limit)."),
    noop!("sendfile", HSLI, Args::Flag, "Kernel file sending (no effect)."),
    noop!("sendfile_max_chunk", HSL, T1, "Kernel file sending chunk size (no effect)."),
    noop!("aio", HSL, T1, "Asynchronous file I/O (no effect: files are read by the runtime's blocking pool)."),
    noop!("aio_write", HSL, Args::Flag, "Asynchronous temporary file writes (no effect)."),
    noop!("directio", HSL, T1, "O_DIRECT for large files (no effect)."),
    noop!("directio_alignment", HSL, T1, "O_DIRECT alignment (no effect)."),
    noop!("read_ahead", HSL, T1, "File read-ahead hint (no effect)."),
    noop!("tcp_nopush", HSL, Args::Flag, "TCP_CORK (no effect)."),
    noop!("tcp_nodelay", HSL, Args::Flag, "TCP_NODELAY is always on."),
    noop!("reset_timedout_connection", HSL, Args::Flag, "Reset on timeout (no effect)."),
    noop!("lingering_close", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("lingering_time", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("lingering_timeout", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("open_file_cache", HSL, Args::AtLeast(1), "File descriptor cache (no effect)."),
    noop!("output_buffers", HSL, T2, "Output buffer sizing (no effect)."),
    noop!("postpone_output", HSL, T1, "Output coalescing (no effect)."),
];

// ---------------------------------------------------------------------------
// http: server, upstream, map, log formats, zones.

fn set_server(b: &mut Builder, st: &Statement) -> Result<()> {
    b.open_server(&st.span);
    Ok(())
}

fn leave_server(b: &mut Builder, _: &Statement) -> Result<()> {
    b.close_server();
    Ok(())
}

// ---------------------------------------------------------------------------
// server: listen, server_name, TLS, location.

fn set_listen(b: &mut Builder, st: &Statement) -> Result<()> {
    let addr_text = st.args[0].value.as_str();
    let unix = addr_text.strip_prefix("unix:");
    let addrs = match unix {
        Some(path) => {
            check_unix_path(path)
                .map_err(|m| ConfigError::at(&st.span, format!("{m} in \"{addr_text}\"")))?;
            vec![ListenAddr::Unix(path.into())]
        }
        None => parse_listen_addr(addr_text)
            .map_err(|m| ConfigError::at(&st.span, m))?
            .into_iter()
            .map(ListenAddr::Inet)
            .collect(),
    };
    let mut default_server = false;
    let mut opts = ListenOpts::default();
    for w in &st.args[1..] {
        let v = w.value.as_str();
        let bad = || ConfigError::at(&st.span, format!("invalid parameter \"{v}\""));
        match v {
            "default_server" | "default" => default_server = true,
            "ssl" => opts.ssl = true,
            "http2" => opts.http2 = true,
            "reuseport" => opts.reuseport = true,
            "deferred" | "bind" => {}
            "proxy_protocol" | "quic" => {
                return Err(ConfigError::unsupported(
                    &st.span,
                    format!("the \"{v}\" parameter is not supported by switchyard"),
                ));
            }
            _ => {
                if let Some(n) = v.strip_prefix("backlog=") {
                    opts.backlog = Some(n.parse().map_err(|_| bad())?);
                } else if let Some(n) = v.strip_prefix("rcvbuf=") {
                    opts.rcvbuf = Some(parse_size(n).ok_or_else(bad)? as usize);
                } else if let Some(n) = v.strip_prefix("sndbuf=") {
                    opts.sndbuf = Some(parse_size(n).ok_or_else(bad)? as usize);
                } else if let Some(n) = v.strip_prefix("ipv6only=") {
                    opts.ipv6only = Some(parse_flag(n).ok_or_else(bad)?);
                } else if let Some(n) = v.strip_prefix("so_keepalive=") {
                    opts.so_keepalive = n != "off";
                } else if v.starts_with("fastopen=")
                    || v.starts_with("accept_filter=")
                    || v.starts_with("setfib=")
                {
                    b.warn(
                        &st.span,
                        format!("listen parameter \"{v}\" has no effect in switchyard"),
                    );
                } else {
                    return Err(bad());
                }
            }
        }
    }
    if unix.is_some() {
        // TLS, and TCP's own options, are not set up on unix-domain
        // sockets here: refused rather than quietly dropped.
        let tcp_only = [
            (opts.ssl, "ssl"),
            (opts.reuseport, "reuseport"),
            (opts.ipv6only.is_some(), "ipv6only"),
            (opts.so_keepalive, "so_keepalive"),
        ];
        if let Some((_, name)) = tcp_only.iter().find(|(on, _)| *on) {
            return Err(ConfigError::unsupported(
                &st.span,
                format!(
                    "the \"{name}\" parameter on a unix domain socket (\"{addr_text}\") is not supported by switchyard"
                ),
            ));
        }
    }
    b.server().listens.push(ListenRaw {
        addrs,
        default_server,
        opts,
        span: st.span.clone(),
    });
    Ok(())
}

/// `8080`, `127.0.0.1`, `*:80`, `[::]:443`, `localhost:8080`.
fn parse_listen_addr(s: &str) -> std::result::Result<Vec<std::net::SocketAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    if let Ok(port) = s.parse::<u16>() {
        return Ok(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )]);
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid port in \"{s}\" of the \"listen\" directive"
        ));
    }
    let text = if let Some(rest) = s.strip_prefix("*:") {
        format!("0.0.0.0:{rest}")
    } else if s == "*" {
        "0.0.0.0".to_string()
    } else {
        s.to_string()
    };
    let port_default = crate::config::listen::default_listen_port();
    crate::config::values::resolve_addr(&text, port_default, true).map_err(|m| {
        if m.contains("invalid port") {
            format!("invalid port in \"{s}\" of the \"listen\" directive")
        } else {
            format!("host not found in \"{s}\" of the \"listen\" directive{m}")
        }
    })
}

fn set_server_name(b: &mut Builder, st: &Statement) -> Result<()> {
    for w in &st.args {
        let name = w.value.as_str();
        if let Some(re) = name.strip_prefix('~') {
            let re = b.regex(re, true, &st.span)?;
            b.server().name_regexes.push(re);
            b.server().names.push((name.to_string(), st.span.clone()));
            continue;
        }
        let name = if name == "$hostname" {
            crate::log::hostname().to_string()
        } else {
            name.to_string()
        };
        if name.contains('*') && !(name.starts_with("*.") || name.ends_with(".*")) {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid server name or wildcard \"{name}\""),
            ));
        }
        b.server().names.push((name, st.span.clone()));
    }
    Ok(())
}

fn set_location(b: &mut Builder, st: &Statement) -> Result<()> {
    let (modifier, path) = match st.args.len() {
        2 => (st.args[0].value.clone(), st.args[1].value.clone()),
        1 => {
            let a = &st.args[0].value;
            if let Some(p) = a.strip_prefix("^~") {
                ("^~".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix("~*") {
                ("~*".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('~') {
                ("~".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('=') {
                ("=".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('@') {
                ("@".to_string(), p.to_string())
            } else {
                (String::new(), a.clone())
            }
        }
        _ => {
            return Err(ConfigError::at(
                &st.span,
                "invalid number of arguments in \"location\" directive",
            ));
        }
    };
    if !matches!(modifier.as_str(), "" | "=" | "^~" | "~" | "~*" | "@") {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid location modifier \"{modifier}\""),
        ));
    }
    let regex = match modifier.as_str() {
        "~" => Some(b.regex(&path, false, &st.span)?),
        "~*" => Some(b.regex(&path, true, &st.span)?),
        _ => None,
    };
    if !b_loc_path_is_empty(b) {
        let parent = b.location();
        if parent.modifier == "=" {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "location \"{}\" cannot be inside the exact location \"{}\"",
                    path, parent.path
                ),
            ));
        }
        if parent.modifier == "@" {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "location \"{}\" cannot be inside the named location \"{}\"",
                    path, parent.path
                ),
            ));
        }
        if modifier == "@" {
            return Err(ConfigError::at(
                &st.span,
                format!("named location \"@{path}\" can be on the server level only"),
            ));
        }
        let parent_prefix =
            (parent.modifier.is_empty() || parent.modifier == "^~").then(|| parent.path.clone());
        if let Some(pp) = parent_prefix
            && regex.is_none()
            && !path.starts_with(&pp)
        {
            return Err(ConfigError::at(
                &st.span,
                format!("location \"{path}\" is outside location \"{pp}\""),
            ));
        }
    }
    let loc = LocationRaw {
        modifier,
        path,
        regex,
        span: Some(st.span.clone()),
        ..LocationRaw::default()
    };
    b.open_location(loc);
    Ok(())
}

fn leave_location(b: &mut Builder, _: &Statement) -> Result<()> {
    b.close_location();
    Ok(())
}

fn b_loc_path_is_empty(b: &mut Builder) -> bool {
    b.ctx != Ctx::LOCATION
}

fn set_keepalive_timeout(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::UPSTREAM {
        let t = arg_time(st, 0)?;
        return put(&mut b.upstream().keepalive_timeout, t, st);
    }
    let t = arg_time(st, 0)?;
    put(&mut b.loc().keepalive_timeout, t, st)
}

fn set_keepalive_requests(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)?;
    if b.ctx == Ctx::UPSTREAM {
        return put(&mut b.upstream().keepalive_requests, n, st);
    }
    put(&mut b.loc().keepalive_requests, n, st)
}

fn set_keepalive_time(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_time(st, 0)?;
    if b.ctx == Ctx::UPSTREAM {
        return put(&mut b.upstream().keepalive_time, t, st);
    }
    // Client-side keepalive_time: bound the life of a keep-alive connection.
    b.warn(
        &st.span,
        "\"keepalive_time\" for client connections has no effect in switchyard yet",
    );
    Ok(())
}

fn set_error_page(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = st.args.len();
    let uri = arg_template(st, n - 1)?;
    let mut codes = Vec::new();
    let mut overwrite = Overwrite::Keep;
    for w in &st.args[..n - 1] {
        if let Some(o) = w.value.strip_prefix('=') {
            overwrite = if o.is_empty() {
                Overwrite::Response
            } else {
                Overwrite::Status(o.parse().map_err(|_| {
                    ConfigError::at(&st.span, format!("invalid value \"{}\"", w.value))
                })?)
            };
            continue;
        }
        let code: u16 = w
            .value
            .parse()
            .map_err(|_| ConfigError::at(&st.span, format!("invalid value \"{}\"", w.value)))?;
        if !(300..=599).contains(&code) || code == 499 {
            return Err(ConfigError::at(
                &st.span,
                format!("value \"{code}\" must be between 300 and 599"),
            ));
        }
        codes.push(code);
    }
    if codes.is_empty() {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"error_page\" directive",
        ));
    }
    b.loc()
        .error_pages
        .get_or_insert_with(Vec::new)
        .push(ErrorPage {
            codes,
            overwrite,
            uri,
        });
    Ok(())
}

fn set_internal(b: &mut Builder, st: &Statement) -> Result<()> {
    let loc = b.loc();
    if loc.internal {
        return Err(duplicate(st));
    }
    loc.internal = true;
    Ok(())
}

fn set_server_tokens(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = match st.args[0].value.as_str() {
        "on" | "build" => true,
        "off" => false,
        _ => return Err(invalid_value(st, 0)),
    };
    put(&mut b.loc().server_tokens, v, st)
}

/// `large_client_header_buffers NUMBER SIZE`.
fn set_large_client_header_buffers(b: &mut Builder, st: &Statement) -> Result<()> {
    let number = st.args[0]
        .value
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid_value(st, 0))?;
    let size = parse_size(&st.args[1].value)
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid_value(st, 1))?;
    put(&mut b.loc().large_client_header_buffers, (number, size), st)
}
