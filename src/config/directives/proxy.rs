//! `proxy_*`: the request sent to backends, timeouts, retries and backend
//! TLS (ngx_http_proxy_module).

use http::HeaderName;

use super::{
    Args, Ctx, Directive, HSL, Support, T1, T2, arg_http_version, arg_number, arg_size,
    arg_template, duplicate, invalid_value, loc_flag, loc_time, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{Builder, LocRaw, RedirectsRaw};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    noop!("proxy_headers_hash_max_size", HSL, T1, "nginx hash sizing (no effect)."),
    noop!("proxy_headers_hash_bucket_size", HSL, T1, "nginx hash sizing (no effect)."),
    d!("proxy_pass", Ctx(Ctx::LOCATION.0 | Ctx::LIMIT_EXCEPT.0 | Ctx::LOCATION_IF.0), T1, set_proxy_pass, "Backend URL: address, upstream name or `unix:PATH:`, optional URI part replacing the location prefix, variables."),
    d!("proxy_http_version", HSL, T1, set_proxy_http_version, "HTTP version to the backend (`1.0` default; WebSocket handshakes always use 1.1)."),
    d!("proxy_set_header", HSL, T2, set_proxy_set_header, "Header sent to the backend; a level that sets any replaces the whole inherited set; empty value removes."),
    d!("proxy_hide_header", HSL, T1, |b, st| header_list(b, st, |l| &mut l.hide_headers), "Backend response header not passed to the client."),
    d!("proxy_ignore_headers", HSL, Args::AtLeast(1), set_ignore_headers, "Backend headers not acted upon: `X-Accel-Redirect` (an internal redirect), `X-Accel-Limit-Rate`, `X-Accel-Charset`; `X-Accel-Expires`, `X-Accel-Buffering`, `Expires`, `Cache-Control`, `Set-Cookie` and `Vary` only steer a cache or buffering, which Switchyard does not have, so ignoring them changes nothing."),
    d!("proxy_pass_header", HSL, T1, |b, st| header_list(b, st, |l| &mut l.pass_headers), "Passes a header hidden by default (`Server`, `Date`, `X-Accel-*`)."),
    d!("proxy_pass_request_headers", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.pass_request_headers), "Whether client headers are passed."),
    d!("proxy_pass_request_body", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.pass_request_body), "Whether the client body is passed."),
    d!("proxy_set_body", HSL, T1, set_proxy_set_body, "Replaces the request body sent upstream."),
    d!("proxy_read_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.read_timeout), "Backend silence allowed between reads (default 60s); upgraded connections idle longer are closed."),
    d!("proxy_send_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.send_timeout_upstream), "Bound on each write to the backend (default 60s)."),
    d!("proxy_connect_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.connect_timeout), "Bound on connecting to the backend (default 60s; 504 after)."),
    d!("proxy_buffering", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.buffering), "Accepted; responses are always streamed as they arrive (nginx's `off`), never spooled to memory or disk; upgraded connections are never buffered."),
    d!("proxy_request_buffering", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.request_buffering), "Read the whole client body before contacting the backend."),
    d!("proxy_buffer_size", HSL, T1, |b, st| loc_usize(b, st, |l| &mut l.buffer_size), "Largest backend response head (default 4k); a larger one is a 502 \"upstream sent too big header\"."),
    Directive { name: "proxy_buffers", contexts: HSL, args: T2, block: false, set: set_proxy_buffers, body: None, support: Support::Ignored, doc: "Response buffer count and size (no effect: responses are streamed)." },
    d!("client_body_in_file_only", HSL, T1, set_client_body_in_file_only, "`on`: a request body read before proxying always goes to a file in `client_body_temp_path`, named by `$request_body_file` and left there; `clean`: the same, removed when the request ends; `off` (default): memory up to `client_body_buffer_size`, a file beyond."),
    d!("client_body_in_single_buffer", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.client_body_in_single_buffer), "Keep a body in memory in one buffer (for `$request_body`): a body read into memory always is one buffer here, so `on` and `off` behave alike."),
    d!("client_body_temp_path", HSL, Args::Take(&[1, 2, 3, 4]), set_client_body_temp_path, "Directory for request bodies larger than `client_body_buffer_size` (default: the system's temporary directory, e.g. `/tmp`); created when first needed. Files are removed when their request ends (unless `client_body_in_file_only on`); the `level` arguments are checked and have no effect."),
    noop!("proxy_temp_path", HSL, Args::Take(&[1, 2, 3, 4]), "Responses are never spooled to disk (no effect)."),
    noop!("proxy_busy_buffers_size", HSL, T1, "Response buffer tuning (no effect)."),
    noop!("proxy_max_temp_file_size", HSL, T1, "Responses are never spooled to disk (no effect)."),
    noop!("proxy_temp_file_write_size", HSL, T1, "Responses are never spooled to disk (no effect)."),
    d!("proxy_cache", HSL, T1, set_proxy_cache, "Only `off` is accepted (caching is not implemented)."),
    d!("proxy_cache_bypass", HSL, Args::AtLeast(1), set_cache_condition, "Accepted where no cache is in use, which is always: there is nothing to bypass (the values are checked like any variable)."),
    d!("proxy_no_cache", HSL, Args::AtLeast(1), set_cache_condition, "Accepted where no cache is in use, which is always: nothing is cached anyway (the values are checked like any variable)."),
    d!("proxy_redirect", HSL, Args::Take(&[1, 2]), set_proxy_redirect, "Rewrites `Location` and `Refresh` from backends: `default` (the `proxy_pass` URL becomes the location), `off`, `FROM TO` (a prefix, variables allowed) or `~regex TO` / `~*regex TO` with captures; several rules are tried in order."),
    d!("proxy_next_upstream", HSL, Args::AtLeast(1), set_next_upstream, "When to try the next backend: `error`, `timeout`, `invalid_header`, `http_5xx`, `non_idempotent`, `off`."),
    d!("proxy_next_upstream_tries", HSL, T1, |b, st| { let n = arg_number(st, 0)? as usize; put(&mut b.loc().next_upstream_tries, n, st) }, "Most backends tried per request (0 = all)."),
    d!("proxy_next_upstream_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.next_upstream_timeout), "Time limit for trying further backends (0 = none)."),
    d!("proxy_intercept_errors", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.intercept_errors), "Use `error_page` for backend responses >= 300."),
    d!("proxy_force_ranges", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.force_ranges), "Serve `Range` requests (a single range) from proxied 200 responses of known length, as for static files."),
    d!("proxy_ignore_client_abort", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ignore_client_abort), "Keep the backend request when the client goes away."),
    d!("proxy_ssl_verify", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_verify), "Verify the backend's certificate (default off, as nginx) with OpenSSL's rules: chains by webpki, the common name when subjectAltName has no DNS names, and a self-signed certificate listed in `proxy_ssl_trusted_certificate` accepted as its own anchor (even marked CA, or X.509 v1)."),
    d!("proxy_ssl_trusted_certificate", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_trusted_certificate), "CA or backend certificates (PEM) for `proxy_ssl_verify`; required with it, read at load."),
    d!("proxy_ssl_name", HSL, T1, set_proxy_ssl_name, "Name verified in (and sent as SNI for) the backend certificate (default `$proxy_host`)."),
    d!("proxy_ssl_server_name", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_server_name), "Send SNI to the backend."),
    d!("proxy_ssl_verify_depth", HSL, T1, |b, st| { let n = arg_number(st, 0)? as u32; put(&mut b.loc().ssl_verify_depth, n, st) }, "Certificate chain depth (accepted; rustls verifies full chains)."),
    d!("proxy_ssl_session_reuse", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_session_reuse), "Resume TLS sessions with the backend."),
    d!("proxy_ssl_certificate", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_certificate), "Client certificate presented to the backend."),
    d!("proxy_ssl_certificate_key", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_certificate_key), "Key of the client certificate."),
    noop!("proxy_ssl_protocols", HSL, Args::AtLeast(1), "Backend TLS versions (rustls: 1.2 and 1.3)."),
    noop!("proxy_ssl_ciphers", HSL, T1, "Backend cipher list (rustls defaults)."),
    noop!("proxy_socket_keepalive", HSL, Args::Flag, "TCP keepalive to backends (no effect)."),
];

fn loc_usize(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<usize>,
) -> Result<()> {
    let v = arg_size(st, 0)? as usize;
    put(f(b.loc()), v, st)
}

fn loc_path(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<std::path::PathBuf>,
) -> Result<()> {
    let v = b.full_path(&st.args[0].value);
    put(f(b.loc()), v, st)
}

fn set_client_body_in_file_only(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = match st.args[0].value.as_str() {
        "off" => BodyInFile::Off,
        "on" => BodyInFile::On,
        "clean" => BodyInFile::Clean,
        _ => return Err(invalid_value(st, 0)),
    };
    put(&mut b.loc().client_body_in_file_only, v, st)
}

fn set_client_body_temp_path(b: &mut Builder, st: &Statement) -> Result<()> {
    for level in &st.args[1..] {
        if !matches!(level.value.as_str(), "1" | "2") {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid value \"{}\"", level.value),
            ));
        }
    }
    loc_path(b, st, |l| &mut l.client_body_temp_path)
}

// ---------------------------------------------------------------------------
// Location level.

fn set_proxy_pass(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx != Ctx::LOCATION && b.ctx != Ctx::LIMIT_EXCEPT && !b.in_location_if() {
        return Err(ConfigError::at(
            &st.span,
            "\"proxy_pass\" directive is not allowed here",
        ));
    }
    let url = st.args[0].value.clone();
    let loc = b.loc();
    if loc.proxy_pass.is_some() {
        return Err(duplicate(st));
    }
    loc.proxy_pass = Some((url, st.span.clone()));
    Ok(())
}

fn set_proxy_http_version(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = arg_http_version(st)?;
    put(&mut b.loc().http_version, v, st)
}

fn set_proxy_set_header(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid header name \"{name}\""),
        ));
    }
    let value = arg_template(st, 1)?;
    b.loc()
        .set_headers
        .get_or_insert_with(Vec::new)
        .push((name, value, st.span.clone()));
    Ok(())
}

/// `proxy_ignore_headers NAME...` (nginx's bitmask slot: names compared
/// without case, unknown ones refused, repeated directives added up).
fn set_ignore_headers(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut bits = 0;
    for arg in &st.args {
        let Some((_, bit)) = crate::config::IgnoreHeaders::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&arg.value))
        else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid value \"{}\"", arg.value),
            ));
        };
        bits |= bit;
    }
    // Repeated directives add up, as nginx's bitmask slot does.
    let slot = &mut b.loc().ignore_headers;
    *slot = Some(slot.unwrap_or(0) | bits);
    Ok(())
}

fn header_list(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<Vec<HeaderName>>,
) -> Result<()> {
    let name = HeaderName::from_bytes(st.args[0].value.as_bytes()).map_err(|_| {
        ConfigError::at(
            &st.span,
            format!("invalid header name \"{}\"", st.args[0].value),
        )
    })?;
    f(b.loc()).get_or_insert_with(Vec::new).push(name);
    Ok(())
}

fn set_proxy_buffers(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)? as usize;
    let size = arg_size(st, 1)? as usize;
    if n < 2 {
        return Err(ConfigError::at(
            &st.span,
            "there must be at least 2 \"proxy_buffers\"",
        ));
    }
    put(&mut b.loc().buffers, (n, size), st)
}

/// `proxy_cache_bypass` / `proxy_no_cache`: conditions about a cache that
/// does not exist; their templates are still checked (a typo in a variable
/// name is an error, as in nginx).
fn set_cache_condition(b: &mut Builder, st: &Statement) -> Result<()> {
    for i in 0..st.args.len() {
        let t = arg_template(st, i)?;
        b.loc()
            .unused_templates
            .get_or_insert_default()
            .push((t, st.span.clone()));
    }
    Ok(())
}

fn set_proxy_cache(b: &mut Builder, st: &Statement) -> Result<()> {
    if st.args[0].value != "off" {
        return Err(ConfigError::unsupported(
            &st.span,
            "\"proxy_cache\" is not supported by switchyard (only \"proxy_cache off\" is accepted)",
        ));
    }
    let _ = b;
    Ok(())
}

fn set_proxy_redirect(b: &mut Builder, st: &Statement) -> Result<()> {
    let first = st.args[0].value.as_str();
    let rule = match (st.args.len(), first) {
        (1, "off") => {
            if b.loc().redirects.is_some() {
                return Err(duplicate(st));
            }
            b.loc().redirects = Some(RedirectsRaw::Off);
            return Ok(());
        }
        (1, "default") => {
            match &b.loc().proxy_pass {
                None => {
                    return Err(ConfigError::at(
                        &st.span,
                        "\"proxy_redirect default\" should be placed after the \"proxy_pass\" directive",
                    ));
                }
                Some((url, _)) if url.contains('$') => {
                    return Err(ConfigError::at(
                        &st.span,
                        "\"proxy_redirect default\" cannot be used with \"proxy_pass\" directive with variables",
                    ));
                }
                Some(_) => {}
            }
            None
        }
        (1, other) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{other}\""),
            ));
        }
        _ => {
            let pattern = match first.strip_prefix('~') {
                Some(re) => match re.strip_prefix('*') {
                    Some(re) => RedirectPattern::Regex(b.regex(re, true, &st.span)?),
                    None => RedirectPattern::Regex(b.regex(re, false, &st.span)?),
                },
                None => RedirectPattern::Prefix(arg_template(st, 0)?),
            };
            Some(RedirectRule {
                pattern,
                replacement: arg_template(st, 1)?,
            })
        }
    };
    match &mut b.loc().redirects {
        Some(RedirectsRaw::Off) => Err(duplicate(st)),
        Some(RedirectsRaw::Rules(rules)) => {
            rules.push(rule);
            Ok(())
        }
        slot @ None => {
            *slot = Some(RedirectsRaw::Rules(vec![rule]));
            Ok(())
        }
    }
}

fn set_next_upstream(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut nu = NextUpstream::default();
    for w in &st.args {
        match w.value.as_str() {
            "error" => nu.error = true,
            "timeout" => nu.timeout = true,
            "invalid_header" => nu.invalid_header = true,
            "non_idempotent" => nu.non_idempotent = true,
            "off" => {}
            "http_500" | "http_502" | "http_503" | "http_504" | "http_403" | "http_404"
            | "http_429" => {
                let code: u16 = w.value[5..].parse().expect("static list");
                nu.statuses |= NextUpstream::status_bit(code);
            }
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid value \"{other}\""),
                ));
            }
        }
    }
    if st.args.iter().any(|w| w.value == "off") && st.args.len() > 1 {
        return Err(ConfigError::at(&st.span, "invalid value \"off\""));
    }
    put(&mut b.loc().next_upstream, nu, st)
}

fn set_proxy_ssl_name(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_template(st, 0)?;
    put(&mut b.loc().ssl_name, t, st)
}

fn set_proxy_set_body(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_template(st, 0)?;
    put(&mut b.loc().set_body, t, st)
}
