//! The rules of `switchyard check`, over the loaded model.
//!
//! Codes `SY001` to `SY009` are the nine causes of broken WebSockets
//! behind a proxy, in the order troubleshooting guides list them; `SY0N1`
//! style codes (`SY012`, `SY014`, ...) are further rules for cause N;
//! `SY1xx` are rules beyond the nine (inheritance traps, security,
//! capacity); `SY9xx` report what a lint load noted (skipped directives,
//! files missing on this machine).
//!
//! Every rule reads [`Site`]s: each `server` level and each `location`
//! with the merged settings in effect there, the enclosing level's
//! settings, and how the server listens.

use std::sync::Arc;

use super::{Finding, Options, Severity};
use crate::config::{Config, Http, LocConf, Location, LocationMatch, NoteKind, Server, Span};

mod balancing;
mod capacity;
mod handshake;
mod security;
mod streaming;
mod tls;

/// A rule: its code, a title, and the long explanation `--explain` prints.
pub struct Rule {
    /// The stable code.
    pub code: &'static str,
    /// One line.
    pub title: &'static str,
    /// What it detects, why it matters, how to fix it.
    pub explain: &'static str,
}

/// The rule with `code` (case-insensitive).
pub fn find(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code.eq_ignore_ascii_case(code))
}

/// Every rule, by code.
pub static RULES: &[Rule] = &[
    Rule {
        code: "SY000",
        title: "the configuration does not load",
        explain: "The configuration could not be read or is invalid; nothing else was checked. The message is the one `switchyard -t` (or `nginx -t`) prints.",
    },
    handshake::SY001,
    handshake::SY002,
    handshake::SY012,
    streaming::SY003,
    tls::SY004,
    tls::SY014,
    tls::SY024,
    streaming::SY005,
    streaming::SY015,
    streaming::SY006,
    tls::SY007,
    tls::SY017,
    balancing::SY008,
    balancing::SY018,
    balancing::SY009,
    balancing::SY019,
    handshake::SY101,
    security::SY102,
    security::SY103,
    security::SY104,
    security::SY105,
    capacity::SY106,
    capacity::SY107,
    capacity::SY108,
    Rule {
        code: "SY900",
        title: "directive not implemented by Switchyard (skipped)",
        explain: "With --nginx, directives, parameters and blocks that nginx accepts and Switchyard does not implement are skipped and listed here, so the rest of the file can be checked. Switchyard itself refuses such a configuration at load time (it never ignores a directive silently); see the README's directive table for what is supported.",
    },
    Rule {
        code: "SY901",
        title: "file not found on this machine",
        explain: "An `include`, certificate or similar file named by the configuration does not exist where `check` runs. This is expected when a production configuration is linted on a laptop or in CI; rules that needed the file were skipped for it.",
    },
    Rule {
        code: "SY903",
        title: "checked as the inside of an http block",
        explain: "The file holds http-level directives (`server`, `upstream`, `map`...) and no `http` block, as files in `conf.d/` that the main configuration includes from its http block. It was checked as if included there.",
    },
    Rule {
        code: "SY902",
        title: "variable unknown to Switchyard",
        explain: "With --nginx, a variable of an nginx module Switchyard does not implement is treated as never set, so the rest of the file can be checked.",
    },
];

/// One level requests are answered at: a server's own settings (no
/// location matched) or a location.
pub struct Site<'c> {
    /// The server.
    pub server: &'c Server,
    /// The location; `None` for the server level.
    pub location: Option<&'c Location>,
    /// The settings in effect here.
    pub conf: &'c LocConf,
    /// The settings of the enclosing level (the server's for a top-level
    /// location, the http level's for a server).
    pub parent: &'c LocConf,
    /// How the server listens.
    pub listen: Listen,
}

/// How a server listens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listen {
    /// On at least one TLS address.
    pub tls: bool,
    /// On at least one plain address.
    pub plain: bool,
    /// `http2` on one of its addresses.
    pub http2: bool,
}

impl<'c> Site<'c> {
    /// Where to point: the location statement, else the server's.
    pub fn span(&self) -> &'c Span {
        self.location.map_or(&self.server.span, |l| &l.span)
    }

    /// `location /ws` or `server` for messages.
    pub fn name(&self) -> String {
        match self.location.map(|l| &l.matcher) {
            None => "server".into(),
            Some(LocationMatch::Prefix(p)) => format!("location {p}"),
            Some(LocationMatch::PrefixNoRegex(p)) => format!("location ^~ {p}"),
            Some(LocationMatch::Exact(p)) => format!("location = {p}"),
            Some(LocationMatch::Regex(r)) => format!("location ~ {}", r.source),
            Some(LocationMatch::Named(n)) => format!("location @{n}"),
        }
    }

    /// The path (or regex source) the location matches.
    pub fn path(&self) -> &'c str {
        match self.location.map(|l| &l.matcher) {
            None => "/",
            Some(
                LocationMatch::Prefix(p)
                | LocationMatch::PrefixNoRegex(p)
                | LocationMatch::Exact(p),
            ) => p,
            Some(LocationMatch::Regex(r)) => &r.source,
            Some(LocationMatch::Named(n)) => n,
        }
    }

    /// Where directive `name` in effect here was written, if anywhere.
    pub fn origin(&self, name: &str) -> Option<&'c Span> {
        self.conf.origins.get(name).and_then(|v| v.first())
    }

    /// Whether directive `name` was written at this level (not inherited).
    pub fn set_here(&self, name: &str) -> bool {
        self.conf.origins.get(name).is_some_and(|here| {
            self.parent
                .origins
                .get(name)
                .is_none_or(|above| above != here)
        })
    }

    /// The value template of header `name` sent upstream, when it sends
    /// one (a `proxy_set_header` with a non-empty value, or nginx's
    /// `Host`/`Connection` defaults).
    pub fn header(&self, name: &str) -> Option<&'c crate::config::template::Template> {
        self.conf
            .proxy
            .headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .map(|h| &h.value)
            .filter(|t| !t.pieces.is_empty())
    }

    /// Whether the site proxies.
    pub fn proxies(&self) -> bool {
        self.conf.proxy_pass.is_some()
    }
}

/// Why a site is taken to receive WebSocket handshakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsReason {
    /// It forwards `Upgrade` (or opts out with an empty value).
    UpgradeHeader,
    /// Its `Connection` header carries `upgrade`.
    ConnectionHeader,
    /// Its path looks like a WebSocket endpoint (`/ws`, `/socket.io/`...).
    Path,
}

/// Path words of WebSocket endpoints in real deployments.
const WS_WORDS: &[&str] = &[
    "ws",
    "wss",
    "websocket",
    "websockets",
    "socket",
    "sockets",
    "socket.io",
    "sockjs",
    "cable",
    "hub",
    "hubs",
    "signalr",
    "realtime",
    "live",
    "subscriptions",
    "graphql-ws",
];

/// Whether a location path (or regex) names a WebSocket endpoint.
pub fn ws_path(path: &str) -> bool {
    path.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        .filter(|w| !w.is_empty())
        .any(|w| {
            let w = w.to_ascii_lowercase();
            WS_WORDS.contains(&w.as_str()) || w.contains("websocket")
        })
}

/// Whether a proxied site receives WebSocket handshakes, and why.
pub fn websocket(site: &Site<'_>) -> Option<WsReason> {
    if !site.proxies() {
        return None;
    }
    if site.header("upgrade").is_some()
        || site.conf.proxy.upgrade == crate::config::UpgradePolicy::Disabled
    {
        return Some(WsReason::UpgradeHeader);
    }
    if site
        .header("connection")
        .is_some_and(|t| t.source.to_ascii_lowercase().contains("upgrade"))
    {
        return Some(WsReason::ConnectionHeader);
    }
    ws_path(site.path()).then_some(WsReason::Path)
}

/// What the rules read.
pub struct Scope<'c> {
    /// The configuration.
    pub config: &'c Config,
    /// Its `http` block.
    pub http: &'c Http,
    /// The options.
    pub opts: &'c Options,
    /// Every server level and location.
    pub sites: Vec<Site<'c>>,
}

impl Scope<'_> {
    /// A finding.
    pub fn finding(
        &self,
        code: &'static str,
        severity: Severity,
        span: &Span,
        message: String,
        fix: Option<&str>,
    ) -> Finding {
        Finding {
            code,
            severity,
            span: span.clone(),
            message,
            fix: fix.map(str::to_string),
        }
    }

    /// The sites that receive WebSocket handshakes.
    pub fn websocket_sites(&self) -> impl Iterator<Item = (&Site<'_>, WsReason)> {
        self.sites
            .iter()
            .filter_map(|s| websocket(s).map(|why| (s, why)))
    }

    /// The source text of a statement.
    pub fn text(&self, span: &Span) -> Option<&str> {
        let file = span.file.as_deref()?;
        let src = self
            .config
            .files
            .iter()
            .find(|f| f.path.to_string_lossy() == file)?;
        src.text.get(span.start as usize..span.end as usize)
    }

    /// The `proxy_set_header NAME ...` statement in effect at `site`.
    pub fn header_origin<'s>(&self, site: &Site<'s>, name: &str) -> Option<&'s Span> {
        site.conf
            .origins
            .get("proxy_set_header")?
            .iter()
            .find(|span| {
                self.text(span).is_some_and(|t| {
                    t.split_whitespace()
                        .nth(1)
                        .is_some_and(|w| w.trim_matches(['"', '\'']).eq_ignore_ascii_case(name))
                })
            })
    }

    /// Whether nginx's semantics apply (linting an nginx configuration).
    pub fn nginx(&self) -> bool {
        self.opts.nginx
    }
}

fn listen_of(http: &Http, server: &Server) -> Listen {
    let mut l = Listen::default();
    for g in &http.listens {
        if g.servers.iter().any(|s| s.index == server.index) {
            if g.opts.ssl {
                l.tls = true;
            } else {
                l.plain = true;
            }
            l.http2 |= g.opts.http2;
        }
    }
    l
}

fn collect<'c>(
    server: &'c Server,
    listen: Listen,
    locs: &'c crate::config::Locations,
    parent: &'c LocConf,
    out: &mut Vec<Site<'c>>,
) {
    let mut all: Vec<&'c Arc<Location>> = locs
        .prefix
        .iter()
        .chain(locs.regex.iter())
        .chain(locs.named.values())
        .collect();
    all.sort_by_key(|l| l.span.start);
    for l in all {
        out.push(Site {
            server,
            location: Some(l),
            conf: &l.conf,
            parent,
            listen,
        });
        collect(server, listen, &l.children, &l.conf, out);
    }
}

/// Runs every rule.
pub fn run(config: &Config, opts: &Options) -> Vec<Finding> {
    let Some(http) = config.http.as_deref() else {
        return Vec::new();
    };
    let mut sites = Vec::new();
    for server in &http.servers {
        let listen = listen_of(http, server);
        sites.push(Site {
            server,
            location: None,
            conf: &server.conf,
            parent: &http.conf,
            listen,
        });
        collect(server, listen, &server.locations, &server.conf, &mut sites);
    }
    let scope = Scope {
        config,
        http,
        opts,
        sites,
    };
    let mut out = Vec::new();
    handshake::check(&scope, &mut out);
    streaming::check(&scope, &mut out);
    tls::check(&scope, &mut out);
    balancing::check(&scope, &mut out);
    security::check(&scope, &mut out);
    capacity::check(&scope, &mut out);
    out
}

/// The findings for what the lint load noted.
pub fn from_notes(config: &Config, opts: &Options) -> Vec<Finding> {
    config
        .notes
        .iter()
        .map(|n| {
            let (code, severity, fix) = match n.kind {
                NoteKind::Skipped => ("SY900", Severity::Info, None),
                NoteKind::MissingFile => ("SY901", Severity::Info, None),
                NoteKind::UnknownVariable => ("SY902", Severity::Info, None),
                NoteKind::Unresolved => (
                    "SY009",
                    if opts.probe_backends {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    Some("# the name must resolve where the proxy runs (a service name on its network, or an address)"),
                ),
            };
            let message = match n.kind {
                NoteKind::Skipped => format!("{} (skipped: Switchyard would refuse this configuration)", n.message),
                NoteKind::Unresolved => format!(
                    "{}: WebSocket handshakes to it fail with 502 where the name does not resolve",
                    n.message
                ),
                _ => n.message.clone(),
            };
            Finding {
                code,
                severity,
                span: n.span.clone(),
                message,
                fix: fix.map(str::to_string),
            }
        })
        .collect()
}
