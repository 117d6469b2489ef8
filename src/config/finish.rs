//! From raw levels to the model: inheritance merged, defaults applied,
//! variable names bound, names looked up (upstreams, zones, log formats),
//! listening addresses grouped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::error::{ConfigError, Result, Span};
use super::model::*;
use super::note::{Mode, Note, NoteKind};
use super::raw::*;
use super::template::{Piece, Template};
use super::var::{self, Var};
use crate::log::{ErrorLogTarget, Level};

pub mod filters;
pub mod proxy;

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
    /// The configuration's directory (relative password files).
    conf_dir: PathBuf,
    mode: Mode,
    /// Warnings found while finishing (each once).
    warnings: Vec<ConfigError>,
    /// The charsets and `charset_map` tables of the `http` block.
    charsets: Arc<CharsetMaps>,
    /// Lint notes; a cell because binding (`&self`) may add one.
    notes: std::cell::RefCell<Vec<Note>>,
}

impl Finisher<'_> {
    /// Replaces every `Piece::Name` with a bound `Piece::Var`.
    pub fn bind(&self, t: &mut Template, span: &Span) -> Result<()> {
        for piece in &mut t.pieces {
            if let Piece::Name(name) = piece {
                let var = match self.lookup_var(name) {
                    Some(var) => var,
                    None if self.mode == Mode::LintNginx => {
                        self.notes.borrow_mut().push(Note {
                            kind: NoteKind::UnknownVariable,
                            span: span.clone(),
                            message: format!("unknown \"{name}\" variable"),
                        });
                        Var::Unsupported(name.clone())
                    }
                    None => {
                        return Err(ConfigError::at(
                            span,
                            format!("unknown \"{name}\" variable"),
                        ));
                    }
                };
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
        let (proxy_pass, proxy) = self.finish_proxy(raw, loc_prefix, regex_loc)?;

        let access_log = self.finish_access_log(raw)?;
        let mut add_headers = raw.add_headers.clone().unwrap_or_default();
        for (i, h) in add_headers.iter_mut().enumerate() {
            self.bind(&mut h.value, &written(raw, "add_header", i))?;
        }
        let mut add_trailers = raw.add_trailers.clone().unwrap_or_default();
        for (i, h) in add_trailers.iter_mut().enumerate() {
            self.bind(&mut h.value, &written(raw, "add_trailer", i))?;
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
            self.bind(t, &written(raw, "index", 0))?;
        }
        let mut try_files = raw.try_files.clone();
        if let Some(tf) = &mut try_files {
            let at = written(raw, "try_files", 0);
            for t in &mut tf.files {
                self.bind(t, &at)?;
            }
            if let TryFallback::Uri(t) = &mut tf.fallback {
                self.bind(t, &at)?;
            }
        }
        for (t, span) in raw.unused_templates.iter().flatten() {
            self.bind(&mut t.clone(), span)?;
        }
        let (limit_conn, limit_req) = self.finish_limits(raw)?;
        let auth_basic = self.finish_auth_basic(raw)?;
        let mut auth_request_set = Vec::new();
        for (slot, value, span) in raw.auth_request_set.iter().flatten() {
            let mut value = value.clone();
            self.bind(&mut value, span)?;
            auth_request_set.push((*slot, value));
        }
        let mut expires = raw.expires.clone();
        if let Some(Expires::Var { value, .. }) = &mut expires {
            self.bind(value, &Span::command_line())?;
        }
        let filters = self.finish_filters(raw)?;
        let mut error_pages = raw.error_pages.clone().unwrap_or_default();
        for (i, p) in error_pages.iter_mut().enumerate() {
            self.bind(&mut p.uri, &written(raw, "error_page", i))?;
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
            client_body_in_file_only: raw.client_body_in_file_only.unwrap_or_default(),
            redirects: redirect_style(raw),
            client_header_timeout: raw.client_header_timeout.unwrap_or(Duration::from_secs(60)),
            client_header_buffer_size: raw.client_header_buffer_size.unwrap_or(1024) as usize,
            large_client_header_buffers: raw
                .large_client_header_buffers
                .map_or((4, 8192), |(n, size)| (n as usize, size as usize)),
            underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
            ignore_invalid_headers: raw.ignore_invalid_headers.unwrap_or(true),
            http2: http2_conf(raw),
            websocket: websocket_conf(raw),
            access_log: Arc::new(access_log),
            open_log_file_cache: raw.open_log_file_cache.clone().flatten(),
            error_log: Arc::new(
                raw.error_log
                    .clone()
                    .unwrap_or_else(|| self.main_error_log.clone()),
            ),
            add_headers: Arc::new(add_headers),
            add_trailers: Arc::new(add_trailers),
            expires,
            filters,
            root: root.0,
            index,
            try_files,
            default_type: raw
                .default_type
                .clone()
                .unwrap_or_else(|| "text/plain".into()),
            types: raw.types.clone(),
            access: Arc::new(raw.access.clone().unwrap_or_default()),
            realip: realip(raw),
            gzip: gzip_conf(raw),
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
            recursive_error_pages: raw.recursive_error_pages.unwrap_or(false),
            limit_rate: raw.limit_rate.unwrap_or(0),
            limit_rate_after: raw.limit_rate_after.unwrap_or(0),
            internal: raw.internal,
            content_handler: raw.content_handler,
            satisfy_any: raw.satisfy_any.unwrap_or(false),
            resolver: raw.resolver.clone(),
            resolver_timeout: raw.resolver_timeout.unwrap_or(Duration::from_secs(30)),
            auth_basic,
            auth_delay: raw.auth_delay.unwrap_or(Duration::ZERO),
            auth_request: raw
                .auth_request
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(Arc::from),
            auth_request_set: Arc::new(auth_request_set),
            limit_except: None,
            origins: Arc::new(raw.origins.clone()),
        })
    }

    /// `auth_basic` with `auth_basic_user_file`. nginx checks nothing when
    /// either is missing; a realm without a file gets a warning, since it
    /// looks like protection and is none.
    fn finish_auth_basic(&mut self, raw: &LocRaw) -> Result<Option<Arc<AuthBasic>>> {
        let Some(realm) = &raw.auth_basic else {
            return Ok(None);
        };
        if realm.const_value().as_deref() == Some("off") {
            return Ok(None);
        }
        let at = written(raw, "auth_basic", 0);
        let Some(user_file) = &raw.auth_basic_user_file else {
            let warning = ConfigError::at(
                &at,
                "\"auth_basic\" without \"auth_basic_user_file\" asks for no password (nginx lets every request through)",
            );
            if !self
                .warnings
                .iter()
                .any(|w| w.to_string() == warning.to_string())
            {
                self.warnings.push(warning);
            }
            return Ok(None);
        };
        let mut realm = realm.clone();
        self.bind(&mut realm, &at)?;
        let mut user_file = user_file.clone();
        self.bind(&mut user_file, &written(raw, "auth_basic_user_file", 0))?;
        Ok(Some(Arc::new(AuthBasic {
            realm,
            user_file,
            conf_dir: self.conf_dir.clone(),
        })))
    }

    /// The location's `access_log` targets, formats looked up (nginx's
    /// default: `logs/access.log` in `combined`).
    fn finish_access_log(&mut self, raw: &LocRaw) -> Result<Vec<AccessLogTarget>> {
        let mut access_log = Vec::new();
        for a in raw.access_log.clone().unwrap_or_else(|| {
            vec![AccessLogRaw {
                path: LogPath::File(self.prefix.join("logs/access.log")),
                format: "combined".into(),
                condition: None,
                buffering: None,
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
            let path = match a.path {
                LogPath::Script(mut t) => {
                    self.bind(&mut t, &a.span)?;
                    LogPath::Script(t)
                }
                file => file,
            };
            access_log.push(AccessLogTarget {
                path,
                format,
                condition,
                buffering: a.buffering,
            });
        }

        Ok(access_log)
    }

    /// The location's `limit_conn` and `limit_req` rules, zones looked up.
    fn finish_limits(&mut self, raw: &LocRaw) -> Result<(Vec<LimitConn>, Vec<LimitReq>)> {
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
        Ok((limit_conn, limit_req))
    }

    /// Log formats and `limit_*_zone`s, keys bound, by name.
    fn named_definitions(&mut self, http_raw: &HttpRaw) -> Result<()> {
        for (name, (template, escape, span)) in &http_raw.log_formats {
            let mut t = template.clone();
            self.bind(&mut t, span)?;
            self.log_formats.insert(
                name.clone(),
                Arc::new(LogFormat {
                    name: name.clone(),
                    template: t,
                    escape: *escape,
                }),
            );
        }
        for (name, key, size, span) in &http_raw.conn_zones {
            let mut key = key.clone();
            self.bind(&mut key, span)?;
            self.zones.insert(
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
            self.bind(&mut key, span)?;
            self.req_zones.insert(
                name.clone(),
                Arc::new(ReqZoneDef {
                    name: name.clone(),
                    key,
                    rate: *rate,
                    state: crate::limits::rate_zone(name, *size),
                }),
            );
        }
        Ok(())
    }

    /// The explicit `upstream` groups, first, so `proxy_pass` finds them.
    fn upstream_blocks(&mut self, resolver: Option<Arc<ResolverConf>>) -> Result<()> {
        for (i, u) in self.upstream_raw.iter().enumerate() {
            let method = match &u.method {
                Some(BalanceMethod::Hash { key, consistent }) => {
                    let mut key = key.clone();
                    self.bind(&mut key, &u.span)?;
                    BalanceMethod::Hash {
                        key,
                        consistent: *consistent,
                    }
                }
                Some(m) => m.clone(),
                None => BalanceMethod::RoundRobin,
            };
            // Linting an nginx file, servers Switchyard cannot use
            // were skipped and noted: an upstream may be empty.
            if let Some(first) = u.resolved.first()
                && resolver.is_none()
            {
                return Err(ConfigError::at(
                    &u.span,
                    format!("no resolver defined to resolve {}", first.host),
                ));
            }
            if u.peers.is_empty() && u.resolved.is_empty() && self.mode != Mode::LintNginx {
                return Err(ConfigError::at(
                    &u.span,
                    format!("no servers are inside upstream \"{}\"", u.name),
                ));
            }
            self.upstreams.push(Arc::new(Upstream {
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
                resolved: u.resolved.clone(),
                resolver: resolver.clone(),
            }));
        }
        Ok(())
    }
}

/// What [`finish`] returns: process settings, the `http` block if any,
/// warnings and lint notes.
pub type Finished = (Main, Option<Http>, Vec<ConfigError>, Vec<Note>);

/// Where the `i`th `name` directive in effect at a level was written (for
/// errors about its values); the command line when unknown.
pub fn written(raw: &LocRaw, name: &str, i: usize) -> Span {
    raw.origins
        .get(name)
        .and_then(|v| v.get(i).or(v.first()))
        .cloned()
        .unwrap_or_else(Span::command_line)
}

/// The predefined `websocket` log format: `combined`, then the messages
/// each way, the close code, who closed and how long the WebSocket lived
/// (`-` for requests that were not WebSockets).
pub const WEBSOCKET_LOG_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\" ws_in=$websocket_messages_in ws_out=$websocket_messages_out close=$websocket_close_code by=$websocket_closed_by time=$websocket_duration";

/// Finishes the walk: binds names, merges levels, builds the model.
pub fn finish(mut b: Builder, has_http: bool) -> Result<Finished> {
    let main = finish_main(&b);
    if !has_http {
        return Ok((main, None, b.warnings, b.notes));
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
    // Switchyard's: `combined` and what a WebSocket did. A `log_format
    // websocket` of the configuration replaces it.
    log_formats.insert(
        "websocket".to_string(),
        Arc::new(LogFormat {
            name: "websocket".into(),
            template: bind_static(WEBSOCKET_LOG_FORMAT),
            escape: LogEscape::Default,
        }),
    );
    let mut finisher_upstreams: Vec<Arc<Upstream>> = Vec::new();
    let charsets = Arc::new(std::mem::take(&mut http_raw.charsets));
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
        conf_dir: b.conf_dir.clone(),
        mode: b.mode,
        warnings: Vec::new(),
        charsets,
        notes: std::cell::RefCell::new(Vec::new()),
    };
    f.log_formats = log_formats;
    f.named_definitions(&http_raw)?;
    f.upstream_blocks(http_raw.loc.resolver.clone())?;
    let maps = finish_maps(&f, std::mem::take(&mut http_raw.maps))?;
    let mut splits = std::mem::take(&mut http_raw.splits);
    for s in &mut splits {
        f.bind(&mut s.source, &s.span)?;
    }
    let mut geos = std::mem::take(&mut http_raw.geos);
    for g in &mut geos {
        if let Some(t) = &mut g.source {
            f.bind(t, &g.span)?;
        }
    }

    // Servers and locations, merging http -> server -> location.
    let http_loc = http_raw.loc.clone();
    let http_conf = Arc::new(f.finish_loc(&http_loc, None, false)?);
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
        let tls = finish_tls(&s, &span, &mut b.warnings)?;
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
    b.notes.append(&mut f.notes.borrow_mut());
    b.warnings.append(&mut f.warnings);
    drop(f);
    let http = Http {
        conf: http_conf,
        servers: servers.into_iter().map(|(s, _)| s).collect(),
        listens,
        upstreams,
        maps,
        geos,
        splits,
        indexed,
        conn_zones,
        resolvers: std::mem::take(&mut http_raw.resolvers),
        any_access_log,
    };
    Ok((main, Some(http), b.warnings, b.notes))
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
            RewriteOp::Set { value, .. }
            | RewriteOp::SetLimitRate(value)
            | RewriteOp::SetArgs(value) => f.bind(value, span)?,
            RewriteOp::Return(r) => {
                if let Some(t) = &mut r.text {
                    f.bind(t, span)?;
                }
            }
            RewriteOp::Rewrite { replacement, .. } => f.bind(replacement, span)?,
            RewriteOp::Break => {}
            RewriteOp::If { cond, ops, .. } => {
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

fn finish_tls(
    s: &ServerRaw,
    span: &Span,
    warnings: &mut Vec<ConfigError>,
) -> Result<Option<Arc<TlsServer>>> {
    let l = &s.loc;
    let needs_tls = l.ssl_on == Some(true) || s.listens.iter().any(|l| l.opts.ssl);
    let certs = l.ssl_certificates.as_deref().unwrap_or_default();
    let keys = l.ssl_certificate_keys.as_deref().unwrap_or_default();
    if certs.is_empty() {
        if needs_tls && s.listens.iter().all(|l| !l.opts.ssl) {
            return Err(ConfigError::at(
                span,
                "no \"ssl_certificate\" is defined for the \"ssl\" directive",
            ));
        }
        // A server without certificates of its own is handshaken with
        // another server's, but its client certificate policy still
        // applies to its requests (nginx checks the request's server).
        if l.ssl_verify_client
            .is_none_or(|v| v == crate::tls::server::VerifyClient::Off)
        {
            return Ok(None);
        }
    }
    if !certs.is_empty() && keys.len() != certs.len() {
        let (_, cspan) = &certs[0];
        return Err(ConfigError::at(
            cspan,
            format!(
                "no \"ssl_certificate_key\" is defined for certificate \"{}\"",
                certs[keys.len().min(certs.len() - 1)].0.display()
            ),
        ));
    }
    let verify_client = l.ssl_verify_client.unwrap_or_default();
    if !certs.is_empty()
        && !matches!(
            verify_client,
            crate::tls::server::VerifyClient::Off | crate::tls::server::VerifyClient::OptionalNoCa
        )
        && l.ssl_client_certificate.is_none()
    {
        let at = l
            .origins
            .get("ssl_verify_client")
            .and_then(|v| v.first())
            .unwrap_or(span);
        return Err(ConfigError::at(
            at,
            "no ssl_client_certificate for ssl_verify_client",
        ));
    }
    let stapling = l.ssl_stapling == Some(true);
    if stapling && l.ssl_stapling_file.is_none() {
        let at = l
            .origins
            .get("ssl_stapling")
            .and_then(|v| v.first())
            .unwrap_or(span);
        warnings.push(ConfigError::at(
            at,
            "\"ssl_stapling\" ignored, no \"ssl_stapling_file\": OCSP responses are not fetched from responders",
        ));
    }
    Ok(Some(Arc::new(TlsServer {
        certs: certs
            .iter()
            .zip(keys.iter())
            .map(|((c, _), (k, _))| (c.clone(), k.clone()))
            .collect(),
        protocols: l
            .ssl_protocols
            .clone()
            .unwrap_or_else(|| vec!["TLSv1.2".into(), "TLSv1.3".into()]),
        ciphers: l.ssl_ciphers.clone(),
        span: certs.first().map_or_else(|| span.clone(), |c| c.1.clone()),
        verify_client,
        client_certificate: l.ssl_client_certificate.clone(),
        trusted_certificate: l.ssl_client_trusted_certificate.clone(),
        verify_depth: l.ssl_client_verify_depth.unwrap_or(1),
        stapling_file: l.ssl_stapling_file.clone().filter(|_| stapling),
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
        let mut conf = f.finish_loc(&raw.loc, prefix.as_deref(), regex_like)?;
        if let Some(block) = raw.limit_except.take() {
            conf.limit_except = Some(Arc::new(finish_limit_except(
                f,
                block,
                &raw.loc,
                prefix.as_deref(),
                regex_like,
            )?));
        }
        let conf = Arc::new(conf);
        let children = finish_locations(f, std::mem::take(&mut raw.children), &raw.loc, false)?;
        let mut rewrite = std::mem::take(&mut raw.rewrite);
        bind_rewrite(f, &mut rewrite, &span)?;
        let mut if_confs: Vec<Option<LocRaw>> = std::mem::take(&mut raw.if_confs)
            .into_iter()
            .map(Some)
            .collect();
        finish_if_confs(
            f,
            &mut rewrite,
            &mut if_confs,
            &raw.loc,
            prefix.as_deref(),
            regex_like,
        )?;
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

/// A `limit_except` block: the location's settings with the block's on
/// top (see [`finish_block`]).
fn finish_limit_except(
    f: &mut Finisher<'_>,
    block: LimitExceptRaw,
    location: &LocRaw,
    prefix: Option<&str>,
    regex_like: bool,
) -> Result<LimitExcept> {
    Ok(LimitExcept {
        methods: block.methods,
        conf: Arc::new(finish_block(f, block.loc, location, prefix, regex_like)?),
    })
}

/// The settings of a block inside a location (`limit_except`, `if`): the
/// location's with the block's on top. Without a `proxy_pass` of its own
/// the block proxies as the location does (nginx's implicit inheritance
/// into such blocks); its own may have no URI part.
fn finish_block(
    f: &mut Finisher<'_>,
    mut raw: LocRaw,
    location: &LocRaw,
    prefix: Option<&str>,
    regex_like: bool,
) -> Result<LocConf> {
    merge(&mut raw, location);
    raw.internal = location.internal;
    raw.content_handler = location.content_handler;
    if raw.proxy_pass.is_some() {
        f.finish_loc(&raw, None, true)
    } else {
        raw.proxy_pass = location.proxy_pass.clone();
        f.finish_loc(&raw, prefix, regex_like)
    }
}

/// Replaces each [`IfConf::Pending`] in a location's rewrite script with
/// the block's finished settings.
fn finish_if_confs(
    f: &mut Finisher<'_>,
    ops: &mut [RewriteOp],
    raws: &mut [Option<LocRaw>],
    location: &LocRaw,
    prefix: Option<&str>,
    regex_like: bool,
) -> Result<()> {
    for op in ops {
        if let RewriteOp::If { ops, conf, .. } = op {
            if let IfConf::Pending(i) = *conf {
                let raw = raws[i].take().expect("each if block is finished once");
                *conf = IfConf::Conf(Arc::new(finish_block(
                    f, raw, location, prefix, regex_like,
                )?));
            }
            finish_if_confs(f, ops, raws, location, prefix, regex_like)?;
        }
    }
    Ok(())
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
        origins: m.origins.clone(),
    }
}

/// The `map`s, their templates bound.
fn finish_maps(f: &Finisher<'_>, raw: Vec<MapRaw>) -> Result<Vec<MapDef>> {
    let mut maps = Vec::new();
    for m in raw {
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
    Ok(maps)
}

/// `http2*` with nginx's defaults.
fn http2_conf(raw: &LocRaw) -> crate::config::model::Http2Conf {
    crate::config::model::Http2Conf {
        enable: raw.http2.unwrap_or(false),
        max_concurrent_streams: raw.http2_max_concurrent_streams.unwrap_or(128),
        preread_size: raw.http2_body_preread_size.unwrap_or(65536) as u32,
        chunk_size: raw.http2_chunk_size.unwrap_or(8192) as usize,
        websocket: raw.http2_websocket.unwrap_or(true),
    }
}

/// `websocket_*`: all off by default.
fn websocket_conf(raw: &LocRaw) -> crate::config::model::WebSocketConf {
    crate::config::model::WebSocketConf {
        ping_interval: raw.websocket_ping_interval.flatten(),
        pong_timeout: raw
            .websocket_pong_timeout
            .unwrap_or(Duration::from_secs(10)),
        max_message_size: raw.websocket_max_message_size.flatten(),
        max_frame_size: raw.websocket_max_frame_size.flatten(),
        message_rate: raw.websocket_message_rate.flatten(),
        allowed_origins: raw.websocket_allowed_origins.clone().flatten(),
        drain_window: raw.websocket_drain_window.flatten(),
    }
}

/// `absolute_redirect`, `server_name_in_redirect`, `port_in_redirect`.
fn redirect_style(raw: &LocRaw) -> crate::config::model::RedirectStyle {
    crate::config::model::RedirectStyle {
        absolute: raw.absolute_redirect.unwrap_or(true),
        server_name: raw.server_name_in_redirect.unwrap_or(false),
        port: raw.port_in_redirect.unwrap_or(true),
    }
}

/// The gzip filter's settings with nginx's defaults.
fn gzip_conf(raw: &LocRaw) -> crate::config::model::GzipConf {
    let d = crate::config::model::GzipConf::default();
    crate::config::model::GzipConf {
        enable: raw.gzip.unwrap_or(d.enable),
        types: raw.gzip_types.clone().unwrap_or(d.types),
        level: raw.gzip_comp_level.unwrap_or(d.level),
        min_length: raw.gzip_min_length.unwrap_or(d.min_length),
        http_version: raw.gzip_http_version.unwrap_or(d.http_version),
        proxied: raw.gzip_proxied.unwrap_or(d.proxied),
        vary: raw.gzip_vary.unwrap_or(d.vary),
        disable: raw.gzip_disable.clone().unwrap_or(d.disable),
    }
}

/// `set_real_ip_from` and friends, when any address is trusted.
fn realip(raw: &LocRaw) -> Option<Arc<crate::config::model::RealIp>> {
    raw.realip_from.as_ref().map(|from| {
        Arc::new(crate::config::model::RealIp {
            from: from.clone(),
            header: raw
                .realip_header
                .clone()
                .unwrap_or(crate::config::model::RealIpHeader::XRealIp),
            recursive: raw.realip_recursive.unwrap_or(false),
        })
    })
}
