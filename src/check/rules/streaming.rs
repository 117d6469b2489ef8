//! Causes 3, 5 and 6: what happens to an open WebSocket: idle timeouts,
//! buffering and caching, and the body size limit that does not apply.

use std::time::Duration;

use super::{Rule, Scope, Site};
use crate::check::{Finding, Severity};

pub const SY003: Rule = Rule {
    code: "SY003",
    title: "idle WebSockets are cut by a 60-second (or shorter) timeout",
    explain: "After the handshake, the proxy relays bytes and closes the tunnel when nothing has moved for `proxy_read_timeout` (default 60 s); `proxy_send_timeout` (also 60 s) bounds only a write the other side does not take. A chat or dashboard that stays quiet for a minute is disconnected, and clients reconnect in a loop every 60 s. Raise both timeouts above the longest silence the application allows (for example 3600s), or have the application send pings more often than the timeout. With Switchyard, `websocket_ping_interval` shorter than the timeout does the latter for the application: its answered pings keep the tunnel.",
};

pub const SY005: Rule = Rule {
    code: "SY005",
    title: "`proxy_buffering on` on a WebSocket location",
    explain: "Once upgraded, a WebSocket is relayed unbuffered whatever `proxy_buffering` says. The setting still applies to the location's plain HTTP responses: HTTP fallbacks of real-time libraries (long polling, server-sent events) are held until a buffer fills or the response ends, which looks like messages arriving late or in bursts. Turn it off on real-time locations.",
};

pub const SY015: Rule = Rule {
    code: "SY015",
    title: "`proxy_cache` on a WebSocket location",
    explain: "Caching on a location that carries WebSocket handshakes and their HTTP fallbacks can serve one client's long-polling response or handshake reply to another, or an old one. Real-time endpoints must not be cached: `proxy_cache off;` (Switchyard implements no cache, and refuses any other value).",
};

pub const SY006: Rule = Rule {
    code: "SY006",
    title: "`client_max_body_size` does not limit WebSocket messages",
    explain: "`client_max_body_size` bounds HTTP request bodies. WebSocket messages travel after the upgrade, inside the tunnel, and no body size applies to them: raising it does not help large messages, and lowering it does not protect the backend. Large messages that fail are usually limited by the backend's or the client library's maximum message size. Switchyard's `websocket_max_message_size` is the limit that does apply to them.",
};

fn sy003(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    // The idle cut is the read timeout; `proxy_send_timeout` only bounds a
    // write that stays blocked (in nginx's upgraded relay as in ours).
    let t = site.conf.proxy.read_timeout;
    if t > Duration::from_secs(60) {
        return;
    }
    // Switchyard's own pings keep an idle tunnel whose ends answer them.
    if site.conf.websocket.ping_interval.is_some_and(|i| i < t) {
        return;
    }
    let span = site
        .origin("proxy_read_timeout")
        .filter(|_| site.set_here("proxy_read_timeout"))
        .unwrap_or(site.span());
    out.push(scope.finding(
        "SY003",
        Severity::Warning,
        span,
        format!(
            "WebSockets through {} are closed after {} s without traffic (proxy_read_timeout): quiet clients are disconnected and reconnect in a loop",
            site.name(),
            t.as_secs_f64()
        ),
        Some("proxy_read_timeout 3600s;\nproxy_send_timeout 3600s;"),
    ));
}

fn sy005(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    if !site.conf.proxy.buffering || site.origin("proxy_buffering").is_none() {
        return;
    }
    let span = site.origin("proxy_buffering").unwrap_or(site.span());
    out.push(scope.finding(
        "SY005",
        Severity::Info,
        span,
        format!(
            "plain HTTP responses of {} (long polling, event streams) are buffered before they reach the client; the upgraded WebSocket itself is not",
            site.name()
        ),
        Some("proxy_buffering off;"),
    ));
}

fn sy015(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(span) = site.origin("skipped:proxy_cache") else {
        return;
    };
    out.push(scope.finding(
        "SY015",
        Severity::Warning,
        span,
        format!(
            "responses of {} may be cached and served to other clients (handshake replies, long-polling responses)",
            site.name()
        ),
        Some("proxy_cache off;"),
    ));
}

fn sy006(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    if !site.set_here("client_max_body_size") {
        return;
    }
    let span = site.origin("client_max_body_size").unwrap_or(site.span());
    out.push(scope.finding(
        "SY006",
        Severity::Info,
        span,
        format!(
            "`client_max_body_size` in {} bounds HTTP request bodies only: WebSocket messages are not limited by it",
            site.name()
        ),
        None,
    ));
}

/// Runs the rules on open WebSockets.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for (site, _) in scope.websocket_sites() {
        sy003(scope, site, out);
        sy005(scope, site, out);
        sy015(scope, site, out);
        sy006(scope, site, out);
    }
}
