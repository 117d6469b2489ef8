//! The validated, typed configuration: what the server runs.
//!
//! Everything here is resolved: inheritance is merged, defaults applied,
//! variable names bound, upstream names looked up, addresses parsed. The
//! serving code never sees the syntax tree and never needs a default.

pub mod access;
pub mod filters;
pub mod geo;
pub mod gzip;
pub mod limits;
pub mod log;
pub mod pattern;
pub mod proxy;
pub mod rewrite;
pub mod split_clients;
pub mod upstream;
pub mod websocket;

pub use access::*;
pub use filters::*;
pub use geo::*;
pub use gzip::*;
pub use limits::*;
pub use log::*;
pub use pattern::*;
pub use proxy::*;
pub use rewrite::*;
pub use split_clients::*;
pub use upstream::*;
pub use websocket::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};

use super::ast::SourceFile;
use super::error::{ConfigError, Span};
use super::note::Note;
use super::template::Template;
use crate::log::{ErrorLogTarget, Level};

/// Where each directive in effect at a level was written, by name (several
/// spans for directives that repeat, like `proxy_set_header`).
pub type Origins = HashMap<String, Vec<Span>>;

/// A loaded configuration.
#[derive(Debug)]
pub struct Config {
    /// Process-level settings (main and `events` contexts).
    pub main: Main,
    /// The `http` block, if any.
    pub http: Option<Arc<Http>>,
    /// Every file read, in order (for `-T`).
    pub files: Vec<SourceFile>,
    /// Non-fatal findings (directives accepted as no-ops, and the like).
    pub warnings: Vec<ConfigError>,
    /// What a lint-mode load noted instead of failing (always empty when
    /// loaded to serve).
    pub notes: Vec<Note>,
    /// The prefix (`-p`) that relative paths were resolved against.
    pub prefix: PathBuf,
    /// The main configuration file.
    pub conf_file: PathBuf,
}

/// Main and `events` context settings.
#[derive(Debug, Clone)]
pub struct Main {
    /// `daemon`: detach from the terminal after start-up.
    pub daemon: bool,
    /// `pid`: where the process id is written once listeners are bound.
    pub pid: PathBuf,
    /// `error_log` targets of the main context.
    pub error_log: Vec<ErrorLogTarget>,
    /// `worker_processes`: threads of the runtime (nginx's workers are
    /// processes; ours are threads sharing one process and one config).
    pub worker_processes: usize,
    /// `worker_connections`: the most connections (client and upstream
    /// together, as nginx counts) one worker holds; we apply
    /// `worker_processes * worker_connections` to accepted client
    /// connections so that a flood cannot exhaust file descriptors.
    pub worker_connections: usize,
    /// `worker_rlimit_nofile`: RLIMIT_NOFILE to set at start-up.
    pub worker_rlimit_nofile: Option<u64>,
    /// `worker_shutdown_timeout`: how long a graceful stop waits for open
    /// connections (upgraded ones included) before closing them.
    pub worker_shutdown_timeout: Option<Duration>,
    /// `user`: account to switch to after binding, when started as root.
    pub user: Option<(String, Option<String>)>,
    /// Whether `error_log` was given in the main context (else `-e` or the
    /// default applies).
    pub error_log_explicit: bool,
    /// Whether the pid file or error log use their default place under
    /// `logs/` (whose directory is then created if missing).
    pub default_paths: bool,
    /// Where each main- and events-level directive was written.
    pub origins: Origins,
}

/// The `http` block.
#[derive(Debug)]
pub struct Http {
    /// Settings at http level, as servers inherit them.
    pub conf: Arc<LocConf>,
    /// Every `server`, in configuration order.
    pub servers: Vec<Arc<Server>>,
    /// Listening sockets, each with the servers that share it.
    pub listens: Vec<Arc<ListenGroup>>,
    /// Every upstream group, named or implicit (from `proxy_pass host:port`).
    pub upstreams: Vec<Arc<Upstream>>,
    /// `map` blocks; `Var::Indexed` slots of kind `Map` point here.
    pub maps: Vec<MapDef>,
    /// `geo` blocks; `Var::Indexed` slots of kind `Geo` point here.
    pub geos: Vec<GeoDef>,
    /// `split_clients` blocks; `Var::Indexed` slots of kind `Split` point
    /// here.
    pub splits: Vec<SplitDef>,
    /// Indexed variables: map outputs, `set` targets, named captures.
    pub indexed: Vec<IndexedVar>,
    /// `limit_conn_zone` definitions.
    pub conn_zones: Vec<Arc<ConnZoneDef>>,
    /// Every `resolver`, by [`ResolverConf::index`].
    pub resolvers: Vec<Arc<ResolverConf>>,
    /// Whether any access log is written anywhere (to skip log work).
    pub any_access_log: bool,
}

/// An indexed variable's name and where its value comes from.
#[derive(Debug, Clone)]
pub struct IndexedVar {
    /// The variable name without `$`.
    pub name: String,
    /// How it gets its value.
    pub kind: IndexedKind,
}

/// The source of an indexed variable's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexedKind {
    /// Computed on first use by `map` number N.
    Map(usize),
    /// Looked up on first use by `geo` number N.
    Geo(usize),
    /// Computed on first use by `split_clients` number N.
    Split(usize),
    /// Assigned by `set`, or by a named capture of a regex match.
    Assigned,
}

/// A `map` block.
#[derive(Debug)]
pub struct MapDef {
    /// The value being mapped.
    pub source: Template,
    /// `hostnames`: keys may be `*.example.com`, `example.*`, `.example.com`.
    pub hostnames: bool,
    /// Exact keys (lowercased: nginx compares map keys case-insensitively).
    pub exact: HashMap<Vec<u8>, Template>,
    /// Leading wildcards (`*.example.com` stored as `example.com`'s labels
    /// reversed), longest match wins.
    pub wildcard_head: Vec<(Vec<u8>, Template)>,
    /// Trailing wildcards (`www.example.*` stored as `www.example.`).
    pub wildcard_tail: Vec<(Vec<u8>, Template)>,
    /// Regex keys, tried in configuration order after exact and wildcards.
    pub regexes: Vec<(Arc<CompiledRegex>, Template)>,
    /// `default` value (empty when absent).
    pub default: Template,
    /// `volatile`: not cached per request.
    pub volatile: bool,
    /// Where the `map` block starts.
    pub span: Span,
    /// The variable it defines, without `$`.
    pub output: String,
}

/// What a `listen` names: a TCP address, or a unix-domain socket
/// (`listen unix:PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `ADDR:PORT`.
    Inet(SocketAddr),
    /// `unix:PATH` (the path as written, relative to the working
    /// directory, as nginx takes it).
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP address, unless this is a unix-domain socket.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Inet(a) => Some(*a),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Inet(a) => a.fmt(f),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Sockets bound by one `listen` address, and the servers behind it.
#[derive(Debug)]
pub struct ListenGroup {
    /// Address to bind.
    pub addr: ListenAddr,
    /// Options merged from every `listen` on this address.
    pub opts: ListenOpts,
    /// Index into `servers` of the default server.
    pub default_server: usize,
    /// Servers on this address, configuration order.
    pub servers: Vec<Arc<Server>>,
    /// Name lookup over `servers`.
    pub names: ServerNameIndex,
}

/// `client_body_in_file_only`: whether a body read before proxying always
/// goes to a named file (`$request_body_file`), and whether that file
/// stays after the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyInFile {
    /// Memory up to `client_body_buffer_size`, a file beyond (removed at
    /// the end of the request).
    #[default]
    Off,
    /// Always a file, left in place.
    On,
    /// Always a file, removed at the end of the request.
    Clean,
}

/// A built-in content handler of a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentHandler {
    /// `stub_status`: nginx's basic status page.
    StubStatus,
    /// `metrics`: Prometheus metrics.
    Metrics,
    /// `status_page`: the live HTML status page and its events.
    StatusPage,
}

/// How the `Location` of a redirect Switchyard makes is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectStyle {
    /// `absolute_redirect` (default on): `scheme://host:port` before the
    /// path.
    pub absolute: bool,
    /// `server_name_in_redirect` (default off): the server's first name
    /// rather than the request's host.
    pub server_name: bool,
    /// `port_in_redirect` (default on): the port, unless the scheme's own.
    pub port: bool,
}

/// HTTP/2 settings of a server (the chunk size is per location).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Conf {
    /// `http2 on`: the server speaks HTTP/2 (`listen ... http2` turns it
    /// on for every server of an address).
    pub enable: bool,
    /// `http2_max_concurrent_streams` (default 128).
    pub max_concurrent_streams: u32,
    /// `http2_body_preread_size`: each stream's initial receive window
    /// (default 64k).
    pub preread_size: u32,
    /// `http2_chunk_size`: the largest DATA frame sent (default 8k).
    pub chunk_size: usize,
    /// `http2_websocket`: RFC 8441 extended CONNECT (default on).
    pub websocket: bool,
}

/// Socket and protocol options of a listening address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenOpts {
    /// TLS on this socket.
    pub ssl: bool,
    /// HTTP/2 on this socket (via ALPN when TLS).
    pub http2: bool,
    /// `backlog=N` (default 511, like nginx on Linux).
    pub backlog: Option<i32>,
    /// `reuseport`.
    pub reuseport: bool,
    /// `rcvbuf=`.
    pub rcvbuf: Option<usize>,
    /// `sndbuf=`.
    pub sndbuf: Option<usize>,
    /// `ipv6only=on|off` (default on).
    pub ipv6only: Option<bool>,
    /// `so_keepalive=on`.
    pub so_keepalive: bool,
}

/// Name-based server selection for one listening address, in nginx's
/// order: exact name, longest leading wildcard, longest trailing wildcard,
/// first matching regex.
#[derive(Debug, Default)]
pub struct ServerNameIndex {
    /// Exact names (lowercase) to server index.
    pub exact: HashMap<String, usize>,
    /// `*.example.com` and `.example.com`: (suffix incl. leading dot, index).
    pub head: Vec<(String, usize)>,
    /// `.example.com` also matches `example.com` itself.
    pub tail: Vec<(String, usize)>,
    /// Regex names in order.
    pub regex: Vec<(Arc<CompiledRegex>, usize)>,
}

/// A `server` block.
#[derive(Debug)]
pub struct Server {
    /// Index in `Http::servers`.
    pub index: usize,
    /// `server_name` entries as written (first is `$server_name`).
    pub names: Vec<String>,
    /// Regex server names (`~^www\.(.+)$`), compiled.
    pub name_regexes: Vec<Arc<CompiledRegex>>,
    /// Settings at server level, used when no location matches.
    pub conf: Arc<LocConf>,
    /// Server-level `set`/`return`/`rewrite`, run before location lookup.
    pub rewrite: Vec<RewriteOp>,
    /// The location tree.
    pub locations: Locations,
    /// TLS settings for `listen ... ssl` sockets.
    pub tls: Option<Arc<TlsServer>>,
    /// Where it was defined.
    pub span: Span,
}

impl Server {
    /// `$server_name`: the first name, or empty.
    pub fn primary_name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or("")
    }
}

/// TLS termination settings of a server.
#[derive(Debug)]
pub struct TlsServer {
    /// Certificate chains with their keys (`ssl_certificate` /
    /// `ssl_certificate_key`, paired in order).
    pub certs: Vec<(PathBuf, PathBuf)>,
    /// `ssl_protocols`.
    pub protocols: Vec<String>,
    /// `ssl_prefer_server_ciphers`, `ssl_ciphers`: accepted, rustls chooses.
    pub ciphers: Option<String>,
    /// Where `ssl_certificate` was given, for errors.
    pub span: Span,
    /// `ssl_verify_client`.
    pub verify_client: crate::tls::server::VerifyClient,
    /// `ssl_client_certificate`.
    pub client_certificate: Option<PathBuf>,
    /// `ssl_trusted_certificate`.
    pub trusted_certificate: Option<PathBuf>,
    /// `ssl_verify_depth`.
    pub verify_depth: u32,
    /// `ssl_stapling_file`, when `ssl_stapling` is on.
    pub stapling_file: Option<PathBuf>,
}

/// Locations at one nesting level.
#[derive(Debug, Default)]
pub struct Locations {
    /// Prefix, `^~` and `=` locations, longest path first.
    pub prefix: Vec<Arc<Location>>,
    /// Regex locations, configuration order.
    pub regex: Vec<Arc<Location>>,
    /// Named `@` locations (only at server level).
    pub named: HashMap<String, Arc<Location>>,
}

/// How a location matches a URI.
#[derive(Debug)]
pub enum LocationMatch {
    /// `location /path`
    Prefix(String),
    /// `location ^~ /path`: a prefix that stops the regex search.
    PrefixNoRegex(String),
    /// `location = /path`
    Exact(String),
    /// `location ~ re` or `~* re`.
    Regex(Arc<CompiledRegex>),
    /// `location @name`
    Named(String),
}

impl LocationMatch {
    /// The location as written in the configuration (`/ws`, `= /ws`,
    /// `~ ^/ws/`, `@ws`): its name in metrics and on reload.
    pub fn label(&self) -> String {
        match self {
            LocationMatch::Prefix(p) => p.clone(),
            LocationMatch::PrefixNoRegex(p) => format!("^~ {p}"),
            LocationMatch::Exact(p) => format!("= {p}"),
            LocationMatch::Regex(r) => format!("~ {}", r.source),
            LocationMatch::Named(n) => format!("@{n}"),
        }
    }
}

/// Which server `server` is, for matching it with a server of another
/// configuration on reload: the addresses it listens on and its names. The
/// first name alone is not enough: the same name on two ports (`listen 80`
/// beside `listen 443 ssl`) is two servers, and so are two unnamed ones.
pub fn server_identity(http: &Http, server: &Server) -> String {
    let mut addrs: Vec<String> = http
        .listens
        .iter()
        .filter(|g| g.servers.iter().any(|s| s.index == server.index))
        .map(|g| g.addr.to_string())
        .collect();
    addrs.sort();
    format!("{} | {}", addrs.join(" "), server.names.join(" "))
}

/// Where a location's requests go, for telling whether a reload changed
/// it: the `proxy_pass` target and its group's servers (not where they
/// were written).
pub fn route_fingerprint(conf: &LocConf) -> String {
    match &conf.proxy_pass {
        Some(ProxyPass::Static(t)) => format!(
            "{} {} {:?} {:?} {:?} {:?}",
            if t.tls { "https" } else { "http" },
            t.proxy_host,
            t.uri,
            t.upstream.peers,
            t.upstream.method,
            t.upstream.resolved
        ),
        Some(ProxyPass::Dynamic { url, .. }) => url.source.clone(),
        None => String::new(),
    }
}

/// The location labelled `label` (see [`LocationMatch::label`]) in
/// `locations` or below.
pub fn find_location<'a>(locations: &'a Locations, label: &str) -> Option<&'a Arc<Location>> {
    locations
        .prefix
        .iter()
        .chain(&locations.regex)
        .chain(locations.named.values())
        .find_map(|l| {
            if l.matcher.label() == label {
                Some(l)
            } else {
                find_location(&l.children, label)
            }
        })
}

/// A `location` block.
#[derive(Debug)]
pub struct Location {
    /// How it matches.
    pub matcher: LocationMatch,
    /// Merged settings.
    pub conf: Arc<LocConf>,
    /// Location-level `set`/`return`/`rewrite`.
    pub rewrite: Vec<RewriteOp>,
    /// Nested locations.
    pub children: Locations,
    /// Where it was defined.
    pub span: Span,
}

impl Location {
    /// The prefix or exact path, when the location has one.
    pub fn path(&self) -> Option<&str> {
        match &self.matcher {
            LocationMatch::Prefix(p)
            | LocationMatch::PrefixNoRegex(p)
            | LocationMatch::Exact(p) => Some(p),
            _ => None,
        }
    }
}

/// A rewrite-phase operation (`ngx_http_rewrite_module`'s script).
#[derive(Debug, Clone)]
pub enum RewriteOp {
    /// `set $var value;`
    Set {
        /// Indexed slot.
        slot: usize,
        /// Value.
        value: Template,
    },
    /// `set $limit_rate value;`: a size, 0 when invalid.
    SetLimitRate(Template),
    /// `set $args value;`: replaces the query string.
    SetArgs(Template),
    /// `return code [text|URL];`
    Return(Return),
    /// `if (condition) { ... }`.
    If {
        /// The condition.
        cond: Condition,
        /// The rewrite directives that run when it holds.
        ops: Vec<RewriteOp>,
        /// Inside a location, when the block holds other directives
        /// (`add_header`, `proxy_pass`, `root`, ...): the location's
        /// settings with the block's on top, which the request uses from
        /// then on (nginx's implicit location of an `if`).
        conf: IfConf,
    },
    /// `break;`: stop the rewrite script here.
    Break,
    /// `rewrite regex replacement [flag];`
    Rewrite {
        /// Matched against `$uri`.
        regex: Arc<CompiledRegex>,
        /// The new URI (or URL, for redirects).
        replacement: Template,
        /// `last`, `break`, `redirect`, `permanent`, or none.
        flag: RewriteFlag,
    },
}

/// Settings that nginx keeps per location and inherits from http and
/// server levels ("loc conf"), fully merged and defaulted.
#[derive(Debug)]
pub struct LocConf {
    /// `proxy_pass`, when this location proxies.
    pub proxy_pass: Option<ProxyPass>,
    /// `proxy_*` settings.
    pub proxy: ProxySettings,
    /// `send_timeout`: bound on each write to the client.
    pub send_timeout: Duration,
    /// `keepalive_timeout`: idle time of a client keep-alive connection.
    pub keepalive_timeout: Duration,
    /// `keepalive_requests`.
    pub keepalive_requests: u64,
    /// `client_max_body_size` (0 = unlimited); larger bodies get 413.
    pub client_max_body_size: u64,
    /// `client_body_timeout`.
    pub client_body_timeout: Duration,
    /// `client_body_buffer_size`: a buffered request body larger than this
    /// goes to a temporary file instead of memory.
    pub client_body_buffer_size: u64,
    /// `client_body_temp_path`: where those files are made (unset: the
    /// system's temporary directory).
    pub client_body_temp_path: Option<std::path::PathBuf>,
    /// `client_body_in_file_only`.
    pub client_body_in_file_only: BodyInFile,
    /// How redirects name this server.
    pub redirects: RedirectStyle,
    /// `client_header_timeout`: TLS handshake and request head.
    pub client_header_timeout: Duration,
    /// `client_header_buffer_size`: the first buffer of a request head.
    pub client_header_buffer_size: usize,
    /// `large_client_header_buffers`: number and size.
    pub large_client_header_buffers: (usize, usize),
    /// `underscores_in_headers`.
    pub underscores_in_headers: bool,
    /// `ignore_invalid_headers`.
    pub ignore_invalid_headers: bool,
    /// `http2*`: HTTP/2 on client connections.
    pub http2: Http2Conf,
    /// `websocket_*`: Switchyard's WebSocket features.
    pub websocket: WebSocketConf,
    /// `access_log` targets; empty means `off`.
    pub access_log: Arc<Vec<AccessLogTarget>>,
    /// `open_log_file_cache`, for access logs whose path holds variables.
    pub open_log_file_cache: Option<Arc<crate::log::FdCache>>,
    /// `error_log` targets (inherited from main when unset).
    pub error_log: Arc<Vec<ErrorLogTarget>>,
    /// `add_header` entries.
    pub add_headers: Arc<Vec<AddHeader>>,
    /// `add_trailer` entries (sent after the body).
    pub add_trailers: Arc<Vec<AddHeader>>,
    /// `expires`.
    pub expires: Option<Expires>,
    /// Conditional requests, ranges, `charset`, chunked framing.
    pub filters: Filters,
    /// `root` or `alias`.
    pub root: Root,
    /// `index` file names.
    pub index: Vec<Template>,
    /// `try_files`.
    pub try_files: Option<TryFiles>,
    /// `default_type`.
    pub default_type: String,
    /// `types`: lower-case file extension to MIME type; `None` when no
    /// level has a `types` block (the built-in table applies).
    pub types: Option<Arc<std::collections::HashMap<String, String>>>,
    /// `gzip` and its companions.
    pub gzip: crate::config::model::GzipConf,
    /// `allow` / `deny` rules, in order (empty: everyone).
    pub access: Arc<Vec<crate::config::model::AccessRule>>,
    /// `set_real_ip_from` and companions (`None`: the peer is the client).
    pub realip: Option<Arc<crate::config::model::RealIp>>,
    /// `limit_conn` rules.
    pub limit_conn: Arc<Vec<LimitConn>>,
    /// `limit_conn_status` (default 503).
    pub limit_conn_status: StatusCode,
    /// `limit_conn_log_level` (default error).
    pub limit_conn_log_level: Level,
    /// `limit_req` rules, in order.
    pub limit_req: Arc<Vec<LimitReq>>,
    /// `limit_req_status` (default 503).
    pub limit_req_status: StatusCode,
    /// `limit_req_log_level` (default error; delays one level lower).
    pub limit_req_log_level: Level,
    /// `limit_req_dry_run`: count and log, refuse and delay nothing.
    pub limit_req_dry_run: bool,
    /// `log_not_found`.
    pub log_not_found: bool,
    /// `server_tokens`: whether `Server` shows the version.
    pub server_tokens: bool,
    /// `error_page` rules.
    pub error_pages: Arc<Vec<ErrorPage>>,
    /// `recursive_error_pages`.
    pub recursive_error_pages: bool,
    /// `limit_rate`: response bytes per second (0 = unlimited).
    pub limit_rate: u64,
    /// `limit_rate_after`: bytes sent at full speed first.
    pub limit_rate_after: u64,
    /// `internal`: only reachable by internal redirects.
    pub internal: bool,
    /// A built-in content handler (`stub_status`).
    pub content_handler: Option<ContentHandler>,
    /// `satisfy any` (else all).
    pub satisfy_any: bool,
    /// `auth_basic` with its password file, when both are set.
    pub auth_basic: Option<Arc<AuthBasic>>,
    /// `auth_delay`.
    pub auth_delay: Duration,
    /// `auth_request` URI (`None` for none or `off`).
    pub auth_request: Option<Arc<str>>,
    /// `auth_request_set`: what is set, and the value.
    pub auth_request_set: Arc<Vec<(SetTarget, Template)>>,
    /// `resolver` for names known only at run time.
    pub resolver: Option<Arc<ResolverConf>>,
    /// `resolver_timeout`.
    pub resolver_timeout: Duration,
    /// `limit_except`: the settings for methods it does not list.
    pub limit_except: Option<Arc<LimitExcept>>,
    /// Where each directive in effect here was written (diagnostics).
    pub origins: Arc<Origins>,
}

/// The settings of an `if` block inside a location.
#[derive(Debug, Clone, Default)]
pub enum IfConf {
    /// Only rewrite directives inside: the location's settings stay.
    #[default]
    None,
    /// While loading: the index of the block's raw settings in its
    /// location.
    Pending(usize),
    /// Loaded.
    Conf(Arc<LocConf>),
}

/// `limit_except METHOD ... { }`.
#[derive(Debug)]
pub struct LimitExcept {
    /// The methods let through with the location's own settings.
    pub methods: Vec<Method>,
    /// The settings every other method gets.
    pub conf: Arc<LocConf>,
}

impl LimitExcept {
    /// Whether the block's settings apply to a request with `method`.
    pub fn applies_to(&self, method: &Method) -> bool {
        !self.methods.contains(method)
    }
}

/// `root` or `alias`.
#[derive(Debug, Clone)]
pub struct Root {
    /// The directory (may contain variables).
    pub path: Template,
    /// Whether (and how) it is an `alias`.
    pub alias: Alias,
}

/// How `alias` maps a URI, fixed by the location that declared it (nested
/// locations inherit the declaring location's prefix, as nginx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alias {
    /// `root`: the whole URI is appended.
    No,
    /// `alias` in a prefix location: this prefix of the URI is replaced.
    Prefix(String),
    /// `alias` in a regex location: the alias is the whole path.
    Regex,
}

/// `try_files file ... uri|=code`.
#[derive(Debug, Clone)]
pub struct TryFiles {
    /// Files to test; a trailing `/` tests for a directory.
    pub files: Vec<Template>,
    /// The fallback: an internal redirect URI, a named location, or a code.
    pub fallback: TryFallback,
}

/// The last argument of `try_files`.
#[derive(Debug, Clone)]
pub enum TryFallback {
    /// `=404`
    Status(u16),
    /// `@name`
    Named(String),
    /// `/index.html`, possibly with variables.
    Uri(Template),
}

/// `error_page code ... [=response] uri;`
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// Statuses it applies to.
    pub codes: Vec<u16>,
    /// What status the answer gets.
    pub overwrite: Overwrite,
    /// Target URI, or `@named` location.
    pub uri: Template,
}

/// The status of an `error_page` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// No `=`: the original error status.
    Keep,
    /// `=code`.
    Status(u16),
    /// `=` alone: whatever the page's own answer says (a proxied or named
    /// location's status).
    Response,
}

/// `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expires {
    /// `expires off` (explicit).
    Off,
    /// `expires epoch`.
    Epoch,
    /// `expires max`.
    Max,
    /// `expires [modified] [-]time`.
    After {
        /// Seconds (may be negative).
        secs: i64,
        /// Relative to the response's modification time.
        modified: bool,
    },
    /// `expires @time`: the next time this time of day comes (local time).
    Daily {
        /// Seconds since midnight.
        secs: i64,
    },
    /// `expires [modified] $value`: the value is read per request as the
    /// directive's argument would be; an invalid one adds nothing.
    Var {
        /// The argument.
        value: Template,
        /// `modified` was given.
        modified: bool,
    },
}

impl Expires {
    /// Reads an `expires` argument as nginx's `ngx_http_parse_expires`:
    /// `epoch`, `max`, `off` (not after `modified`), `@time` (not after
    /// `modified`, less than a day), `[+|-]time`. The error is nginx's
    /// wording.
    pub fn parse(value: &str, modified: bool) -> Result<Expires, &'static str> {
        if !modified {
            match value {
                "epoch" => return Ok(Expires::Epoch),
                "max" => return Ok(Expires::Max),
                "off" => return Ok(Expires::Off),
                _ => {}
            }
        }
        let (daily, minus, time) = if let Some(t) = value.strip_prefix('@') {
            if modified {
                return Err("daily time cannot be used with \"modified\" parameter");
            }
            (true, false, t)
        } else if let Some(t) = value.strip_prefix('+') {
            (false, false, t)
        } else if let Some(t) = value.strip_prefix('-') {
            (false, true, t)
        } else {
            (false, false, value)
        };
        let secs = super::values::parse_seconds(time).ok_or("invalid value")?;
        if daily {
            if secs > 24 * 60 * 60 {
                return Err("daily time value must be less than 24 hours");
            }
            return Ok(Expires::Daily { secs });
        }
        Ok(Expires::After {
            secs: if minus { -secs } else { secs },
            modified,
        })
    }
}

/// An `add_header` or `add_trailer` entry.
#[derive(Debug, Clone)]
pub struct AddHeader {
    /// Header name (lowercase, for comparisons).
    pub name: HeaderName,
    /// The name as configured, written on the wire.
    pub display: String,
    /// Value (an empty value adds nothing).
    pub value: Template,
    /// `always`: add to every status, not just 2xx/3xx.
    pub always: bool,
}
