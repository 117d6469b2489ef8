//! Response compression (ngx_http_gzip_module).

use super::{
    Args, Directive, HSL, HSLI, T1, T2, arg_http_version, arg_number, loc_flag, loc_size, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("gzip", HSLI, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.gzip), "Compresses responses (status 200/403/404, listed types, clients sending `Accept-Encoding: gzip`); backend bodies are compressed as they stream, each read flushed."),
    d!("gzip_types", HSL, Args::AtLeast(1), set_gzip_types, "MIME types to compress besides `text/html`; `*` for any."),
    d!("gzip_comp_level", HSL, T1, set_gzip_comp_level, "Compression level 1-9 (default 1)."),
    d!("gzip_min_length", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.gzip_min_length), "Smallest `Content-Length` worth compressing (default 20); unknown lengths are compressed."),
    d!("gzip_http_version", HSL, T1, set_gzip_http_version, "Lowest request HTTP version to compress for (`1.1` by default)."),
    d!("gzip_proxied", HSL, Args::AtLeast(1), set_gzip_proxied, "Compression for requests that came through a proxy (`Via`): `off`, `any`, `auth`, `expired`, `no-cache`, `no-store`, `private`, `no_last_modified`, `no_etag`."),
    d!("gzip_vary", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.gzip_vary), "Adds `Vary: Accept-Encoding` to responses that qualify for compression."),
    d!("gzip_disable", HSL, Args::AtLeast(1), set_gzip_disable, "No compression for `User-Agent`s matching these case-insensitive regexes (`msie6`: MSIE 4-6)."),
    noop!("gzip_buffers", HSL, T2, "Compression buffers (no effect)."),
    noop!("gzip_window", HSL, T1, "Compression window (no effect: the compressor's default)."),
    noop!("gzip_hash", HSL, T1, "Compression memory (no effect)."),
    noop!("postpone_gzipping", HSL, T1, "Compression start threshold (no effect)."),
    noop!("gzip_no_buffer", HSL, Args::Flag, "Compression buffering (no effect)."),
];

// ---------------------------------------------------------------------------
// Compression.

fn set_gzip_types(b: &mut Builder, st: &Statement) -> Result<()> {
    let values = st.values();
    let types = if values.contains(&"*") {
        None
    } else {
        // text/html is always compressed, as in nginx.
        let mut list = vec!["text/html".to_string()];
        for v in values {
            let v = v.to_ascii_lowercase();
            if !list.contains(&v) {
                list.push(v);
            }
        }
        Some(list)
    };
    put(&mut b.loc().gzip_types, types, st)
}

fn set_gzip_comp_level(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)?;
    if !(1..=9).contains(&n) {
        return Err(ConfigError::at(&st.span, "value must be between 1 and 9"));
    }
    put(&mut b.loc().gzip_comp_level, n as u32, st)
}

fn set_gzip_http_version(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = arg_http_version(st)?;
    put(&mut b.loc().gzip_http_version, v, st)
}

fn set_gzip_proxied(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut flags = 0;
    for v in st.values() {
        let Some((_, bit)) = crate::config::model::proxied::NAMES
            .iter()
            .find(|(n, _)| *n == v)
        else {
            return Err(ConfigError::at(&st.span, format!("invalid value \"{v}\"")));
        };
        flags |= bit;
    }
    put(&mut b.loc().gzip_proxied, flags, st)
}

fn set_gzip_disable(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut list = Vec::new();
    for v in st.values() {
        list.push(if v == "msie6" {
            crate::config::model::Disable::Msie6
        } else {
            crate::config::model::Disable::Regex(b.regex(v, true, &st.span)?)
        });
    }
    // Several gzip_disable lines at one level add up.
    b.loc().gzip_disable.get_or_insert_default().extend(list);
    Ok(())
}
