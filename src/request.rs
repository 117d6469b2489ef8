//! Per-connection and per-request state that variables read.
//!
//! [`RequestCtx`] is what `$variables` are evaluated against: the request
//! head, the chosen server and location, lazily computed `map` values,
//! regex captures, and what is learnt while proxying (upstream address,
//! status, bytes) for the access log.

pub mod vars;

use crate::net::{ConnAddr, forwarded_addr};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::time::Instant;

use http::{Method, Version};

use crate::http1::Headers;

use crate::config::template::{Piece, Template};
use crate::config::{CompiledRegex, GeoAddr, GeoDef, Http, IndexedKind, Location, MapDef, Server};
use crate::log::Level;

/// Facts about a client connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Connection number (`$connection`, `*N` in error lines).
    pub id: u64,
    /// Client address.
    pub remote: ConnAddr,
    /// Our address the client connected to.
    pub local: ConnAddr,
    /// The `listen` address that accepted the connection (with `local`,
    /// it picks the address's servers, again after a reload).
    pub listen: Arc<crate::config::ListenAddr>,
    /// Whether TLS was terminated on this connection.
    pub tls: bool,
    /// What the TLS handshake negotiated, when TLS was terminated.
    pub tls_session: Option<crate::tls::TlsSession>,
    /// A plain-HTTP client on a TLS address: its requests get nginx's 497.
    pub plain_http_on_tls: bool,
    /// When the connection was accepted (`$connection_time`).
    pub since: std::time::Instant,
    /// `$http2`: `h2` (HTTP/2 over TLS), `h2c` (with prior knowledge on
    /// a plain address), or empty.
    pub http2: &'static str,
    /// Where connection-level errors go (before a request picks a
    /// location): the error log of the address's default server.
    pub error_log: Arc<Vec<crate::log::ErrorLogTarget>>,
    /// The server's counters (`$connections_*`, `stub_status`).
    pub stats: Arc<crate::stats::Stats>,
}

impl ConnInfo {
    /// Writes a connection-level line (`*N` prefix) to the default
    /// server's error log.
    pub fn log(&self, level: crate::log::Level, message: &str) {
        crate::log::error_to(&self.error_log, level, self.id, message);
    }
}

/// Positions of a regex match's groups in a subject.
#[derive(Debug, Clone)]
pub struct Captures {
    /// The matched text.
    pub subject: String,
    /// Group spans; index 0 is the whole match.
    pub groups: Vec<Option<(usize, usize)>>,
}

/// The state of an indexed variable in this request.
#[derive(Debug, Clone, Default)]
pub enum Slot {
    /// Not computed yet.
    #[default]
    Unset,
    /// Being computed (a `map` that refers to itself is a cycle).
    Evaluating,
    /// Computed: not found.
    NotFound,
    /// Computed value.
    Value(Vec<u8>),
}

/// One try at a backend.
#[derive(Debug, Default, Clone)]
pub struct Attempt {
    /// The peer (`127.0.0.1:8081`), or the group name when none was live.
    pub addr: String,
    /// Its status (`502` for a failed connection, `499` if the client left).
    pub status: Option<u16>,
    /// Time to connect.
    pub connect: Option<std::time::Duration>,
    /// Time to the response head.
    pub header: Option<std::time::Duration>,
    /// Time to the end of the exchange (unknown while the body is sent).
    pub response: Option<std::time::Duration>,
    /// Body bytes received (`$upstream_response_length`).
    pub length: u64,
}

/// What the proxy learnt about the upstream exchange.
#[derive(Debug, Default)]
pub struct UpstreamInfo {
    /// `$proxy_host`.
    pub proxy_host: Option<String>,
    /// `$proxy_port`.
    pub proxy_port: Option<u16>,
    /// Every try, in order (`$upstream_addr`, `$upstream_status`, the
    /// `$upstream_*_time` variables join them with `", "`).
    pub attempts: Vec<Attempt>,
    /// The upstream response headers (`$upstream_http_*`).
    pub headers: Option<Headers>,
    /// When the attempt that produced the response started.
    pub started: Option<tokio::time::Instant>,
}

impl UpstreamInfo {
    /// Joins one field of every attempt as nginx does (`a, b`); `None` when
    /// there were no attempts.
    pub fn join(&self, field: impl Fn(&Attempt) -> String) -> Option<String> {
        if self.attempts.is_empty() {
            return None;
        }
        Some(
            self.attempts
                .iter()
                .map(field)
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// The user and password of an `Authorization: Basic` header, as nginx
/// reads them (`$remote_user`, `auth_basic`): the scheme in any case, then
/// spaces, then base64 up to any `=`; the user is what precedes the first
/// `:` and may not be empty. `None` when there is no such header or it
/// does not decode to that shape.
pub fn basic_credentials(headers: &Headers) -> Option<(Vec<u8>, Vec<u8>)> {
    use base64::Engine as _;
    const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let value = headers.get(&http::header::AUTHORIZATION)?.as_bytes();
    if value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let encoded = value[6..].trim_ascii_start();
    let end = memchr::memchr(b'=', encoded).unwrap_or(encoded.len());
    let decoded = LENIENT.decode(&encoded[..end]).ok()?;
    let colon = memchr::memchr(b':', &decoded)?;
    if colon == 0 {
        return None;
    }
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// `d.ddd` seconds, or `-` when unknown.
pub fn secs(d: Option<std::time::Duration>) -> String {
    match d {
        Some(d) => format!("{}.{:03}", d.as_secs(), d.subsec_millis()),
        None => "-".into(),
    }
}

/// What was sent to the client.
#[derive(Debug, Default)]
pub struct ResponseInfo {
    /// `$status`.
    pub status: u16,
    /// `$bytes_sent`: head and body (and relayed bytes of an upgraded
    /// connection).
    pub bytes_sent: u64,
    /// `$body_bytes_sent`.
    pub body_bytes_sent: u64,
    /// Bytes into and out of the compressor, when the body was gzipped
    /// (`$gzip_ratio`).
    pub gzip: Option<(u64, u64)>,
    /// Headers sent (`$sent_http_*`).
    pub headers: Option<Headers>,
    /// Trailers sent, as far as evaluated (`$sent_trailer_*`).
    pub trailers: Option<Headers>,
}

/// Everything variables are evaluated against.
#[derive(Debug)]
pub struct RequestCtx {
    /// The client connection.
    pub conn: Arc<ConnInfo>,
    /// The configuration generation serving this request.
    pub http: Arc<Http>,
    /// The chosen server.
    pub server: Arc<Server>,
    /// The chosen location.
    pub location: Option<Arc<Location>>,
    /// Request method.
    pub method: Method,
    /// Request HTTP version.
    pub version: Version,
    /// `$request_uri`: the target as the client sent it.
    pub request_uri: String,
    /// `$uri`: decoded, normalised path (changes on internal redirects).
    pub uri: String,
    /// `$args`: the query string without `?`.
    pub args: Option<String>,
    /// Request headers.
    pub headers: Headers,
    /// `$host`.
    pub host: String,
    /// Indexed variables (map outputs, `set`, named captures).
    pub indexed: Vec<Slot>,
    /// The last regex match (`$1`..`$9`).
    pub captures: Option<Captures>,
    /// Upstream facts.
    pub upstream: UpstreamInfo,
    /// Response facts.
    pub response: ResponseInfo,
    /// When the request started (`$request_time`).
    pub start: Instant,
    /// `$request_length`.
    pub request_length: u64,
    /// `$request_body` and `$request_body_file`, once the body is read.
    pub body: BodyVars,
    /// `$connection_requests`.
    pub connection_requests: u64,
    /// `$limit_rate` when set by `set`; otherwise the location's
    /// `limit_rate` applies.
    pub limit_rate: Option<u64>,
    /// The client address as far as the request is concerned
    /// (`$remote_addr`): the peer, or the address trusted proxies report
    /// (`set_real_ip_from`).
    pub remote: ConnAddr,
    /// The peer address when `set_real_ip_from` replaced it
    /// (`$realip_remote_addr`).
    pub realip_peer: Option<ConnAddr>,
    /// `$limit_req_status` once `limit_req` has judged the request
    /// (`PASSED`, `DELAYED`, `REJECTED`, `DELAYED_DRY_RUN`,
    /// `REJECTED_DRY_RUN`).
    pub limit_req_status: Option<&'static str>,
}

impl RequestCtx {
    /// Renders a template; variables not found render as nothing.
    pub fn render_into(&mut self, t: &Template, out: &mut Vec<u8>) {
        for piece in &t.pieces {
            match piece {
                Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Var(v) => {
                    self.eval_into(v, out);
                }
                Piece::Name(_) => debug_assert!(false, "unbound variable in template"),
            }
        }
    }

    /// Renders a template to owned bytes.
    pub fn render(&mut self, t: &Template) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(t, &mut out);
        out
    }

    /// Renders a template to a string (lossy for non-UTF-8 bytes).
    pub fn render_string(&mut self, t: &Template) -> String {
        match String::from_utf8(self.render(t)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Evaluates an indexed variable, computing a `map` on first use.
    pub(crate) fn indexed_into(&mut self, i: usize, out: &mut Vec<u8>) -> bool {
        if i >= self.indexed.len() {
            self.indexed
                .resize(self.http.indexed.len().max(i + 1), Slot::Unset);
        }
        match &self.indexed[i] {
            Slot::Value(v) => {
                out.extend_from_slice(v);
                return true;
            }
            Slot::NotFound => return false,
            Slot::Evaluating => {
                let name = self.http.indexed[i].name.clone();
                self.conn.log(
                    Level::Error,
                    &format!("cycle while evaluating variable \"{name}\""),
                );
                return false;
            }
            Slot::Unset => {}
        }
        let http = self.http.clone();
        // A value that needs itself (a map or split of its own variable)
        // is a cycle, reported above instead of recursing.
        self.indexed[i] = Slot::Evaluating;
        let (value, volatile) = match http.indexed[i].kind {
            IndexedKind::Map(m) => {
                let map = &http.maps[m];
                let mut value = Vec::new();
                self.eval_map(map, &mut value);
                (value, map.volatile)
            }
            IndexedKind::Geo(g) => {
                let geo = &http.geos[g];
                (self.eval_geo(geo), geo.volatile)
            }
            IndexedKind::Split(s) => {
                let split = &http.splits[s];
                let source = self.render(&split.source);
                (split.lookup(&source).to_vec(), false)
            }
            IndexedKind::Assigned => {
                // Not set yet: nothing to compute.
                self.indexed[i] = Slot::Unset;
                return false;
            }
        };
        out.extend_from_slice(&value);
        self.indexed[i] = if volatile {
            Slot::Unset
        } else {
            Slot::Value(value)
        };
        true
    }

    /// Assigns an indexed variable (`set`, named captures).
    pub fn assign(&mut self, i: usize, value: Vec<u8>) {
        if i >= self.indexed.len() {
            self.indexed
                .resize(self.http.indexed.len().max(i + 1), Slot::Unset);
        }
        self.indexed[i] = Slot::Value(value);
    }

    /// A `geo` lookup: the client address or `$address`, through
    /// `X-Forwarded-For` when it is one of the `proxy` networks.
    fn eval_geo(&mut self, geo: &GeoDef) -> Vec<u8> {
        let mut addr = match &geo.source {
            None => self.remote.ip().map_or(GeoAddr::None, GeoAddr::Ip),
            Some(t) => {
                let text = self.render(t);
                std::str::from_utf8(&text)
                    .ok()
                    .and_then(|s| s.parse::<IpAddr>().ok())
                    .map_or(GeoAddr::None, GeoAddr::Ip)
            }
        };
        if let GeoAddr::Ip(ip) = addr
            && geo.is_proxy(addr)
        {
            // Without proxy_recursive only the last header line counts;
            // with it, every line, read from the last.
            let name = http::header::HeaderName::from_static("x-forwarded-for");
            let mut list = Vec::new();
            for line in self.headers.get_all(&name) {
                if !geo.proxy_recursive {
                    list.clear();
                } else if !list.is_empty() {
                    list.push(b',');
                }
                list.extend_from_slice(line.as_bytes());
            }
            let peer = ConnAddr::Inet(std::net::SocketAddr::new(ip, 0));
            if let Some(found) =
                forwarded_addr(peer, &list, &geo.proxies, geo.proxy_recursive).and_then(|a| a.ip())
            {
                addr = GeoAddr::Ip(found);
            }
        }
        geo.lookup(addr).to_vec()
    }

    fn eval_map(&mut self, map: &MapDef, out: &mut Vec<u8>) {
        let source = self.render(&map.source);
        let mut key = source.to_ascii_lowercase();
        if map.hostnames {
            while key.last() == Some(&b'.') {
                key.pop();
            }
        }
        if let Some(t) = map.exact.get(&key) {
            self.render_into(t, out);
            return;
        }
        if map.hostnames {
            for (suffix, t) in &map.wildcard_head {
                if key.len() > suffix.len() && key.ends_with(suffix) {
                    self.render_into(t, out);
                    return;
                }
            }
            for (prefix, t) in &map.wildcard_tail {
                if key.len() > prefix.len() && key.starts_with(prefix) {
                    self.render_into(t, out);
                    return;
                }
            }
        }
        for (re, t) in &map.regexes {
            if self.regex_match(re, &source) {
                self.render_into(t, out);
                return;
            }
        }
        self.render_into(&map.default, out);
    }

    /// Matches `re` against `subject`; on a match the captures become the
    /// request's `$1`..`$9` and named captures are assigned.
    pub fn regex_match(&mut self, re: &CompiledRegex, subject: &[u8]) -> bool {
        let Some(caps) = re.regex.captures(subject) else {
            return false;
        };
        let groups: Vec<Option<(usize, usize)>> = (0..caps.len())
            .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
            .collect();
        for &(group, slot) in &re.named {
            if let Some(m) = caps.get(group) {
                self.assign(slot, m.as_bytes().to_vec());
            }
        }
        self.captures = Some(Captures {
            subject: String::from_utf8_lossy(subject).into_owned(),
            groups,
        });
        true
    }

    /// Response bytes per second: `$limit_rate` if set, else the
    /// location's `limit_rate` (0 = unlimited).
    pub fn effective_limit_rate(&self) -> u64 {
        self.limit_rate.unwrap_or_else(|| match &self.location {
            Some(l) => l.conf.limit_rate,
            None => self.server.conf.limit_rate,
        })
    }

    /// `$document_root` for the current location.
    pub fn document_root(&mut self) -> Option<PathBuf> {
        let conf = match &self.location {
            Some(l) => l.conf.clone(),
            None => self.server.conf.clone(),
        };
        let bytes = self.render(&conf.root.path);
        Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A per-request random id (`$request_id`).
    pub fn request_id(&self) -> u128 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.conn.id);
        h.write_u128(self.start.elapsed().as_nanos());
        let a = h.finish();
        h.write_u64(a);
        ((a as u128) << 64) | h.finish() as u128
    }
}

/// What the variables know of a request body read before proxying.
#[derive(Debug, Default)]
pub struct BodyVars {
    /// `$request_body`: the body, when it was read into memory.
    pub data: Option<bytes::Bytes>,
    /// `$request_body_file`: the file it was written to.
    pub file: Option<BodyFile>,
}

/// A request body's temporary file, by name: removed when the request
/// ends unless `client_body_in_file_only on` keeps it, as nginx does.
#[derive(Debug)]
pub struct BodyFile {
    /// Where it is.
    pub path: std::path::PathBuf,
    /// Left in place at the end (`client_body_in_file_only on`).
    pub keep: bool,
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
