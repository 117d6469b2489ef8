//! What `proxy_*` directives configure: the request sent upstream, the
//! backend TLS client, retries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::upstream::Upstream;
use crate::config::error::Span;
use crate::config::template::Template;

/// The `proxy_*` family.
#[derive(Debug)]
pub struct ProxySettings {
    /// `proxy_http_version` (1.0 by default, as nginx).
    pub http_version: http::Version,
    /// Headers sent upstream: nginx's defaults merged with
    /// `proxy_set_header`, in the order they are sent.
    pub headers: Arc<Vec<HeaderRule>>,
    /// What the location said about `Upgrade`: decides the WebSocket-first
    /// default (see [`UpgradePolicy`]).
    pub upgrade: UpgradePolicy,
    /// `proxy_pass_request_headers`.
    pub pass_request_headers: bool,
    /// `proxy_pass_request_body`.
    pub pass_request_body: bool,
    /// `proxy_set_body`.
    pub set_body: Option<Template>,
    /// Upstream response headers not passed to the client.
    pub hide_headers: Arc<Vec<HeaderName>>,
    /// `proxy_read_timeout`.
    pub read_timeout: Duration,
    /// `proxy_send_timeout`.
    pub send_timeout: Duration,
    /// `proxy_connect_timeout`.
    pub connect_timeout: Duration,
    /// `proxy_buffering`.
    pub buffering: bool,
    /// `proxy_ignore_headers`: backend headers not acted upon.
    pub ignore: IgnoreHeaders,
    /// `proxy_request_buffering`.
    pub request_buffering: bool,
    /// `proxy_buffer_size`.
    pub buffer_size: usize,
    /// `proxy_buffers N size`.
    pub buffers: (usize, usize),
    /// `proxy_next_upstream` conditions.
    pub next_upstream: NextUpstream,
    /// `proxy_next_upstream_tries` (0 = unlimited).
    pub next_upstream_tries: usize,
    /// `proxy_next_upstream_timeout` (zero = unlimited).
    pub next_upstream_timeout: Duration,
    /// `proxy_intercept_errors`.
    pub intercept_errors: bool,
    /// `proxy_ignore_client_abort`.
    pub ignore_client_abort: bool,
    /// `proxy_redirect` rules, tried in order on `Location` and `Refresh`
    /// headers from backends (empty: `off`).
    pub redirects: Arc<Vec<RedirectRule>>,
    /// Upstream TLS.
    pub ssl: ProxySsl,
}

/// Upstream TLS settings (`proxy_ssl_*`).
#[derive(Debug, Clone)]
pub struct ProxySsl {
    /// `proxy_ssl_verify` (off by default, as nginx).
    pub verify: bool,
    /// `proxy_ssl_trusted_certificate`.
    pub trusted_certificate: Option<PathBuf>,
    /// `proxy_ssl_name` (default `$proxy_host`).
    pub name: Option<Template>,
    /// `proxy_ssl_server_name`: send SNI.
    pub server_name: bool,
    /// `proxy_ssl_verify_depth`.
    pub verify_depth: u32,
    /// `proxy_ssl_session_reuse`.
    pub session_reuse: bool,
    /// `proxy_ssl_certificate` / `_key`: client certificate.
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// The TLS client settings above, built at load for a location that
    /// may pass to `https://` (files read, certificates checked).
    pub client: Option<Arc<rustls::ClientConfig>>,
}

/// When a request may be passed to the next upstream server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream {
    /// `error`
    pub error: bool,
    /// `timeout`
    pub timeout: bool,
    /// `invalid_header`
    pub invalid_header: bool,
    /// `http_500` .. `http_504`, `http_403`, `http_404`, `http_429`
    pub statuses: u32,
    /// `non_idempotent`
    pub non_idempotent: bool,
}

impl NextUpstream {
    /// Bit for a status in `statuses`.
    pub fn status_bit(status: u16) -> u32 {
        match status {
            500 => 1,
            502 => 2,
            503 => 4,
            504 => 8,
            403 => 16,
            404 => 32,
            429 => 64,
            _ => 0,
        }
    }

    /// Whether a response with `status` should be retried.
    pub fn retries_status(&self, status: u16) -> bool {
        let bit = Self::status_bit(status);
        bit != 0 && self.statuses & bit != 0
    }
}

/// One header sent upstream.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Header name (as written, for the wire).
    pub name: HeaderName,
    /// Name as written in the configuration (case kept for the wire).
    pub display: String,
    /// Value; an empty result means the header is not sent.
    pub value: Template,
}

/// What a location said about the `Upgrade` header, which decides how
/// WebSocket handshakes are proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradePolicy {
    /// No `proxy_set_header Upgrade` anywhere: WebSocket handshakes are
    /// upgraded anyway (HTTP/1.1, `Upgrade` and `Connection: upgrade`),
    /// Switchyard's WebSocket-first default.
    Auto,
    /// `proxy_set_header Upgrade <non-empty template>`: nginx semantics, the
    /// configured headers decide.
    Configured,
    /// `proxy_set_header Upgrade "";`: the operator opted out; the
    /// handshake reaches the backend as a plain request, as in nginx.
    Disabled,
}

/// A `proxy_pass` target.
#[derive(Debug, Clone)]
pub enum ProxyPass {
    /// A target fixed at load time.
    Static(StaticTarget),
    /// A target with variables, evaluated per request.
    Dynamic {
        /// The URL template.
        url: Template,
        /// The location prefix, for messages.
        span: Span,
    },
}

/// One `proxy_redirect` rule.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    /// What it matches.
    pub pattern: RedirectPattern,
    /// What replaces the match (variables allowed; a regex's captures too).
    pub replacement: Template,
}

/// The match of a `proxy_redirect` rule.
#[derive(Debug, Clone)]
pub enum RedirectPattern {
    /// A prefix of the header value (case-sensitive, variables allowed):
    /// the prefix is replaced.
    Prefix(Template),
    /// `~` / `~*`: a match anywhere replaces the whole value.
    Regex(Arc<super::pattern::CompiledRegex>),
}

/// A `proxy_pass` with no variables.
#[derive(Debug, Clone)]
pub struct StaticTarget {
    /// `https` upstream.
    pub tls: bool,
    /// The group of servers.
    pub upstream: Arc<Upstream>,
    /// `$proxy_host`: `host[:port]` as written (port omitted when default).
    pub proxy_host: String,
    /// `$proxy_port`.
    pub proxy_port: u16,
    /// The URI part (`proxy_pass http://b/x/` has `/x/`); `None` passes the
    /// client's URI unchanged.
    pub uri: Option<String>,
    /// The location prefix the URI part replaces.
    pub location_prefix: Option<String>,
}

/// `proxy_ignore_headers`: which of the backend's control headers are not
/// acted upon (they are still hidden as usual). Without a cache only
/// `X-Accel-Redirect`, `X-Accel-Limit-Rate` and `X-Accel-Charset` do
/// anything; the others steer nginx's cache and buffering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoreHeaders(pub u16);

impl IgnoreHeaders {
    /// The names nginx accepts, with their bits.
    pub const NAMES: &'static [(&'static str, u16)] = &[
        ("X-Accel-Redirect", 1),
        ("X-Accel-Expires", 2),
        ("X-Accel-Limit-Rate", 4),
        ("X-Accel-Buffering", 8),
        ("X-Accel-Charset", 16),
        ("Expires", 32),
        ("Cache-Control", 64),
        ("Set-Cookie", 128),
        ("Vary", 256),
    ];
    /// `X-Accel-Redirect` ignored.
    pub const REDIRECT: u16 = 1;
    /// `X-Accel-Limit-Rate` ignored.
    pub const LIMIT_RATE: u16 = 4;
    /// `X-Accel-Charset` ignored.
    pub const CHARSET: u16 = 16;

    /// Whether the header with bit `bit` is ignored.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}
