//! `error_log`, `log_format` and `access_log` (ngx_http_log_module and the
//! core error log).

use super::{Args, Ctx, Directive, HSL, HSLLI, HTTP, T12, duplicate};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{AccessLogRaw, Builder};
use crate::config::template::Template;
use crate::config::values::{parse_size, parse_time};
use crate::log::{Buffering, ErrorLogTarget, FdCache, Level};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("error_log", Ctx(1 | 4 | 8 | 16), T12, set_error_log, "Error log file (or `stderr`) and minimum level."),
    d!("log_format", HTTP, Args::AtLeast(2), set_log_format, "Names an access log format (`escape=default|json|none`)."),
    d!("access_log", HSLLI, Args::AtLeast(1), set_access_log, "Access log path (variables allowed), format, `if=`, `buffer=`, `flush=`, `gzip[=LEVEL]`; `off` disables."),
    d!("open_log_file_cache", HSL, Args::Take(&[1, 2, 3, 4]), set_open_log_file_cache, "Keeps descriptors of access logs whose path holds variables open: `max=N [inactive=TIME] [min_uses=N] [valid=TIME]` or `off`."),
];

// ---------------------------------------------------------------------------
// Main and events.

fn set_error_log(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = &st.args[0].value;
    if target.starts_with("syslog:") || target.starts_with("memory:") {
        return Err(ConfigError::unsupported(
            &st.span,
            format!("\"{target}\" error log target is not supported by switchyard"),
        ));
    }
    let level = match st.args.get(1) {
        Some(w) => Level::from_name(&w.value).ok_or_else(|| {
            ConfigError::at(&st.span, format!("invalid log level \"{}\"", w.value))
        })?,
        None => Level::Error,
    };
    if st.args.len() > 2 {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"error_log\" directive",
        ));
    }
    let entry = ErrorLogTarget {
        path: b.full_path(target),
        level,
    };
    if b.ctx == Ctx::MAIN {
        b.main.error_log.get_or_insert_with(Vec::new).push(entry);
    } else {
        b.loc().error_log.get_or_insert_with(Vec::new).push(entry);
    }
    Ok(())
}

fn set_log_format(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if name == "combined" || b.http.log_formats.contains_key(&name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate \"log_format\" name \"{name}\""),
        ));
    }
    let mut rest = &st.args[1..];
    let mut escape = LogEscape::Default;
    if let Some(first) = rest.first()
        && let Some(e) = first.value.strip_prefix("escape=")
    {
        escape = match e {
            "default" => LogEscape::Default,
            "json" => LogEscape::Json,
            "none" => LogEscape::None,
            _ => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("unknown log format escaping \"{e}\""),
                ));
            }
        };
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"log_format\" directive",
        ));
    }
    let text: String = rest.iter().map(|w| w.value.as_str()).collect();
    let t = Template::parse(&text).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
    b.http
        .log_formats
        .insert(name, (t, escape, st.span.clone()));
    Ok(())
}

fn set_access_log(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = &st.args[0].value;
    let loc = b.loc();
    if target == "off" {
        if st.args.len() != 1 {
            return Err(ConfigError::at(
                &st.span,
                "invalid number of arguments in \"access_log\" directive",
            ));
        }
        if loc.access_log.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(duplicate(st));
        }
        loc.access_log = Some(Vec::new());
        return Ok(());
    }
    if target.starts_with("syslog:") {
        return Err(ConfigError::unsupported(
            &st.span,
            "syslog access logs are not supported by switchyard",
        ));
    }
    let mut format = "combined".to_string();
    let mut condition = None;
    let (mut size, mut flush, mut gzip) = (None, None, None);
    let fail = |m: String| ConfigError::at(&st.span, m);
    for (i, w) in st.args.iter().enumerate().skip(1) {
        let v = w.value.as_str();
        if let Some(c) = v.strip_prefix("if=") {
            condition = Some(Template::parse(c).map_err(|e| fail(e.to_string()))?);
        } else if let Some(s) = v.strip_prefix("buffer=") {
            size = Some(
                parse_size(s)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| fail(format!("invalid buffer size \"{s}\"")))?,
            );
        } else if let Some(s) = v.strip_prefix("flush=") {
            flush = Some(
                parse_time(s)
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| fail(format!("invalid flush time \"{s}\"")))?,
            );
        } else if v == "gzip" {
            gzip = Some(1);
        } else if let Some(s) = v.strip_prefix("gzip=") {
            gzip = Some(
                s.parse::<u32>()
                    .ok()
                    .filter(|l| (1..=9).contains(l))
                    .ok_or_else(|| fail(format!("invalid compression level \"{s}\"")))?,
            );
        } else if i == 1 {
            format = w.value.clone();
        } else {
            return Err(fail(format!("invalid parameter \"{v}\"")));
        }
    }
    // gzip without buffer= buffers 64k, as nginx.
    let size = size.or(gzip.map(|_| 64 * 1024));
    if flush.is_some() && size.is_none() {
        return Err(fail(format!(
            "no buffer is defined for access_log \"{target}\""
        )));
    }
    let path = if target.contains('$') {
        let full = b.full_path(target);
        let t = Template::parse(&full.to_string_lossy()).map_err(|e| fail(e.to_string()))?;
        if size.is_some() {
            return Err(fail("buffered logs cannot have variables in name".into()));
        }
        LogPath::Script(t)
    } else {
        LogPath::File(b.full_path(target))
    };
    let buffering = size.map(|size| Buffering {
        size: size as usize,
        flush,
        gzip,
    });
    if let (Some(conf), LogPath::File(p)) = (buffering, &path) {
        match b.log_buffers.get(p) {
            Some(earlier) if *earlier != conf => {
                return Err(fail(format!(
                    "access_log \"{target}\" already defined with conflicting parameters"
                )));
            }
            _ => {
                b.log_buffers.insert(p.clone(), conf);
            }
        }
    }
    let entry = AccessLogRaw {
        path,
        format,
        condition,
        buffering,
        span: st.span.clone(),
    };
    let loc = b.loc();
    match &mut loc.access_log {
        Some(v) if v.is_empty() => return Err(duplicate(st)),
        Some(v) => v.push(entry),
        None => loc.access_log = Some(vec![entry]),
    }
    Ok(())
}

fn set_open_log_file_cache(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.loc().open_log_file_cache.is_some() {
        return Err(duplicate(st));
    }
    let (mut max, mut inactive, mut min_uses, mut valid) = (None, 10, 1, 60);
    let mut off = false;
    for w in &st.args {
        let v = w.value.as_str();
        let seconds = |s: &str| parse_time(s).map(|t| t.as_secs());
        let ok = if let Some(n) = v.strip_prefix("max=") {
            n.parse::<usize>().ok().map(|n| max = Some(n))
        } else if let Some(t) = v.strip_prefix("inactive=") {
            seconds(t).map(|t| inactive = t)
        } else if let Some(n) = v.strip_prefix("min_uses=") {
            n.parse::<u32>().ok().map(|n| min_uses = n)
        } else if let Some(t) = v.strip_prefix("valid=") {
            seconds(t).map(|t| valid = t)
        } else if v == "off" {
            off = true;
            Some(())
        } else {
            None
        };
        if ok.is_none() {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid \"open_log_file_cache\" parameter \"{v}\""),
            ));
        }
    }
    let cache = match (off, max) {
        (true, _) => None,
        (false, Some(max)) if max > 0 => Some(std::sync::Arc::new(FdCache::new(
            max,
            std::time::Duration::from_secs(inactive),
            min_uses,
            std::time::Duration::from_secs(valid),
        ))),
        (false, _) => {
            return Err(ConfigError::at(
                &st.span,
                "\"open_log_file_cache\" must have \"max\" parameter",
            ));
        }
    };
    b.loc().open_log_file_cache = Some(cache);
    Ok(())
}
