//! `upstream` blocks: peers, balancing methods and the backend keepalive
//! cache (ngx_http_upstream_module and its balancer modules).

use std::time::Duration;

use super::{
    Args, Ctx, Directive, HTTP, T1, T12, UPSTREAM, arg_number, arg_template, invalid_value, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{Builder, UpstreamRaw};
use crate::config::values::parse_time;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    block!("upstream", HTTP, T1, set_upstream, Ctx::UPSTREAM, leave_upstream, "A group of backend servers."),
    d!("server", UPSTREAM, Args::AtLeast(1), set_upstream_server, "A backend: `ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N]`."),
    d!("ip_hash", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::IpHash), "Sticky by client address (nginx's algorithm, same choices)."),
    d!("hash", UPSTREAM, T12, set_hash, "Sticky by a key; `consistent` for ketama-style hashing."),
    d!("least_conn", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::LeastConn), "Fewest active connections, weighted."),
    d!("random", UPSTREAM, Args::Take(&[0, 1]), set_random, "Random choice, or the better of `two`."),
    d!("keepalive", UPSTREAM, T1, set_upstream_keepalive, "Idle backend connections cached per worker for reuse."),
    noop!("zone", UPSTREAM, T12, "Shared upstream state (switchyard's state is always shared between threads)."),
];

fn set_upstream(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if b.http.upstreams.iter().any(|u| u.name == name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate upstream \"{name}\""),
        ));
    }
    let ups = UpstreamRaw {
        name,
        peers: Vec::new(),
        method: None,
        keepalive: None,
        keepalive_timeout: None,
        keepalive_requests: None,
        keepalive_time: None,
        span: st.span.clone(),
    };
    b.open_upstream(ups);
    Ok(())
}

fn leave_upstream(b: &mut Builder, _: &Statement) -> Result<()> {
    b.close_upstream();
    Ok(())
}

fn set_upstream_server(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = st.args[0].value.clone();
    if target.starts_with("unix:") {
        return Err(ConfigError::unsupported(
            &st.span,
            "unix domain upstream servers are not supported by switchyard",
        ));
    }
    let mut weight = 1u32;
    let mut max_fails = 1u32;
    let mut fail_timeout = Duration::from_secs(10);
    let mut backup = false;
    let mut down = false;
    let mut max_conns = 0u32;
    for (i, arg) in st.args.iter().enumerate().skip(1) {
        let v = arg.value.as_str();
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| ConfigError::at(&st.span, format!("invalid parameter \"{v}\"")))
        };
        if let Some(n) = v.strip_prefix("weight=") {
            weight = num(n)?;
            if weight == 0 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid parameter \"{v}\""),
                ));
            }
        } else if let Some(n) = v.strip_prefix("max_fails=") {
            max_fails = num(n)?;
        } else if let Some(n) = v.strip_prefix("max_conns=") {
            max_conns = num(n)?;
        } else if let Some(t) = v.strip_prefix("fail_timeout=") {
            fail_timeout = parse_time(t)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid parameter \"{v}\"")))?;
        } else if v == "backup" {
            backup = true;
        } else if v == "down" {
            down = true;
        } else {
            let _ = i;
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let addrs = b.resolve(&target, 80, false, &st.span, |m| {
        format!("host not found in upstream \"{target}\"{m}")
    })?;
    let ups = b.upstream();
    if backup
        && matches!(
            ups.method,
            Some(BalanceMethod::IpHash | BalanceMethod::Hash { .. })
        )
    {
        return Err(ConfigError::at(
            &st.span,
            "balancing method does not support parameter \"backup\"",
        ));
    }
    for addr in addrs {
        ups.peers.push(Peer {
            addr,
            name: target.clone(),
            weight,
            max_fails,
            fail_timeout,
            backup,
            down,
            max_conns,
        });
    }
    Ok(())
}

fn set_balance(b: &mut Builder, st: &Statement, method: BalanceMethod) -> Result<()> {
    let ups = b.upstream();
    if ups.method.is_some() {
        return Err(ConfigError::at(&st.span, "load balancing method redefined"));
    }
    if matches!(method, BalanceMethod::IpHash | BalanceMethod::Hash { .. })
        && ups.peers.iter().any(|p| p.backup)
    {
        return Err(ConfigError::at(
            &st.span,
            "balancing method does not support parameter \"backup\"",
        ));
    }
    ups.method = Some(method);
    Ok(())
}

fn set_hash(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let consistent = match st.args.get(1) {
        None => false,
        Some(w) if w.value == "consistent" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    set_balance(b, st, BalanceMethod::Hash { key, consistent })
}

fn set_random(b: &mut Builder, st: &Statement) -> Result<()> {
    let two = match st.args.first() {
        None => false,
        Some(w) if w.value == "two" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    if st.args.len() > 1 {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid parameter \"{}\"", st.args[1].value),
        ));
    }
    set_balance(b, st, BalanceMethod::Random { two })
}

fn set_upstream_keepalive(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)? as usize;
    if n == 0 {
        return Err(invalid_value(st, 0));
    }
    put(&mut b.upstream().keepalive, n, st)
}
