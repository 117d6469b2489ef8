//! `limit_conn`, `limit_req` and `limit_rate` (ngx_http_limit_conn_module,
//! ngx_http_limit_req_module, the core module's rate limit).

use http::StatusCode;

use super::{
    Args, Directive, HSL, HSLI, HTTP, T1, T2, arg_template, duplicate, loc_flag, loc_size, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;
use crate::config::values::parse_size;
use crate::log::Level;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("limit_conn_zone", HTTP, T2, set_limit_conn_zone, "Defines a connection-counting zone keyed by a value."),
    d!("limit_req_zone", HTTP, Args::Take(&[3]), set_limit_req_zone, "A request-rate zone: key, `zone=name:size`, `rate=Nr/s` or `Nr/m` (nginx's leaky bucket, state kept across reloads)."),
    d!("limit_req", HSL, Args::Take(&[1, 2, 3]), set_limit_req, "Limits the request rate per key (`burst=N`, `nodelay` or `delay=N`); excess within the burst is delayed, beyond it refused with `limit_req_status`. Runs before `limit_conn`; WebSocket handshakes count as requests."),
    d!("limit_req_status", HSL, T1, |b, st| { let code = arg_error_status(st)?; put(&mut b.loc().limit_req_status, code, st) }, "Status for refused requests (default 503)."),
    d!("limit_req_log_level", HSL, T1, |b, st| { let level = arg_limit_log_level(st)?; put(&mut b.loc().limit_req_log_level, level, st) }, "Level for refusals (default `error`); delays log one level lower."),
    d!("limit_req_dry_run", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.limit_req_dry_run), "Counts and logs, but neither refuses nor delays (`$limit_req_status` tells what would have happened)."),
    d!("limit_conn", HSL, T2, set_limit_conn, "Most concurrent connections per key of a zone (an upgraded connection counts until it closes)."),
    d!("limit_conn_status", HSL, T1, set_limit_conn_status, "Status for refused connections (default 503)."),
    d!("limit_conn_log_level", HSL, T1, set_limit_conn_log_level, "Log level of refusals (default error)."),
    d!("limit_rate", HSLI, T1, |b, st| loc_size(b, st, |l| &mut l.limit_rate), "Response bytes per second per request (0 = unlimited); `$limit_rate` overrides it."),
    d!("limit_rate_after", HSLI, T1, |b, st| loc_size(b, st, |l| &mut l.limit_rate_after), "Bytes sent at full speed before `limit_rate` applies."),
];

fn set_limit_conn_zone(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let spec = st.args[1].value.strip_prefix("zone=").ok_or_else(|| {
        ConfigError::at(
            &st.span,
            format!("invalid parameter \"{}\"", st.args[1].value),
        )
    })?;
    let (name, size) = spec
        .split_once(':')
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid zone size \"{spec}\"")))?;
    let size = parse_size(size)
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid zone size \"{spec}\"")))?;
    if size < 8192 {
        return Err(ConfigError::at(
            &st.span,
            format!("zone \"{name}\" is too small"),
        ));
    }
    if b.http.conn_zones.iter().any(|(n, ..)| n == name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate zone \"{name}\""),
        ));
    }
    b.http
        .conn_zones
        .push((name.to_string(), key, size, st.span.clone()));
    Ok(())
}

fn set_limit_conn(b: &mut Builder, st: &Statement) -> Result<()> {
    let zone = st.args[0].value.clone();
    let n = st.args[1]
        .value
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && *n <= 65535)
        .ok_or_else(|| {
            ConfigError::at(
                &st.span,
                format!("invalid number of connections \"{}\"", st.args[1].value),
            )
        })?;
    let list = b.loc().limit_conn.get_or_insert_with(Vec::new);
    if list.iter().any(|(z, ..)| *z == zone) {
        return Err(duplicate(st));
    }
    list.push((zone, n, st.span.clone()));
    Ok(())
}

/// A status between 400 and 599 (`limit_conn_status`, `limit_req_status`).
fn arg_error_status(st: &Statement) -> Result<StatusCode> {
    st.args[0]
        .value
        .parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ConfigError::at(&st.span, "value must be between 400 and 599"))
}

fn set_limit_conn_status(b: &mut Builder, st: &Statement) -> Result<()> {
    let code = arg_error_status(st)?;
    put(&mut b.loc().limit_conn_status, code, st)
}

/// `info`, `notice`, `warn` or `error` (`limit_*_log_level`).
fn arg_limit_log_level(st: &Statement) -> Result<Level> {
    match st.args[0].value.as_str() {
        "info" => Ok(Level::Info),
        "notice" => Ok(Level::Notice),
        "warn" => Ok(Level::Warn),
        "error" => Ok(Level::Error),
        other => Err(ConfigError::at(
            &st.span,
            format!("invalid value \"{other}\""),
        )),
    }
}

fn set_limit_conn_log_level(b: &mut Builder, st: &Statement) -> Result<()> {
    let level = arg_limit_log_level(st)?;
    put(&mut b.loc().limit_conn_log_level, level, st)
}

/// `limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m`.
fn set_limit_req_zone(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let mut zone: Option<(String, u64)> = None;
    let mut rate = 1000;
    for arg in &st.args[1..] {
        let v = arg.value.as_str();
        if let Some(spec) = v.strip_prefix("zone=") {
            let invalid = || ConfigError::at(&st.span, format!("invalid zone size \"{v}\""));
            let (name, size) = spec.split_once(':').ok_or_else(invalid)?;
            let size = parse_size(size).ok_or_else(invalid)?;
            if size < 8 * 4096 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("zone \"{v}\" is too small"),
                ));
            }
            zone = Some((name.to_string(), size));
        } else if let Some(spec) = v.strip_prefix("rate=") {
            let (number, scale) = if let Some(n) = spec.strip_suffix("r/s") {
                (n, 1)
            } else if let Some(n) = spec.strip_suffix("r/m") {
                (n, 60)
            } else {
                (spec, 1)
            };
            let n = number
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid rate \"{v}\"")))?;
            rate = n * 1000 / scale;
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let Some((name, size)) = zone else {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req_zone\" must have \"zone\" parameter",
        ));
    };
    if let Some((_, bound, ..)) = b.http.req_zones.iter().find(|(n, ..)| *n == name) {
        return Err(ConfigError::at(
            &st.span,
            format!(
                "limit_req_zone \"{name}\" is already bound to key \"{}\"",
                bound.source
            ),
        ));
    }
    b.http
        .req_zones
        .push((name, key, size, rate.max(1), st.span.clone()));
    Ok(())
}

/// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`.
fn set_limit_req(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut zone = None;
    let mut burst = 0;
    let mut delay = 0;
    for arg in &st.args {
        let v = arg.value.as_str();
        let number = |n: &str, what: &str| {
            n.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid {what} value \"{v}\"")))
        };
        if let Some(name) = v.strip_prefix("zone=") {
            zone = Some(name.to_string());
        } else if let Some(n) = v.strip_prefix("burst=") {
            burst = number(n, "burst")?;
        } else if let Some(n) = v.strip_prefix("delay=") {
            delay = number(n, "delay")?;
        } else if v == "nodelay" {
            delay = u64::MAX / 1000;
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let Some(zone) = zone else {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req\" must have \"zone\" parameter",
        ));
    };
    let list = b.loc().limit_req.get_or_insert_with(Vec::new);
    if list.iter().any(|(z, ..)| *z == zone) {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req\" directive is duplicate",
        ));
    }
    list.push((zone, burst * 1000, delay * 1000, st.span.clone()));
    Ok(())
}
