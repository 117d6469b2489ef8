//! Causes 8 and 9: several backends without stickiness, and backends that
//! are not there (or are not WebSocket servers).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{Rule, Scope, Site};
use crate::check::{Finding, Severity};
use crate::config::{BalanceMethod, ProxyPass, Upstream};

pub const SY008: Rule = Rule {
    code: "SY008",
    title: "WebSockets balanced over several backends without stickiness",
    explain: "Round robin (the default), `least_conn` and `random` send each new connection to any backend. A client that reconnects, or whose handshake follows an HTTP request that created server-side state, lands on another backend: sessions and subscriptions kept in that backend's memory are lost (\"random disconnects\", messages for other users missing). Use `ip_hash;` or `hash $remote_addr consistent;` (or a session cookie with `hash $cookie_NAME consistent;`) unless the application shares its state between backends.",
};

pub const SY018: Rule = Rule {
    code: "SY018",
    title: "socket.io over several backends without sticky sessions",
    explain: "socket.io opens with HTTP long polling and then upgrades; every request of a session must reach the backend that created it. Without stickiness clients fail with \"Session ID unknown\" (400) and reconnect forever. socket.io's own documentation requires sticky sessions: `ip_hash;` or `hash $remote_addr consistent;` in the upstream.",
};

pub const SY009: Rule = Rule {
    code: "SY009",
    title: "a backend name does not resolve",
    explain: "An upstream server (or a `proxy_pass` host) does not resolve where `check` runs. Where the proxy runs, nginx refuses to start (\"host not found in upstream\"), and a name that resolves only later gives 502 to every handshake. When linting a container configuration elsewhere this is expected; check it where the proxy runs, or with `--probe-backends` there.",
};

pub const SY019: Rule = Rule {
    code: "SY019",
    title: "a backend does not answer a WebSocket handshake",
    explain: "With `--probe-backends`, `check` connects to each backend of a WebSocket location and sends the handshake the proxy would send (`Upgrade: websocket`, `Connection: Upgrade`, a fresh key). Anything but `101 Switching Protocols` means the backend is not a WebSocket endpoint at that path, or nothing listens: the browser would see 502 or the backend's error status.",
};

fn sticky(u: &Upstream) -> bool {
    matches!(u.method, BalanceMethod::IpHash | BalanceMethod::Hash { .. })
}

fn balanced(u: &Upstream) -> bool {
    u.peers.iter().filter(|p| !p.backup).count() > 1
}

fn sy008(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(ProxyPass::Static(t)) = &site.conf.proxy_pass else {
        return;
    };
    if !balanced(&t.upstream) || sticky(&t.upstream) {
        return;
    }
    let socket_io = site.path().contains("socket.io");
    let (code, severity, message) = if socket_io {
        (
            "SY018",
            Severity::Error,
            format!(
                "socket.io through {} is balanced over {} backends without sticky sessions: polling requests and the upgrade reach different backends and fail with \"Session ID unknown\"",
                site.name(),
                t.upstream.peers.len()
            ),
        )
    } else {
        (
            "SY008",
            Severity::Warning,
            format!(
                "WebSockets through {} go to any of {} backends of \"{}\": a reconnecting client lands on another one and loses in-memory session state",
                site.name(),
                t.upstream.peers.len(),
                t.upstream.name
            ),
        )
    };
    out.push(scope.finding(
        code,
        severity,
        &t.upstream.span,
        message,
        Some("upstream backend {\n    ip_hash;                    # or: hash $remote_addr consistent;\n    server ...;\n}"),
    ));
}

/// Sends a WebSocket handshake for `path` to `addr`; the status line of
/// the answer, or why there was none.
fn handshake(addr: SocketAddr, host: &str, path: &str) -> Result<String, String> {
    let limit = Duration::from_secs(3);
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    let key = crate::probe::fresh_key();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).map_err(|e| format!("no answer: {e}"))?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn sy019(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(ProxyPass::Static(t)) = &site.conf.proxy_pass else {
        return;
    };
    let path = match site.location.and_then(|l| l.path()) {
        Some(p) => p.to_string(),
        None => "/".to_string(),
    };
    for peer in &t.upstream.peers {
        // Only TCP peers are tried (a unix socket's backend is local to
        // the proxy's machine, which `check` may not run on).
        let Some(addr) = peer.addr.inet() else {
            continue;
        };
        if addr.ip().is_unspecified() || peer.down {
            continue;
        }
        let verdict = match handshake(addr, &t.proxy_host, &path) {
            Ok(line) if line.contains(" 101") => continue,
            Ok(line) if line.is_empty() => "closed without an answer".to_string(),
            Ok(line) => format!("answered \"{line}\""),
            Err(e) => e,
        };
        out.push(scope.finding(
            "SY019",
            Severity::Error,
            &t.upstream.span,
            format!(
                "backend {} ({}) of {} is not a WebSocket endpoint at {path}: the handshake {verdict}",
                peer.name,
                peer.addr,
                site.name()
            ),
            None,
        ));
    }
}

/// Runs the balancing and backend rules.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for (site, _) in scope.websocket_sites() {
        sy008(scope, site, out);
        if scope.opts.probe_backends {
            sy019(scope, site, out);
        }
    }
}
