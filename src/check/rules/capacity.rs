//! Beyond the nine causes: how many WebSockets the process can hold, and
//! HTTP/2 listeners.

use super::{Rule, Scope};
use crate::check::{Finding, Severity};

pub const SY106: Rule = Rule {
    code: "SY106",
    title: "`worker_connections` leaves room for few WebSockets",
    explain: "In nginx each proxied WebSocket holds two of a worker's `worker_connections` (client and backend) for its whole life; the default is 512, so one worker holds at most 256 WebSockets and then logs \"worker_connections are not enough\" and drops new connections. Switchyard counts client connections only, over all its threads. Size `worker_connections` (in `events { }`) for the expected number of open WebSockets, and `worker_rlimit_nofile` with it.",
};

pub const SY107: Rule = Rule {
    code: "SY107",
    title: "`worker_rlimit_nofile` is below what the connections need",
    explain: "Every connection is a file descriptor, and a proxied WebSocket needs two. With `worker_rlimit_nofile` below twice `worker_connections` (per process: Switchyard's threads share one limit), accepts fail with \"Too many open files\" before the connection limit is reached.",
};

pub const SY108: Rule = Rule {
    code: "SY108",
    title: "`http2` on a listener that serves WebSockets",
    explain: "Browsers can carry a WebSocket inside an HTTP/2 connection (RFC 8441) when the server offers it. nginx never offers it, so browsers open a separate HTTP/1.1 connection for each WebSocket, which works. Switchyard does not serve HTTP/2 yet: clients of an `http2` listener speak HTTP/1.1 to it, WebSockets included.",
};

/// Runs the capacity rules.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    if scope.websocket_sites().next().is_none() {
        return;
    }
    let main = &scope.config.main;
    let span = main
        .origins
        .get("worker_connections")
        .and_then(|v| v.first())
        .or_else(|| main.origins.get("events").and_then(|v| v.first()))
        .or(scope.sites.first().map(|s| &s.server.span));
    let per_ws = if scope.nginx() { 2 } else { 1 };
    let capacity = main.worker_connections * main.worker_processes.max(1) / per_ws;
    if capacity < 1024
        && let Some(span) = span
    {
        out.push(scope.finding(
            "SY106",
            Severity::Info,
            span,
            format!(
                "worker_connections {} x {} worker(s) holds at most {capacity} open WebSockets; beyond that new connections are dropped",
                main.worker_connections,
                main.worker_processes.max(1)
            ),
            Some("events { worker_connections 10000; }\nworker_rlimit_nofile 20000;"),
        ));
    }
    if let Some(limit) = main.worker_rlimit_nofile {
        let procs = if scope.nginx() {
            1
        } else {
            main.worker_processes.max(1)
        };
        let needed = (main.worker_connections * procs * 2) as u64;
        if limit < needed
            && let Some(span) = main
                .origins
                .get("worker_rlimit_nofile")
                .and_then(|v| v.first())
        {
            out.push(scope.finding(
                "SY107",
                Severity::Warning,
                span,
                format!(
                    "worker_rlimit_nofile {limit} is below the {needed} descriptors the connections need (two per proxied WebSocket): accepts fail with \"Too many open files\" first"
                ),
                Some(format!("worker_rlimit_nofile {needed};").as_str()),
            ));
        }
    }
    let mut reported = std::collections::HashSet::new();
    for (site, _) in scope.websocket_sites() {
        if !site.listen.http2 || !reported.insert(site.server.index) {
            continue;
        }
        let span = site
            .server
            .conf
            .origins
            .get("listen")
            .and_then(|v| v.first())
            .unwrap_or(&site.server.span);
        let message = if scope.nginx() {
            "nginx does not offer WebSockets over HTTP/2 on this listener: browsers open a separate HTTP/1.1 connection for each (this works)".to_string()
        } else {
            "Switchyard does not serve HTTP/2 yet: clients of this listener, WebSockets included, speak HTTP/1.1".to_string()
        };
        out.push(scope.finding("SY108", Severity::Info, span, message, None));
    }
}
