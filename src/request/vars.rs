//! Variables: evaluating the `$name` values configurations refer to
//! against a request.
//!
//! Names were resolved to a [`Var`] once, when the configuration loaded
//! ([`crate::config::var`]); evaluation needs no string lookups. Values are bytes (header values
//! need not be UTF-8) and are appended to a caller's buffer, so rendering a
//! header or a log line allocates at most that one buffer.
//!
//! A variable is either *found* (possibly empty) or *not found*; nginx's
//! distinction matters in logs (`-`) and in `map` (an unset header maps as
//! the empty string).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::HeaderName;

use super::RequestCtx;
use crate::config::var::{Builtin, Var};
use crate::net::ConnAddr;

/// `$gzip_ratio`: uncompressed over compressed size, two decimals.
pub fn ratio(bytes_in: u64, bytes_out: u64) -> String {
    if bytes_out == 0 {
        return "0.00".into();
    }
    let hundredths = (bytes_in as u128 * 100) / bytes_out as u128;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// A certificate in PEM, lines of 64 characters, as OpenSSL writes it.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A certificate time as OpenSSL's `ASN1_TIME_print` shows it
/// (`Jan  2 03:04:05 2030 GMT`).
fn asn1_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(String::new, |t| {
        t.format("%b %e %H:%M:%S %Y GMT").to_string()
    })
}

/// Appends a socket address's IP in nginx's text form (IPv6 without
/// brackets, IPv4-mapped addresses shown as IPv4).
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let _ = write!(out, "{ip}");
}

/// A client address as `$remote_addr` shows it: the IP, or `unix:`.
pub fn write_conn_addr(out: &mut Vec<u8>, addr: ConnAddr) {
    match addr.ip() {
        Some(ip) => write_ip(out, ip),
        None => out.extend_from_slice(b"unix:"),
    }
}

/// Formats an address as nginx shows upstream addresses (`[::1]:80`).
pub fn addr_text(addr: &SocketAddr) -> String {
    let mut s = String::new();
    let _ = write!(s, "{addr}");
    s
}

impl RequestCtx {
    /// Appends the value of `var` to `out`; returns false when the variable
    /// is "not found" (nothing is appended then).
    pub fn eval_into(&mut self, var: &Var, out: &mut Vec<u8>) -> bool {
        match var {
            Var::Builtin(b) => self.builtin_into(*b, out),
            Var::Http(name) => self.header_into(name, out),
            Var::SentHttp(name) => match self.response.headers.as_ref() {
                Some(headers) => join_headers(headers, name, out),
                None => false,
            },
            Var::SentTrailer(name) => match self.response.trailers.as_ref() {
                Some(trailers) => join_headers(trailers, name, out),
                None => false,
            },
            Var::UpstreamHttp(name) => match self.upstream.headers.as_ref() {
                Some(headers) => join_headers(headers, name, out),
                None => false,
            },
            Var::UpstreamCookie(name) => match self.upstream.headers.as_ref() {
                Some(headers) => set_cookie_value(headers, name, out),
                None => false,
            },
            Var::Arg(name) => match find_arg(self.args.as_deref(), name) {
                Some(v) => {
                    out.extend_from_slice(v.as_bytes());
                    true
                }
                None => false,
            },
            Var::Cookie(name) => match self.cookie(name) {
                Some(v) => {
                    out.extend_from_slice(&v);
                    true
                }
                None => false,
            },
            Var::Capture(n) => self.capture_into(*n, out),
            Var::Indexed(i) => self.indexed_into(*i, out),
            Var::Unsupported(_) => false,
        }
    }

    /// The value of `var` as owned bytes, or `None` when not found.
    pub fn eval(&mut self, var: &Var) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.eval_into(var, &mut out).then_some(out)
    }

    fn header_into(&self, name: &HeaderName, out: &mut Vec<u8>) -> bool {
        join_headers(&self.headers, name, out)
    }

    fn capture_into(&self, n: usize, out: &mut Vec<u8>) -> bool {
        let Some(caps) = &self.captures else {
            return false;
        };
        match caps.groups.get(n).copied().flatten() {
            Some((start, end)) => {
                out.extend_from_slice(&caps.subject.as_bytes()[start..end]);
                true
            }
            None => n < caps.groups.len(),
        }
    }

    fn builtin_into(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        use Builtin as B;
        match b {
            B::RemoteAddr
            | B::RemotePort
            | B::RealipRemoteAddr
            | B::RealipRemotePort
            | B::BinaryRemoteAddr
            | B::ServerAddr
            | B::ServerPort
            | B::Scheme
            | B::Https
            | B::Http2
            | B::ConnectionTime
            | B::ConnectionsActive
            | B::ConnectionsReading
            | B::ConnectionsWriting
            | B::ConnectionsWaiting
            | B::Connection
            | B::ConnectionRequests
            | B::SslServerName
            | B::SslProtocol
            | B::SslCipher
            | B::SslSessionReused => self.connection_var(b, out),
            B::SslClientVerify
            | B::SslClientSDn
            | B::SslClientIDn
            | B::SslClientCert
            | B::SslClientRawCert
            | B::SslClientEscapedCert
            | B::SslClientFingerprint
            | B::SslClientSerial
            | B::SslClientVStart
            | B::SslClientVEnd
            | B::SslClientVRemain => self.client_cert_var(b, out),
            B::Host
            | B::HttpHost
            | B::RemoteUser
            | B::ServerName
            | B::ServerProtocol
            | B::Request
            | B::RequestUri
            | B::Uri
            | B::DocumentUri
            | B::Args
            | B::QueryString
            | B::IsArgs
            | B::RequestMethod
            | B::RequestLength
            | B::RequestBody
            | B::RequestBodyFile
            | B::RequestTime
            | B::ContentLength
            | B::ContentType
            | B::Cookie
            | B::RequestId
            | B::DocumentRoot
            | B::RealpathRoot
            | B::RequestFilename => self.request_var(b, out),
            B::ProxyHost
            | B::ProxyPort
            | B::ProxyAddXForwardedFor
            | B::UpstreamAddr
            | B::UpstreamStatus
            | B::UpstreamConnectTime
            | B::UpstreamHeaderTime
            | B::UpstreamResponseTime
            | B::UpstreamResponseLength => self.upstream_var(b, out),
            B::Status
            | B::BytesSent
            | B::BodyBytesSent
            | B::GzipRatio
            | B::LimitRate
            | B::LimitReqStatus => self.response_var(b, out),
            B::TimeLocal | B::TimeIso8601 | B::Msec | B::NginxVersion | B::Hostname | B::Pid => {
                self.process_var(b, out)
            }
            // Known only when a WebSocket ends: the access log line of a
            // tunnel fills them in; any other request has none.
            B::WebsocketMessagesIn
            | B::WebsocketMessagesOut
            | B::WebsocketCloseCode
            | B::WebsocketClosedBy
            | B::WebsocketDuration => false,
        }
    }

    /// The client connection: addresses, ports, TLS, counters.
    fn connection_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let put = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(s);
            true
        };
        match b {
            Builtin::RemoteAddr => {
                write_conn_addr(out, self.remote);
                true
            }
            Builtin::RemotePort => {
                // A real address reported without a port has none, nor
                // does a unix-domain client.
                if let Some(port) = self.remote.port().filter(|p| *p != 0) {
                    let _ = write!(out, "{port}");
                }
                true
            }
            Builtin::RealipRemoteAddr => {
                write_conn_addr(out, self.realip_peer.unwrap_or(self.conn.remote));
                true
            }
            Builtin::RealipRemotePort => {
                if let Some(port) = self.realip_peer.unwrap_or(self.conn.remote).port() {
                    let _ = write!(out, "{port}");
                }
                true
            }
            Builtin::BinaryRemoteAddr => {
                match self.remote.ip() {
                    Some(IpAddr::V4(v4)) => out.extend_from_slice(&v4.octets()),
                    Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                        Some(v4) => out.extend_from_slice(&v4.octets()),
                        None => out.extend_from_slice(&v6.octets()),
                    },
                    // nginx: the text form, `unix:`.
                    None => out.extend_from_slice(b"unix:"),
                }
                true
            }
            Builtin::ServerAddr => {
                match self.conn.local.ip() {
                    Some(ip) => write_ip(out, ip),
                    // The socket's own name: `unix:PATH`.
                    None => {
                        let _ = write!(out, "{}", self.conn.listen);
                    }
                }
                true
            }
            Builtin::ServerPort => {
                if let Some(port) = self.conn.local.port() {
                    let _ = write!(out, "{port}");
                }
                true
            }
            Builtin::Scheme => put(out, if self.conn.tls { b"https" } else { b"http" }),
            Builtin::Https => put(out, if self.conn.tls { b"on" } else { b"" }),
            Builtin::Http2 => put(out, self.conn.http2.as_bytes()),
            Builtin::ConnectionTime => {
                let t = self.conn.since.elapsed();
                let _ = write!(out, "{}.{:03}", t.as_secs(), t.subsec_millis());
                true
            }
            Builtin::Connection => {
                let _ = write!(out, "{}", self.conn.id);
                true
            }
            Builtin::ConnectionsActive
            | Builtin::ConnectionsReading
            | Builtin::ConnectionsWriting
            | Builtin::ConnectionsWaiting => {
                let s = self.conn.stats.snapshot();
                let n = match b {
                    Builtin::ConnectionsActive => s.active,
                    Builtin::ConnectionsReading => s.reading,
                    Builtin::ConnectionsWriting => s.writing,
                    _ => s.waiting,
                };
                let _ = write!(out, "{n}");
                true
            }
            Builtin::ConnectionRequests => {
                let _ = write!(out, "{}", self.connection_requests);
                true
            }
            Builtin::SslServerName => match &self.conn.tls_session {
                Some(t) => put(out, t.server_name.as_deref().unwrap_or("").as_bytes()),
                None => false,
            },
            Builtin::SslProtocol => match &self.conn.tls_session {
                Some(t) => put(out, t.protocol.as_bytes()),
                None => false,
            },
            Builtin::SslCipher => match &self.conn.tls_session {
                Some(t) => put(out, t.cipher.as_bytes()),
                None => false,
            },
            Builtin::SslSessionReused => match &self.conn.tls_session {
                Some(t) => put(out, if t.resumed { b"r" } else { b"." }),
                None => false,
            },
            _ => unreachable!("{b:?} is not a connection variable"),
        }
    }

    /// The client's TLS certificate, as nginx's `$ssl_client_*` show it;
    /// not found without TLS, empty (or `NONE`) without a certificate.
    fn client_cert_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let Some(session) = &self.conn.tls_session else {
            return false;
        };
        let client = session.client.as_ref();
        let cert = client.and_then(|c| c.chain.first());
        let facts = cert.and_then(|c| crate::tls::x509::facts(c));
        let text: String = match b {
            Builtin::SslClientVerify => match client {
                Some(c) if c.verdict.code.is_some() => c.verdict.text.clone(),
                Some(c) if !c.chain.is_empty() => "SUCCESS".into(),
                _ => "NONE".into(),
            },
            Builtin::SslClientSDn => facts.map(|f| f.subject_dn).unwrap_or_default(),
            Builtin::SslClientIDn => facts.map(|f| f.issuer_dn).unwrap_or_default(),
            Builtin::SslClientRawCert => cert.map(|c| pem(c)).unwrap_or_default(),
            Builtin::SslClientCert => cert
                .map(|c| {
                    // nginx's deprecated form: a tab after each line break
                    // but the last, which is dropped.
                    let raw = pem(c);
                    raw.trim_end_matches('\n').replace('\n', "\n\t")
                })
                .unwrap_or_default(),
            Builtin::SslClientEscapedCert => cert
                .map(|c| {
                    let mut s = String::new();
                    for byte in pem(c).bytes() {
                        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                            s.push(byte as char);
                        } else {
                            s.push_str(&format!("%{byte:02X}"));
                        }
                    }
                    s
                })
                .unwrap_or_default(),
            Builtin::SslClientFingerprint => cert
                .map(|c| {
                    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, c);
                    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
                })
                .unwrap_or_default(),
            Builtin::SslClientSerial => facts
                .map(|f| f.serial.iter().map(|x| format!("{x:02X}")).collect())
                .unwrap_or_default(),
            Builtin::SslClientVStart => facts.map(|f| asn1_time(f.not_before)).unwrap_or_default(),
            Builtin::SslClientVEnd => facts.map(|f| asn1_time(f.not_after)).unwrap_or_default(),
            Builtin::SslClientVRemain => facts
                .map(|f| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    ((f.not_after - now) / 86400).max(0).to_string()
                })
                .unwrap_or_default(),
            _ => unreachable!("{b:?} is not a client certificate variable"),
        };
        out.extend_from_slice(text.as_bytes());
        true
    }

    /// The request: its line, URI, arguments and headers.
    fn request_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let put = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(s);
            true
        };
        match b {
            Builtin::Host => put(out, self.host.as_bytes()),
            Builtin::HttpHost => self.header_into(&http::header::HOST, out),
            Builtin::RemoteUser => match super::basic_credentials(&self.headers) {
                Some((user, _)) => put(out, &user),
                None => false,
            },
            Builtin::ServerName => put(out, self.server.primary_name().as_bytes()),
            Builtin::ServerProtocol => put(out, version_text(self.version).as_bytes()),
            Builtin::Request => {
                let _ = write!(
                    out,
                    "{} {} {}",
                    self.method,
                    self.request_uri,
                    version_text(self.version)
                );
                true
            }
            Builtin::RequestUri => put(out, self.request_uri.as_bytes()),
            Builtin::Uri | Builtin::DocumentUri => put(out, self.uri.as_bytes()),
            Builtin::Args | Builtin::QueryString => match &self.args {
                Some(a) => put(out, a.as_bytes()),
                None => false,
            },
            Builtin::IsArgs => put(out, if self.args.is_some() { b"?" } else { b"" }),
            Builtin::RequestMethod => put(out, self.method.as_str().as_bytes()),
            Builtin::RequestLength => {
                let _ = write!(out, "{}", self.request_length);
                true
            }
            Builtin::RequestBody => match &self.body.data {
                Some(b) => put(out, b),
                None => false,
            },
            Builtin::RequestBodyFile => match &self.body.file {
                Some(f) => put(out, f.path.as_os_str().as_encoded_bytes()),
                None => false,
            },
            Builtin::RequestTime => {
                let elapsed = self.start.elapsed();
                let _ = write!(out, "{}.{:03}", elapsed.as_secs(), elapsed.subsec_millis());
                true
            }
            Builtin::ContentLength => self.header_into(&http::header::CONTENT_LENGTH, out),
            Builtin::ContentType => self.header_into(&http::header::CONTENT_TYPE, out),
            Builtin::DocumentRoot | Builtin::RealpathRoot => match self.document_root() {
                Some(root) => put(out, root.as_os_str().as_encoded_bytes()),
                None => false,
            },
            Builtin::RequestFilename => match self.document_root() {
                Some(root) => {
                    out.extend_from_slice(root.as_os_str().as_encoded_bytes());
                    out.extend_from_slice(self.uri.as_bytes());
                    true
                }
                None => false,
            },
            Builtin::RequestId => {
                let _ = write!(out, "{:032x}", self.request_id());
                true
            }
            Builtin::Cookie => self.header_into(&http::header::COOKIE, out),
            _ => unreachable!("{b:?} is not a request variable"),
        }
    }

    /// What proxying learnt: the backend chosen, its statuses and timings.
    fn upstream_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let put = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(s);
            true
        };
        match b {
            Builtin::ProxyHost => match &self.upstream.proxy_host {
                Some(h) => put(out, h.as_bytes()),
                None => false,
            },
            Builtin::ProxyPort => match self.upstream.proxy_port {
                Some(p) => {
                    let _ = write!(out, "{p}");
                    true
                }
                None => false,
            },
            Builtin::ProxyAddXForwardedFor => {
                let start = out.len();
                join_headers(&self.headers, &X_FORWARDED_FOR, out);
                if out.len() > start {
                    out.extend_from_slice(b", ");
                }
                write_conn_addr(out, self.remote);
                true
            }
            Builtin::UpstreamAddr => match self.upstream.join(|a| a.addr.clone()) {
                Some(v) => put(out, v.as_bytes()),
                None => false,
            },
            Builtin::UpstreamStatus => {
                match self
                    .upstream
                    .join(|a| a.status.map_or("-".into(), |s| s.to_string()))
                {
                    Some(v) => put(out, v.as_bytes()),
                    None => false,
                }
            }
            Builtin::UpstreamConnectTime => {
                match self.upstream.join(|a| crate::request::secs(a.connect)) {
                    Some(v) => put(out, v.as_bytes()),
                    None => false,
                }
            }
            Builtin::UpstreamHeaderTime => {
                match self.upstream.join(|a| crate::request::secs(a.header)) {
                    Some(v) => put(out, v.as_bytes()),
                    None => false,
                }
            }
            Builtin::UpstreamResponseLength => match self.upstream.join(|a| a.length.to_string()) {
                Some(v) => put(out, v.as_bytes()),
                None => false,
            },
            Builtin::UpstreamResponseTime => {
                match self.upstream.join(|a| crate::request::secs(a.response)) {
                    Some(v) => put(out, v.as_bytes()),
                    None => false,
                }
            }
            _ => unreachable!("{b:?} is not a upstream variable"),
        }
    }

    /// The response and the limits applied to it.
    fn response_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let put = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(s);
            true
        };
        match b {
            Builtin::Status => {
                let _ = write!(out, "{:03}", self.response.status);
                true
            }
            Builtin::BytesSent => {
                let _ = write!(out, "{}", self.response.bytes_sent);
                true
            }
            Builtin::BodyBytesSent => {
                let _ = write!(out, "{}", self.response.body_bytes_sent);
                true
            }
            Builtin::GzipRatio => match self.response.gzip {
                Some((bytes_in, bytes_out)) => put(out, ratio(bytes_in, bytes_out).as_bytes()),
                None => false,
            },
            Builtin::LimitRate => {
                let _ = write!(out, "{}", self.effective_limit_rate());
                true
            }
            Builtin::LimitReqStatus => match self.limit_req_status {
                Some(status) => put(out, status.as_bytes()),
                None => false,
            },
            _ => unreachable!("{b:?} is not a response variable"),
        }
    }

    /// The process and the clock.
    fn process_var(&mut self, b: Builtin, out: &mut Vec<u8>) -> bool {
        let put = |out: &mut Vec<u8>, s: &[u8]| {
            out.extend_from_slice(s);
            true
        };
        match b {
            Builtin::TimeLocal => {
                crate::log::time::with_local(|t| out.extend_from_slice(t.local.as_bytes()));
                true
            }
            Builtin::TimeIso8601 => {
                crate::log::time::with_local(|t| out.extend_from_slice(t.iso8601.as_bytes()));
                true
            }
            Builtin::Msec => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = write!(out, "{}.{:03}", now.as_secs(), now.subsec_millis());
                true
            }
            Builtin::NginxVersion => put(out, crate::NGINX_COMPAT_VERSION.as_bytes()),
            Builtin::Hostname => put(out, crate::log::hostname().as_bytes()),
            Builtin::Pid => {
                let _ = write!(out, "{}", std::process::id());
                true
            }
            _ => unreachable!("{b:?} is not a process variable"),
        }
    }

    fn cookie(&self, name: &str) -> Option<Vec<u8>> {
        for value in self.headers.get_all(&http::header::COOKIE) {
            for pair in value.as_bytes().split(|b| *b == b';') {
                let pair = pair.trim_ascii_start();
                if let Some(rest) = pair.strip_prefix(name.as_bytes())
                    && let Some(v) = rest.strip_prefix(b"=")
                {
                    return Some(v.to_vec());
                }
            }
        }
        None
    }
}

/// `$upstream_cookie_NAME`: the value of the first `Set-Cookie` of the
/// backend's response that sets `name` (up to its `;`).
fn set_cookie_value(headers: &crate::http1::Headers, name: &str, out: &mut Vec<u8>) -> bool {
    for value in headers.get_all(&http::header::SET_COOKIE) {
        let v = value.as_bytes().trim_ascii_start();
        if let Some(rest) = v.strip_prefix(name.as_bytes())
            && let Some(rest) = rest.strip_prefix(b"=")
        {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            out.extend_from_slice(&rest[..end]);
            return true;
        }
    }
    false
}

/// `X-Forwarded-For`, for `$proxy_add_x_forwarded_for`.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends every value of header `name`, joined as nginx joins repeated
/// headers (`, `; `; ` for Cookie). Returns false when the header is absent.
pub fn join_headers(headers: &crate::http1::Headers, name: &HeaderName, out: &mut Vec<u8>) -> bool {
    let sep: &[u8] = if name == http::header::COOKIE {
        b"; "
    } else {
        b", "
    };
    let mut found = false;
    for value in headers.get_all(name) {
        if found {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(value.as_bytes());
        found = true;
    }
    found
}

/// Finds `name` in a query string (`a=1&b=2`), nginx-style: the first
/// match, case-insensitive name, raw (not decoded) value.
pub fn find_arg<'a>(args: Option<&'a str>, name: &str) -> Option<&'a str> {
    for pair in args?.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
    }
    None
}

/// `HTTP/1.1` and friends.
pub fn version_text(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_find_args_like_nginx() {
        assert_eq!(find_arg(Some("a=1&B=2&b=3"), "b"), Some("2"));
        assert_eq!(find_arg(Some("flag&x=1"), "flag"), Some(""));
        assert_eq!(find_arg(None, "x"), None);
    }

    #[test]
    fn vars_join_repeated_headers() {
        let mut h = crate::http1::Headers::new();
        h.append_str("X-A", crate::http1::headers::HeaderValue::from_static("1"));
        h.append_str("x-a", crate::http1::headers::HeaderValue::from_static("2"));
        let mut out = Vec::new();
        assert!(join_headers(&h, &HeaderName::from_static("x-a"), &mut out));
        assert_eq!(out, b"1, 2");
        out.clear();
        assert!(!join_headers(&h, &HeaderName::from_static("x-b"), &mut out));
    }

    #[test]
    fn ratio_has_two_decimals() {
        assert_eq!(ratio(1000, 300), "3.33");
        assert_eq!(ratio(10, 20), "0.50");
        assert_eq!(ratio(5, 0), "0.00");
    }
}
