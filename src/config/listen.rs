//! Grouping `listen` addresses and building server-name lookup.
//!
//! Like nginx, servers that share an address share a socket, the default
//! server of an address is the one marked `default_server` or else the
//! first, and when a port has a wildcard address (`*:80`) the specific
//! addresses on that port (`127.0.0.1:80`) are not bound separately: the
//! wildcard socket accepts for them and the connection's local address picks
//! the group.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::error::{ConfigError, Result};
use super::model::{ListenAddr, ListenGroup, ListenOpts, Server, ServerNameIndex};
use super::raw::ServerRaw;

/// The port used when a server has no `listen` (nginx uses 80 as root and
/// 8000 otherwise).
pub fn default_listen_port() -> u16 {
    if nix::unistd::geteuid().is_root() {
        80
    } else {
        8000
    }
}

/// Builds listen groups from servers in configuration order.
pub fn group(servers: &[(Arc<Server>, ServerRaw)]) -> Result<Vec<Arc<ListenGroup>>> {
    struct Pending {
        addr: ListenAddr,
        opts: ListenOpts,
        opts_set: bool,
        default: Option<usize>,
        servers: Vec<Arc<Server>>,
        /// The first `listen ... ssl` (or `ssl on` server) of the address.
        ssl_span: Option<super::error::Span>,
    }
    let mut pending: Vec<Pending> = Vec::new();
    for (server, raw) in servers {
        let default_listen;
        let listens: Vec<(ListenAddr, bool, &ListenOpts, Option<&super::error::Span>)> =
            if raw.listens.is_empty() {
                default_listen = ListenOpts::default();
                vec![(
                    ListenAddr::Inet(SocketAddr::new(
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        default_listen_port(),
                    )),
                    false,
                    &default_listen,
                    None,
                )]
            } else {
                raw.listens
                    .iter()
                    .flat_map(|l| {
                        l.addrs
                            .iter()
                            .map(move |a| (a.clone(), l.default_server, &l.opts, Some(&l.span)))
                    })
                    .collect()
            };
        // `ssl on;` (deprecated) makes every listen of the server TLS.
        let ssl_on = raw.loc.ssl_on == Some(true);
        for (addr, is_default, opts, span) in listens {
            let idx = match pending.iter().position(|p| p.addr == addr) {
                Some(i) => i,
                None => {
                    pending.push(Pending {
                        addr: addr.clone(),
                        opts: ListenOpts::default(),
                        opts_set: false,
                        default: None,
                        servers: Vec::new(),
                        ssl_span: None,
                    });
                    pending.len() - 1
                }
            };
            let p = &mut pending[idx];
            let has_socket_opts = opts.backlog.is_some()
                || opts.rcvbuf.is_some()
                || opts.sndbuf.is_some()
                || opts.reuseport
                || opts.ipv6only.is_some()
                || opts.so_keepalive;
            if has_socket_opts {
                if p.opts_set {
                    let span = span
                        .cloned()
                        .unwrap_or_else(super::error::Span::command_line);
                    return Err(ConfigError::at(
                        &span,
                        format!("duplicate listen options for {addr}"),
                    ));
                }
                p.opts_set = true;
                let (ssl, http2) = (p.opts.ssl, p.opts.http2);
                p.opts = opts.clone();
                p.opts.ssl |= ssl;
                p.opts.http2 |= http2;
            } else {
                p.opts.ssl |= opts.ssl;
                p.opts.http2 |= opts.http2;
            }
            if opts.ssl || ssl_on {
                if let ListenAddr::Unix(_) = &p.addr {
                    let span = span.cloned().unwrap_or_else(|| server.span.clone());
                    return Err(ConfigError::unsupported(
                        &span,
                        format!(
                            "TLS on a unix domain socket (\"{addr}\") is not supported by switchyard"
                        ),
                    ));
                }
                p.opts.ssl = true;
                if p.ssl_span.is_none() {
                    p.ssl_span = Some(span.cloned().unwrap_or_else(|| server.span.clone()));
                }
            }
            if p.servers.iter().any(|s| Arc::ptr_eq(s, server)) {
                // `listen` twice for one address in one server: nginx
                // reports a duplicate.
                let span = span
                    .cloned()
                    .unwrap_or_else(super::error::Span::command_line);
                return Err(ConfigError::at(&span, format!("duplicate listen {addr}")));
            }
            if is_default {
                if p.default.is_some() {
                    let span = span
                        .cloned()
                        .unwrap_or_else(super::error::Span::command_line);
                    return Err(ConfigError::at(
                        &span,
                        format!("a duplicate default server for {addr}"),
                    ));
                }
                p.default = Some(p.servers.len());
            }
            p.servers.push(server.clone());
        }
    }
    let mut groups = Vec::new();
    for p in pending {
        if let Some(span) = &p.ssl_span
            && p.servers
                .iter()
                .all(|s| s.tls.as_ref().is_none_or(|t| t.certs.is_empty()))
        {
            return Err(ConfigError::at(
                span,
                "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
            ));
        }
        let names = name_index(&p.servers);
        groups.push(Arc::new(ListenGroup {
            addr: p.addr,
            opts: p.opts,
            default_server: p.default.unwrap_or(0),
            servers: p.servers,
            names,
        }));
    }
    Ok(groups)
}

/// Whether `group` gets its own socket: wildcard addresses always; a
/// specific address only when no wildcard of its family shares its port.
pub fn binds_own_socket(group: &ListenGroup, all: &[Arc<ListenGroup>]) -> bool {
    let Some(addr) = group.addr.inet() else {
        return true;
    };
    if addr.ip().is_unspecified() || group.opts.reuseport {
        return true;
    }
    !all.iter().filter_map(|g| g.addr.inet()).any(|g| {
        g.port() == addr.port() && g.ip().is_unspecified() && g.is_ipv4() == addr.is_ipv4()
    })
}

fn name_index(servers: &[Arc<Server>]) -> ServerNameIndex {
    let mut idx = ServerNameIndex::default();
    for (i, s) in servers.iter().enumerate() {
        for name in &s.names {
            let lower = name.to_ascii_lowercase();
            if name.starts_with('~') {
                // Regex names are compiled by the server_name handler and
                // stored on the raw server; they are attached below.
                continue;
            }
            if let Some(rest) = lower.strip_prefix("*.") {
                idx.head.push((format!(".{rest}"), i));
            } else if let Some(rest) = lower.strip_prefix('.') {
                idx.head.push((format!(".{rest}"), i));
                idx.exact.entry(rest.to_string()).or_insert(i);
            } else if let Some(rest) = lower.strip_suffix(".*") {
                idx.tail.push((format!("{rest}."), i));
            } else {
                idx.exact.entry(lower).or_insert(i);
            }
        }
        for re in s_regexes(s) {
            idx.regex.push((re, i));
        }
    }
    // Longest wildcard first.
    idx.head.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    idx.tail.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    idx
}

fn s_regexes(s: &Server) -> Vec<Arc<super::model::CompiledRegex>> {
    s.name_regexes.clone()
}

impl ServerNameIndex {
    /// Finds the server for `host` (lowercase, no port); `None` means the
    /// default server.
    pub fn find(&self, host: &str) -> Option<(usize, Option<&Arc<super::model::CompiledRegex>>)> {
        if let Some(i) = self.exact.get(host) {
            return Some((*i, None));
        }
        for (suffix, i) in &self.head {
            if host.ends_with(suffix.as_str()) && host.len() > suffix.len() {
                return Some((*i, None));
            }
        }
        for (prefix, i) in &self.tail {
            if host.starts_with(prefix.as_str()) && host.len() > prefix.len() {
                return Some((*i, None));
            }
        }
        for (re, i) in &self.regex {
            if re.regex.is_match(host.as_bytes()) {
                return Some((*i, Some(re)));
            }
        }
        None
    }
}
