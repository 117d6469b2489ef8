//! Raw per-level settings, before inheritance is merged, and the builder
//! that directive setters fill.
//!
//! Raw settings use `Option` for "not set at this level" (nginx's UNSET
//! sentinel): a setter that finds `Some` reports "is duplicate", and merging
//! is `child.or(parent)`, with the default applied once at the end
//! ([`super::finish`]).

#![allow(missing_docs)] // raw mirrors of the documented fields in `model`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::error::{ConfigError, Result, Span};
use super::model::*;
use super::note::{Mode, Note, NoteKind};
use super::template::Template;
use super::values::{resolve_addr, split_host_port};
use crate::log::{ErrorLogTarget, Level};

/// A set of contexts (bit flags), nginx's `NGX_*_CONF` masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx(pub(in crate::config) u16);

impl Ctx {
    /// Top level of the main file.
    pub const MAIN: Ctx = Ctx(1);
    /// `events { }`
    pub const EVENTS: Ctx = Ctx(2);
    /// `http { }`
    pub const HTTP: Ctx = Ctx(4);
    /// `server { }`
    pub const SERVER: Ctx = Ctx(8);
    /// `location { }`
    pub const LOCATION: Ctx = Ctx(16);
    /// `upstream { }`
    pub const UPSTREAM: Ctx = Ctx(32);
    /// `if (...) { }` in a server or location.
    pub const IF: Ctx = Ctx(64);
    /// `limit_except METHOD ... { }` in a location.
    pub const LIMIT_EXCEPT: Ctx = Ctx(128);
    /// An `if` block inside a location (nginx's `NGX_HTTP_LIF_CONF`):
    /// directives with this bit may appear there.
    pub const LOCATION_IF: Ctx = Ctx(256);
    /// http, server and location.
    pub const HSL: Ctx = Ctx(4 | 8 | 16);
    /// http and server.
    pub const HS: Ctx = Ctx(4 | 8);
    /// server and location.
    pub const SL: Ctx = Ctx(8 | 16);

    /// Whether `self` includes context `other`.
    pub fn contains(self, other: Ctx) -> bool {
        self.0 & other.0 != 0
    }

    /// Names for documentation, e.g. `http, server, location`.
    pub fn names(self) -> String {
        let all = [
            (Ctx::MAIN, "main"),
            (Ctx::EVENTS, "events"),
            (Ctx::HTTP, "http"),
            (Ctx::SERVER, "server"),
            (Ctx::LOCATION, "location"),
            (Ctx::UPSTREAM, "upstream"),
            (Ctx::IF, "if"),
            (Ctx::LIMIT_EXCEPT, "limit_except"),
            (Ctx::LOCATION_IF, "if in location"),
        ];
        all.iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Settings that live at http, server and location level, before merging.
#[derive(Debug, Default, Clone)]
pub struct LocRaw {
    pub proxy_pass: Option<(String, Span)>,
    pub http_version: Option<http::Version>,
    pub set_headers: Option<Vec<(String, Template, Span)>>,
    pub hide_headers: Option<Vec<HeaderName>>,
    pub pass_headers: Option<Vec<HeaderName>>,
    pub pass_request_headers: Option<bool>,
    pub pass_request_body: Option<bool>,
    pub set_body: Option<Template>,
    pub read_timeout: Option<Duration>,
    pub send_timeout_upstream: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub buffering: Option<bool>,
    /// `proxy_ignore_headers`, as [`crate::config::IgnoreHeaders`] bits.
    pub ignore_headers: Option<u16>,
    pub request_buffering: Option<bool>,
    pub buffer_size: Option<usize>,
    pub buffers: Option<(usize, usize)>,
    pub next_upstream: Option<NextUpstream>,
    pub next_upstream_tries: Option<usize>,
    pub next_upstream_timeout: Option<Duration>,
    pub intercept_errors: Option<bool>,
    pub ignore_client_abort: Option<bool>,
    pub redirects: Option<RedirectsRaw>,
    pub ssl_verify: Option<bool>,
    pub ssl_trusted_certificate: Option<PathBuf>,
    pub ssl_name: Option<Template>,
    pub ssl_server_name: Option<bool>,
    pub ssl_verify_depth: Option<u32>,
    pub ssl_session_reuse: Option<bool>,
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_certificate_key: Option<PathBuf>,
    pub send_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u64>,
    pub client_max_body_size: Option<u64>,
    pub client_body_timeout: Option<Duration>,
    pub client_body_buffer_size: Option<u64>,
    pub client_body_temp_path: Option<PathBuf>,
    pub client_body_in_file_only: Option<BodyInFile>,
    pub client_body_in_single_buffer: Option<bool>,
    pub absolute_redirect: Option<bool>,
    pub server_name_in_redirect: Option<bool>,
    pub port_in_redirect: Option<bool>,
    pub client_header_timeout: Option<Duration>,
    pub client_header_buffer_size: Option<u64>,
    pub large_client_header_buffers: Option<(u64, u64)>,
    pub underscores_in_headers: Option<bool>,
    pub ignore_invalid_headers: Option<bool>,
    pub http2: Option<bool>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub http2_body_preread_size: Option<u64>,
    pub http2_chunk_size: Option<u64>,
    pub http2_websocket: Option<bool>,
    pub websocket_ping_interval: Option<Option<Duration>>,
    pub websocket_pong_timeout: Option<Duration>,
    pub websocket_max_message_size: Option<Option<u64>>,
    pub websocket_max_frame_size: Option<Option<u64>>,
    pub websocket_message_rate: Option<Option<crate::config::model::WsRate>>,
    pub websocket_allowed_origins: Option<Option<Arc<Vec<crate::config::model::OriginRule>>>>,
    pub websocket_drain_window: Option<Option<Duration>>,
    pub access_log: Option<Vec<AccessLogRaw>>,
    /// `open_log_file_cache`; `Some(None)` is `off`.
    pub open_log_file_cache: Option<Option<Arc<crate::log::FdCache>>>,
    pub error_log: Option<Vec<ErrorLogTarget>>,
    pub add_headers: Option<Vec<AddHeader>>,
    pub add_trailers: Option<Vec<AddHeader>>,
    pub expires: Option<Expires>,
    pub etag: Option<bool>,
    pub if_modified_since: Option<IfModifiedSince>,
    pub max_ranges: Option<u32>,
    pub force_ranges: Option<bool>,
    pub chunked_transfer_encoding: Option<bool>,
    pub charset: Option<CharsetName>,
    pub source_charset: Option<CharsetName>,
    pub override_charset: Option<bool>,
    /// `charset_types` (`None` inside: `*`).
    pub charset_types: Option<Option<Vec<String>>>,
    pub root: Option<(Root, Span)>,
    pub index: Option<Vec<Template>>,
    pub try_files: Option<TryFiles>,
    pub default_type: Option<String>,
    pub types: Option<Arc<HashMap<String, String>>>,
    pub gzip: Option<bool>,
    pub access: Option<Vec<crate::config::model::AccessRule>>,
    pub realip_from: Option<Vec<crate::config::model::Cidr>>,
    pub realip_header: Option<crate::config::model::RealIpHeader>,
    pub realip_recursive: Option<bool>,
    pub gzip_types: Option<Option<Vec<String>>>,
    pub gzip_comp_level: Option<u32>,
    pub gzip_min_length: Option<u64>,
    pub gzip_http_version: Option<http::Version>,
    pub gzip_proxied: Option<u16>,
    pub gzip_vary: Option<bool>,
    pub gzip_disable: Option<Vec<crate::config::model::Disable>>,
    pub limit_conn: Option<Vec<(String, u32, Span)>>,
    pub limit_conn_status: Option<StatusCode>,
    pub limit_conn_log_level: Option<Level>,
    /// `limit_req zone= burst= delay=`: zone, burst and delay in
    /// thousandths, where.
    pub limit_req: Option<Vec<(String, u64, u64, Span)>>,
    pub limit_req_status: Option<StatusCode>,
    pub limit_req_log_level: Option<Level>,
    pub limit_req_dry_run: Option<bool>,
    pub log_not_found: Option<bool>,
    pub server_tokens: Option<bool>,
    pub error_pages: Option<Vec<ErrorPage>>,
    pub recursive_error_pages: Option<bool>,
    /// Templates of directives that have no effect here
    /// (`proxy_cache_bypass`): bound only so that unknown variables are
    /// reported.
    pub unused_templates: Option<Vec<(Template, Span)>>,
    pub limit_rate: Option<u64>,
    pub limit_rate_after: Option<u64>,
    pub internal: bool,
    /// A content handler of the location's own (`stub_status`): not
    /// inherited.
    pub content_handler: Option<ContentHandler>,
    pub ssl_certificates: Option<Vec<(PathBuf, Span)>>,
    pub ssl_certificate_keys: Option<Vec<(PathBuf, Span)>>,
    pub ssl_protocols: Option<Vec<String>>,
    pub ssl_ciphers: Option<String>,
    pub ssl_on: Option<bool>,
    pub ssl_verify_client: Option<crate::tls::server::VerifyClient>,
    pub ssl_client_certificate: Option<PathBuf>,
    pub ssl_client_trusted_certificate: Option<PathBuf>,
    pub ssl_client_verify_depth: Option<u32>,
    pub ssl_stapling: Option<bool>,
    pub ssl_stapling_file: Option<PathBuf>,
    /// `satisfy any` (else all).
    pub satisfy_any: Option<bool>,
    pub resolver: Option<Arc<crate::config::model::ResolverConf>>,
    pub resolver_timeout: Option<Duration>,
    /// `auth_basic` realm (`off` included: it may come from a variable).
    pub auth_basic: Option<Template>,
    pub auth_basic_user_file: Option<Template>,
    pub auth_delay: Option<Duration>,
    /// `auth_request` URI; empty for `off`.
    pub auth_request: Option<String>,
    /// `auth_request_set`: variable slot, value, where.
    pub auth_request_set: Option<Vec<(crate::config::model::SetTarget, Template, Span)>>,
    /// Where each directive in effect at this level was written (at this
    /// level or inherited), for diagnostics.
    pub origins: Origins,
}

/// `proxy_redirect` lines of one level.
#[derive(Debug, Clone)]
pub enum RedirectsRaw {
    /// `proxy_redirect off;`
    Off,
    /// Rules in order; `None` stands for `default`, resolved against the
    /// level's `proxy_pass` when finishing.
    Rules(Vec<Option<RedirectRule>>),
}

/// An `access_log` before its format name is looked up.
#[derive(Debug, Clone)]
pub struct AccessLogRaw {
    pub path: crate::config::model::LogPath,
    pub format: String,
    pub condition: Option<Template>,
    pub buffering: Option<crate::log::Buffering>,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct LocationRaw {
    pub modifier: String,
    pub path: String,
    pub regex: Option<Arc<CompiledRegex>>,
    pub loc: LocRaw,
    pub rewrite: Vec<RewriteOp>,
    pub children: Vec<LocationRaw>,
    pub span: Option<Span>,
    /// `limit_except`: the methods it lets through and the settings for
    /// every other method.
    pub limit_except: Option<LimitExceptRaw>,
    /// The settings of `if` blocks in this location that hold more than
    /// rewrite directives (see [`IfConf::Pending`]).
    pub if_confs: Vec<LocRaw>,
}

/// An open `if` block.
#[derive(Debug)]
pub struct IfRaw {
    pub cond: Condition,
    pub ops: Vec<RewriteOp>,
    /// Settings of other directives in the block (inside a location).
    pub loc: LocRaw,
    /// Whether any directive wrote to `loc`.
    pub has_conf: bool,
}

/// A `limit_except` block before merging.
#[derive(Debug, Default)]
pub struct LimitExceptRaw {
    pub methods: Vec<http::Method>,
    pub loc: LocRaw,
    pub span: Option<Span>,
}

#[derive(Debug)]
pub struct ListenRaw {
    pub addrs: Vec<super::model::ListenAddr>,
    pub default_server: bool,
    pub opts: ListenOpts,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct ServerRaw {
    pub listens: Vec<ListenRaw>,
    pub names: Vec<(String, Span)>,
    pub name_regexes: Vec<Arc<CompiledRegex>>,
    pub loc: LocRaw,
    pub rewrite: Vec<RewriteOp>,
    pub locations: Vec<LocationRaw>,
    pub span: Option<Span>,
}

#[derive(Debug)]
pub struct UpstreamRaw {
    pub name: String,
    pub peers: Vec<Peer>,
    pub resolved: Vec<crate::config::model::ResolvedServer>,
    pub method: Option<BalanceMethod>,
    pub keepalive: Option<usize>,
    pub keepalive_timeout: Option<Duration>,
    pub keepalive_requests: Option<u64>,
    pub keepalive_time: Option<Duration>,
    pub span: Span,
}

#[derive(Debug)]
pub struct MapRaw {
    pub def: MapDef,
    pub output: String,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct HttpRaw {
    pub loc: LocRaw,
    pub servers: Vec<ServerRaw>,
    pub upstreams: Vec<UpstreamRaw>,
    pub maps: Vec<MapRaw>,
    pub geos: Vec<crate::config::model::GeoDef>,
    pub splits: Vec<crate::config::model::SplitDef>,
    pub log_formats: HashMap<String, (Template, LogEscape, Span)>,
    pub conn_zones: Vec<(String, Template, u64, Span)>,
    /// `limit_req_zone`: name, key, size, rate (thousandths of a request
    /// per second), where.
    pub req_zones: Vec<(String, Template, u64, u64, Span)>,
    /// Charset names and `charset_map` tables, in order of appearance.
    pub charsets: CharsetMaps,
    /// Every `resolver`, in order.
    pub resolvers: Vec<Arc<crate::config::model::ResolverConf>>,
}

#[derive(Debug, Default)]
pub struct MainRaw {
    pub daemon: Option<bool>,
    pub master_process: Option<bool>,
    pub pid: Option<PathBuf>,
    pub error_log: Option<Vec<ErrorLogTarget>>,
    pub worker_processes: Option<usize>,
    pub worker_connections: Option<usize>,
    pub worker_rlimit_nofile: Option<u64>,
    pub worker_shutdown_timeout: Option<Duration>,
    pub user: Option<(String, Option<String>)>,
    pub events_seen: bool,
    pub http_seen: bool,
    /// Where each main- and events-level directive was written.
    pub origins: Origins,
}

/// The settings read so far, and where the walker is: the current server,
/// location path, upstream and `if` blocks. Directive setters fill it; the
/// walker ([`super::walk`]) moves it in and out of blocks.
pub struct Builder {
    pub main: MainRaw,
    pub http: HttpRaw,
    /// Directory relative paths (pid, logs, root) resolve against.
    pub prefix: PathBuf,
    /// Directory of the main configuration file (certificates, password
    /// files and includes resolve against it).
    pub conf_dir: PathBuf,
    /// Innermost context.
    pub ctx: Ctx,
    /// Current server index.
    server: Option<usize>,
    /// Path of location indices within the current server.
    loc_path: Vec<usize>,
    /// Current upstream index.
    upstream: Option<usize>,
    /// Indexed variable names and kinds, in slot order.
    pub indexed: Vec<IndexedVar>,
    /// The `if` blocks being read (innermost last): condition and body.
    pub if_stack: Vec<IfRaw>,
    /// Non-fatal findings.
    pub warnings: Vec<ConfigError>,
    /// How strictly to load.
    pub mode: Mode,
    /// What a lint-mode load noted instead of failing.
    pub notes: Vec<Note>,
    /// The buffering of each buffered access log file so far (every
    /// `access_log` of a file must agree).
    pub log_buffers: HashMap<PathBuf, crate::log::Buffering>,
}

impl Builder {
    /// A walker resolving relative paths against `prefix`.
    pub fn new(prefix: PathBuf) -> Builder {
        Builder {
            main: MainRaw::default(),
            http: HttpRaw::default(),
            conf_dir: prefix.clone(),
            prefix,
            ctx: Ctx::MAIN,
            server: None,
            loc_path: Vec::new(),
            upstream: None,
            indexed: Vec::new(),
            if_stack: Vec::new(),
            warnings: Vec::new(),
            mode: Mode::Serve,
            notes: Vec::new(),
            log_buffers: HashMap::new(),
        }
    }

    /// Resolves a path against the prefix (absolute paths stay).
    pub fn full_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() || p == "stderr" {
            path.to_path_buf()
        } else {
            self.prefix.join(path)
        }
    }

    /// Resolves a path against the directory of the main configuration
    /// file (nginx's conf prefix), as nginx does for certificates and
    /// password files; absolute paths stay.
    pub fn conf_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.conf_dir.join(path)
        }
    }

    /// Whether the innermost block is an `if` inside a location.
    pub fn in_location_if(&self) -> bool {
        self.ctx == Ctx::IF && !self.loc_path.is_empty()
    }

    /// The raw settings of the innermost http/server/location level (or
    /// `limit_except` block).
    pub fn loc(&mut self) -> &mut LocRaw {
        if self.in_location_if() {
            let block = self.if_stack.last_mut().expect("if context has its block");
            block.has_conf = true;
            return &mut block.loc;
        }
        if self.ctx == Ctx::LIMIT_EXCEPT {
            return &mut self
                .location()
                .limit_except
                .as_mut()
                .expect("limit_except context has its block")
                .loc;
        }
        match self.server {
            None => &mut self.http.loc,
            Some(s) => {
                let server = &mut self.http.servers[s];
                if self.loc_path.is_empty() {
                    return &mut server.loc;
                }
                &mut location_at(&mut server.locations, &self.loc_path).loc
            }
        }
    }

    /// The innermost location (panics outside a location: directive table
    /// contexts guarantee we are in one).
    pub fn location(&mut self) -> &mut LocationRaw {
        let s = self.server.expect("location directive outside server");
        location_at(&mut self.http.servers[s].locations, &self.loc_path)
    }

    /// The current server.
    pub fn server(&mut self) -> &mut ServerRaw {
        let s = self.server.expect("server directive outside server");
        &mut self.http.servers[s]
    }

    /// The current upstream.
    pub fn upstream(&mut self) -> &mut UpstreamRaw {
        let u = self.upstream.expect("upstream directive outside upstream");
        &mut self.http.upstreams[u]
    }

    /// The rewrite script of the innermost server or location.
    pub fn rewrite_ops(&mut self) -> &mut Vec<RewriteOp> {
        if !self.if_stack.is_empty() {
            return &mut self.if_stack.last_mut().expect("checked non-empty").ops;
        }
        if self.loc_path.is_empty() {
            &mut self.server().rewrite
        } else {
            &mut self.location().rewrite
        }
    }

    /// Opens a new `server` level.
    pub fn open_server(&mut self, span: &Span) {
        self.http.servers.push(ServerRaw {
            span: Some(span.clone()),
            ..ServerRaw::default()
        });
        self.server = Some(self.http.servers.len() - 1);
    }

    /// Closes the current `server` level.
    pub fn close_server(&mut self) {
        self.server = None;
    }

    /// Opens a new `location` level inside the current server or location.
    pub fn open_location(&mut self, loc: LocationRaw) {
        let s = self.server.expect("location outside server");
        let siblings = if self.loc_path.is_empty() {
            &mut self.http.servers[s].locations
        } else {
            &mut location_at(&mut self.http.servers[s].locations, &self.loc_path).children
        };
        siblings.push(loc);
        let index = siblings.len() - 1;
        self.loc_path.push(index);
    }

    /// Closes the innermost `location` level.
    pub fn close_location(&mut self) {
        self.loc_path.pop();
    }

    /// Opens a new `upstream` block.
    pub fn open_upstream(&mut self, ups: UpstreamRaw) {
        self.http.upstreams.push(ups);
        self.upstream = Some(self.http.upstreams.len() - 1);
    }

    /// Closes the current `upstream` block.
    pub fn close_upstream(&mut self) {
        self.upstream = None;
    }

    /// Declares (or finds) an indexed variable. `kind` of an existing
    /// variable is kept: `set` may assign a map's output, as in nginx.
    pub fn declare(&mut self, name: &str, kind: IndexedKind) -> usize {
        if let Some(i) = self.indexed.iter().position(|v| v.name == name) {
            return i;
        }
        self.indexed.push(IndexedVar {
            name: name.to_string(),
            kind,
        });
        self.indexed.len() - 1
    }

    /// Compiles a regex; named groups become indexed variables.
    pub fn regex(
        &mut self,
        source: &str,
        caseless: bool,
        span: &Span,
    ) -> Result<Arc<CompiledRegex>> {
        let regex = regex::bytes::RegexBuilder::new(source)
            .case_insensitive(caseless)
            .build()
            .map_err(|e| {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("invalid").trim();
                ConfigError::at(span, format!("\"{source}\" is not a valid regex: {last}"))
            })?;
        let mut named = Vec::new();
        for (i, name) in regex.capture_names().enumerate() {
            if let Some(name) = name {
                let slot = self.declare(name, IndexedKind::Assigned);
                named.push((i, slot));
            }
        }
        Ok(Arc::new(CompiledRegex {
            regex,
            source: source.to_string(),
            named,
        }))
    }

    /// Resolves `host[:port]`; see [`resolve_noting`].
    pub fn resolve(
        &mut self,
        target: &str,
        default_port: u16,
        allow_port_zero: bool,
        span: &Span,
        error: impl Fn(&str) -> String,
    ) -> Result<Vec<SocketAddr>> {
        resolve_noting(
            self.mode,
            &mut self.notes,
            (target, default_port, allow_port_zero),
            span,
            error,
        )
    }

    /// Records a no-op with a warning (used for directives that only tune
    /// nginx internals).
    pub fn warn(&mut self, span: &Span, message: impl Into<String>) {
        self.warnings.push(ConfigError::at(span, message));
    }
}

/// Resolves `host[:port]` (with its default port, and whether port 0 is
/// allowed) as [`resolve_addr`] does; `error` words the failure. In a lint
/// mode a name that does not resolve on this machine is noted and stands
/// for `0.0.0.0:port`, so the rest of the configuration can still be
/// checked.
pub fn resolve_noting(
    mode: Mode,
    notes: &mut Vec<Note>,
    (target, default_port, allow_port_zero): (&str, u16, bool),
    span: &Span,
    error: impl Fn(&str) -> String,
) -> Result<Vec<SocketAddr>> {
    match resolve_addr(target, default_port, allow_port_zero) {
        Ok(addrs) => Ok(addrs),
        Err(why) if mode.lint() && !why.contains("invalid port") => {
            let port = split_host_port(target, default_port).map_or(default_port, |(_, p)| p);
            notes.push(Note {
                kind: NoteKind::Unresolved,
                span: span.clone(),
                message: error(&why),
            });
            Ok(vec![SocketAddr::from(([0, 0, 0, 0], port))])
        }
        Err(why) => Err(ConfigError::at(span, error(&why))),
    }
}

fn location_at<'a>(mut locs: &'a mut Vec<LocationRaw>, path: &[usize]) -> &'a mut LocationRaw {
    let (last, init) = path.split_last().expect("empty location path");
    for &i in init {
        locs = &mut locs[i].children;
    }
    &mut locs[*last]
}

/// Inherits every unset field of `child` from `parent`.
pub fn merge(child: &mut LocRaw, parent: &LocRaw) {
    for (name, spans) in &parent.origins {
        child
            .origins
            .entry(name.clone())
            .or_insert_with(|| spans.clone());
    }
    macro_rules! inherit {
        ($($field:ident),* $(,)?) => {
            $( if child.$field.is_none() { child.$field = parent.$field.clone(); } )*
        };
    }
    inherit!(
        http_version,
        set_headers,
        hide_headers,
        pass_headers,
        pass_request_headers,
        pass_request_body,
        set_body,
        read_timeout,
        send_timeout_upstream,
        connect_timeout,
        buffering,
        ignore_headers,
        request_buffering,
        buffer_size,
        buffers,
        next_upstream,
        next_upstream_tries,
        next_upstream_timeout,
        intercept_errors,
        ignore_client_abort,
        redirects,
        ssl_verify,
        ssl_trusted_certificate,
        ssl_name,
        ssl_server_name,
        ssl_verify_depth,
        ssl_session_reuse,
        ssl_certificate,
        ssl_certificate_key,
        send_timeout,
        keepalive_timeout,
        keepalive_requests,
        client_max_body_size,
        client_body_timeout,
        client_body_buffer_size,
        client_body_temp_path,
        client_body_in_file_only,
        client_body_in_single_buffer,
        absolute_redirect,
        server_name_in_redirect,
        port_in_redirect,
        client_header_timeout,
        client_header_buffer_size,
        large_client_header_buffers,
        underscores_in_headers,
        ignore_invalid_headers,
        http2,
        http2_max_concurrent_streams,
        http2_body_preread_size,
        http2_chunk_size,
        http2_websocket,
        websocket_ping_interval,
        websocket_pong_timeout,
        websocket_max_message_size,
        websocket_max_frame_size,
        websocket_message_rate,
        websocket_allowed_origins,
        websocket_drain_window,
        access_log,
        open_log_file_cache,
        error_log,
        add_headers,
        add_trailers,
        expires,
        etag,
        if_modified_since,
        max_ranges,
        force_ranges,
        chunked_transfer_encoding,
        charset,
        source_charset,
        override_charset,
        charset_types,
        root,
        index,
        default_type,
        types,
        gzip,
        access,
        realip_from,
        realip_header,
        realip_recursive,
        gzip_types,
        gzip_comp_level,
        gzip_min_length,
        gzip_http_version,
        gzip_proxied,
        gzip_vary,
        gzip_disable,
        limit_conn,
        limit_conn_status,
        limit_conn_log_level,
        limit_req,
        limit_req_status,
        limit_req_log_level,
        limit_req_dry_run,
        log_not_found,
        server_tokens,
        error_pages,
        recursive_error_pages,
        unused_templates,
        limit_rate,
        limit_rate_after,
        ssl_certificates,
        ssl_certificate_keys,
        ssl_protocols,
        ssl_ciphers,
        ssl_on,
        ssl_verify_client,
        ssl_client_certificate,
        ssl_client_trusted_certificate,
        ssl_client_verify_depth,
        ssl_stapling,
        ssl_stapling_file,
        satisfy_any,
        resolver,
        resolver_timeout,
        auth_basic,
        auth_basic_user_file,
        auth_delay,
        auth_request,
        auth_request_set,
    );
}
