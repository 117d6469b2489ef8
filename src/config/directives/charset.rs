//! The charset module: `charset`, `source_charset`, `override_charset`,
//! `charset_types`, `charset_map`.

use std::sync::Arc;

use super::{Args, Directive, HSL, HSLI, HTTP, T1, T2, loc_flag, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::note::Mode;
use crate::config::raw::Builder;
use crate::config::template::{Piece, Template};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("charset", HSLI, T1, |b, st| set_charset(b, st, true), "Adds `; charset=NAME` to the `Content-Type` of responses of `charset_types` (`off`: none; a `$variable` names it per request); with `source_charset` and a `charset_map`, converts the body."),
    d!("source_charset", HSLI, T1, |b, st| set_charset(b, st, false), "The charset of the content; a different `charset` converts it through a `charset_map`."),
    d!("override_charset", HSLI, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.override_charset), "Also for proxied responses whose `Content-Type` names a charset (converted from that one)."),
    d!("charset_types", HSL, Args::AtLeast(1), set_charset_types, "MIME types `charset` applies to besides `text/html` (default `text/xml text/plain text/vnd.wap.wml application/javascript application/rss+xml`); `*` for any."),
    raw_block!("charset_map", HTTP, T2, set_charset_map, "A byte-to-byte table between two single-byte charsets (`HEX HEX;` lines), used both ways. Conversion to or from UTF-8 is not implemented: a map naming `utf-8` is refused."),
];

/// Adds `name` to the charsets the configuration knows (nginx's
/// `ngx_http_add_charset`).
fn add_charset(b: &mut Builder, name: &str) {
    if b.http.charsets.find(name.as_bytes()).is_none() {
        b.http.charsets.names.push(name.to_string());
    }
}

fn set_charset(b: &mut Builder, st: &Statement, destination: bool) -> Result<()> {
    let value = &st.args[0].value;
    let v = if destination && value == "off" {
        CharsetName::Off
    } else if value.starts_with('$') {
        let t = Template::parse(value).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
        if !matches!(t.pieces.as_slice(), [Piece::Name(_)]) {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid variable name \"{value}\""),
            ));
        }
        CharsetName::Var(t)
    } else {
        add_charset(b, value);
        CharsetName::Name(value.clone())
    };
    let loc = b.loc();
    let slot = if destination {
        &mut loc.charset
    } else {
        &mut loc.source_charset
    };
    put(slot, v, st)
}

/// nginx's `ngx_http_types_slot`: `text/html` first, then the types given;
/// another `charset_types` at the same level adds to the list; `*` makes it
/// any type.
fn set_charset_types(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut warnings = Vec::new();
    let loc = b.loc();
    let slot = loc
        .charset_types
        .get_or_insert_with(|| Some(vec!["text/html".to_string()]));
    let Some(list) = slot else {
        return Ok(());
    };
    for v in st.values() {
        if v == "*" {
            *slot = None;
            return Ok(());
        }
        let v = v.to_ascii_lowercase();
        if list.contains(&v) {
            warnings.push(ConfigError::at(
                &st.span,
                format!("duplicate MIME type \"{v}\""),
            ));
        } else {
            list.push(v);
        }
    }
    b.warnings.extend(warnings);
    Ok(())
}

fn utf8_refusal(st: &Statement, from: &str, to: &str) -> ConfigError {
    ConfigError::unsupported(
        &st.span,
        format!(
            "\"charset_map {from} {to}\": conversion to or from UTF-8 is not implemented by switchyard (only maps between single-byte charsets are)"
        ),
    )
}

/// `charset_map from to { HEX HEX; ... }`: a table between two single-byte
/// charsets, bytes 0-127 unchanged and the others `?` unless listed.
fn set_charset_map(b: &mut Builder, st: &Statement) -> Result<()> {
    let (from, to) = (&st.args[0].value, &st.args[1].value);
    if from.eq_ignore_ascii_case(to) {
        return Err(ConfigError::at(
            &st.span,
            format!("\"charset_map\" between the same charsets \"{from}\" and \"{to}\""),
        ));
    }
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if b.http.charsets.tables.iter().any(|t| {
        (same(&t.from, from) && same(&t.to, to)) || (same(&t.from, to) && same(&t.to, from))
    }) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate \"charset_map\" between \"{from}\" and \"{to}\""),
        ));
    }
    if same(from, "utf-8") || same(to, "utf-8") {
        if b.mode == Mode::LintNginx {
            // `switchyard check --nginx` notes the map as skipped; the
            // locations that use it are still checked, against an identity
            // map.
            let identity: [u8; 256] = std::array::from_fn(|i| i as u8);
            add_charset(b, from);
            add_charset(b, to);
            b.http.charsets.tables.push(CharsetTable {
                from: from.clone(),
                to: to.clone(),
                forward: Arc::new(identity),
                backward: Arc::new(identity),
            });
        }
        return Err(utf8_refusal(st, from, to));
    }
    let mut forward = [b'?'; 256];
    let mut backward = [b'?'; 256];
    for i in 0..128u8 {
        forward[usize::from(i)] = i;
        backward[usize::from(i)] = i;
    }
    for entry in st.block.as_deref().unwrap_or(&[]) {
        if entry.block.is_some() {
            return Err(ConfigError::at(&entry.span, "unexpected \"{\""));
        }
        if entry.args.len() != 1 {
            return Err(ConfigError::at(&entry.span, "invalid parameters number"));
        }
        let byte = |s: &str| {
            u8::from_str_radix(s, 16)
                .ok()
                .filter(|_| s.bytes().all(|c| c.is_ascii_hexdigit()))
                .ok_or_else(|| ConfigError::at(&entry.span, format!("invalid value \"{s}\"")))
        };
        let src = byte(&entry.name)?;
        let dst = byte(&entry.args[0].value)?;
        forward[usize::from(src)] = dst;
        backward[usize::from(dst)] = src;
    }
    add_charset(b, from);
    add_charset(b, to);
    b.http.charsets.tables.push(CharsetTable {
        from: from.clone(),
        to: to.clone(),
        forward: Arc::new(forward),
        backward: Arc::new(backward),
    });
    Ok(())
}
