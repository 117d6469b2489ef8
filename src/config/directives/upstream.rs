//! `upstream` blocks: peers, balancing methods and the backend keepalive
//! cache (ngx_http_upstream_module and its balancer modules).

use std::time::Duration;

use super::{
    Args, Ctx, Directive, HSL, HTTP, T1, T12, UPSTREAM, arg_number, arg_template, invalid_value,
    loc_time, put,
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
    d!("server", UPSTREAM, Args::AtLeast(1), set_upstream_server, "A backend (`HOST[:PORT]` or `unix:PATH`): `ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N] [resolve]`. With `resolve` (nginx 1.27.3+) the name is looked up at run time with the `http` level's `resolver`, again whenever its answer expires, and traffic follows the addresses found."),
    d!("ip_hash", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::IpHash), "Sticky by client address (nginx's algorithm, same choices)."),
    d!("hash", UPSTREAM, T12, set_hash, "Sticky by a key; `consistent` for ketama-style hashing."),
    d!("least_conn", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::LeastConn), "Fewest active connections, weighted."),
    d!("random", UPSTREAM, Args::Take(&[0, 1]), set_random, "Random choice, or the better of `two`."),
    d!("keepalive", UPSTREAM, T1, set_upstream_keepalive, "Idle backend connections cached per worker for reuse."),
    noop!("zone", UPSTREAM, T12, "Shared upstream state (switchyard's state is always shared between threads)."),
    d!("resolver", HSL, Args::AtLeast(1), set_resolver, "Name servers for names known only at run time (`proxy_pass` with variables): `ADDR[:PORT]... [valid=TIME] [ipv4=on|off] [ipv6=on|off]`. Answers are kept for their TTL (or `valid=`), failures are not; queries are resent every 5 s to the next server, truncated answers retried over TCP, CNAMEs followed."),
    d!("resolver_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.resolver_timeout), "How long a request waits for a name to resolve (default 30s); then 502."),
];

/// `resolver ADDR... [valid=] [ipv4=] [ipv6=]`, as nginx parses it; host
/// names among the addresses are resolved now.
fn set_resolver(b: &mut Builder, st: &Statement) -> Result<()> {
    use std::net::ToSocketAddrs;
    if b.loc().resolver.is_some() {
        return Err(super::duplicate(st));
    }
    let (mut servers, mut valid, mut ipv4, mut ipv6) = (Vec::new(), None, true, true);
    for arg in &st.args {
        let v = arg.value.as_str();
        let flag = |s: &str| match s {
            "on" => Ok(true),
            "off" => Ok(false),
            _ => Err(ConfigError::at(&st.span, format!("invalid parameter: {v}"))),
        };
        if let Some(t) = v.strip_prefix("valid=") {
            valid = Some(
                parse_time(t)
                    .ok_or_else(|| ConfigError::at(&st.span, format!("invalid parameter: {v}")))?,
            );
        } else if let Some(f) = v.strip_prefix("ipv4=") {
            ipv4 = flag(f)?;
        } else if let Some(f) = v.strip_prefix("ipv6=") {
            ipv6 = flag(f)?;
        } else if v.starts_with("status_zone=") {
            // Statistics zones of nginx's commercial version: nothing to
            // collect them into here.
            b.warn(
                &st.span,
                format!("the \"{v}\" parameter of \"resolver\" has no effect in switchyard"),
            );
        } else {
            let (host, port) = crate::config::values::split_host_port(v, 53).ok_or_else(|| {
                ConfigError::at(&st.span, format!("invalid port in resolver \"{v}\""))
            })?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let found: Vec<_> = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
                Err(_) => (host, port)
                    .to_socket_addrs()
                    .map(|a| a.collect())
                    .unwrap_or_default(),
            };
            if found.is_empty() {
                return Err(ConfigError::at(
                    &st.span,
                    format!("host not found in resolver \"{v}\""),
                ));
            }
            servers.extend(found);
        }
    }
    if !ipv4 && !ipv6 {
        return Err(ConfigError::at(
            &st.span,
            "\"ipv4\" and \"ipv6\" cannot both be \"off\"",
        ));
    }
    if servers.is_empty() {
        return Err(ConfigError::at(&st.span, "no name servers defined"));
    }
    let conf = std::sync::Arc::new(ResolverConf {
        index: b.http.resolvers.len(),
        servers,
        valid,
        ipv4,
        ipv6,
    });
    b.http.resolvers.push(conf.clone());
    b.loc().resolver = Some(conf);
    Ok(())
}

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
        resolved: Vec::new(),
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
    let unix = match target.strip_prefix("unix:") {
        Some(path) => Some(
            crate::config::PeerAddr::unix(path)
                .map_err(|e| ConfigError::at(&st.span, format!("{e} in upstream \"{target}\"")))?,
        ),
        None => None,
    };
    let mut weight = 1u32;
    let mut max_fails = 1u32;
    let mut fail_timeout = Duration::from_secs(10);
    let mut backup = false;
    let mut down = false;
    let mut max_conns = 0u32;
    let mut resolve = false;
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
        } else if v == "resolve" && unix.is_none() {
            resolve = true;
        } else {
            let _ = i;
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    if backup
        && matches!(
            b.upstream().method,
            Some(BalanceMethod::IpHash | BalanceMethod::Hash { .. })
        )
    {
        return Err(ConfigError::at(
            &st.span,
            "balancing method does not support parameter \"backup\"",
        ));
    }
    let params = Peer {
        addr: PeerAddr::Inet(std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
        name: target.clone(),
        weight,
        max_fails,
        fail_timeout,
        backup,
        down,
        max_conns,
    };
    if resolve
        && let Some((host, port)) = crate::config::values::split_host_port(&target, 80)
        && host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_err()
    {
        // Looked up at run time, not now.
        b.upstream().resolved.push(ResolvedServer {
            host: host.to_string(),
            port,
            params,
        });
        return Ok(());
    }
    let addrs: Vec<PeerAddr> = match unix {
        Some(addr) => vec![addr],
        None => b
            .resolve(&target, 80, false, &st.span, |m| {
                format!("host not found in upstream \"{target}\"{m}")
            })?
            .into_iter()
            .map(PeerAddr::from)
            .collect(),
    };
    b.upstream()
        .peers
        .extend(addrs.into_iter().map(|addr| Peer {
            addr,
            ..params.clone()
        }));
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
