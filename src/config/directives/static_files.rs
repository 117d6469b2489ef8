//! Static content and response headers: `root`, `alias`, `index`,
//! `try_files`, MIME types, `add_header`, `expires`, and the filters of
//! nginx's core module for static and proxied responses (`etag`,
//! `if_modified_since`, `max_ranges`, `chunked_transfer_encoding`).

use http::HeaderName;

use super::{Args, Directive, HSL, HSLI, LOCATION, SL, T1, T12, T23, arg_template, loc_flag, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::Builder;
use crate::config::template::Template;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    noop!("types_hash_max_size", HSL, T1, "nginx hash sizing (no effect)."),
    noop!("types_hash_bucket_size", HSL, T1, "nginx hash sizing (no effect)."),
    d!("add_header", HSLI, T23, set_add_header, "Adds a response header for 2xx/3xx (`always`: every status); a level that adds any replaces the inherited set. `Last-Modified` and `ETag` replace the response's own (an empty value removes it), and `If-Range` then compares with them."),
    d!("add_trailer", HSLI, T23, set_add_trailer, "Adds a trailer after the body of a 2xx/3xx response (`always`: every status), its value evaluated when the body has been sent (`$upstream_response_length`, `$sent_trailer_NAME` of the trailers before it); an empty value adds nothing, a level that adds any replaces the inherited set. Over HTTP/1.1 such a response is chunked (its `Content-Length` dropped) unless `chunked_transfer_encoding off`; HTTP/1.0 and `HEAD` get none; over HTTP/2 they travel as a trailing HEADERS frame."),
    d!("expires", HSLI, T12, set_expires, "`Expires` and `Cache-Control` on 2xx/3xx responses: `[modified] [+|-]time`, `@time` (the next time of day, local time), `epoch`, `max`, `off`, or a value with variables read per request (an invalid value adds nothing)."),
    d!("etag", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.etag), "`ETag: \"mtime-size\"` (hexadecimal) on static files (default on)."),
    d!("if_modified_since", HSL, T1, set_if_modified_since, "`If-Modified-Since`: `exact` (default: 304 when the time is the same), `before` (not later), `off`. `If-None-Match`, `If-Match`, `If-Unmodified-Since` are answered too (304/412), for every 200 response except proxied ones, as nginx without a cache."),
    d!("max_ranges", HSL, T1, set_max_ranges, "Most ranges served in one response (default no limit; `0`: no ranges, no `Accept-Ranges`). Static files serve `Range` (206, `multipart/byteranges`, 416) and `If-Range`."),
    d!("chunked_transfer_encoding", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.chunked_transfer_encoding), "HTTP/1.1 bodies of unknown length are chunked (default on); off: they end with the connection."),
    d!("root", HSLI, T1, |b, st| set_root(b, st, false), "Document root for static files."),
    d!("alias", LOCATION, T1, |b, st| set_root(b, st, true), "Replaces the location prefix with a directory."),
    d!("index", HSL, Args::AtLeast(1), set_index, "Index files for directory requests."),
    d!("try_files", SL, Args::AtLeast(2), set_try_files, "Tries files in order, then an internal redirect, named location or `=code`."),
    d!("default_type", HSL, T1, set_default_type, "MIME type for unknown extensions."),
    raw_block!("types", HSL, Args::None, set_types, "Extension to MIME type table (`include mime.types;` works); a level with a `types` block replaces the inherited one. With none anywhere, a built-in table of common web types applies."),
    d!("log_not_found", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.log_not_found), "Log missing static files."),
];

fn set_add_header(b: &mut Builder, st: &Statement) -> Result<()> {
    let entry = header_entry(st)?;
    b.loc().add_headers.get_or_insert_with(Vec::new).push(entry);
    Ok(())
}

fn set_add_trailer(b: &mut Builder, st: &Statement) -> Result<()> {
    let entry = header_entry(st)?;
    b.loc()
        .add_trailers
        .get_or_insert_with(Vec::new)
        .push(entry);
    Ok(())
}

/// `NAME VALUE [always]` of `add_header` and `add_trailer`.
fn header_entry(st: &Statement) -> Result<AddHeader> {
    let name = HeaderName::from_bytes(st.args[0].value.as_bytes()).map_err(|_| {
        ConfigError::at(
            &st.span,
            format!("invalid header name \"{}\"", st.args[0].value),
        )
    })?;
    let value = arg_template(st, 1)?;
    let always = match st.args.get(2) {
        None => false,
        Some(w) if w.value == "always" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    Ok(AddHeader {
        name,
        display: st.args[0].value.clone(),
        value,
        always,
    })
}

fn set_expires(b: &mut Builder, st: &Statement) -> Result<()> {
    let (modified, value) = match st.args.as_slice() {
        [v] => (false, v),
        [m, v] if m.value == "modified" => (true, v),
        _ => return Err(directive_error(st, "invalid value")),
    };
    let template =
        Template::parse(&value.value).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
    let e = if template
        .pieces
        .iter()
        .any(|p| !matches!(p, crate::config::template::Piece::Lit(_)))
    {
        Expires::Var {
            value: template,
            modified,
        }
    } else {
        Expires::parse(&value.value, modified).map_err(|why| directive_error(st, why))?
    };
    put(&mut b.loc().expires, e, st)
}

/// nginx's message for a setter that returns an error string.
fn directive_error(st: &Statement, why: &str) -> ConfigError {
    ConfigError::at(&st.span, format!("\"{}\" directive {why}", st.name))
}

fn set_if_modified_since(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = match st.args[0].value.as_str() {
        "off" => IfModifiedSince::Off,
        "exact" => IfModifiedSince::Exact,
        "before" => IfModifiedSince::Before,
        other => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid value \"{other}\""),
            ));
        }
    };
    put(&mut b.loc().if_modified_since, v, st)
}

fn set_max_ranges(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = st.args[0]
        .value
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= i32::MAX as u32)
        .ok_or_else(|| directive_error(st, "invalid number"))?;
    put(&mut b.loc().max_ranges, n, st)
}

fn set_root(b: &mut Builder, st: &Statement, alias: bool) -> Result<()> {
    let loc = b.loc();
    if let Some((r, _)) = &loc.root {
        let was_alias = r.alias != Alias::No;
        let msg = if was_alias == alias {
            format!("\"{}\" directive is duplicate", st.name)
        } else if was_alias {
            "\"root\" directive is duplicate, \"alias\" directive was specified earlier".to_string()
        } else {
            "\"alias\" directive is duplicate, \"root\" directive was specified earlier".to_string()
        };
        return Err(ConfigError::at(&st.span, msg));
    }
    let mut value = st.args[0].value.clone();
    if !value.starts_with('/') && !value.starts_with('$') {
        value = b.prefix.join(&value).to_string_lossy().into_owned();
    }
    if !alias {
        // nginx strips a trailing slash from root.
        while value.len() > 1 && value.ends_with('/') {
            value.pop();
        }
    }
    let kind = if !alias {
        Alias::No
    } else {
        let location = b.location();
        if location.regex.is_some() {
            Alias::Regex
        } else {
            Alias::Prefix(location.path.clone())
        }
    };
    let path = Template::parse(&value).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
    b.loc().root = Some((Root { path, alias: kind }, st.span.clone()));
    Ok(())
}

fn set_index(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut list = Vec::new();
    for (i, w) in st.args.iter().enumerate() {
        if w.value.is_empty() {
            return Err(ConfigError::at(
                &st.span,
                "index \"\" in \"index\" directive is invalid",
            ));
        }
        if w.value.starts_with('/') && i + 1 != st.args.len() {
            return Err(ConfigError::at(
                &st.span,
                "only the last index in \"index\" directive should be absolute".to_string(),
            ));
        }
        list.push(arg_template(st, i)?);
    }
    let loc = b.loc();
    loc.index.get_or_insert_with(Vec::new).extend(list);
    Ok(())
}

fn set_try_files(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = st.args.len();
    let mut files = Vec::new();
    for i in 0..n - 1 {
        files.push(arg_template(st, i)?);
    }
    let last = &st.args[n - 1].value;
    let fallback = if let Some(code) = last.strip_prefix('=') {
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..=999).contains(c))
            .ok_or_else(|| ConfigError::at(&st.span, format!("invalid code \"{last}\"")))?;
        TryFallback::Status(code)
    } else if let Some(name) = last.strip_prefix('@') {
        TryFallback::Named(name.to_string())
    } else {
        TryFallback::Uri(arg_template(st, n - 1)?)
    };
    put(&mut b.loc().try_files, TryFiles { files, fallback }, st)
}

fn set_default_type(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = st.args[0].value.clone();
    put(&mut b.loc().default_type, v, st)
}

/// `types { MIME ext...; }`: another block at the same level adds to the
/// first; an extension listed twice keeps the later type, with nginx's
/// warning. Extensions match case-insensitively.
fn set_types(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut warnings = Vec::new();
    let table = std::sync::Arc::make_mut(b.loc().types.get_or_insert_default());
    for entry in st.block.as_deref().unwrap_or(&[]) {
        if entry.block.is_some() {
            return Err(ConfigError::at(&entry.span, "unexpected \"{\""));
        }
        for ext in &entry.args {
            let ext = ext.value.to_ascii_lowercase();
            if let Some(old) = table.insert(ext.clone(), entry.name.clone()) {
                warnings.push(ConfigError::at(
                    &entry.span,
                    format!(
                        "duplicate extension \"{ext}\", content type: \"{}\", previous content type: \"{old}\"",
                        entry.name
                    ),
                ));
            }
        }
    }
    b.warnings.extend(warnings);
    Ok(())
}
