//! The proxy part of a location: what `proxy_*` directives become, with
//! nginx's default upstream headers.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::Finisher;
use crate::config::error::{ConfigError, Result, Span};
use crate::config::model::*;
use crate::config::note::{Note, NoteKind};
use crate::config::raw::{LocRaw, RedirectsRaw, resolve_noting};
use crate::config::template::Template;
use crate::config::values::{split_host_port, strip_prefix_ci};

/// Headers nginx sends upstream unless configured otherwise
/// (`ngx_http_proxy_headers`): `Host` and `Connection` are set, the rest
/// are cleared so the client's values do not leak through.
const DEFAULT_PROXY_HEADERS: &[(&str, &str)] = &[
    ("Host", "$proxy_host"),
    ("Connection", "close"),
    ("Keep-Alive", ""),
    ("Expect", ""),
    ("Upgrade", ""),
    ("TE", ""),
];

/// Upstream response headers nginx does not pass on by default.
const DEFAULT_HIDE_HEADERS: &[&str] = &[
    "date",
    "server",
    "x-pad",
    "x-accel-expires",
    "x-accel-redirect",
    "x-accel-limit-rate",
    "x-accel-buffering",
    "x-accel-charset",
];

impl Finisher<'_> {
    /// The location's proxy settings: upstream headers in nginx's order,
    /// hidden response headers, the `proxy_pass` target and the backend TLS
    /// client (built here, so `-t` reports unreadable certificates).
    pub(super) fn finish_proxy(
        &mut self,
        raw: &LocRaw,
        loc_prefix: Option<&str>,
        regex_loc: bool,
    ) -> Result<(Option<ProxyPass>, ProxySettings)> {
        // Upstream headers in nginx's order: every `proxy_set_header` entry
        // as configured, then the defaults it did not override (`Host`,
        // `Connection: close`, and the cleared hop-by-hop ones).
        let mut headers: Vec<HeaderRule> = Vec::new();
        let configured = raw.set_headers.clone().unwrap_or_default();
        let mut upgrade = UpgradePolicy::Auto;
        for (name, value, span) in &configured {
            let mut value = value.clone();
            self.bind(&mut value, span)?;
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::at(span, format!("invalid header name \"{name}\"")))?;
            if header == http::header::UPGRADE {
                upgrade = if value.pieces.is_empty() {
                    UpgradePolicy::Disabled
                } else {
                    UpgradePolicy::Configured
                };
            }
            headers.push(HeaderRule {
                name: header,
                display: name.clone(),
                value,
            });
        }
        for (name, value) in DEFAULT_PROXY_HEADERS {
            if configured
                .iter()
                .any(|(n, _, _)| n.eq_ignore_ascii_case(name))
            {
                continue;
            }
            let mut value = Template::parse(value).expect("static template");
            self.bind(&mut value, &Span::command_line())?;
            headers.push(HeaderRule {
                name: HeaderName::from_bytes(name.as_bytes()).expect("static header"),
                display: name.to_string(),
                value,
            });
        }

        let mut hide: Vec<HeaderName> = DEFAULT_HIDE_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .collect();
        if let Some(pass) = &raw.pass_headers {
            hide.retain(|h| !pass.contains(h));
        }
        if let Some(extra) = &raw.hide_headers {
            hide.extend(extra.iter().cloned());
        }

        let proxy_pass = match &raw.proxy_pass {
            Some((url, span)) => Some(self.proxy_pass(url, span, loc_prefix, regex_loc)?),
            None => None,
        };

        let ssl_name = match &raw.ssl_name {
            Some(t) => {
                let mut t = t.clone();
                self.bind(&mut t, &super::written(raw, "proxy_ssl_name", 0))?;
                Some(t)
            }
            None => None,
        };
        let set_body = match &raw.set_body {
            Some(t) => {
                let mut t = t.clone();
                self.bind(&mut t, &super::written(raw, "proxy_set_body", 0))?;
                Some(t)
            }
            None => None,
        };
        let mut ssl = ProxySsl {
            verify: raw.ssl_verify.unwrap_or(false),
            trusted_certificate: raw.ssl_trusted_certificate.clone(),
            name: ssl_name,
            server_name: raw.ssl_server_name.unwrap_or(false),
            verify_depth: raw.ssl_verify_depth.unwrap_or(1),
            session_reuse: raw.ssl_session_reuse.unwrap_or(true),
            certificate: match (&raw.ssl_certificate, &raw.ssl_certificate_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => None,
            },
            client: None,
        };
        let may_use_tls = match &proxy_pass {
            Some(ProxyPass::Static(t)) => t.tls,
            Some(ProxyPass::Dynamic { .. }) => true,
            None => false,
        };
        let missing = [
            ssl.trusted_certificate.as_deref(),
            ssl.certificate.as_ref().map(|(c, _)| c.as_path()),
            ssl.certificate.as_ref().map(|(_, k)| k.as_path()),
        ]
        .into_iter()
        .flatten()
        .find(|p| !p.exists());
        let span = raw.proxy_pass.as_ref().map(|(_, s)| s.clone());
        if let (true, true, Some(path)) = (may_use_tls, self.mode.lint(), missing) {
            // Linting elsewhere than where it runs: the backend TLS client
            // cannot be built here, which is a note, not an error.
            self.notes.borrow_mut().push(Note {
                kind: NoteKind::MissingFile,
                span: span.clone().unwrap_or_else(Span::command_line),
                message: format!(
                    "cannot load certificate \"{}\": no such file on this machine",
                    path.display()
                ),
            });
        } else if may_use_tls {
            let options = crate::tls::client::ClientOptions {
                verify: ssl.verify,
                trusted_certificate: ssl.trusted_certificate.as_deref(),
                certificate: ssl
                    .certificate
                    .as_ref()
                    .map(|(c, k)| (c.as_path(), k.as_path())),
                send_sni: ssl.server_name,
                session_reuse: ssl.session_reuse,
            };
            let client = crate::tls::client::config(&options).map_err(|e| match &span {
                Some(span) => ConfigError::at(span, e),
                None => ConfigError::at(&Span::command_line(), e),
            })?;
            ssl.client = Some(client);
        }
        let proxy = ProxySettings {
            http_version: raw.http_version.unwrap_or(http::Version::HTTP_10),
            headers: Arc::new(headers),
            upgrade,
            pass_request_headers: raw.pass_request_headers.unwrap_or(true),
            pass_request_body: raw.pass_request_body.unwrap_or(true),
            set_body,
            hide_headers: Arc::new(hide),
            read_timeout: raw.read_timeout.unwrap_or(Duration::from_secs(60)),
            send_timeout: raw.send_timeout_upstream.unwrap_or(Duration::from_secs(60)),
            connect_timeout: raw.connect_timeout.unwrap_or(Duration::from_secs(60)),
            buffering: raw.buffering.unwrap_or(true),
            ignore: crate::config::IgnoreHeaders(raw.ignore_headers.unwrap_or(0)),
            request_buffering: raw.request_buffering.unwrap_or(true),
            buffer_size: raw.buffer_size.unwrap_or(4096),
            buffers: raw.buffers.unwrap_or((8, 4096)),
            next_upstream: raw.next_upstream.unwrap_or(NextUpstream {
                error: true,
                timeout: true,
                ..NextUpstream::default()
            }),
            next_upstream_tries: raw.next_upstream_tries.unwrap_or(0),
            next_upstream_timeout: raw.next_upstream_timeout.unwrap_or(Duration::ZERO),
            intercept_errors: raw.intercept_errors.unwrap_or(false),
            ignore_client_abort: raw.ignore_client_abort.unwrap_or(false),
            redirects: Arc::new(self.finish_redirects(raw, proxy_pass.as_ref())?),
            ssl,
        };

        Ok((proxy_pass, proxy))
    }

    /// The `proxy_redirect` rules of a level: `default` (also when none is
    /// given) is the `proxy_pass` URL replaced by the location, as nginx
    /// builds it; `off` is none.
    fn finish_redirects(
        &mut self,
        raw: &LocRaw,
        pass: Option<&ProxyPass>,
    ) -> Result<Vec<RedirectRule>> {
        let default = || -> Option<RedirectRule> {
            let Some(ProxyPass::Static(t)) = pass else {
                return None;
            };
            let scheme = if t.tls { "https" } else { "http" };
            let (from, to) = match (&t.uri, &t.location_prefix) {
                (Some(u), Some(prefix)) => {
                    (format!("{scheme}://{}{u}", t.proxy_host), prefix.clone())
                }
                (None, _) => (format!("{scheme}://{}/", t.proxy_host), "/".to_string()),
                _ => return None,
            };
            Some(RedirectRule {
                pattern: RedirectPattern::Prefix(Template::literal(&from)),
                replacement: Template::literal(&to),
            })
        };
        let rules = match &raw.redirects {
            None => default().into_iter().collect(),
            Some(RedirectsRaw::Off) => Vec::new(),
            Some(RedirectsRaw::Rules(rules)) => {
                let at = super::written(raw, "proxy_redirect", 0);
                let mut out = Vec::with_capacity(rules.len());
                for rule in rules {
                    match rule {
                        None => out.extend(default()),
                        Some(r) => {
                            let mut r = r.clone();
                            if let RedirectPattern::Prefix(t) = &mut r.pattern {
                                self.bind(t, &at)?;
                            }
                            self.bind(&mut r.replacement, &at)?;
                            out.push(r);
                        }
                    }
                }
                out
            }
        };
        Ok(rules)
    }

    /// Parses a `proxy_pass` URL into a target.
    fn proxy_pass(
        &mut self,
        url: &str,
        span: &Span,
        loc_prefix: Option<&str>,
        regex_loc: bool,
    ) -> Result<ProxyPass> {
        let mut t = Template::parse(url).map_err(|e| ConfigError::at(span, e.to_string()))?;
        if !t.is_const() {
            self.bind(&mut t, span)?;
            return Ok(ProxyPass::Dynamic {
                url: t,
                span: span.clone(),
            });
        }
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "http://") {
            (false, r)
        } else if let Some(r) = strip_prefix_ci(url, "https://") {
            (true, r)
        } else {
            return Err(ConfigError::at(
                span,
                format!("invalid URL prefix in \"{url}\""),
            ));
        };
        if let Some(socket) = strip_prefix_ci(rest, "unix:") {
            return self.unix_target(url, socket, tls, span, loc_prefix, regex_loc);
        }
        let (hostport, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_string())),
            None => (rest, None),
        };
        if hostport.is_empty() {
            return Err(ConfigError::at(
                span,
                format!("no host in \"{url}\" of the \"proxy_pass\" directive"),
            ));
        }
        if uri.is_some() && regex_loc {
            return Err(uri_part_refused(span));
        }
        let default_port = if tls { 443 } else { 80 };
        let upstream = self.upstream_for(hostport, default_port, span)?;
        let (_, port) = split_host_port(hostport, default_port).ok_or_else(|| {
            ConfigError::at(span, format!("invalid port in upstream \"{hostport}\""))
        })?;
        Ok(ProxyPass::Static(StaticTarget {
            tls,
            upstream,
            proxy_host: hostport.to_string(),
            proxy_port: port,
            uri,
            location_prefix: loc_prefix.map(str::to_string),
        }))
    }

    /// `proxy_pass http://unix:/path/to.sock[:/uri]`: a unix domain socket,
    /// its path ending at the first colon; the backend is sent
    /// `Host: localhost`, as nginx does.
    fn unix_target(
        &mut self,
        url: &str,
        socket: &str,
        tls: bool,
        span: &Span,
        loc_prefix: Option<&str>,
        regex_loc: bool,
    ) -> Result<ProxyPass> {
        let (path, uri) = PeerAddr::split_unix_url(socket);
        let uri = uri.map(str::to_string);
        let addr =
            PeerAddr::unix(path).map_err(|e| ConfigError::at(span, format!("{e} in \"{url}\"")))?;
        if uri.is_some() && regex_loc {
            return Err(uri_part_refused(span));
        }
        let name = format!("unix:{path}");
        let upstream = match self.upstreams.iter().find(|u| u.implicit && u.name == name) {
            Some(u) => u.clone(),
            None => {
                let u = Arc::new(Upstream::implicit(
                    name.clone(),
                    self.upstreams.len(),
                    vec![Peer::new(addr, name)],
                    span.clone(),
                ));
                self.upstreams.push(u.clone());
                u
            }
        };
        Ok(ProxyPass::Static(StaticTarget {
            tls,
            upstream,
            proxy_host: "localhost".to_string(),
            proxy_port: 80,
            uri,
            location_prefix: loc_prefix.map(str::to_string),
        }))
    }

    /// Finds the `upstream` named `hostport`, or makes an implicit group
    /// from the resolved address(es).
    pub fn upstream_for(
        &mut self,
        hostport: &str,
        default_port: u16,
        span: &Span,
    ) -> Result<Arc<Upstream>> {
        // An explicit upstream block wins when the name matches exactly
        // (nginx compares host and port: `upstream b` matches
        // `http://b` only when no port is given).
        if let Some(u) = self
            .upstreams
            .iter()
            .find(|u| !u.implicit && u.name == hostport)
        {
            return Ok(u.clone());
        }
        if let Some(u) = self
            .upstreams
            .iter()
            .find(|u| u.implicit && u.name == hostport)
        {
            return Ok(u.clone());
        }
        let addrs = resolve_noting(
            self.mode,
            &mut self.notes.borrow_mut(),
            (hostport, default_port, false),
            span,
            |msg| format!("host not found in upstream \"{hostport}\"{msg}"),
        )?;
        let peers = addrs
            .into_iter()
            .map(|addr| Peer::new(addr, hostport.to_string()))
            .collect();
        let u = Arc::new(Upstream::implicit(
            hostport.to_string(),
            self.upstreams.len(),
            peers,
            span.clone(),
        ));
        self.upstreams.push(u.clone());
        Ok(u)
    }
}

/// nginx's refusal of a URI part where the location's own URI cannot be
/// replaced.
fn uri_part_refused(span: &Span) -> ConfigError {
    ConfigError::at(
        span,
        "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
    )
}
