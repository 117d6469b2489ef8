//! Switchyard's WebSocket directives: keepalive pings, message limits,
//! Origin policy and draining with close frames. Each is off by default;
//! with none of them a tunnel stays a plain byte relay.

use super::{Args, Directive, HSL, T1, T12, arg_size, arg_time, invalid_value, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::{OriginRule, WsRate};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("websocket_ping_interval", HSL, T1, set_ping_interval, "Switchyard's: send a ping of its own to both sides of a WebSocket every TIME (to the backend masked, as a client does), between frames; their pongs are taken out of the stream, the endpoints' own pings and pongs pass. An answered ping keeps an idle WebSocket from `proxy_read_timeout` (default off)."),
    d!("websocket_pong_timeout", HSL, T1, set_pong_timeout, "Switchyard's: a side that does not answer a ping within TIME is dead: it is closed, the other side gets close 1011 (backend dead) or 1001 (client dead) (default 10s)."),
    d!("websocket_max_message_size", HSL, T1, set_max_message_size, "Switchyard's: a message larger than SIZE (either direction) closes the WebSocket: close 1009 to its sender, 1001 to the other side, before any byte of the offending frame is forwarded (default off)."),
    d!("websocket_max_frame_size", HSL, T1, set_max_frame_size, "Switchyard's: the same for one frame's payload (default off)."),
    d!("websocket_message_rate", HSL, T12, set_message_rate, "Switchyard's: `RATE [burst=N]` (`10r/s`, `600r/m`): messages from the client faster than RATE, with N tolerated above it, close the WebSocket with 1008 to the client and 1001 to the backend (default off)."),
    d!("websocket_allowed_origins", HSL, Args::AtLeast(1), set_allowed_origins, "Switchyard's: a WebSocket handshake whose `Origin` is not listed gets 403 and never reaches the backend. Entries: exact origins (`https://app.example.com`), `*.example.com` wildcards (any scheme, any subdomain), `same` (the request's own scheme and host); `off` allows all (default off)."),
    d!("websocket_drain_window", HSL, T1, set_drain_window, "Switchyard's: on a graceful stop (`-s quit`), and on a reload that changes where the WebSocket's location goes (its `proxy_pass` or the group's servers), WebSockets get close 1001 on both sides, each at a random moment within TIME, so clients reconnect spread out rather than at once; WebSockets whose route did not change survive the reload. Without it they live on until they end or `worker_shutdown_timeout` (default off)."),
];

fn set_ping_interval(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = if st.args[0].value == "off" {
        None
    } else {
        let t = arg_time(st, 0)?;
        if t.is_zero() {
            return Err(invalid_value(st, 0));
        }
        Some(t)
    };
    put(&mut b.loc().websocket_ping_interval, v, st)
}

fn set_pong_timeout(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_time(st, 0)?;
    if t.is_zero() {
        return Err(invalid_value(st, 0));
    }
    put(&mut b.loc().websocket_pong_timeout, t, st)
}

/// A size, `0` or `off` for no limit.
fn size_or_off(st: &Statement) -> Result<Option<u64>> {
    if st.args[0].value == "off" {
        return Ok(None);
    }
    Ok(Some(arg_size(st, 0)?).filter(|n| *n > 0))
}

fn set_max_message_size(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = size_or_off(st)?;
    put(&mut b.loc().websocket_max_message_size, v, st)
}

fn set_max_frame_size(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = size_or_off(st)?;
    put(&mut b.loc().websocket_max_frame_size, v, st)
}

fn set_message_rate(b: &mut Builder, st: &Statement) -> Result<()> {
    let spec = st.args[0].value.as_str();
    let rate = if spec == "off" {
        if st.args.len() > 1 {
            return Err(invalid_value(st, 1));
        }
        None
    } else {
        let (number, scale) = if let Some(n) = spec.strip_suffix("r/s") {
            (n, 1)
        } else if let Some(n) = spec.strip_suffix("r/m") {
            (n, 60)
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "invalid rate \"{spec}\" in \"{}\", it must be like \"10r/s\" or \"600r/m\"",
                    st.name
                ),
            ));
        };
        let n = number
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid_value(st, 0))?;
        let mut burst = 0;
        if let Some(arg) = st.args.get(1) {
            burst = arg
                .value
                .strip_prefix("burst=")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| invalid_value(st, 1))?;
        }
        Some(WsRate {
            per_sec_milli: n * 1000 / scale,
            burst,
        })
    };
    put(&mut b.loc().websocket_message_rate, rate, st)
}

fn set_allowed_origins(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut rules = Vec::new();
    for (i, arg) in st.args.iter().enumerate() {
        let v = arg.value.as_str();
        let rule = match v {
            "off" if st.args.len() == 1 => None,
            "same" => Some(OriginRule::Same),
            _ if v.starts_with("*.") && v.len() > 2 && !v[2..].contains(['/', '*']) => {
                Some(OriginRule::Subdomains(v[1..].to_ascii_lowercase()))
            }
            _ => match v.split_once("://") {
                Some((scheme, host))
                    if !scheme.is_empty()
                        && !host.is_empty()
                        && !host.contains(['/', '*'])
                        && !v.contains(char::is_whitespace) =>
                {
                    Some(OriginRule::Exact(v.to_ascii_lowercase()))
                }
                _ => {
                    return Err(ConfigError::at(
                        &st.span,
                        format!(
                            "invalid origin \"{}\" in \"{}\": an origin is scheme://host[:port], *.domain, or same",
                            st.args[i].value, st.name
                        ),
                    ));
                }
            },
        };
        rules.extend(rule);
    }
    let v = (!rules.is_empty()).then(|| std::sync::Arc::new(rules));
    put(&mut b.loc().websocket_allowed_origins, v, st)
}

fn set_drain_window(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = if st.args[0].value == "off" {
        None
    } else {
        Some(arg_time(st, 0)?)
    };
    put(&mut b.loc().websocket_drain_window, v, st)
}
