//! Cause 1 and 2: the handshake's `Upgrade` and `Connection` headers, and
//! the inheritance rule that silently drops them.

use http::Version;

use super::{Rule, Scope, Site};
use crate::check::{Finding, Severity};
use crate::config::template::{Piece, Template};
use crate::config::var::Var;
use crate::config::{IndexedKind, UpgradePolicy};

pub const SY001: Rule = Rule {
    code: "SY001",
    title: "WebSocket handshakes are not forwarded as upgrades",
    explain: "A WebSocket starts as an HTTP/1.1 request with `Upgrade: websocket` and `Connection: Upgrade`. Both are hop-by-hop headers: a proxy does not forward them unless told to, and nginx talks HTTP/1.0 to backends by default (before 1.29.7). The backend then sees a plain request and answers 400 or 200, and the browser reports \"Error during WebSocket handshake: Unexpected response code: 400\".\n\nnginx needs, in the location:\n\n    proxy_http_version 1.1;\n    proxy_set_header Upgrade $http_upgrade;\n    proxy_set_header Connection $connection_upgrade;   # from a map, see SY002\n\nSwitchyard forwards a WebSocket handshake as an upgrade even without these lines (its WebSocket-first default); on a Switchyard configuration this rule is informational and tells you the file would break under nginx. `proxy_set_header Upgrade \"\";` turns the default off, and then this rule is a warning.",
};

pub const SY002: Rule = Rule {
    code: "SY002",
    title: "`Connection: upgrade` sent with every request of a location that also serves plain HTTP",
    explain: "`proxy_set_header Connection \"upgrade\";` sends `Connection: upgrade` with every request of the location, not only with WebSocket handshakes. On a location that also answers ordinary requests (pages, APIs, long polling), backends then see upgrade requests without an `Upgrade` header, and the backend connection can never be kept alive. The usual fix is a map that says `upgrade` only when the client asked for one:\n\n    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n    ...\n    proxy_set_header Connection $connection_upgrade;",
};

pub const SY012: Rule = Rule {
    code: "SY012",
    title: "a map gives `upgrade` to requests that did not ask for one",
    explain: "A `map $http_upgrade ...` whose result for an empty `Upgrade` header is `upgrade` (a `default upgrade;` without a `'' close;` line) sends `Connection: upgrade` with every plain request, which defeats the purpose of the map (see SY002). Add `'' close;` (or `'' \"\";` to let keep-alive to the backend work).",
};

pub const SY101: Rule = Rule {
    code: "SY101",
    title: "a nested `proxy_set_header` drops the inherited `Upgrade` and `Connection` lines",
    explain: "`proxy_set_header` is inherited only by levels that define none of their own: a location (or server) that sets any header replaces the whole inherited list. The `Upgrade` and `Connection` lines written at the server or http level then no longer apply to it, and WebSocket handshakes through it fail under nginx. This is the most common hidden cause of WebSockets breaking after an innocuous change (adding `proxy_set_header X-Real-IP ...` to one location). Repeat the lines in the location, or move all of them to one level.",
};

const FIX_HEADERS: &str = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }   # http level\nproxy_http_version 1.1;\nproxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection $connection_upgrade;";

/// Whether a header template evaluates to something with `upgrade`: a
/// literal, or a `map` variable whose values include it.
fn carries_upgrade(scope: &Scope<'_>, t: &Template) -> bool {
    if t.source.to_ascii_lowercase().contains("upgrade") && t.is_const() {
        return true;
    }
    t.pieces.iter().any(|p| match p {
        Piece::Var(Var::Indexed(i)) => match scope.http.indexed.get(*i).map(|v| v.kind) {
            Some(IndexedKind::Map(m)) => scope.http.maps.get(m).is_some_and(|map| {
                map.exact
                    .values()
                    .chain(std::iter::once(&map.default))
                    .any(|v| v.source.to_ascii_lowercase().contains("upgrade"))
            }),
            _ => false,
        },
        Piece::Var(Var::Http(h)) => h.as_str() == "upgrade",
        _ => false,
    })
}

/// What nginx would get wrong with this site's handshakes.
fn nginx_problems(scope: &Scope<'_>, site: &Site<'_>) -> Vec<&'static str> {
    let mut out = Vec::new();
    let p = &site.conf.proxy;
    let upgrade = site.header("upgrade").filter(|t| !t.pieces.is_empty());
    if upgrade.is_none() {
        out.push("`Upgrade` is not forwarded");
    }
    if !site
        .header("connection")
        .is_some_and(|t| carries_upgrade(scope, t))
    {
        out.push("`Connection` does not say `upgrade`");
    }
    let http11_default = scope.opts.nginx && scope.opts.nginx_version >= (1, 29, 7);
    if p.http_version != Version::HTTP_11 && !http11_default {
        out.push("the backend is spoken to in HTTP/1.0");
    }
    out
}

fn sy001(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let problems = nginx_problems(scope, site);
    if problems.is_empty() {
        return;
    }
    let what = problems.join(", ");
    let span = site.origin("proxy_pass").unwrap_or(site.span());
    let (severity, message) = if scope.nginx() {
        (
            Severity::Error,
            format!(
                "WebSocket handshakes to {} reach the backend as plain requests ({what}): browsers get 400 and never connect",
                site.name()
            ),
        )
    } else if site.conf.proxy.upgrade == UpgradePolicy::Disabled {
        (
            Severity::Warning,
            format!(
                "`proxy_set_header Upgrade \"\"` turns WebSocket upgrades off in {}: handshakes reach the backend as plain requests ({what})",
                site.name()
            ),
        )
    } else {
        (
            Severity::Info,
            format!(
                "Switchyard upgrades WebSocket handshakes to {} by default, but nginx would not ({what}): the file breaks WebSockets if nginx runs it",
                site.name()
            ),
        )
    };
    out.push(scope.finding("SY001", severity, span, message, Some(FIX_HEADERS)));
}

fn sy002(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(t) = site.header("connection") else {
        return;
    };
    // A location that only WebSockets reach may say upgrade to all.
    if !(t.is_const() && t.source.to_ascii_lowercase().contains("upgrade"))
        || super::ws_path(site.path())
    {
        return;
    }
    let span = scope
        .header_origin(site, "connection")
        .unwrap_or(site.span());
    out.push(scope.finding(
        "SY002",
        Severity::Warning,
        span,
        "plain HTTP requests proxied with this header are sent with `Connection: upgrade` too, so keep-alive to the backend never works and strict backends reject them".into(),
        Some("map $http_upgrade $connection_upgrade { default upgrade; '' close; }   # http level\nproxy_set_header Connection $connection_upgrade;"),
    ));
}

fn sy012(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for map in &scope.http.maps {
        if map.source.source != "$http_upgrade" {
            continue;
        }
        let empty = map.exact.get(&b""[..]).unwrap_or(&map.default);
        if empty.source.to_ascii_lowercase().contains("upgrade") {
            out.push(scope.finding(
                "SY012",
                Severity::Warning,
                &map.span,
                format!(
                    "`${}` is `upgrade` for requests without an `Upgrade` header, so plain requests are sent with `Connection: upgrade`",
                    map.output
                ),
                Some("map $http_upgrade $connection_upgrade { default upgrade; '' close; }"),
            ));
        }
    }
}

fn sy101(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    // The level that redefines the list (a server may, for locations
    // below it that proxy).
    let proxied_below = scope
        .sites
        .iter()
        .any(|s| s.server.index == site.server.index && s.proxies());
    if !proxied_below || !site.set_here("proxy_set_header") {
        return;
    }
    let inherited = site
        .parent
        .proxy
        .headers
        .iter()
        .any(|h| h.name.as_str() == "upgrade" && !h.value.pieces.is_empty());
    if !inherited || site.header("upgrade").is_some() {
        return;
    }
    let span = site.origin("proxy_set_header").unwrap_or(site.span());
    let (severity, tail) = if scope.nginx() {
        (
            Severity::Error,
            "WebSocket handshakes through it reach the backend as plain requests",
        )
    } else {
        (
            Severity::Info,
            "Switchyard still upgrades WebSocket handshakes here by default, nginx would not",
        )
    };
    out.push(scope.finding(
        "SY101",
        severity,
        span,
        format!(
            "this `proxy_set_header` replaces the inherited list in {}: the `Upgrade`/`Connection` lines of the enclosing level no longer apply, and {tail}",
            site.name()
        ),
        Some("proxy_set_header Upgrade $http_upgrade;      # repeat the inherited lines here\nproxy_set_header Connection $connection_upgrade;"),
    ));
}

/// Runs the handshake rules.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for (site, _) in scope.websocket_sites() {
        sy001(scope, site, out);
    }
    for site in &scope.sites {
        if site.proxies() {
            sy002(scope, site, out);
        }
        sy101(scope, site, out);
    }
    sy012(scope, out);
}
