//! `error_log`, `log_format` and `access_log` (ngx_http_log_module and the
//! core error log).

use super::{Args, Ctx, Directive, HSLLI, HTTP, T12, duplicate};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{AccessLogRaw, Builder};
use crate::config::template::Template;
use crate::log::{ErrorLogTarget, Level};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("error_log", Ctx(1 | 4 | 8 | 16), T12, set_error_log, "Error log file (or `stderr`) and minimum level."),
    d!("log_format", HTTP, Args::AtLeast(2), set_log_format, "Names an access log format (`escape=default|json|none`)."),
    d!("access_log", HSLLI, Args::AtLeast(1), set_access_log, "Access log path, format and `if=`; `off` disables. One write per line, as nginx without `buffer=` (`buffer=`/`flush=` are accepted and ignored)."),
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
    for (i, w) in st.args.iter().enumerate().skip(1) {
        if let Some(c) = w.value.strip_prefix("if=") {
            condition =
                Some(Template::parse(c).map_err(|e| ConfigError::at(&st.span, e.to_string()))?);
        } else if w.value.starts_with("buffer=")
            || w.value.starts_with("flush=")
            || w.value.starts_with("gzip")
        {
            // Buffering is always on in switchyard's writer; see log.rs.
        } else if i == 1 {
            format = w.value.clone();
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    }
    let path = b.full_path(target);
    let entry = AccessLogRaw {
        path,
        format,
        condition,
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
