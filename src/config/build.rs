//! From statements to the model: the walker that applies the directive
//! table, the per-level raw settings it fills, and the finishing pass that
//! merges inheritance, applies defaults and binds names.
//!
//! Raw settings use `Option` for "not set at this level" (nginx's UNSET
//! sentinel): a setter that finds `Some` reports "is duplicate", and merging
//! is `child.or(parent)`, with the default applied once at the end.

#![allow(missing_docs)] // raw mirrors of the documented fields in `model`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::ast::Statement;
use super::directives::{self, Args, Ctx};
use super::error::{ConfigError, Result, Span};
use super::model::*;
use super::template::{Piece, Template};
use super::var::{self, Var};
use crate::log::{ErrorLogTarget, Level};

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
    pub request_buffering: Option<bool>,
    pub buffer_size: Option<usize>,
    pub buffers: Option<(usize, usize)>,
    pub next_upstream: Option<NextUpstream>,
    pub next_upstream_tries: Option<usize>,
    pub next_upstream_timeout: Option<Duration>,
    pub intercept_errors: Option<bool>,
    pub ignore_client_abort: Option<bool>,
    pub redirect: Option<bool>,
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
    pub client_header_timeout: Option<Duration>,
    pub access_log: Option<Vec<AccessLogRaw>>,
    pub error_log: Option<Vec<ErrorLogTarget>>,
    pub add_headers: Option<Vec<AddHeader>>,
    pub expires: Option<Expires>,
    pub root: Option<(Root, Span)>,
    pub index: Option<Vec<Template>>,
    pub try_files: Option<TryFiles>,
    pub default_type: Option<String>,
    pub types: Option<Arc<HashMap<String, String>>>,
    pub gzip: Option<bool>,
    pub access: Option<Vec<crate::config::AccessRule>>,
    pub realip_from: Option<Vec<crate::config::Cidr>>,
    pub realip_header: Option<crate::config::RealIpHeader>,
    pub realip_recursive: Option<bool>,
    pub gzip_types: Option<Option<Vec<String>>>,
    pub gzip_comp_level: Option<u32>,
    pub gzip_min_length: Option<u64>,
    pub gzip_http_version: Option<http::Version>,
    pub gzip_proxied: Option<u16>,
    pub gzip_vary: Option<bool>,
    pub gzip_disable: Option<Vec<crate::config::Disable>>,
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
    pub limit_rate: Option<u64>,
    pub limit_rate_after: Option<u64>,
    pub internal: bool,
}

/// An `access_log` before its format name is looked up.
#[derive(Debug, Clone)]
pub struct AccessLogRaw {
    pub path: PathBuf,
    pub format: String,
    pub condition: Option<Template>,
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
}

#[derive(Debug)]
pub struct ListenRaw {
    pub addrs: Vec<SocketAddr>,
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
    pub certs: Vec<(PathBuf, Span)>,
    pub keys: Vec<(PathBuf, Span)>,
    pub ssl_protocols: Option<Vec<String>>,
    pub ssl_ciphers: Option<String>,
    pub span: Option<Span>,
}

#[derive(Debug)]
pub struct UpstreamRaw {
    pub name: String,
    pub peers: Vec<Peer>,
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
    pub log_formats: HashMap<String, (Template, LogEscape, Span)>,
    pub conn_zones: Vec<(String, Template, u64, Span)>,
    /// `limit_req_zone`: name, key, size, rate (thousandths of a request
    /// per second), where.
    pub req_zones: Vec<(String, Template, u64, u64, Span)>,
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
}

/// The walker: applies directives to raw settings, tracking where it is.
pub struct Builder {
    pub main: MainRaw,
    pub http: HttpRaw,
    /// Directory relative paths (pid, logs, root) resolve against.
    pub prefix: PathBuf,
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
    /// Bodies of the `if` blocks being read (innermost last).
    pub if_stack: Vec<Vec<RewriteOp>>,
    /// Non-fatal findings.
    pub warnings: Vec<ConfigError>,
}

impl Builder {
    /// A walker resolving relative paths against `prefix`.
    pub fn new(prefix: PathBuf) -> Builder {
        Builder {
            main: MainRaw::default(),
            http: HttpRaw::default(),
            prefix,
            ctx: Ctx::MAIN,
            server: None,
            loc_path: Vec::new(),
            upstream: None,
            indexed: Vec::new(),
            if_stack: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Applies statements in context `ctx` (nginx's `ngx_conf_handler`
    /// order: name, context, terminator, arity, then the handler).
    pub fn walk(&mut self, stmts: &[Statement], ctx: Ctx) -> Result<()> {
        let saved = self.ctx;
        self.ctx = ctx;
        for st in stmts {
            self.apply(st)?;
        }
        self.ctx = saved;
        Ok(())
    }

    fn apply(&mut self, st: &Statement) -> Result<()> {
        let Some(d) = directives::lookup_in(&st.name, self.ctx) else {
            let why = directives::NOT_IMPLEMENTED
                .iter()
                .find(|(n, _)| *n == st.name)
                .map(|(_, module)| format!(" ({module} is not implemented by switchyard)"))
                .unwrap_or_default();
            return Err(ConfigError::at(
                &st.span,
                format!("unknown directive \"{}\"{why}", st.name),
            ));
        };
        if self.ctx == Ctx::IF && !d.contexts.contains(Ctx::IF) {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "\"{}\" directive is not supported inside \"if\" by switchyard (only return, rewrite, set, break and if)",
                    st.name
                ),
            ));
        }
        if !d.contexts.contains(self.ctx) {
            return Err(ConfigError::at(
                &st.span,
                format!("\"{}\" directive is not allowed here", st.name),
            ));
        }
        if !d.block && st.block.is_some() {
            return Err(ConfigError::at(
                &st.span,
                format!("directive \"{}\" is not terminated by \";\"", st.name),
            ));
        }
        if d.block && st.block.is_none() {
            return Err(ConfigError::at(
                &st.span,
                format!("directive \"{}\" has no opening \"{{\"", st.name),
            ));
        }
        if !d.args.accepts(st.args.len()) {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid number of arguments in \"{}\" directive", st.name),
            ));
        }
        if let Args::Flag = d.args
            && super::values::parse_flag(&st.args[0].value).is_none()
        {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                    st.args[0].value, st.name
                ),
            ));
        }
        if d.support == directives::Support::Ignored {
            self.warnings.push(ConfigError::at(
                &st.span,
                format!(
                    "\"{}\" directive is accepted but has no effect in switchyard",
                    st.name
                ),
            ));
        }
        (d.set)(self, st)
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

    /// The raw settings of the innermost http/server/location level.
    pub fn loc(&mut self) -> &mut LocRaw {
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
            return self.if_stack.last_mut().expect("checked non-empty");
        }
        if self.loc_path.is_empty() {
            &mut self.server().rewrite
        } else {
            &mut self.location().rewrite
        }
    }

    /// Runs `body` inside a new server block.
    pub fn enter_server(&mut self, span: &Span, body: &[Statement]) -> Result<()> {
        self.http.servers.push(ServerRaw {
            span: Some(span.clone()),
            ..ServerRaw::default()
        });
        self.server = Some(self.http.servers.len() - 1);
        let r = self.walk(body, Ctx::SERVER);
        self.server = None;
        r
    }

    /// Runs `body` inside a new location block.
    pub fn enter_location(&mut self, loc: LocationRaw, body: &[Statement]) -> Result<()> {
        let s = self.server.expect("location outside server");
        let siblings = if self.loc_path.is_empty() {
            &mut self.http.servers[s].locations
        } else {
            &mut location_at(&mut self.http.servers[s].locations, &self.loc_path).children
        };
        siblings.push(loc);
        let index = siblings.len() - 1;
        self.loc_path.push(index);
        let r = self.walk(body, Ctx::LOCATION);
        self.loc_path.pop();
        r
    }

    /// Runs `body` inside a new upstream block.
    pub fn enter_upstream(&mut self, ups: UpstreamRaw, body: &[Statement]) -> Result<()> {
        self.http.upstreams.push(ups);
        self.upstream = Some(self.http.upstreams.len() - 1);
        let r = self.walk(body, Ctx::UPSTREAM);
        self.upstream = None;
        r
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

    /// Records a no-op with a warning (used for directives that only tune
    /// nginx internals).
    pub fn warn(&mut self, span: &Span, message: impl Into<String>) {
        self.warnings.push(ConfigError::at(span, message));
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
fn merge(child: &mut LocRaw, parent: &LocRaw) {
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
        request_buffering,
        buffer_size,
        buffers,
        next_upstream,
        next_upstream_tries,
        next_upstream_timeout,
        intercept_errors,
        ignore_client_abort,
        redirect,
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
        client_header_timeout,
        access_log,
        error_log,
        add_headers,
        expires,
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
        limit_rate,
        limit_rate_after,
    );
}

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

/// Binds variable names and looks things up while finishing.
pub struct Finisher<'a> {
    indexed: &'a [IndexedVar],
    upstreams: &'a mut Vec<Arc<Upstream>>,
    upstream_raw: &'a [UpstreamRaw],
    log_formats: HashMap<String, Arc<LogFormat>>,
    zones: HashMap<String, Arc<ConnZoneDef>>,
    req_zones: HashMap<String, Arc<ReqZoneDef>>,
    main_error_log: Vec<ErrorLogTarget>,
    prefix: PathBuf,
}

impl Finisher<'_> {
    /// Replaces every `Piece::Name` with a bound `Piece::Var`.
    pub fn bind(&self, t: &mut Template, span: &Span) -> Result<()> {
        for piece in &mut t.pieces {
            if let Piece::Name(name) = piece {
                let var = self
                    .lookup_var(name)
                    .ok_or_else(|| ConfigError::at(span, format!("unknown \"{name}\" variable")))?;
                *piece = Piece::Var(var);
            }
        }
        Ok(())
    }

    fn lookup_var(&self, name: &str) -> Option<Var> {
        if let Some(i) = self.indexed.iter().position(|v| v.name == name) {
            return Some(Var::Indexed(i));
        }
        var::resolve_builtin(name)
    }

    fn finish_loc(
        &mut self,
        raw: &LocRaw,
        loc_prefix: Option<&str>,
        regex_loc: bool,
    ) -> Result<LocConf> {
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
                self.bind(&mut t, &Span::command_line())?;
                Some(t)
            }
            None => None,
        };
        let set_body = match &raw.set_body {
            Some(t) => {
                let mut t = t.clone();
                self.bind(&mut t, &Span::command_line())?;
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
        if may_use_tls {
            let span = raw.proxy_pass.as_ref().map(|(_, s)| s.clone());
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
            redirect: raw.redirect.unwrap_or(true),
            ssl,
        };

        let mut access_log = Vec::new();
        for a in raw.access_log.clone().unwrap_or_else(|| {
            vec![AccessLogRaw {
                path: self.prefix.join("logs/access.log"),
                format: "combined".into(),
                condition: None,
                span: Span::command_line(),
            }]
        }) {
            let format = self.log_formats.get(&a.format).cloned().ok_or_else(|| {
                ConfigError::at(&a.span, format!("unknown log format \"{}\"", a.format))
            })?;
            let condition = match a.condition {
                Some(mut t) => {
                    self.bind(&mut t, &a.span)?;
                    Some(t)
                }
                None => None,
            };
            access_log.push(AccessLogTarget {
                path: a.path,
                format,
                condition,
            });
        }

        let mut add_headers = raw.add_headers.clone().unwrap_or_default();
        for h in &mut add_headers {
            self.bind(&mut h.value, &Span::command_line())?;
        }
        let mut root = raw
            .root
            .clone()
            .map(|(r, s)| (r, Some(s)))
            .unwrap_or_else(|| {
                (
                    Root {
                        path: Template::literal(&self.prefix.join("html").to_string_lossy()),
                        alias: Alias::No,
                    },
                    None,
                )
            });
        self.bind(
            &mut root.0.path,
            root.1.as_ref().unwrap_or(&Span::command_line()),
        )?;
        let mut index = raw
            .index
            .clone()
            .unwrap_or_else(|| vec![Template::literal("index.html")]);
        for t in &mut index {
            self.bind(t, &Span::command_line())?;
        }
        let mut try_files = raw.try_files.clone();
        if let Some(tf) = &mut try_files {
            for t in &mut tf.files {
                self.bind(t, &Span::command_line())?;
            }
            if let TryFallback::Uri(t) = &mut tf.fallback {
                self.bind(t, &Span::command_line())?;
            }
        }
        let mut limit_conn = Vec::new();
        for (zone, max, span) in raw.limit_conn.clone().unwrap_or_default() {
            let zone = self.zones.get(&zone).cloned().ok_or_else(|| {
                ConfigError::at(&span, format!("unknown limit_conn_zone \"{zone}\""))
            })?;
            limit_conn.push(LimitConn { zone, max });
        }
        let mut limit_req = Vec::new();
        for (zone, burst, delay, span) in raw.limit_req.clone().unwrap_or_default() {
            let zone = self.req_zones.get(&zone).cloned().ok_or_else(|| {
                ConfigError::at(&span, format!("unknown limit_req_zone \"{zone}\""))
            })?;
            limit_req.push(LimitReq { zone, burst, delay });
        }
        let mut error_pages = raw.error_pages.clone().unwrap_or_default();
        for p in &mut error_pages {
            self.bind(&mut p.uri, &Span::command_line())?;
        }

        Ok(LocConf {
            proxy_pass,
            proxy,
            send_timeout: raw.send_timeout.unwrap_or(Duration::from_secs(60)),
            keepalive_timeout: raw.keepalive_timeout.unwrap_or(Duration::from_secs(75)),
            keepalive_requests: raw.keepalive_requests.unwrap_or(1000),
            client_max_body_size: raw.client_max_body_size.unwrap_or(1024 * 1024),
            client_body_timeout: raw.client_body_timeout.unwrap_or(Duration::from_secs(60)),
            client_body_buffer_size: raw.client_body_buffer_size.unwrap_or(16 * 1024),
            client_body_temp_path: raw.client_body_temp_path.clone(),
            client_header_timeout: raw.client_header_timeout.unwrap_or(Duration::from_secs(60)),
            access_log: Arc::new(access_log),
            error_log: Arc::new(
                raw.error_log
                    .clone()
                    .unwrap_or_else(|| self.main_error_log.clone()),
            ),
            add_headers: Arc::new(add_headers),
            expires: raw.expires,
            root: root.0,
            index,
            try_files,
            default_type: raw
                .default_type
                .clone()
                .unwrap_or_else(|| "text/plain".into()),
            types: raw.types.clone(),
            access: Arc::new(raw.access.clone().unwrap_or_default()),
            realip: raw.realip_from.as_ref().map(|from| {
                Arc::new(crate::config::RealIp {
                    from: from.clone(),
                    header: raw
                        .realip_header
                        .clone()
                        .unwrap_or(crate::config::RealIpHeader::XRealIp),
                    recursive: raw.realip_recursive.unwrap_or(false),
                })
            }),
            gzip: {
                let d = crate::config::GzipConf::default();
                crate::config::GzipConf {
                    enable: raw.gzip.unwrap_or(d.enable),
                    types: raw.gzip_types.clone().unwrap_or(d.types),
                    level: raw.gzip_comp_level.unwrap_or(d.level),
                    min_length: raw.gzip_min_length.unwrap_or(d.min_length),
                    http_version: raw.gzip_http_version.unwrap_or(d.http_version),
                    proxied: raw.gzip_proxied.unwrap_or(d.proxied),
                    vary: raw.gzip_vary.unwrap_or(d.vary),
                    disable: raw.gzip_disable.clone().unwrap_or(d.disable),
                }
            },
            limit_conn: Arc::new(limit_conn),
            limit_req: Arc::new(limit_req),
            limit_req_status: raw
                .limit_req_status
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            limit_req_log_level: raw.limit_req_log_level.unwrap_or(Level::Error),
            limit_req_dry_run: raw.limit_req_dry_run.unwrap_or(false),
            limit_conn_status: raw
                .limit_conn_status
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            limit_conn_log_level: raw.limit_conn_log_level.unwrap_or(Level::Error),
            log_not_found: raw.log_not_found.unwrap_or(true),
            server_tokens: raw.server_tokens.unwrap_or(true),
            error_pages: Arc::new(error_pages),
            limit_rate: raw.limit_rate.unwrap_or(0),
            limit_rate_after: raw.limit_rate_after.unwrap_or(0),
            internal: raw.internal,
        })
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
            return Err(ConfigError::at(
                span,
                "\"proxy_pass\" cannot have URI part in location given by regular expression, or inside named location, or inside \"if\" statement, or inside \"limit_except\" block",
            ));
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
        let addrs = resolve_addr(hostport, default_port, false).map_err(|msg| {
            ConfigError::at(
                span,
                format!("host not found in upstream \"{hostport}\"{msg}"),
            )
        })?;
        let peers = addrs
            .into_iter()
            .map(|addr| Peer::new(addr, hostport.to_string()))
            .collect();
        let index = self.upstreams.len();
        let u = Arc::new(Upstream {
            name: hostport.to_string(),
            index,
            peers,
            method: BalanceMethod::RoundRobin,
            keepalive: None,
            implicit: true,
            span: span.clone(),
        });
        self.upstreams.push(u.clone());
        Ok(u)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Splits `host:port` / `[v6]:port` / `host`; `None` for a bad port.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Some((host, default_port));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, port.parse().ok()?)),
        Some(_) => Some((s, default_port)),
        None => Some((s, default_port)),
    }
}

/// Resolves `host[:port]` to socket addresses (IPv4 first, as listed).
/// Port 0 (an ephemeral port) is accepted only where `allow_port_zero`
/// says so: `listen` (tests and embedded use), never for backends.
pub fn resolve_addr(
    s: &str,
    default_port: u16,
    allow_port_zero: bool,
) -> std::result::Result<Vec<SocketAddr>, String> {
    let (host, port) =
        split_host_port(s, default_port).ok_or_else(|| " (invalid port)".to_string())?;
    if port == 0 && !allow_port_zero {
        return Err(" (invalid port)".to_string());
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!(" ({e})"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(String::new());
    }
    Ok(addrs)
}

/// Finishes the walk: binds names, merges levels, builds the model.
pub fn finish(mut b: Builder, has_http: bool) -> Result<(Main, Option<Http>, Vec<ConfigError>)> {
    let main = finish_main(&b);
    if !has_http {
        return Ok((main, None, b.warnings));
    }
    let mut http_raw = std::mem::take(&mut b.http);

    let mut log_formats = HashMap::new();
    log_formats.insert(
        "combined".to_string(),
        Arc::new(LogFormat {
            name: "combined".into(),
            template: bind_static(
                "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"",
            ),
            escape: LogEscape::Default,
        }),
    );
    let mut finisher_upstreams: Vec<Arc<Upstream>> = Vec::new();
    let indexed = b.indexed.clone();
    let mut f = Finisher {
        indexed: &indexed,
        upstreams: &mut finisher_upstreams,
        upstream_raw: &http_raw.upstreams,
        log_formats: HashMap::new(),
        zones: HashMap::new(),
        req_zones: HashMap::new(),
        main_error_log: main.error_log.clone(),
        prefix: b.prefix.clone(),
    };
    for (name, (template, escape, span)) in &http_raw.log_formats {
        let mut t = template.clone();
        f.bind(&mut t, span)?;
        log_formats.insert(
            name.clone(),
            Arc::new(LogFormat {
                name: name.clone(),
                template: t,
                escape: *escape,
            }),
        );
    }
    f.log_formats = log_formats;
    for (name, key, size, span) in &http_raw.conn_zones {
        let mut key = key.clone();
        f.bind(&mut key, span)?;
        f.zones.insert(
            name.clone(),
            Arc::new(ConnZoneDef {
                name: name.clone(),
                key,
                size: *size,
                state: crate::limits::zone(name, *size),
            }),
        );
    }

    for (name, key, size, rate, span) in &http_raw.req_zones {
        let mut key = key.clone();
        f.bind(&mut key, span)?;
        f.req_zones.insert(
            name.clone(),
            Arc::new(ReqZoneDef {
                name: name.clone(),
                key,
                rate: *rate,
                state: crate::limits::rate_zone(name, *size),
            }),
        );
    }

    // Explicit upstream groups first, so proxy_pass can find them.
    for (i, u) in f.upstream_raw.iter().enumerate() {
        let method = match &u.method {
            Some(BalanceMethod::Hash { key, consistent }) => {
                let mut key = key.clone();
                f.bind(&mut key, &u.span)?;
                BalanceMethod::Hash {
                    key,
                    consistent: *consistent,
                }
            }
            Some(m) => m.clone(),
            None => BalanceMethod::RoundRobin,
        };
        if u.peers.is_empty() {
            return Err(ConfigError::at(
                &u.span,
                format!("no servers are inside upstream \"{}\"", u.name),
            ));
        }
        f.upstreams.push(Arc::new(Upstream {
            name: u.name.clone(),
            index: i,
            peers: u.peers.clone(),
            method,
            keepalive: u.keepalive.map(|max_cached| Keepalive {
                max_cached,
                timeout: u.keepalive_timeout.unwrap_or(Duration::from_secs(60)),
                requests: u.keepalive_requests.unwrap_or(1000),
                time: u.keepalive_time.unwrap_or(Duration::from_secs(3600)),
            }),
            implicit: false,
            span: u.span.clone(),
        }));
    }

    // Maps: bind their templates.
    let mut maps = Vec::new();
    for m in std::mem::take(&mut http_raw.maps) {
        let mut def = m.def;
        f.bind(&mut def.source, &m.span)?;
        f.bind(&mut def.default, &m.span)?;
        for t in def.exact.values_mut() {
            f.bind(t, &m.span)?;
        }
        for (_, t) in def
            .wildcard_head
            .iter_mut()
            .chain(def.wildcard_tail.iter_mut())
        {
            f.bind(t, &m.span)?;
        }
        for (_, t) in &mut def.regexes {
            f.bind(t, &m.span)?;
        }
        maps.push(def);
    }

    // Servers and locations, merging http -> server -> location.
    let http_loc = http_raw.loc.clone();
    let mut servers = Vec::new();
    for (index, mut s) in std::mem::take(&mut http_raw.servers)
        .into_iter()
        .enumerate()
    {
        merge(&mut s.loc, &http_loc);
        let span = s.span.clone().unwrap_or_else(Span::command_line);
        let conf = Arc::new(f.finish_loc(&s.loc, None, false)?);
        let locations = finish_locations(&mut f, std::mem::take(&mut s.locations), &s.loc, true)?;
        let mut rewrite = std::mem::take(&mut s.rewrite);
        bind_rewrite(&f, &mut rewrite, &span)?;
        let tls = finish_tls(&s, &span)?;
        let mut names: Vec<String> = s.names.iter().map(|(n, _)| n.clone()).collect();
        if names.is_empty() {
            names.push(String::new());
        }
        servers.push((
            Arc::new(Server {
                index,
                names,
                name_regexes: s.name_regexes.clone(),
                conf,
                rewrite,
                locations,
                tls,
                span,
            }),
            s,
        ));
    }
    let listens = super::listen::group(&servers)?;
    let any_access_log = servers
        .iter()
        .any(|(s, _)| !s.conf.access_log.is_empty() || any_location_logs(&s.locations));
    let upstreams = std::mem::take(f.upstreams);
    let conn_zones = f.zones.values().cloned().collect();
    drop(f);
    let http = Http {
        servers: servers.into_iter().map(|(s, _)| s).collect(),
        listens,
        upstreams,
        maps,
        indexed,
        conn_zones,
        any_access_log,
    };
    Ok((main, Some(http), b.warnings))
}

fn any_location_logs(locs: &Locations) -> bool {
    locs.prefix
        .iter()
        .chain(locs.regex.iter())
        .chain(locs.named.values())
        .any(|l| !l.conf.access_log.is_empty() || any_location_logs(&l.children))
}

fn bind_static(src: &str) -> Template {
    let mut t = Template::parse(src).expect("static template");
    for p in &mut t.pieces {
        if let Piece::Name(n) = p {
            *p = Piece::Var(var::resolve_builtin(n).expect("static variable"));
        }
    }
    t
}

fn bind_rewrite(f: &Finisher<'_>, ops: &mut [RewriteOp], span: &Span) -> Result<()> {
    for op in ops {
        match op {
            RewriteOp::Set { value, .. } | RewriteOp::SetLimitRate(value) => f.bind(value, span)?,
            RewriteOp::Return(r) => {
                if let Some(t) = &mut r.text {
                    f.bind(t, span)?;
                }
            }
            RewriteOp::Rewrite { replacement, .. } => f.bind(replacement, span)?,
            RewriteOp::Break => {}
            RewriteOp::If { cond, ops } => {
                match cond {
                    Condition::Value(t) => f.bind(t, span)?,
                    Condition::Compare { left, right, .. } => {
                        f.bind(left, span)?;
                        f.bind(right, span)?;
                    }
                    Condition::Match { left, .. } => f.bind(left, span)?,
                    Condition::File { path, .. } => f.bind(path, span)?,
                }
                bind_rewrite(f, ops, span)?;
            }
        }
    }
    Ok(())
}

fn finish_tls(s: &ServerRaw, span: &Span) -> Result<Option<Arc<TlsServer>>> {
    let needs_tls = s.listens.iter().any(|l| l.opts.ssl);
    if s.certs.is_empty() {
        if needs_tls {
            let lspan = s
                .listens
                .iter()
                .find(|l| l.opts.ssl)
                .map(|l| l.span.clone())
                .unwrap_or_else(|| span.clone());
            return Err(ConfigError::at(
                &lspan,
                "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive",
            ));
        }
        return Ok(None);
    }
    if s.keys.len() != s.certs.len() {
        let (_, cspan) = &s.certs[0];
        return Err(ConfigError::at(
            cspan,
            format!(
                "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                s.certs[s.keys.len().min(s.certs.len() - 1)].0.display()
            ),
        ));
    }
    Ok(Some(Arc::new(TlsServer {
        certs: s
            .certs
            .iter()
            .zip(s.keys.iter())
            .map(|((c, _), (k, _))| (c.clone(), k.clone()))
            .collect(),
        protocols: s
            .ssl_protocols
            .clone()
            .unwrap_or_else(|| vec!["TLSv1.2".into(), "TLSv1.3".into()]),
        ciphers: s.ssl_ciphers.clone(),
        span: s.certs[0].1.clone(),
    })))
}

fn finish_locations(
    f: &mut Finisher<'_>,
    raws: Vec<LocationRaw>,
    parent: &LocRaw,
    top: bool,
) -> Result<Locations> {
    let mut out = Locations::default();
    for mut raw in raws {
        merge(&mut raw.loc, parent);
        let span = raw.span.clone().unwrap_or_else(Span::command_line);
        let (matcher, prefix, regex_like) = match raw.modifier.as_str() {
            "=" => (
                LocationMatch::Exact(raw.path.clone()),
                Some(raw.path.clone()),
                false,
            ),
            "^~" => (
                LocationMatch::PrefixNoRegex(raw.path.clone()),
                Some(raw.path.clone()),
                false,
            ),
            "~" | "~*" => (
                LocationMatch::Regex(raw.regex.clone().expect("regex compiled at parse")),
                None,
                true,
            ),
            "@" => {
                if !top {
                    return Err(ConfigError::at(
                        &span,
                        format!(
                            "named location \"@{}\" can be on the server level only",
                            raw.path
                        ),
                    ));
                }
                (LocationMatch::Named(raw.path.clone()), None, true)
            }
            _ => (
                LocationMatch::Prefix(raw.path.clone()),
                Some(raw.path.clone()),
                false,
            ),
        };
        let conf = Arc::new(f.finish_loc(&raw.loc, prefix.as_deref(), regex_like)?);
        let children = finish_locations(f, std::mem::take(&mut raw.children), &raw.loc, false)?;
        let mut rewrite = std::mem::take(&mut raw.rewrite);
        bind_rewrite(f, &mut rewrite, &span)?;
        let loc = Arc::new(Location {
            matcher,
            conf,
            rewrite,
            children,
            span: span.clone(),
        });
        match &loc.matcher {
            LocationMatch::Regex(_) => out.regex.push(loc),
            LocationMatch::Named(name) => {
                if out.named.insert(name.clone(), loc.clone()).is_some() {
                    return Err(ConfigError::at(
                        &span,
                        format!("duplicate location \"@{name}\""),
                    ));
                }
            }
            _ => {
                let dup = out.prefix.iter().any(|other| {
                    other.path() == loc.path()
                        && matches!(other.matcher, LocationMatch::Exact(_))
                            == matches!(loc.matcher, LocationMatch::Exact(_))
                });
                if dup {
                    return Err(ConfigError::at(
                        &span,
                        format!("duplicate location \"{}\"", loc.path().unwrap_or("")),
                    ));
                }
                out.prefix.push(loc);
            }
        }
    }
    // Longest first, so the first match is the longest (stable: equal
    // lengths keep configuration order).
    out.prefix
        .sort_by_key(|l| std::cmp::Reverse(l.path().map_or(0, str::len)));
    Ok(out)
}

fn finish_main(b: &Builder) -> Main {
    let m = &b.main;
    Main {
        daemon: m.daemon.unwrap_or(true),
        pid: m
            .pid
            .clone()
            .unwrap_or_else(|| b.prefix.join("logs/switchyard.pid")),
        error_log: m.error_log.clone().unwrap_or_else(|| {
            vec![ErrorLogTarget {
                path: b.prefix.join("logs/error.log"),
                level: Level::Error,
            }]
        }),
        worker_processes: m.worker_processes.unwrap_or(1),
        worker_connections: m.worker_connections.unwrap_or(512),
        worker_rlimit_nofile: m.worker_rlimit_nofile,
        worker_shutdown_timeout: m.worker_shutdown_timeout,
        user: m.user.clone(),
        error_log_explicit: m.error_log.is_some(),
        default_paths: m.error_log.is_none() || m.pid.is_none(),
    }
}
