//! Causes 4 and 7: TLS (wss://) termination, TLS to backends, and pages
//! that ask for `ws://` where only `wss://` can work.

use std::path::{Path, PathBuf};

use super::{Rule, Scope, Site};
use crate::check::{Finding, Severity};
use crate::config::{ProxyPass, Server};

pub const SY004: Rule = Rule {
    code: "SY004",
    title: "the backend's TLS certificate is not verified",
    explain: "`proxy_pass https://...` without `proxy_ssl_verify on` (nginx's default is off) encrypts the connection but accepts any certificate: anyone who can reach the network path to the backend can impersonate it and read every WebSocket message. Give the backend's CA (or its self-signed certificate) with `proxy_ssl_trusted_certificate` and turn verification on; `proxy_ssl_name` sets the name checked when the URL uses an address.",
};

pub const SY014: Rule = Rule {
    code: "SY014",
    title: "a TLS server does not tell the backend the request came over https",
    explain: "Behind a TLS-terminating proxy the backend sees plain HTTP. Frameworks that build WebSocket URLs, check `Origin`, or mark cookies `Secure` from the request scheme then produce `ws://` URLs, reject the handshake's `https://` Origin, or loop on redirects. Send `X-Forwarded-Proto` (and have the application trust it from the proxy).",
};

pub const SY024: Rule = Rule {
    code: "SY024",
    title: "the same WebSockets are also served unencrypted",
    explain: "A server on a TLS address and a plain-HTTP server for the same names both proxy this WebSocket endpoint, so clients (or a downgrade by someone on the path) can use `ws://` and send session cookies and messages in clear text. Redirect the plain server to https, or drop the endpoint from it.",
};

pub const SY007: Rule = Rule {
    code: "SY007",
    title: "HTTPS pages cannot reach this WebSocket endpoint (ws:// vs wss://)",
    explain: "Browsers block `ws://` connections from pages served over https (mixed content), and a `wss://` connection needs a TLS server that routes the path. Here the WebSocket location exists only in a plain-HTTP server while a TLS server serves the same names: pages loaded over https have no working WebSocket URL. Move (or copy) the location into the TLS server and connect with `wss://` (or a scheme-relative URL built from `location.protocol`).",
};

pub const SY017: Rule = Rule {
    code: "SY017",
    title: "a page served over https hard-codes a `ws://` URL",
    explain: "Static files served by a TLS server contain `ws://` URLs: browsers refuse them from an https page (mixed content) with \"SecurityError\" or a failed handshake. Build the URL from the page's own scheme: `new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws')`.",
};

fn sy004(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    let https = match &site.conf.proxy_pass {
        Some(ProxyPass::Static(t)) => t.tls,
        Some(ProxyPass::Dynamic { url, .. }) => url.source.starts_with("https://"),
        None => false,
    };
    if !https || site.conf.proxy.ssl.verify || !site.set_here("proxy_pass") {
        return;
    }
    let span = site.origin("proxy_pass").unwrap_or(site.span());
    out.push(scope.finding(
        "SY004",
        Severity::Warning,
        span,
        format!(
            "{} talks TLS to its backend without verifying the certificate: anyone on the path can impersonate the backend and read the WebSocket traffic",
            site.name()
        ),
        Some("proxy_ssl_verify on;\nproxy_ssl_trusted_certificate /etc/ssl/backend-ca.pem;"),
    ));
}

fn sy014(scope: &Scope<'_>, site: &Site<'_>, out: &mut Vec<Finding>) {
    if !site.listen.tls
        || site.header("x-forwarded-proto").is_some()
        || site.header("forwarded").is_some()
    {
        return;
    }
    let span = site.origin("proxy_pass").unwrap_or(site.span());
    out.push(scope.finding(
        "SY014",
        Severity::Warning,
        span,
        format!(
            "the backend of {} cannot tell the page was loaded over https: apps that build WebSocket URLs or check Origin from the scheme produce ws:// or refuse the handshake",
            site.name()
        ),
        Some("proxy_set_header X-Forwarded-Proto $scheme;"),
    ));
}

/// Whether two servers answer some name in common.
fn share_name(a: &Server, b: &Server) -> bool {
    a.names
        .iter()
        .any(|n| !n.is_empty() && b.names.iter().any(|m| m.eq_ignore_ascii_case(n)))
}

/// Whether a server redirects every request (`return 301 https://...` at
/// server level).
fn redirects_all(server: &Server) -> bool {
    server.rewrite.iter().any(
        |op| matches!(op, crate::config::RewriteOp::Return(r) if (301..=308).contains(&r.status)),
    )
}

fn sy024_sy007(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let ws: Vec<&Site<'_>> = scope.websocket_sites().map(|(s, _)| s).collect();
    for plain in ws.iter().filter(|s| s.listen.plain && !s.listen.tls) {
        if redirects_all(plain.server) {
            continue;
        }
        let twins: Vec<&Server> = scope
            .http
            .servers
            .iter()
            .map(|s| &**s)
            .filter(|s| s.index != plain.server.index && share_name(s, plain.server))
            .filter(|s| {
                scope
                    .sites
                    .iter()
                    .any(|x| x.server.index == s.index && x.listen.tls)
            })
            .collect();
        let Some(tls) = twins.first() else {
            continue;
        };
        let routed = ws
            .iter()
            .any(|s| s.server.index == tls.index && s.path() == plain.path());
        let (code, message, fix) = if routed {
            (
                "SY024",
                format!(
                    "{} is also proxied by a plain-HTTP server for the same names: clients can use ws:// and send cookies and messages in clear text",
                    plain.name()
                ),
                "return 301 https://$host$request_uri;   # in the plain-HTTP server",
            )
        } else {
            (
                "SY007",
                format!(
                    "{} exists only in a plain-HTTP server while a TLS server serves the same names: pages loaded over https can neither use ws:// (mixed content) nor wss:// (no route)",
                    plain.name()
                ),
                "# in the TLS server:\nlocation /ws/ { proxy_pass http://backend; }   # and connect with wss://",
            )
        };
        out.push(scope.finding(code, Severity::Warning, plain.span(), message, Some(fix)));
    }
}

/// Files under `root` that a browser runs: `.html`, `.htm`, `.js`, `.mjs`.
fn scripts(root: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    const MAX_FILES: usize = 2000;
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if out.len() >= MAX_FILES {
            return;
        }
        if path.is_dir() {
            if depth < 6 && !path.ends_with("node_modules") {
                scripts(&path, out, depth + 1);
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("html" | "htm" | "js" | "mjs")
        ) {
            out.push(path);
        }
    }
}

/// The first line of `text` with a hard-coded `ws://` URL.
fn ws_url_line(text: &str) -> Option<(usize, &str)> {
    text.lines().enumerate().find_map(|(i, line)| {
        // A string literal that starts with `ws://` (`wss://` has no
        // `ws://` in it); `"ws://"` chosen from the page's scheme sits next
        // to `location.protocol`.
        let at = ["\"ws://", "'ws://", "`ws://"]
            .iter()
            .find_map(|q| line.find(q))?
            + 1;
        let url = line[at..]
            .split(['"', '\'', '`', ' '])
            .next()
            .unwrap_or("ws://");
        (!line.contains("location.protocol")).then_some((i + 1, url))
    })
}

fn sy017(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    let mut seen = std::collections::HashSet::new();
    for site in scope.sites.iter().filter(|s| s.listen.tls && !s.proxies()) {
        let Some(root) = site.conf.root.path.const_value() else {
            continue;
        };
        if !seen.insert(root.clone()) {
            continue;
        }
        let mut files = Vec::new();
        scripts(Path::new(&root), &mut files, 0);
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            if text.len() > 1 << 20 {
                continue;
            }
            if let Some((line, url)) = ws_url_line(&text) {
                let span = site.origin("root").unwrap_or(site.span());
                out.push(scope.finding(
                    "SY017",
                    Severity::Warning,
                    span,
                    format!(
                        "{}:{line} opens `{url}` but is served over https: browsers block it (mixed content)",
                        file.display()
                    ),
                    Some("const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');"),
                ));
            }
        }
    }
}

/// Runs the TLS rules.
pub fn check(scope: &Scope<'_>, out: &mut Vec<Finding>) {
    for site in scope.sites.iter().filter(|s| s.proxies()) {
        sy004(scope, site, out);
    }
    for (site, _) in scope.websocket_sites() {
        sy014(scope, site, out);
    }
    sy024_sy007(scope, out);
    sy017(scope, out);
}
