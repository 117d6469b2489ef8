//! Beyond the nine causes: what a hostile client can do through the
//! proxy's own configuration (host spoofing, SSRF, header injection,
//! connection floods).

use super::{Rule, Scope, Site};
use crate::check::{Finding, Severity};
use crate::config::ProxyPass;
use crate::config::template::{Piece, Template};
use crate::config::var::{Builtin, Var};

pub const SY102: Rule = Rule {
    code: "SY102",
    title: "`Host` sent upstream from the raw client header",
    explain: "`proxy_set_header Host $http_host;` passes whatever `Host` the client sent, unvalidated and with any port: a client can make the backend build links, password-reset URLs or cache keys for another site (host header injection). `$host` is the validated name the request was routed by; use it.",
};

pub const SY103: Rule = Rule {
    code: "SY103",
    title: "`proxy_pass` target chosen by the client (SSRF)",
    explain: "The host part of this `proxy_pass` URL comes from the request (a header, an argument, a cookie, the URI): any client can make the proxy connect to an address of its choosing, including internal services and cloud metadata endpoints. Choose the backend with a `map` over known values, or put only the path in a variable.",
};

pub const SY104: Rule = Rule {
    code: "SY104",
    title: "a header value built from the decoded URI can carry CR/LF",
    explain: "`$uri`, `$document_uri` and regex captures of locations are taken from the URI after percent-decoding, so `%0d%0a` in a request becomes a line break inside the header value: a client can add headers of its own to the request sent upstream (or to the response). Use `$request_uri` (not decoded) or validate with a regex that excludes control characters.",
};

pub const SY105: Rule = Rule {
    code: "SY105",
    title: "a public WebSocket endpoint without `limit_conn`",
    explain: "Each WebSocket holds a connection to the proxy and one to the backend for as long as it lives. Without `limit_conn`, one client can open thousands and exhaust `worker_connections` or the backend. A per-address limit costs nothing for real users:\n\n    limit_conn_zone $binary_remote_addr zone=ws_per_ip:10m;   # http level\n    limit_conn ws_per_ip 20;",
};

fn sy102(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(t) = site.header("host") else {
        return;
    };
    if t.source.trim() != "$http_host" {
        return;
    }
    let span = scope.header_origin(site, "host").unwrap_or(site.span());
    out.push(scope.finding(
        "SY102",
        Severity::Warning,
        span,
        "the client's raw `Host` header reaches the backend unvalidated: a client can make it build links and cache keys for another site".into(),
        Some("proxy_set_header Host $host;"),
    ));
}

/// Whether a variable holds data the client chose.
fn from_request(v: &Var) -> bool {
    match v {
        Var::Http(_) | Var::Arg(_) | Var::Cookie(_) | Var::Capture(_) => true,
        Var::Builtin(b) => matches!(
            b,
            Builtin::Host
                | Builtin::HttpHost
                | Builtin::Args
                | Builtin::QueryString
                | Builtin::Uri
                | Builtin::DocumentUri
                | Builtin::RequestUri
                | Builtin::Cookie
        ),
        _ => false,
    }
}

/// The variables of the host part of a URL template.
fn host_vars(url: &Template) -> Vec<&Var> {
    let mut out = Vec::new();
    let mut seen_scheme = false;
    let mut text = String::new();
    for piece in &url.pieces {
        match piece {
            Piece::Lit(l) => {
                text.push_str(l);
                if let Some(i) = text.find("://") {
                    seen_scheme = true;
                    text = text[i + 3..].to_string();
                }
                if seen_scheme && text.contains('/') {
                    return out;
                }
            }
            Piece::Var(v) => {
                if seen_scheme || !text.contains("://") {
                    out.push(v);
                }
            }
            Piece::Name(_) => {}
        }
    }
    out
}

fn sy103(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let Some(ProxyPass::Dynamic { url, span }) = &site.conf.proxy_pass else {
        return;
    };
    let vars: Vec<&Var> = host_vars(url)
        .into_iter()
        .filter(|v| from_request(v))
        .collect();
    if vars.is_empty() {
        return;
    }
    out.push(scope.finding(
        "SY103",
        Severity::Error,
        span,
        format!(
            "the backend address of {} comes from the request (`{}`): any client can make the proxy connect to internal services",
            site.name(),
            url.source
        ),
        Some("map $http_x_backend $backend { default app1:8080; app2 app2:8080; }   # known targets only\nproxy_pass http://$backend;"),
    ));
}

/// Whether a template uses URI data after percent-decoding.
fn decoded(t: &Template) -> bool {
    t.pieces.iter().any(|p| {
        matches!(
            p,
            Piece::Var(Var::Builtin(Builtin::Uri | Builtin::DocumentUri) | Var::Capture(_))
        )
    })
}

fn sy104(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    for h in site.conf.proxy.headers.iter().filter(|h| decoded(&h.value)) {
        let span = scope
            .header_origin(site, h.name.as_str())
            .unwrap_or(site.span());
        out.push(scope.finding(
            "SY104",
            Severity::Warning,
            span,
            format!(
                "`{}` is built from the decoded URI (`{}`): `%0d%0a` in a request adds headers of the client's choosing",
                h.display, h.value.source
            ),
            Some("proxy_set_header X-Original-URI $request_uri;   # not decoded"),
        ));
    }
    for h in site.conf.add_headers.iter().filter(|h| decoded(&h.value)) {
        let span = site.origin("add_header").unwrap_or(site.span());
        out.push(scope.finding(
            "SY104",
            Severity::Warning,
            span,
            format!(
                "response header `{}` is built from the decoded URI (`{}`): `%0d%0a` in a request adds response headers of the client's choosing",
                h.display, h.value.source
            ),
            None,
        ));
    }
}

fn sy105(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    if !site.conf.limit_conn.is_empty() || !site.conf.access.is_empty() {
        return;
    }
    out.push(scope.finding(
        "SY105",
        Severity::Info,
        site.span(),
        format!(
            "{} accepts any number of WebSockets per client: one client can exhaust worker_connections",
            site.name()
        ),
        Some("limit_conn_zone $binary_remote_addr zone=ws_per_ip:10m;   # http level\nlimit_conn ws_per_ip 20;"),
    ));
}

/// Runs the security rules.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for site in scope.sites.iter().filter(|s| s.proxies()) {
        sy102(scope, site, out);
        sy103(scope, site, out);
        sy104(scope, site, out);
    }
    for (site, _) in scope.websocket_sites() {
        sy105(scope, site, out);
    }
}
