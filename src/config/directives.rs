//! The directive table: every directive Switchyard accepts, where, with how
//! many arguments, and what it does.
//!
//! This table is the single source of truth. The walker checks names,
//! contexts and arity against it in nginx's order; the README's directive
//! table is generated from it (`switchyard directives --markdown`), and a
//! test fails when the README is stale.

use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::ast::Statement;
use super::build::{AccessLogRaw, Builder, ListenRaw, LocRaw, LocationRaw, MapRaw, UpstreamRaw};
use super::error::{ConfigError, Result};
use super::model::*;
use super::template::Template;
use super::values::{parse_flag, parse_size, parse_time};
use crate::log::{ErrorLogTarget, Level};

/// A set of contexts (bit flags), nginx's `NGX_*_CONF` masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx(u16);

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
        ];
        all.iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How many arguments a directive takes.
#[derive(Clone, Copy, Debug)]
pub enum Args {
    /// None.
    None,
    /// Exactly one of these counts.
    Take(&'static [usize]),
    /// One argument, `on` or `off`.
    Flag,
    /// At least this many.
    AtLeast(usize),
}

impl Args {
    /// Whether `n` arguments are acceptable.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Args::None => n == 0,
            Args::Take(counts) => counts.contains(&n),
            Args::Flag => n == 1,
            Args::AtLeast(min) => n >= min,
        }
    }

    /// Text for documentation.
    pub fn describe(self) -> String {
        match self {
            Args::None => "none".into(),
            Args::Flag => "on \\| off".into(),
            Args::AtLeast(n) => format!("{n} or more"),
            Args::Take(counts) => {
                let v: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
                v.join(" or ")
            }
        }
    }
}

/// How fully a directive is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented with nginx's semantics (divergences are documented).
    Full,
    /// Accepted as a no-op with a warning: tunes nginx internals only
    /// (buffers, hashes, sendfile...), never security or routing.
    Ignored,
}

/// Handler signature.
pub type SetFn = fn(&mut Builder, &Statement) -> Result<()>;

/// One row of the table.
pub struct Directive {
    /// Name, spelled as nginx spells it.
    pub name: &'static str,
    /// Where it may appear.
    pub contexts: Ctx,
    /// Argument count.
    pub args: Args,
    /// Whether it takes a `{ }` block.
    pub block: bool,
    /// Applies it.
    pub set: SetFn,
    /// Implementation status.
    pub support: Support,
    /// One line for the README.
    pub doc: &'static str,
}

/// Finds the row for `name` usable in `ctx` (some names exist in two
/// contexts with different meanings, e.g. `keepalive_timeout` in `http`
/// and in `upstream`); falls back to any row with that name so the caller
/// can report "not allowed here".
pub fn lookup_in(name: &str, ctx: Ctx) -> Option<&'static Directive> {
    let mut any = None;
    for d in DIRECTIVES.iter().filter(|d| d.name == name) {
        if d.contexts.contains(ctx) {
            return Some(d);
        }
        any = Some(d);
    }
    any
}

/// nginx directives that Switchyard deliberately does not implement, with
/// the nginx module they belong to, so the "unknown directive" error can say
/// why instead of suggesting a typo.
pub const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("auth_basic", "ngx_http_auth_basic_module"),
    ("auth_basic_user_file", "ngx_http_auth_basic_module"),
    ("auth_request", "ngx_http_auth_request_module"),
    ("limit_except", "ngx_http_core_module's limit_except"),
    ("gzip_static", "ngx_http_gzip_static_module"),
    ("gunzip", "ngx_http_gunzip_module"),
    ("ssi", "ngx_http_ssi_module"),
    ("sub_filter", "ngx_http_sub_module"),
    ("fastcgi_pass", "ngx_http_fastcgi_module"),
    ("uwsgi_pass", "ngx_http_uwsgi_module"),
    ("scgi_pass", "ngx_http_scgi_module"),
    ("grpc_pass", "ngx_http_grpc_module"),
    ("proxy_cache_path", "proxy caching"),
    ("proxy_store", "proxy caching"),
    ("geo", "ngx_http_geo_module"),
    ("split_clients", "ngx_http_split_clients_module"),
    ("autoindex", "ngx_http_autoindex_module"),
    ("charset", "ngx_http_charset_module"),
    ("stream", "the stream module"),
    ("mail", "the mail module"),
    ("load_module", "dynamic modules"),
    ("resolver", "runtime DNS resolution"),
    ("secure_link", "ngx_http_secure_link_module"),
    ("stub_status", "ngx_http_stub_status_module"),
];

// ---------------------------------------------------------------------------
// Generic setters (nginx's `ngx_conf_set_*_slot`).

fn duplicate(st: &Statement) -> ConfigError {
    ConfigError::at(&st.span, format!("\"{}\" directive is duplicate", st.name))
}

fn invalid_value(st: &Statement, i: usize) -> ConfigError {
    ConfigError::at(
        &st.span,
        format!(
            "\"{}\" directive invalid value \"{}\"",
            st.name, st.args[i].value
        ),
    )
}

fn put<T>(slot: &mut Option<T>, value: T, st: &Statement) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(st));
    }
    *slot = Some(value);
    Ok(())
}

fn arg_time(st: &Statement, i: usize) -> Result<Duration> {
    parse_time(&st.args[i].value).ok_or_else(|| invalid_value(st, i))
}

fn arg_size(st: &Statement, i: usize) -> Result<u64> {
    parse_size(&st.args[i].value).ok_or_else(|| invalid_value(st, i))
}

fn arg_flag(st: &Statement) -> bool {
    parse_flag(&st.args[0].value).expect("flag checked by the walker")
}

fn arg_number(st: &Statement, i: usize) -> Result<u64> {
    st.args[i]
        .value
        .parse::<u64>()
        .map_err(|_| invalid_value(st, i))
}

fn arg_template(st: &Statement, i: usize) -> Result<Template> {
    Template::parse(&st.args[i].value).map_err(|e| ConfigError::at(&st.span, e.to_string()))
}

fn loc_time(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<Duration>,
) -> Result<()> {
    let v = arg_time(st, 0)?;
    put(f(b.loc()), v, st)
}

fn loc_flag(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<bool>,
) -> Result<()> {
    let v = arg_flag(st);
    put(f(b.loc()), v, st)
}

fn loc_size(b: &mut Builder, st: &Statement, f: fn(&mut LocRaw) -> &mut Option<u64>) -> Result<()> {
    let v = arg_size(st, 0)?;
    put(f(b.loc()), v, st)
}

fn loc_usize(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<usize>,
) -> Result<()> {
    let v = arg_size(st, 0)? as usize;
    put(f(b.loc()), v, st)
}

fn loc_path(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<std::path::PathBuf>,
) -> Result<()> {
    let v = b.full_path(&st.args[0].value);
    put(f(b.loc()), v, st)
}

fn set_client_body_temp_path(b: &mut Builder, st: &Statement) -> Result<()> {
    for level in &st.args[1..] {
        if !matches!(level.value.as_str(), "1" | "2") {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid value \"{}\"", level.value),
            ));
        }
    }
    loc_path(b, st, |l| &mut l.client_body_temp_path)
}

fn ignore(_: &mut Builder, _: &Statement) -> Result<()> {
    Ok(())
}

fn unreachable_include(_: &mut Builder, st: &Statement) -> Result<()> {
    Err(ConfigError::at(
        &st.span,
        "\"include\" directive is not terminated by \";\"",
    ))
}

// ---------------------------------------------------------------------------
// Main and events.

fn set_error_log(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = &st.args[0].value;
    if target.starts_with("syslog:") || target.starts_with("memory:") {
        return Err(ConfigError::at(
            &st.span,
            format!("\"{target}\" error log target is not supported by switchyard"),
        ));
    }
    let level = match st.args.get(1) {
        Some(w) => Level::from_name(&w.value).ok_or_else(|| {
            ConfigError::at(&st.span, format!("invalid log level \"{}\"", w.value))
        })?,
        None => Level::Error,
    };
    if st.args.len() > 2 {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"error_log\" directive",
        ));
    }
    let entry = ErrorLogTarget {
        path: b.full_path(target),
        level,
    };
    if b.ctx == Ctx::MAIN {
        b.main.error_log.get_or_insert_with(Vec::new).push(entry);
    } else {
        b.loc().error_log.get_or_insert_with(Vec::new).push(entry);
    }
    Ok(())
}

fn set_worker_processes(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = &st.args[0].value;
    let n = if v == "auto" {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        v.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid_value(st, 0))?
    };
    put(&mut b.main.worker_processes, n, st)
}

fn set_user(b: &mut Builder, st: &Statement) -> Result<()> {
    let user = st.args[0].value.clone();
    let group = st.args.get(1).map(|g| g.value.clone());
    put(&mut b.main.user, (user, group), st)
}

fn set_events(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.main.events_seen {
        return Err(duplicate(st));
    }
    b.main.events_seen = true;
    b.walk(st.block.as_deref().unwrap_or(&[]), Ctx::EVENTS)
}

fn set_http(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.main.http_seen {
        return Err(duplicate(st));
    }
    b.main.http_seen = true;
    b.walk(st.block.as_deref().unwrap_or(&[]), Ctx::HTTP)
}

// ---------------------------------------------------------------------------
// http: server, upstream, map, log formats, zones.

fn set_server(b: &mut Builder, st: &Statement) -> Result<()> {
    b.enter_server(&st.span, st.block.as_deref().unwrap_or(&[]))
}

fn set_upstream(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if b.http.upstreams.iter().any(|u| u.name == name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate upstream \"{name}\""),
        ));
    }
    let ups = UpstreamRaw {
        name,
        peers: Vec::new(),
        method: None,
        keepalive: None,
        keepalive_timeout: None,
        keepalive_requests: None,
        keepalive_time: None,
        span: st.span.clone(),
    };
    b.enter_upstream(ups, st.block.as_deref().unwrap_or(&[]))
}

fn set_upstream_server(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = st.args[0].value.clone();
    if target.starts_with("unix:") {
        return Err(ConfigError::at(
            &st.span,
            "unix domain upstream servers are not supported by switchyard",
        ));
    }
    let mut weight = 1u32;
    let mut max_fails = 1u32;
    let mut fail_timeout = Duration::from_secs(10);
    let mut backup = false;
    let mut down = false;
    let mut max_conns = 0u32;
    for (i, arg) in st.args.iter().enumerate().skip(1) {
        let v = arg.value.as_str();
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| ConfigError::at(&st.span, format!("invalid parameter \"{v}\"")))
        };
        if let Some(n) = v.strip_prefix("weight=") {
            weight = num(n)?;
            if weight == 0 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid parameter \"{v}\""),
                ));
            }
        } else if let Some(n) = v.strip_prefix("max_fails=") {
            max_fails = num(n)?;
        } else if let Some(n) = v.strip_prefix("max_conns=") {
            max_conns = num(n)?;
        } else if let Some(t) = v.strip_prefix("fail_timeout=") {
            fail_timeout = parse_time(t)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid parameter \"{v}\"")))?;
        } else if v == "backup" {
            backup = true;
        } else if v == "down" {
            down = true;
        } else {
            let _ = i;
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let addrs = super::build::resolve_addr(&target, 80, false).map_err(|m| {
        ConfigError::at(
            &st.span,
            format!("host not found in upstream \"{target}\"{m}"),
        )
    })?;
    let ups = b.upstream();
    if backup
        && matches!(
            ups.method,
            Some(BalanceMethod::IpHash | BalanceMethod::Hash { .. })
        )
    {
        return Err(ConfigError::at(
            &st.span,
            "balancing method does not support parameter \"backup\"",
        ));
    }
    for addr in addrs {
        ups.peers.push(Peer {
            addr,
            name: target.clone(),
            weight,
            max_fails,
            fail_timeout,
            backup,
            down,
            max_conns,
        });
    }
    Ok(())
}

fn set_balance(b: &mut Builder, st: &Statement, method: BalanceMethod) -> Result<()> {
    let ups = b.upstream();
    if ups.method.is_some() {
        return Err(ConfigError::at(&st.span, "load balancing method redefined"));
    }
    if matches!(method, BalanceMethod::IpHash | BalanceMethod::Hash { .. })
        && ups.peers.iter().any(|p| p.backup)
    {
        return Err(ConfigError::at(
            &st.span,
            "balancing method does not support parameter \"backup\"",
        ));
    }
    ups.method = Some(method);
    Ok(())
}

fn set_hash(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let consistent = match st.args.get(1) {
        None => false,
        Some(w) if w.value == "consistent" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    set_balance(b, st, BalanceMethod::Hash { key, consistent })
}

fn set_random(b: &mut Builder, st: &Statement) -> Result<()> {
    let two = match st.args.first() {
        None => false,
        Some(w) if w.value == "two" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    if st.args.len() > 1 {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid parameter \"{}\"", st.args[1].value),
        ));
    }
    set_balance(b, st, BalanceMethod::Random { two })
}

fn set_upstream_keepalive(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)? as usize;
    if n == 0 {
        return Err(invalid_value(st, 0));
    }
    put(&mut b.upstream().keepalive, n, st)
}

fn set_map(b: &mut Builder, st: &Statement) -> Result<()> {
    let source = arg_template(st, 0)?;
    let out = &st.args[1].value;
    let Some(name) = out.strip_prefix('$') else {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid variable name \"{out}\""),
        ));
    };
    if b.indexed
        .iter()
        .any(|v| v.name == name && matches!(v.kind, IndexedKind::Map(_)))
    {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    if super::var::resolve_builtin(name).is_some() {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    let map_index = b.http.maps.len();
    let mut def = MapDef {
        source,
        hostnames: false,
        exact: Default::default(),
        wildcard_head: Vec::new(),
        wildcard_tail: Vec::new(),
        regexes: Vec::new(),
        default: Template::default(),
        volatile: false,
    };
    let mut default_seen = false;
    for entry in st.block.as_deref().unwrap_or(&[]) {
        if entry.block.is_some() {
            return Err(ConfigError::at(&entry.span, "unexpected \"{\""));
        }
        let key = entry.name.as_str();
        if entry.args.is_empty() && (key == "hostnames" || key == "volatile") {
            if key == "hostnames" {
                def.hostnames = true;
            } else {
                def.volatile = true;
            }
            continue;
        }
        if entry.args.len() != 1 {
            return Err(ConfigError::at(
                &entry.span,
                "invalid number of the map parameters",
            ));
        }
        let value = Template::parse(&entry.args[0].value)
            .map_err(|e| ConfigError::at(&entry.span, e.to_string()))?;
        if key == "default" {
            if default_seen {
                return Err(ConfigError::at(
                    &entry.span,
                    "duplicate default map parameter",
                ));
            }
            default_seen = true;
            def.default = value;
            continue;
        }
        if let Some(re) = key.strip_prefix("~*") {
            let re = b.regex(re, true, &entry.span)?;
            def.regexes.push((re, value));
            continue;
        }
        if let Some(re) = key.strip_prefix('~') {
            let re = b.regex(re, false, &entry.span)?;
            def.regexes.push((re, value));
            continue;
        }
        // A leading backslash escapes a literal `~` (or `\`).
        let literal = key.strip_prefix('\\').unwrap_or(key);
        let lower = literal.to_ascii_lowercase();
        if def.hostnames
            && (lower.starts_with("*.") || lower.starts_with('.') || lower.ends_with(".*"))
        {
            if let Some(rest) = lower.strip_prefix("*.") {
                def.wildcard_head
                    .push((format!(".{rest}").into_bytes(), value));
            } else if let Some(rest) = lower.strip_prefix('.') {
                def.wildcard_head
                    .push((format!(".{rest}").into_bytes(), value.clone()));
                def.exact.entry(rest.as_bytes().to_vec()).or_insert(value);
            } else if let Some(rest) = lower.strip_suffix(".*") {
                def.wildcard_tail
                    .push((format!("{rest}.").into_bytes(), value));
            }
            continue;
        }
        let key_bytes = if def.hostnames {
            lower.trim_end_matches('.').as_bytes().to_vec()
        } else {
            lower.into_bytes()
        };
        if def.exact.contains_key(&key_bytes) {
            return Err(ConfigError::at(
                &entry.span,
                format!("duplicate \"{}\" map parameter", entry.name),
            ));
        }
        def.exact.insert(key_bytes, value);
    }
    def.wildcard_head
        .sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    def.wildcard_tail
        .sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let slot = b.declare(name, IndexedKind::Map(map_index));
    b.indexed[slot].kind = IndexedKind::Map(map_index);
    b.http.maps.push(MapRaw {
        def,
        output: name.to_string(),
        span: st.span.clone(),
    });
    Ok(())
}

fn set_log_format(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if name == "combined" || b.http.log_formats.contains_key(&name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate \"log_format\" name \"{name}\""),
        ));
    }
    let mut rest = &st.args[1..];
    let mut escape = LogEscape::Default;
    if let Some(first) = rest.first()
        && let Some(e) = first.value.strip_prefix("escape=")
    {
        escape = match e {
            "default" => LogEscape::Default,
            "json" => LogEscape::Json,
            "none" => LogEscape::None,
            _ => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("unknown log format escaping \"{e}\""),
                ));
            }
        };
        rest = &rest[1..];
    }
    if rest.is_empty() {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"log_format\" directive",
        ));
    }
    let text: String = rest.iter().map(|w| w.value.as_str()).collect();
    let t = Template::parse(&text).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
    b.http
        .log_formats
        .insert(name, (t, escape, st.span.clone()));
    Ok(())
}

fn set_access_log(b: &mut Builder, st: &Statement) -> Result<()> {
    let target = &st.args[0].value;
    let loc = b.loc();
    if target == "off" {
        if st.args.len() != 1 {
            return Err(ConfigError::at(
                &st.span,
                "invalid number of arguments in \"access_log\" directive",
            ));
        }
        if loc.access_log.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(duplicate(st));
        }
        loc.access_log = Some(Vec::new());
        return Ok(());
    }
    if target.starts_with("syslog:") {
        return Err(ConfigError::at(
            &st.span,
            "syslog access logs are not supported by switchyard",
        ));
    }
    let mut format = "combined".to_string();
    let mut condition = None;
    for (i, w) in st.args.iter().enumerate().skip(1) {
        if let Some(c) = w.value.strip_prefix("if=") {
            condition =
                Some(Template::parse(c).map_err(|e| ConfigError::at(&st.span, e.to_string()))?);
        } else if w.value.starts_with("buffer=")
            || w.value.starts_with("flush=")
            || w.value.starts_with("gzip")
        {
            // Buffering is always on in switchyard's writer; see log.rs.
        } else if i == 1 {
            format = w.value.clone();
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    }
    let path = b.full_path(target);
    let entry = AccessLogRaw {
        path,
        format,
        condition,
        span: st.span.clone(),
    };
    let loc = b.loc();
    match &mut loc.access_log {
        Some(v) if v.is_empty() => return Err(duplicate(st)),
        Some(v) => v.push(entry),
        None => loc.access_log = Some(vec![entry]),
    }
    Ok(())
}

fn set_limit_conn_zone(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let spec = st.args[1].value.strip_prefix("zone=").ok_or_else(|| {
        ConfigError::at(
            &st.span,
            format!("invalid parameter \"{}\"", st.args[1].value),
        )
    })?;
    let (name, size) = spec
        .split_once(':')
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid zone size \"{spec}\"")))?;
    let size = parse_size(size)
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid zone size \"{spec}\"")))?;
    if size < 8192 {
        return Err(ConfigError::at(
            &st.span,
            format!("zone \"{name}\" is too small"),
        ));
    }
    if b.http.conn_zones.iter().any(|(n, ..)| n == name) {
        return Err(ConfigError::at(
            &st.span,
            format!("duplicate zone \"{name}\""),
        ));
    }
    b.http
        .conn_zones
        .push((name.to_string(), key, size, st.span.clone()));
    Ok(())
}

// ---------------------------------------------------------------------------
// server: listen, server_name, TLS, location.

fn set_listen(b: &mut Builder, st: &Statement) -> Result<()> {
    let addr_text = st.args[0].value.as_str();
    if addr_text.starts_with("unix:") {
        return Err(ConfigError::at(
            &st.span,
            "unix domain listen sockets are not supported by switchyard",
        ));
    }
    let addrs = parse_listen_addr(addr_text).map_err(|m| ConfigError::at(&st.span, m))?;
    let mut default_server = false;
    let mut opts = ListenOpts::default();
    for w in &st.args[1..] {
        let v = w.value.as_str();
        let bad = || ConfigError::at(&st.span, format!("invalid parameter \"{v}\""));
        match v {
            "default_server" | "default" => default_server = true,
            "ssl" => opts.ssl = true,
            "http2" => {
                opts.http2 = true;
                b.warn(
                    &st.span,
                    "the \"http2\" parameter is accepted, but HTTP/2 is not served yet: clients on this address speak HTTP/1.1",
                );
            }
            "reuseport" => opts.reuseport = true,
            "deferred" | "bind" => {}
            "proxy_protocol" | "quic" => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("the \"{v}\" parameter is not supported by switchyard"),
                ));
            }
            _ => {
                if let Some(n) = v.strip_prefix("backlog=") {
                    opts.backlog = Some(n.parse().map_err(|_| bad())?);
                } else if let Some(n) = v.strip_prefix("rcvbuf=") {
                    opts.rcvbuf = Some(parse_size(n).ok_or_else(bad)? as usize);
                } else if let Some(n) = v.strip_prefix("sndbuf=") {
                    opts.sndbuf = Some(parse_size(n).ok_or_else(bad)? as usize);
                } else if let Some(n) = v.strip_prefix("ipv6only=") {
                    opts.ipv6only = Some(parse_flag(n).ok_or_else(bad)?);
                } else if let Some(n) = v.strip_prefix("so_keepalive=") {
                    opts.so_keepalive = n != "off";
                } else if v.starts_with("fastopen=")
                    || v.starts_with("accept_filter=")
                    || v.starts_with("setfib=")
                {
                    b.warn(
                        &st.span,
                        format!("listen parameter \"{v}\" has no effect in switchyard"),
                    );
                } else {
                    return Err(bad());
                }
            }
        }
    }
    b.server().listens.push(ListenRaw {
        addrs,
        default_server,
        opts,
        span: st.span.clone(),
    });
    Ok(())
}

/// `8080`, `127.0.0.1`, `*:80`, `[::]:443`, `localhost:8080`.
fn parse_listen_addr(s: &str) -> std::result::Result<Vec<std::net::SocketAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    if let Ok(port) = s.parse::<u16>() {
        return Ok(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )]);
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid port in \"{s}\" of the \"listen\" directive"
        ));
    }
    let text = if let Some(rest) = s.strip_prefix("*:") {
        format!("0.0.0.0:{rest}")
    } else if s == "*" {
        "0.0.0.0".to_string()
    } else {
        s.to_string()
    };
    let port_default = super::listen::default_listen_port();
    super::build::resolve_addr(&text, port_default, true).map_err(|m| {
        if m.contains("invalid port") {
            format!("invalid port in \"{s}\" of the \"listen\" directive")
        } else {
            format!("host not found in \"{s}\" of the \"listen\" directive{m}")
        }
    })
}

fn set_server_name(b: &mut Builder, st: &Statement) -> Result<()> {
    for w in &st.args {
        let name = w.value.as_str();
        if let Some(re) = name.strip_prefix('~') {
            let re = b.regex(re, true, &st.span)?;
            b.server().name_regexes.push(re);
            b.server().names.push((name.to_string(), st.span.clone()));
            continue;
        }
        let name = if name == "$hostname" {
            crate::log::hostname().to_string()
        } else {
            name.to_string()
        };
        if name.contains('*') && !(name.starts_with("*.") || name.ends_with(".*")) {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid server name or wildcard \"{name}\""),
            ));
        }
        b.server().names.push((name, st.span.clone()));
    }
    Ok(())
}

fn set_location(b: &mut Builder, st: &Statement) -> Result<()> {
    let (modifier, path) = match st.args.len() {
        2 => (st.args[0].value.clone(), st.args[1].value.clone()),
        1 => {
            let a = &st.args[0].value;
            if let Some(p) = a.strip_prefix("^~") {
                ("^~".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix("~*") {
                ("~*".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('~') {
                ("~".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('=') {
                ("=".to_string(), p.to_string())
            } else if let Some(p) = a.strip_prefix('@') {
                ("@".to_string(), p.to_string())
            } else {
                (String::new(), a.clone())
            }
        }
        _ => {
            return Err(ConfigError::at(
                &st.span,
                "invalid number of arguments in \"location\" directive",
            ));
        }
    };
    if !matches!(modifier.as_str(), "" | "=" | "^~" | "~" | "~*" | "@") {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid location modifier \"{modifier}\""),
        ));
    }
    let regex = match modifier.as_str() {
        "~" => Some(b.regex(&path, false, &st.span)?),
        "~*" => Some(b.regex(&path, true, &st.span)?),
        _ => None,
    };
    if !b_loc_path_is_empty(b) {
        let parent = b.location();
        if parent.modifier == "=" {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "location \"{}\" cannot be inside the exact location \"{}\"",
                    path, parent.path
                ),
            ));
        }
        if parent.modifier == "@" {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "location \"{}\" cannot be inside the named location \"{}\"",
                    path, parent.path
                ),
            ));
        }
        if modifier == "@" {
            return Err(ConfigError::at(
                &st.span,
                format!("named location \"@{path}\" can be on the server level only"),
            ));
        }
        let parent_prefix =
            (parent.modifier.is_empty() || parent.modifier == "^~").then(|| parent.path.clone());
        if let Some(pp) = parent_prefix
            && regex.is_none()
            && !path.starts_with(&pp)
        {
            return Err(ConfigError::at(
                &st.span,
                format!("location \"{path}\" is outside location \"{pp}\""),
            ));
        }
    }
    let loc = LocationRaw {
        modifier,
        path,
        regex,
        span: Some(st.span.clone()),
        ..LocationRaw::default()
    };
    b.enter_location(loc, st.block.as_deref().unwrap_or(&[]))
}

fn b_loc_path_is_empty(b: &mut Builder) -> bool {
    b.ctx != Ctx::LOCATION
}

fn set_ssl_certificate(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::HTTP {
        return Err(ConfigError::at(
            &st.span,
            "\"ssl_certificate\" is supported in server blocks only by switchyard",
        ));
    }
    let p = b.full_path(&st.args[0].value);
    b.server().certs.push((p, st.span.clone()));
    Ok(())
}

fn set_ssl_certificate_key(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::HTTP {
        return Err(ConfigError::at(
            &st.span,
            "\"ssl_certificate_key\" is supported in server blocks only by switchyard",
        ));
    }
    let p = b.full_path(&st.args[0].value);
    b.server().keys.push((p, st.span.clone()));
    Ok(())
}

fn set_ssl_protocols(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut protos = Vec::new();
    for w in &st.args {
        match w.value.as_str() {
            "TLSv1.2" | "TLSv1.3" => protos.push(w.value.clone()),
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                b.warn(
                    &st.span,
                    format!(
                        "\"{}\" is not supported (rustls offers TLSv1.2 and TLSv1.3 only)",
                        w.value
                    ),
                );
            }
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid value \"{other}\""),
                ));
            }
        }
    }
    if b.ctx == Ctx::SERVER {
        put(&mut b.server().ssl_protocols, protos, st)
    } else {
        Ok(())
    }
}

fn set_ssl_ciphers(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::SERVER {
        put(&mut b.server().ssl_ciphers, st.args[0].value.clone(), st)?;
    }
    b.warn(
        &st.span,
        "\"ssl_ciphers\" has no effect: rustls uses its own safe cipher suites",
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Location level.

fn set_proxy_pass(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx != Ctx::LOCATION {
        return Err(ConfigError::at(
            &st.span,
            "\"proxy_pass\" directive is not allowed here",
        ));
    }
    let url = st.args[0].value.clone();
    let loc = b.loc();
    if loc.proxy_pass.is_some() {
        return Err(duplicate(st));
    }
    loc.proxy_pass = Some((url, st.span.clone()));
    Ok(())
}

/// An HTTP version argument: `1.0` or `1.1`.
fn arg_http_version(st: &Statement) -> Result<http::Version> {
    match st.args[0].value.as_str() {
        "1.0" => Ok(http::Version::HTTP_10),
        "1.1" => Ok(http::Version::HTTP_11),
        other => Err(ConfigError::at(
            &st.span,
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"1.0\" or \"1.1\"",
                st.name
            ),
        )),
    }
}

fn set_proxy_http_version(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = arg_http_version(st)?;
    put(&mut b.loc().http_version, v, st)
}

fn set_proxy_set_header(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = st.args[0].value.clone();
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid header name \"{name}\""),
        ));
    }
    let value = arg_template(st, 1)?;
    b.loc()
        .set_headers
        .get_or_insert_with(Vec::new)
        .push((name, value, st.span.clone()));
    Ok(())
}

fn header_list(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<Vec<HeaderName>>,
) -> Result<()> {
    let name = HeaderName::from_bytes(st.args[0].value.as_bytes()).map_err(|_| {
        ConfigError::at(
            &st.span,
            format!("invalid header name \"{}\"", st.args[0].value),
        )
    })?;
    f(b.loc()).get_or_insert_with(Vec::new).push(name);
    Ok(())
}

fn set_proxy_buffers(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)? as usize;
    let size = arg_size(st, 1)? as usize;
    if n < 2 {
        return Err(ConfigError::at(
            &st.span,
            "there must be at least 2 \"proxy_buffers\"",
        ));
    }
    put(&mut b.loc().buffers, (n, size), st)
}

fn set_proxy_cache(b: &mut Builder, st: &Statement) -> Result<()> {
    if st.args[0].value != "off" {
        return Err(ConfigError::at(
            &st.span,
            "\"proxy_cache\" is not supported by switchyard (only \"proxy_cache off\" is accepted)",
        ));
    }
    let _ = b;
    Ok(())
}

fn set_proxy_redirect(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = match (st.args.len(), st.args[0].value.as_str()) {
        (1, "default") => true,
        (1, "off") => false,
        _ => {
            return Err(ConfigError::at(
                &st.span,
                "\"proxy_redirect\" with replacement rules is not supported by switchyard (only \"default\" and \"off\")",
            ));
        }
    };
    put(&mut b.loc().redirect, v, st)
}

fn set_next_upstream(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut nu = NextUpstream::default();
    for w in &st.args {
        match w.value.as_str() {
            "error" => nu.error = true,
            "timeout" => nu.timeout = true,
            "invalid_header" => nu.invalid_header = true,
            "non_idempotent" => nu.non_idempotent = true,
            "off" => {}
            "http_500" | "http_502" | "http_503" | "http_504" | "http_403" | "http_404"
            | "http_429" => {
                let code: u16 = w.value[5..].parse().expect("static list");
                nu.statuses |= NextUpstream::status_bit(code);
            }
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid value \"{other}\""),
                ));
            }
        }
    }
    if st.args.iter().any(|w| w.value == "off") && st.args.len() > 1 {
        return Err(ConfigError::at(&st.span, "invalid value \"off\""));
    }
    put(&mut b.loc().next_upstream, nu, st)
}

fn set_proxy_ssl_name(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_template(st, 0)?;
    put(&mut b.loc().ssl_name, t, st)
}

fn set_proxy_set_body(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_template(st, 0)?;
    put(&mut b.loc().set_body, t, st)
}

fn set_keepalive_timeout(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::UPSTREAM {
        let t = arg_time(st, 0)?;
        return put(&mut b.upstream().keepalive_timeout, t, st);
    }
    let t = arg_time(st, 0)?;
    put(&mut b.loc().keepalive_timeout, t, st)
}

fn set_keepalive_requests(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)?;
    if b.ctx == Ctx::UPSTREAM {
        return put(&mut b.upstream().keepalive_requests, n, st);
    }
    put(&mut b.loc().keepalive_requests, n, st)
}

fn set_keepalive_time(b: &mut Builder, st: &Statement) -> Result<()> {
    let t = arg_time(st, 0)?;
    if b.ctx == Ctx::UPSTREAM {
        return put(&mut b.upstream().keepalive_time, t, st);
    }
    // Client-side keepalive_time: bound the life of a keep-alive connection.
    b.warn(
        &st.span,
        "\"keepalive_time\" for client connections has no effect in switchyard yet",
    );
    Ok(())
}

fn set_add_header(b: &mut Builder, st: &Statement) -> Result<()> {
    let name = HeaderName::from_bytes(st.args[0].value.as_bytes()).map_err(|_| {
        ConfigError::at(
            &st.span,
            format!("invalid header name \"{}\"", st.args[0].value),
        )
    })?;
    let value = arg_template(st, 1)?;
    let always = match st.args.get(2) {
        None => false,
        Some(w) if w.value == "always" => true,
        Some(w) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{}\"", w.value),
            ));
        }
    };
    b.loc()
        .add_headers
        .get_or_insert_with(Vec::new)
        .push(AddHeader {
            name,
            display: st.args[0].value.clone(),
            value,
            always,
        });
    Ok(())
}

fn set_expires(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut args: Vec<&str> = st.values();
    let modified = args.first() == Some(&"modified");
    if modified {
        args.remove(0);
    }
    if args.len() != 1 {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"expires\" directive",
        ));
    }
    let v = args[0];
    let e = match v {
        "off" if !modified => Expires::Off,
        "epoch" if !modified => Expires::Epoch,
        "max" if !modified => Expires::Max,
        _ => {
            let (neg, t) = match v.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, v.strip_prefix('+').unwrap_or(v)),
            };
            if t.starts_with('@') {
                return Err(ConfigError::at(
                    &st.span,
                    "\"expires @time\" is not supported by switchyard",
                ));
            }
            let d = parse_time(t)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid value \"{v}\"")))?;
            let secs = d.as_secs() as i64;
            Expires::After {
                secs: if neg { -secs } else { secs },
                modified,
            }
        }
    };
    put(&mut b.loc().expires, e, st)
}

fn set_root(b: &mut Builder, st: &Statement, alias: bool) -> Result<()> {
    let loc = b.loc();
    if let Some((r, _)) = &loc.root {
        let was_alias = r.alias != Alias::No;
        let msg = if was_alias == alias {
            format!("\"{}\" directive is duplicate", st.name)
        } else if was_alias {
            "\"root\" directive is duplicate, \"alias\" directive was specified earlier".to_string()
        } else {
            "\"alias\" directive is duplicate, \"root\" directive was specified earlier".to_string()
        };
        return Err(ConfigError::at(&st.span, msg));
    }
    let mut value = st.args[0].value.clone();
    if !value.starts_with('/') && !value.starts_with('$') {
        value = b.prefix.join(&value).to_string_lossy().into_owned();
    }
    if !alias {
        // nginx strips a trailing slash from root.
        while value.len() > 1 && value.ends_with('/') {
            value.pop();
        }
    }
    let kind = if !alias {
        Alias::No
    } else {
        let location = b.location();
        if location.regex.is_some() {
            Alias::Regex
        } else {
            Alias::Prefix(location.path.clone())
        }
    };
    let path = Template::parse(&value).map_err(|e| ConfigError::at(&st.span, e.to_string()))?;
    b.loc().root = Some((Root { path, alias: kind }, st.span.clone()));
    Ok(())
}

fn set_index(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut list = Vec::new();
    for (i, w) in st.args.iter().enumerate() {
        if w.value.is_empty() {
            return Err(ConfigError::at(
                &st.span,
                "index \"\" in \"index\" directive is invalid",
            ));
        }
        if w.value.starts_with('/') && i + 1 != st.args.len() {
            return Err(ConfigError::at(
                &st.span,
                "only the last index in \"index\" directive should be absolute".to_string(),
            ));
        }
        list.push(arg_template(st, i)?);
    }
    let loc = b.loc();
    loc.index.get_or_insert_with(Vec::new).extend(list);
    Ok(())
}

fn set_try_files(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = st.args.len();
    let mut files = Vec::new();
    for i in 0..n - 1 {
        files.push(arg_template(st, i)?);
    }
    let last = &st.args[n - 1].value;
    let fallback = if let Some(code) = last.strip_prefix('=') {
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| (100..=999).contains(c))
            .ok_or_else(|| ConfigError::at(&st.span, format!("invalid code \"{last}\"")))?;
        TryFallback::Status(code)
    } else if let Some(name) = last.strip_prefix('@') {
        TryFallback::Named(name.to_string())
    } else {
        TryFallback::Uri(arg_template(st, n - 1)?)
    };
    put(&mut b.loc().try_files, TryFiles { files, fallback }, st)
}

fn set_limit_conn(b: &mut Builder, st: &Statement) -> Result<()> {
    let zone = st.args[0].value.clone();
    let n = st.args[1]
        .value
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && *n <= 65535)
        .ok_or_else(|| {
            ConfigError::at(
                &st.span,
                format!("invalid number of connections \"{}\"", st.args[1].value),
            )
        })?;
    let list = b.loc().limit_conn.get_or_insert_with(Vec::new);
    if list.iter().any(|(z, ..)| *z == zone) {
        return Err(duplicate(st));
    }
    list.push((zone, n, st.span.clone()));
    Ok(())
}

/// A status between 400 and 599 (`limit_conn_status`, `limit_req_status`).
fn arg_error_status(st: &Statement) -> Result<StatusCode> {
    st.args[0]
        .value
        .parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| ConfigError::at(&st.span, "value must be between 400 and 599"))
}

fn set_limit_conn_status(b: &mut Builder, st: &Statement) -> Result<()> {
    let code = arg_error_status(st)?;
    put(&mut b.loc().limit_conn_status, code, st)
}

/// `info`, `notice`, `warn` or `error` (`limit_*_log_level`).
fn arg_limit_log_level(st: &Statement) -> Result<Level> {
    match st.args[0].value.as_str() {
        "info" => Ok(Level::Info),
        "notice" => Ok(Level::Notice),
        "warn" => Ok(Level::Warn),
        "error" => Ok(Level::Error),
        other => Err(ConfigError::at(
            &st.span,
            format!("invalid value \"{other}\""),
        )),
    }
}

fn set_limit_conn_log_level(b: &mut Builder, st: &Statement) -> Result<()> {
    let level = arg_limit_log_level(st)?;
    put(&mut b.loc().limit_conn_log_level, level, st)
}

/// `limit_req_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m`.
fn set_limit_req_zone(b: &mut Builder, st: &Statement) -> Result<()> {
    let key = arg_template(st, 0)?;
    let mut zone: Option<(String, u64)> = None;
    let mut rate = 1000;
    for arg in &st.args[1..] {
        let v = arg.value.as_str();
        if let Some(spec) = v.strip_prefix("zone=") {
            let invalid = || ConfigError::at(&st.span, format!("invalid zone size \"{v}\""));
            let (name, size) = spec.split_once(':').ok_or_else(invalid)?;
            let size = parse_size(size).ok_or_else(invalid)?;
            if size < 8 * 4096 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("zone \"{v}\" is too small"),
                ));
            }
            zone = Some((name.to_string(), size));
        } else if let Some(spec) = v.strip_prefix("rate=") {
            let (number, scale) = if let Some(n) = spec.strip_suffix("r/s") {
                (n, 1)
            } else if let Some(n) = spec.strip_suffix("r/m") {
                (n, 60)
            } else {
                (spec, 1)
            };
            let n = number
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid rate \"{v}\"")))?;
            rate = n * 1000 / scale;
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let Some((name, size)) = zone else {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req_zone\" must have \"zone\" parameter",
        ));
    };
    if let Some((_, bound, ..)) = b.http.req_zones.iter().find(|(n, ..)| *n == name) {
        return Err(ConfigError::at(
            &st.span,
            format!(
                "limit_req_zone \"{name}\" is already bound to key \"{}\"",
                bound.source
            ),
        ));
    }
    b.http
        .req_zones
        .push((name, key, size, rate.max(1), st.span.clone()));
    Ok(())
}

/// `limit_req zone=NAME [burst=N] [nodelay | delay=N]`.
fn set_limit_req(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut zone = None;
    let mut burst = 0;
    let mut delay = 0;
    for arg in &st.args {
        let v = arg.value.as_str();
        let number = |n: &str, what: &str| {
            n.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::at(&st.span, format!("invalid {what} value \"{v}\"")))
        };
        if let Some(name) = v.strip_prefix("zone=") {
            zone = Some(name.to_string());
        } else if let Some(n) = v.strip_prefix("burst=") {
            burst = number(n, "burst")?;
        } else if let Some(n) = v.strip_prefix("delay=") {
            delay = number(n, "delay")?;
        } else if v == "nodelay" {
            delay = u64::MAX / 1000;
        } else {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{v}\""),
            ));
        }
    }
    let Some(zone) = zone else {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req\" must have \"zone\" parameter",
        ));
    };
    let list = b.loc().limit_req.get_or_insert_with(Vec::new);
    if list.iter().any(|(z, ..)| *z == zone) {
        return Err(ConfigError::at(
            &st.span,
            "\"limit_req\" directive is duplicate",
        ));
    }
    list.push((zone, burst * 1000, delay * 1000, st.span.clone()));
    Ok(())
}

fn set_error_page(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = st.args.len();
    let uri = arg_template(st, n - 1)?;
    let mut codes = Vec::new();
    let mut overwrite = None;
    for w in &st.args[..n - 1] {
        if let Some(o) = w.value.strip_prefix('=') {
            if o.is_empty() {
                return Err(ConfigError::at(
                    &st.span,
                    "\"error_page\" with \"=\" without a code is not supported by switchyard",
                ));
            }
            overwrite = Some(o.parse().map_err(|_| {
                ConfigError::at(&st.span, format!("invalid value \"{}\"", w.value))
            })?);
            continue;
        }
        let code: u16 = w
            .value
            .parse()
            .map_err(|_| ConfigError::at(&st.span, format!("invalid value \"{}\"", w.value)))?;
        if !(300..=599).contains(&code) || code == 499 {
            return Err(ConfigError::at(
                &st.span,
                format!("value \"{code}\" must be between 300 and 599"),
            ));
        }
        codes.push(code);
    }
    if codes.is_empty() {
        return Err(ConfigError::at(
            &st.span,
            "invalid number of arguments in \"error_page\" directive",
        ));
    }
    b.loc()
        .error_pages
        .get_or_insert_with(Vec::new)
        .push(ErrorPage {
            codes,
            overwrite,
            uri,
        });
    Ok(())
}

fn set_internal(b: &mut Builder, st: &Statement) -> Result<()> {
    let loc = b.loc();
    if loc.internal {
        return Err(duplicate(st));
    }
    loc.internal = true;
    Ok(())
}

fn set_default_type(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = st.args[0].value.clone();
    put(&mut b.loc().default_type, v, st)
}

/// `types { MIME ext...; }`: another block at the same level adds to the
/// first; an extension listed twice keeps the later type, with nginx's
/// warning. Extensions match case-insensitively.
fn set_types(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut warnings = Vec::new();
    let table = std::sync::Arc::make_mut(b.loc().types.get_or_insert_default());
    for entry in st.block.as_deref().unwrap_or(&[]) {
        if entry.block.is_some() {
            return Err(ConfigError::at(&entry.span, "unexpected \"{\""));
        }
        for ext in &entry.args {
            let ext = ext.value.to_ascii_lowercase();
            if let Some(old) = table.insert(ext.clone(), entry.name.clone()) {
                warnings.push(ConfigError::at(
                    &entry.span,
                    format!(
                        "duplicate extension \"{ext}\", content type: \"{}\", previous content type: \"{old}\"",
                        entry.name
                    ),
                ));
            }
        }
    }
    b.warnings.extend(warnings);
    Ok(())
}

// ---------------------------------------------------------------------------
// Access rules and the real client address.

/// An address block argument; nginx warns when host bits are set.
fn arg_cidr(b: &mut Builder, st: &Statement) -> Result<crate::config::Cidr> {
    let text = &st.args[0].value;
    match crate::config::Cidr::parse(text) {
        Ok((cidr, low_bits)) => {
            if low_bits {
                b.warn(
                    &st.span,
                    format!("low address bits of {text} are meaningless"),
                );
            }
            Ok(cidr)
        }
        Err(_) => Err(ConfigError::at(
            &st.span,
            format!("invalid parameter \"{text}\""),
        )),
    }
}

fn set_access_rule(b: &mut Builder, st: &Statement) -> Result<()> {
    use crate::config::{AccessRule, Match};
    let matches = if st.args[0].value == "all" {
        Match::All
    } else {
        Match::Net(arg_cidr(b, st)?)
    };
    let rule = AccessRule {
        deny: st.name == "deny",
        matches,
    };
    b.loc().access.get_or_insert_default().push(rule);
    Ok(())
}

fn set_real_ip_from(b: &mut Builder, st: &Statement) -> Result<()> {
    use std::net::ToSocketAddrs;
    let text = st.args[0].value.clone();
    let blocks = match crate::config::Cidr::parse(&text) {
        Ok(_) => vec![arg_cidr(b, st)?],
        // A host name stands for the addresses it resolves to now.
        Err(_) => {
            let addrs: Vec<_> = (text.as_str(), 0)
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default();
            if addrs.is_empty() {
                return Err(ConfigError::at(
                    &st.span,
                    format!("host not found in set_real_ip_from \"{text}\""),
                ));
            }
            addrs
                .iter()
                .map(|a| {
                    crate::config::Cidr::parse(&a.ip().to_string())
                        .expect("an address")
                        .0
                })
                .collect()
        }
    };
    b.loc().realip_from.get_or_insert_default().extend(blocks);
    Ok(())
}

fn set_real_ip_header(b: &mut Builder, st: &Statement) -> Result<()> {
    use crate::config::RealIpHeader;
    let v = st.args[0].value.as_str();
    let header = match v {
        "X-Real-IP" => RealIpHeader::XRealIp,
        "X-Forwarded-For" => RealIpHeader::XForwardedFor,
        "proxy_protocol" => {
            return Err(ConfigError::at(
                &st.span,
                "\"real_ip_header proxy_protocol\" needs the PROXY protocol, which switchyard does not implement",
            ));
        }
        _ => RealIpHeader::Other(
            HeaderName::from_bytes(v.as_bytes())
                .map_err(|_| ConfigError::at(&st.span, format!("invalid header name \"{v}\"")))?,
        ),
    };
    put(&mut b.loc().realip_header, header, st)
}

// ---------------------------------------------------------------------------
// Compression.

fn set_gzip_types(b: &mut Builder, st: &Statement) -> Result<()> {
    let values = st.values();
    let types = if values.contains(&"*") {
        None
    } else {
        // text/html is always compressed, as in nginx.
        let mut list = vec!["text/html".to_string()];
        for v in values {
            let v = v.to_ascii_lowercase();
            if !list.contains(&v) {
                list.push(v);
            }
        }
        Some(list)
    };
    put(&mut b.loc().gzip_types, types, st)
}

fn set_gzip_comp_level(b: &mut Builder, st: &Statement) -> Result<()> {
    let n = arg_number(st, 0)?;
    if !(1..=9).contains(&n) {
        return Err(ConfigError::at(&st.span, "value must be between 1 and 9"));
    }
    put(&mut b.loc().gzip_comp_level, n as u32, st)
}

fn set_gzip_http_version(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = arg_http_version(st)?;
    put(&mut b.loc().gzip_http_version, v, st)
}

fn set_gzip_proxied(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut flags = 0;
    for v in st.values() {
        let Some((_, bit)) = crate::config::proxied::NAMES.iter().find(|(n, _)| *n == v) else {
            return Err(ConfigError::at(&st.span, format!("invalid value \"{v}\"")));
        };
        flags |= bit;
    }
    put(&mut b.loc().gzip_proxied, flags, st)
}

fn set_gzip_disable(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut list = Vec::new();
    for v in st.values() {
        list.push(if v == "msie6" {
            crate::config::Disable::Msie6
        } else {
            crate::config::Disable::Regex(b.regex(v, true, &st.span)?)
        });
    }
    // Several gzip_disable lines at one level add up.
    b.loc().gzip_disable.get_or_insert_default().extend(list);
    Ok(())
}

fn set_server_tokens(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = match st.args[0].value.as_str() {
        "on" | "build" => true,
        "off" => false,
        _ => return Err(invalid_value(st, 0)),
    };
    put(&mut b.loc().server_tokens, v, st)
}

// ---------------------------------------------------------------------------
// Rewrite module subset: set, return.

fn set_set(b: &mut Builder, st: &Statement) -> Result<()> {
    let var = &st.args[0].value;
    let Some(name) = var.strip_prefix('$') else {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid variable name \"{var}\""),
        ));
    };
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid variable name \"{var}\""),
        ));
    }
    if name == "limit_rate" {
        let value = arg_template(st, 1)?;
        b.rewrite_ops().push(RewriteOp::SetLimitRate(value));
        return Ok(());
    }
    if super::var::resolve_builtin(name).is_some() {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    let value = arg_template(st, 1)?;
    let slot = b.declare(name, IndexedKind::Assigned);
    b.rewrite_ops().push(RewriteOp::Set { slot, value });
    Ok(())
}

fn set_return(b: &mut Builder, st: &Statement) -> Result<()> {
    let first = &st.args[0].value;
    let (status, text) = match first.parse::<u16>() {
        Ok(code) => {
            if code > 999 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            (
                code,
                st.args.get(1).map(|_| arg_template(st, 1)).transpose()?,
            )
        }
        Err(_) => {
            if st.args.len() != 1 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            let lower = first.to_ascii_lowercase();
            if !(lower.starts_with("http://")
                || lower.starts_with("https://")
                || first.starts_with('$'))
            {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            (302, Some(arg_template(st, 0)?))
        }
    };
    b.rewrite_ops()
        .push(RewriteOp::Return(Return { status, text }));
    Ok(())
}

fn set_break(b: &mut Builder, _st: &Statement) -> Result<()> {
    b.rewrite_ops().push(RewriteOp::Break);
    Ok(())
}

fn set_rewrite(b: &mut Builder, st: &Statement) -> Result<()> {
    let regex = b.regex(&st.args[0].value, false, &st.span)?;
    let replacement = arg_template(st, 1)?;
    let flag = match st.args.get(2).map(|w| w.value.as_str()) {
        None => RewriteFlag::None,
        Some("last") => RewriteFlag::Last,
        Some("break") => RewriteFlag::Break,
        Some("redirect") => RewriteFlag::Redirect,
        Some("permanent") => RewriteFlag::Permanent,
        Some(other) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{other}\""),
            ));
        }
    };
    b.rewrite_ops().push(RewriteOp::Rewrite {
        regex,
        replacement,
        flag,
    });
    Ok(())
}

/// `if (cond) { ... }`: the condition's words arrive split by the lexer
/// (`($a`, `=`, `b)`); the parentheses are stripped from the ends.
fn set_if(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut words: Vec<String> = st.args.iter().map(|w| w.value.clone()).collect();
    let bad = || ConfigError::at(&st.span, "invalid condition");
    let first = words.first_mut().ok_or_else(bad)?;
    if first == "(" {
        words.remove(0);
    } else if let Some(rest) = first.strip_prefix('(') {
        *first = rest.to_string();
    } else {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid condition \"{}\"", st.args[0].value),
        ));
    }
    let last = words.last_mut().ok_or_else(bad)?;
    if last == ")" {
        words.pop();
    } else if let Some(rest) = last.strip_suffix(')') {
        *last = rest.to_string();
    } else {
        return Err(ConfigError::at(&st.span, "missing \")\" in condition"));
    }
    let tpl = |s: &str| Template::parse(s).map_err(|e| ConfigError::at(&st.span, e.to_string()));
    let cond = match words.as_slice() {
        [v] if v.starts_with('$') => Condition::Value(tpl(v)?),
        [op, path]
            if matches!(
                op.as_str(),
                "-f" | "!-f" | "-d" | "!-d" | "-e" | "!-e" | "-x" | "!-x"
            ) =>
        {
            let negate = op.starts_with('!');
            let test = match op.trim_start_matches('!') {
                "-f" => FileTest::File,
                "-d" => FileTest::Dir,
                "-e" => FileTest::Exists,
                _ => FileTest::Exec,
            };
            Condition::File {
                path: tpl(path)?,
                test,
                negate,
            }
        }
        [left, op, right] if left.starts_with('$') => match op.as_str() {
            "=" | "!=" => Condition::Compare {
                left: tpl(left)?,
                right: tpl(right)?,
                negate: op == "!=",
            },
            "~" | "~*" | "!~" | "!~*" => Condition::Match {
                left: tpl(left)?,
                regex: b.regex(right, op.ends_with('*'), &st.span)?,
                negate: op.starts_with('!'),
            },
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("unexpected \"{other}\" in condition"),
                ));
            }
        },
        _ => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid condition \"{}\"", words.join(" ")),
            ));
        }
    };
    b.if_stack.push(Vec::new());
    let saved = b.ctx;
    let r = b.walk(st.block.as_deref().unwrap_or(&[]), Ctx::IF);
    b.ctx = saved;
    let ops = b.if_stack.pop().expect("pushed above");
    r?;
    b.rewrite_ops().push(RewriteOp::If { cond, ops });
    Ok(())
}

// ---------------------------------------------------------------------------
// The table.

macro_rules! d {
    ($name:literal, $ctx:expr, $args:expr, $set:expr, $doc:literal) => {
        Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: false,
            set: $set,
            support: Support::Full,
            doc: $doc,
        }
    };
}

macro_rules! block {
    ($name:literal, $ctx:expr, $args:expr, $set:expr, $doc:literal) => {
        Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: true,
            set: $set,
            support: Support::Full,
            doc: $doc,
        }
    };
}

macro_rules! noop {
    ($name:literal, $ctx:expr, $args:expr, $doc:literal) => {
        Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: false,
            set: ignore,
            support: Support::Ignored,
            doc: $doc,
        }
    };
}

const T1: Args = Args::Take(&[1]);
const T2: Args = Args::Take(&[2]);
const T12: Args = Args::Take(&[1, 2]);
const T23: Args = Args::Take(&[2, 3]);
const MAIN: Ctx = Ctx::MAIN;
const EVENTS: Ctx = Ctx::EVENTS;
const HTTP: Ctx = Ctx::HTTP;
const SERVER: Ctx = Ctx::SERVER;
const LOCATION: Ctx = Ctx::LOCATION;
const UPSTREAM: Ctx = Ctx::UPSTREAM;
const HSL: Ctx = Ctx::HSL;
const HS: Ctx = Ctx::HS;
const SL: Ctx = Ctx::SL;
const ANY: Ctx = Ctx(0xffff);

/// Every directive Switchyard knows.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    // --- main ---
    d!("include", ANY, T1, unreachable_include, "Includes files matching a glob, relative to the configuration's directory."),
    d!("daemon", MAIN, Args::Flag, |b, st| { let v = arg_flag(st); put(&mut b.main.daemon, v, st) }, "Detach from the terminal after start-up (default on)."),
    d!("master_process", MAIN, Args::Flag, |b, st| { let v = arg_flag(st); put(&mut b.main.master_process, v, st) }, "Accepted for compatibility: switchyard is always one process with worker threads."),
    d!("pid", MAIN, T1, |b, st| { let p = b.full_path(&st.args[0].value); put(&mut b.main.pid, p, st) }, "Pid file, written once every listener is bound."),
    d!("error_log", Ctx(1 | 4 | 8 | 16), T12, set_error_log, "Error log file (or `stderr`) and minimum level."),
    d!("worker_processes", MAIN, T1, set_worker_processes, "Runtime worker threads (`auto` = number of cores)."),
    d!("worker_rlimit_nofile", MAIN, T1, |b, st| { let n = arg_number(st, 0)?; put(&mut b.main.worker_rlimit_nofile, n, st) }, "Raises RLIMIT_NOFILE at start-up."),
    d!("worker_shutdown_timeout", MAIN, T1, |b, st| { let t = arg_time(st, 0)?; put(&mut b.main.worker_shutdown_timeout, t, st) }, "Bound on a graceful stop: open connections (upgraded too) are closed after it."),
    d!("user", MAIN, T12, set_user, "Account to switch to after binding, when started as root."),
    noop!("worker_cpu_affinity", MAIN, Args::AtLeast(1), "CPU pinning of nginx workers (no effect)."),
    noop!("worker_priority", MAIN, T1, "Scheduling priority of nginx workers (no effect)."),
    noop!("pcre_jit", MAIN, Args::Flag, "PCRE JIT (no effect: regexes use the regex crate)."),
    noop!("timer_resolution", MAIN, T1, "nginx timer granularity (no effect)."),
    noop!("lock_file", MAIN, T1, "nginx accept mutex file (no effect)."),
    noop!("thread_pool", MAIN, Args::AtLeast(1), "nginx thread pools for file I/O (no effect)."),
    noop!("working_directory", MAIN, T1, "Core dump directory (no effect)."),
    block!("events", MAIN, Args::None, set_events, "Connection processing settings."),
    d!("worker_connections", EVENTS, T1, |b, st| { let n = arg_number(st, 0)? as usize; put(&mut b.main.worker_connections, n, st) }, "Most client connections per worker thread."),
    noop!("use", EVENTS, T1, "Event method (no effect: epoll via tokio)."),
    noop!("multi_accept", EVENTS, Args::Flag, "Accept several connections per event (no effect)."),
    noop!("accept_mutex", EVENTS, Args::Flag, "Accept serialisation (no effect)."),
    noop!("accept_mutex_delay", EVENTS, T1, "Accept serialisation delay (no effect)."),
    block!("http", MAIN, Args::None, set_http, "The HTTP server."),
    // --- http ---
    block!("server", HTTP, Args::None, set_server, "A virtual server."),
    block!("upstream", HTTP, T1, set_upstream, "A group of backend servers."),
    block!("map", HTTP, T2, set_map, "Maps a value to a new variable: exact keys, `hostnames` wildcards, `~`/`~*` regexes with captures, `default`, `volatile`."),
    d!("log_format", HTTP, Args::AtLeast(2), set_log_format, "Names an access log format (`escape=default|json|none`)."),
    d!("limit_conn_zone", HTTP, T2, set_limit_conn_zone, "Defines a connection-counting zone keyed by a value."),
    noop!("variables_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("variables_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("server_names_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("server_names_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("map_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("map_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("types_hash_max_size", HSL, T1, "nginx hash sizing (no effect)."),
    noop!("types_hash_bucket_size", HSL, T1, "nginx hash sizing (no effect)."),
    noop!("proxy_headers_hash_max_size", HSL, T1, "nginx hash sizing (no effect)."),
    noop!("proxy_headers_hash_bucket_size", HSL, T1, "nginx hash sizing (no effect)."),
    // --- server ---
    d!("listen", SERVER, Args::AtLeast(1), set_listen, "Address and port (`8080`, `127.0.0.1:80`, `[::]:443`), with `default_server`, `ssl`, `http2`, `backlog=`, `rcvbuf=`, `sndbuf=`, `reuseport`, `ipv6only=`, `so_keepalive=`."),
    d!("server_name", SERVER, Args::AtLeast(1), set_server_name, "Names: exact, `*.example.com`, `example.*`, `.example.com`, `~regex`; default server selection as nginx."),
    block!("location", SL, T12, set_location, "Prefix, `=`, `^~`, `~`, `~*` and `@named` locations, nested; nginx's selection order."),
    d!("ssl_certificate", HS, T1, set_ssl_certificate, "PEM certificate chain for TLS termination."),
    d!("ssl_certificate_key", HS, T1, set_ssl_certificate_key, "PEM private key for the certificate."),
    d!("ssl_protocols", HS, Args::AtLeast(1), set_ssl_protocols, "TLS versions (`TLSv1.2`, `TLSv1.3`)."),
    d!("ssl_ciphers", HS, T1, set_ssl_ciphers, "Accepted; rustls chooses among its own safe suites (warning)."),
    noop!("ssl_prefer_server_ciphers", HS, Args::Flag, "Cipher preference (no effect with rustls)."),
    noop!("ssl_session_cache", HS, Args::AtLeast(1), "TLS session cache sizing (rustls keeps its own in-memory cache)."),
    noop!("ssl_session_timeout", HS, T1, "TLS session lifetime (rustls defaults)."),
    noop!("ssl_session_tickets", HS, Args::Flag, "TLS session tickets (rustls defaults)."),
    noop!("ssl_ecdh_curve", HS, T1, "Key exchange groups (rustls defaults)."),
    noop!("ssl_dhparam", HS, T1, "DH parameters (rustls has no finite-field DH)."),
    noop!("client_header_buffer_size", HS, T1, "Header buffer sizing (no effect)."),
    noop!("large_client_header_buffers", HS, T2, "Header buffer sizing (no effect)."),
    d!("client_header_timeout", HS, T1, |b, st| loc_time(b, st, |l| &mut l.client_header_timeout), "Time allowed for a TLS handshake and a request head (default 60s; the listening address's default server decides)."),
    noop!("merge_slashes", HS, Args::Flag, "Slashes in URIs are always merged."),
    noop!("underscores_in_headers", HS, Args::Flag, "Header names with underscores are always accepted."),
    noop!("ignore_invalid_headers", HS, Args::Flag, "Invalid header lines are rejected by the HTTP parser."),
    // --- location-level, inherited from http and server ---
    d!("proxy_pass", LOCATION, T1, set_proxy_pass, "Backend URL: address, upstream name, optional URI part replacing the location prefix, variables."),
    d!("proxy_http_version", HSL, T1, set_proxy_http_version, "HTTP version to the backend (`1.0` default; WebSocket handshakes always use 1.1)."),
    d!("proxy_set_header", HSL, T2, set_proxy_set_header, "Header sent to the backend; a level that sets any replaces the whole inherited set; empty value removes."),
    d!("proxy_hide_header", HSL, T1, |b, st| header_list(b, st, |l| &mut l.hide_headers), "Backend response header not passed to the client."),
    d!("proxy_pass_header", HSL, T1, |b, st| header_list(b, st, |l| &mut l.pass_headers), "Passes a header hidden by default (`Server`, `Date`, `X-Accel-*`)."),
    d!("proxy_pass_request_headers", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.pass_request_headers), "Whether client headers are passed."),
    d!("proxy_pass_request_body", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.pass_request_body), "Whether the client body is passed."),
    d!("proxy_set_body", HSL, T1, set_proxy_set_body, "Replaces the request body sent upstream."),
    d!("proxy_read_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.read_timeout), "Backend silence allowed between reads (default 60s); upgraded connections idle longer are closed."),
    d!("proxy_send_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.send_timeout_upstream), "Bound on each write to the backend (default 60s)."),
    d!("proxy_connect_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.connect_timeout), "Bound on connecting to the backend (default 60s; 504 after)."),
    d!("proxy_buffering", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.buffering), "Accepted; responses are always streamed as they arrive (nginx's `off`), never spooled to memory or disk; upgraded connections are never buffered."),
    d!("proxy_request_buffering", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.request_buffering), "Read the whole client body before contacting the backend."),
    d!("proxy_buffer_size", HSL, T1, |b, st| loc_usize(b, st, |l| &mut l.buffer_size), "Largest backend response head (default 4k); a larger one is a 502 \"upstream sent too big header\"."),
    Directive { name: "proxy_buffers", contexts: HSL, args: T2, block: false, set: set_proxy_buffers, support: Support::Ignored, doc: "Response buffer count and size (no effect: responses are streamed)." },
    d!("client_body_temp_path", HSL, Args::Take(&[1, 2, 3, 4]), set_client_body_temp_path, "Directory for request bodies larger than `client_body_buffer_size` (default: the system's temporary directory, e.g. `/tmp`); created when first needed. Files are unlinked as soon as they are created, so the `level` arguments are checked and have no effect."),
    noop!("proxy_temp_path", HSL, Args::Take(&[1, 2, 3, 4]), "Responses are never spooled to disk (no effect)."),
    noop!("proxy_busy_buffers_size", HSL, T1, "Response buffer tuning (no effect)."),
    noop!("proxy_max_temp_file_size", HSL, T1, "Responses are never spooled to disk (no effect)."),
    noop!("proxy_temp_file_write_size", HSL, T1, "Responses are never spooled to disk (no effect)."),
    d!("proxy_cache", HSL, T1, set_proxy_cache, "Only `off` is accepted (caching is not implemented)."),
    d!("proxy_redirect", HSL, Args::Take(&[1, 2]), set_proxy_redirect, "`default` or `off` (rewriting Location headers from the backend)."),
    d!("proxy_next_upstream", HSL, Args::AtLeast(1), set_next_upstream, "When to try the next backend: `error`, `timeout`, `invalid_header`, `http_5xx`, `non_idempotent`, `off`."),
    d!("proxy_next_upstream_tries", HSL, T1, |b, st| { let n = arg_number(st, 0)? as usize; put(&mut b.loc().next_upstream_tries, n, st) }, "Most backends tried per request (0 = all)."),
    d!("proxy_next_upstream_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.next_upstream_timeout), "Time limit for trying further backends (0 = none)."),
    d!("proxy_intercept_errors", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.intercept_errors), "Use `error_page` for backend responses >= 300."),
    d!("proxy_ignore_client_abort", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ignore_client_abort), "Keep the backend request when the client goes away."),
    d!("proxy_ssl_verify", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_verify), "Verify the backend's certificate (default off, as nginx) with OpenSSL's rules: chains by webpki, the common name when subjectAltName has no DNS names, and a self-signed certificate listed in `proxy_ssl_trusted_certificate` accepted as its own anchor (even marked CA, or X.509 v1)."),
    d!("proxy_ssl_trusted_certificate", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_trusted_certificate), "CA or backend certificates (PEM) for `proxy_ssl_verify`; required with it, read at load."),
    d!("proxy_ssl_name", HSL, T1, set_proxy_ssl_name, "Name verified in (and sent as SNI for) the backend certificate (default `$proxy_host`)."),
    d!("proxy_ssl_server_name", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_server_name), "Send SNI to the backend."),
    d!("proxy_ssl_verify_depth", HSL, T1, |b, st| { let n = arg_number(st, 0)? as u32; put(&mut b.loc().ssl_verify_depth, n, st) }, "Certificate chain depth (accepted; rustls verifies full chains)."),
    d!("proxy_ssl_session_reuse", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_session_reuse), "Resume TLS sessions with the backend."),
    d!("proxy_ssl_certificate", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_certificate), "Client certificate presented to the backend."),
    d!("proxy_ssl_certificate_key", HSL, T1, |b, st| loc_path(b, st, |l| &mut l.ssl_certificate_key), "Key of the client certificate."),
    noop!("proxy_ssl_protocols", HSL, Args::AtLeast(1), "Backend TLS versions (rustls: 1.2 and 1.3)."),
    noop!("proxy_ssl_ciphers", HSL, T1, "Backend cipher list (rustls defaults)."),
    noop!("proxy_socket_keepalive", HSL, Args::Flag, "TCP keepalive to backends (no effect)."),
    d!("send_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.send_timeout), "Bound on each write to the client (default 60s)."),
    d!("keepalive_timeout", Ctx(4 | 8 | 16 | 32), T12, set_keepalive_timeout, "Idle time of client keep-alive connections (default 75s); in `upstream`, of cached backend connections (60s)."),
    d!("keepalive_requests", Ctx(4 | 8 | 16 | 32), T1, set_keepalive_requests, "Requests per keep-alive connection (default 1000)."),
    d!("keepalive_time", Ctx(4 | 8 | 16 | 32), T1, set_keepalive_time, "In `upstream`: lifetime of a cached backend connection (default 1h)."),
    d!("client_max_body_size", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.client_max_body_size), "Largest request body (default 1m; 0 = unlimited); larger gets 413."),
    d!("client_body_timeout", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.client_body_timeout), "Client silence allowed while sending a body (default 60s)."),
    d!("client_body_buffer_size", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.client_body_buffer_size), "A request body read before proxying (`proxy_request_buffering on`, or chunked to an HTTP/1.0 backend) stays in memory up to this size (default 16k) and goes to a temporary file beyond."),
    d!("access_log", HSL, Args::AtLeast(1), set_access_log, "Access log path, format and `if=`; `off` disables. One write per line, as nginx without `buffer=` (`buffer=`/`flush=` are accepted and ignored)."),
    d!("add_header", HSL, T23, set_add_header, "Adds a response header for 2xx/3xx (`always`: every status); a level that adds any replaces the inherited set."),
    d!("expires", HSL, T12, set_expires, "`Expires` and `Cache-Control: max-age` on 2xx/3xx responses."),
    d!("root", HSL, T1, |b, st| set_root(b, st, false), "Document root for static files."),
    d!("alias", LOCATION, T1, |b, st| set_root(b, st, true), "Replaces the location prefix with a directory."),
    d!("index", HSL, Args::AtLeast(1), set_index, "Index files for directory requests."),
    d!("try_files", SL, Args::AtLeast(2), set_try_files, "Tries files in order, then an internal redirect, named location or `=code`."),
    d!("default_type", HSL, T1, set_default_type, "MIME type for unknown extensions."),
    d!("limit_req_zone", HTTP, Args::Take(&[3]), set_limit_req_zone, "A request-rate zone: key, `zone=name:size`, `rate=Nr/s` or `Nr/m` (nginx's leaky bucket, state kept across reloads)."),
    d!("limit_req", HSL, Args::Take(&[1, 2, 3]), set_limit_req, "Limits the request rate per key (`burst=N`, `nodelay` or `delay=N`); excess within the burst is delayed, beyond it refused with `limit_req_status`. Runs before `limit_conn`; WebSocket handshakes count as requests."),
    d!("limit_req_status", HSL, T1, |b, st| { let code = arg_error_status(st)?; put(&mut b.loc().limit_req_status, code, st) }, "Status for refused requests (default 503)."),
    d!("limit_req_log_level", HSL, T1, |b, st| { let level = arg_limit_log_level(st)?; put(&mut b.loc().limit_req_log_level, level, st) }, "Level for refusals (default `error`); delays log one level lower."),
    d!("limit_req_dry_run", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.limit_req_dry_run), "Counts and logs, but neither refuses nor delays (`$limit_req_status` tells what would have happened)."),
    d!("allow", HSL, T1, set_access_rule, "Allows an address, CIDR block or `all`. Rules run in order, the first match decides, and a level with any rule replaces the inherited list. As in nginx they run after the rewrite phase: a `return` in the same location answers before them. WebSocket handshakes are checked like any request."),
    d!("deny", HSL, T1, set_access_rule, "Denies an address, CIDR block or `all` with 403 and an error line \"access forbidden by rule\"."),
    d!("set_real_ip_from", HSL, T1, set_real_ip_from, "A trusted proxy (address, CIDR, or host name resolved at load): the client address is taken from `real_ip_header` for requests it sends. `$remote_addr`, `$binary_remote_addr`, `allow`/`deny`, `limit_conn` keys, `ip_hash` and logs then see the real client."),
    d!("real_ip_header", HSL, T1, set_real_ip_header, "`X-Real-IP` (default), `X-Forwarded-For`, or any header name."),
    d!("real_ip_recursive", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.realip_recursive), "With `X-Forwarded-For`, skip trusted proxies from the right instead of taking the last address."),
    d!("gzip", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.gzip), "Compresses responses (status 200/403/404, listed types, clients sending `Accept-Encoding: gzip`); backend bodies are compressed as they stream, each read flushed."),
    d!("gzip_types", HSL, Args::AtLeast(1), set_gzip_types, "MIME types to compress besides `text/html`; `*` for any."),
    d!("gzip_comp_level", HSL, T1, set_gzip_comp_level, "Compression level 1-9 (default 1)."),
    d!("gzip_min_length", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.gzip_min_length), "Smallest `Content-Length` worth compressing (default 20); unknown lengths are compressed."),
    d!("gzip_http_version", HSL, T1, set_gzip_http_version, "Lowest request HTTP version to compress for (`1.1` by default)."),
    d!("gzip_proxied", HSL, Args::AtLeast(1), set_gzip_proxied, "Compression for requests that came through a proxy (`Via`): `off`, `any`, `auth`, `expired`, `no-cache`, `no-store`, `private`, `no_last_modified`, `no_etag`."),
    d!("gzip_vary", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.gzip_vary), "Adds `Vary: Accept-Encoding` to responses that qualify for compression."),
    d!("gzip_disable", HSL, Args::AtLeast(1), set_gzip_disable, "No compression for `User-Agent`s matching these case-insensitive regexes (`msie6`: MSIE 4-6)."),
    noop!("gzip_buffers", HSL, T2, "Compression buffers (no effect)."),
    noop!("gzip_window", HSL, T1, "Compression window (no effect: the compressor's default)."),
    noop!("gzip_hash", HSL, T1, "Compression memory (no effect)."),
    noop!("postpone_gzipping", HSL, T1, "Compression start threshold (no effect)."),
    noop!("gzip_no_buffer", HSL, Args::Flag, "Compression buffering (no effect)."),
    block!("types", HSL, Args::None, set_types, "Extension to MIME type table (`include mime.types;` works); a level with a `types` block replaces the inherited one. With none anywhere, a built-in table of common web types applies."),
    d!("limit_conn", HSL, T2, set_limit_conn, "Most concurrent connections per key of a zone (an upgraded connection counts until it closes)."),
    d!("limit_conn_status", HSL, T1, set_limit_conn_status, "Status for refused connections (default 503)."),
    d!("limit_conn_log_level", HSL, T1, set_limit_conn_log_level, "Log level of refusals (default error)."),
    d!("limit_rate", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.limit_rate), "Response bytes per second per request (0 = unlimited); `$limit_rate` overrides it."),
    d!("limit_rate_after", HSL, T1, |b, st| loc_size(b, st, |l| &mut l.limit_rate_after), "Bytes sent at full speed before `limit_rate` applies."),
    d!("log_not_found", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.log_not_found), "Log missing static files."),
    d!("server_tokens", HSL, T1, set_server_tokens, "Show the version in `Server` and error pages."),
    d!("error_page", HSL, Args::AtLeast(2), set_error_page, "URI or named location for error statuses, with optional `=code`."),
    d!("internal", LOCATION, Args::None, set_internal, "Location reachable only by internal redirects."),
    noop!("sendfile", HSL, Args::Flag, "Kernel file sending (no effect)."),
    noop!("tcp_nopush", HSL, Args::Flag, "TCP_CORK (no effect)."),
    noop!("tcp_nodelay", HSL, Args::Flag, "TCP_NODELAY is always on."),
    noop!("reset_timedout_connection", HSL, Args::Flag, "Reset on timeout (no effect)."),
    noop!("lingering_close", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("lingering_time", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("lingering_timeout", HSL, T1, "Lingering close tuning (no effect)."),
    noop!("open_file_cache", HSL, Args::AtLeast(1), "File descriptor cache (no effect)."),
    noop!("output_buffers", HSL, T2, "Output buffer sizing (no effect)."),
    noop!("postpone_output", HSL, T1, "Output coalescing (no effect)."),
    // --- rewrite subset ---
    d!("set", Ctx(8 | 16 | 64), T2, set_set, "Assigns a variable in the rewrite phase."),
    d!("return", Ctx(8 | 16 | 64), T12, set_return, "Stops processing and returns a status, text or redirect."),
    d!("rewrite", Ctx(8 | 16 | 64), T23, set_rewrite, "Rewrites `$uri` by regex; `last` searches locations again, `break` stays, `redirect`/`permanent` answer 302/301."),
    d!("break", Ctx(8 | 16 | 64), Args::None, set_break, "Stops the rewrite directives of the current level."),
    block!("if", Ctx(8 | 16 | 64), Args::AtLeast(1), set_if, "Runs `return`, `rewrite`, `set`, `break` and nested `if` when `($var)`, `=`/`!=`, `~`/`~*`/`!~`/`!~*`, `-f`/`-d`/`-e`/`-x` holds. Other directives inside `if` are refused (nginx's implicit location inside `if` is a known trap)."),
    // --- upstream ---
    d!("server", UPSTREAM, Args::AtLeast(1), set_upstream_server, "A backend: `ADDR [weight=N] [max_fails=N] [fail_timeout=T] [backup] [down] [max_conns=N]`."),
    d!("ip_hash", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::IpHash), "Sticky by client address (nginx's algorithm, same choices)."),
    d!("hash", UPSTREAM, T12, set_hash, "Sticky by a key; `consistent` for ketama-style hashing."),
    d!("least_conn", UPSTREAM, Args::None, |b, st| set_balance(b, st, BalanceMethod::LeastConn), "Fewest active connections, weighted."),
    d!("random", UPSTREAM, Args::Take(&[0, 1]), set_random, "Random choice, or the better of `two`."),
    d!("keepalive", UPSTREAM, T1, set_upstream_keepalive, "Idle backend connections cached per worker for reuse."),
    noop!("zone", UPSTREAM, T12, "Shared upstream state (switchyard's state is always shared between threads)."),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_have_unique_name_context_pairs() {
        for (i, a) in DIRECTIVES.iter().enumerate() {
            for b in &DIRECTIVES[i + 1..] {
                assert!(
                    !(a.name == b.name && a.contexts.0 & b.contexts.0 != 0),
                    "{} appears twice for one context",
                    a.name
                );
            }
        }
    }

    #[test]
    fn directives_lookup_by_context() {
        assert!(lookup_in("keepalive_timeout", Ctx::UPSTREAM).is_some());
        assert!(lookup_in("proxy_pass", Ctx::HTTP).is_some());
        assert!(lookup_in("proxy_pas", Ctx::LOCATION).is_none());
    }
}
