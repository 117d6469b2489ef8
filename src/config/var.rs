//! The variable catalogue: every `$name` a configuration may use, resolved
//! to a [`Var`] once, when the configuration loads. Evaluation against a
//! request is [`crate::request::vars`].

use http::HeaderName;

/// A variable reference resolved at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// A built-in variable.
    Builtin(Builtin),
    /// `$http_NAME`: a request header (`_` in the name matches `-`).
    Http(HeaderName),
    /// `$sent_http_NAME`: a response header sent to the client.
    SentHttp(HeaderName),
    /// `$sent_trailer_NAME`: a trailer sent to the client (`add_trailer`).
    SentTrailer(HeaderName),
    /// `$upstream_http_NAME`: a header of the upstream's response.
    UpstreamHttp(HeaderName),
    /// `$upstream_cookie_NAME`: a cookie the upstream's response sets.
    UpstreamCookie(String),
    /// `$arg_NAME`: a query argument.
    Arg(String),
    /// `$cookie_NAME`: a cookie.
    Cookie(String),
    /// `$1`..`$9`: a positional capture of the last regex match.
    Capture(usize),
    /// A `map` output, a `set` variable or a named regex capture: a slot in
    /// the request's indexed variables.
    Indexed(usize),
    /// A name Switchyard does not know, kept only when linting an nginx
    /// configuration (`check --nginx`); never found.
    Unsupported(String),
}

macro_rules! builtins {
    ($($variant:ident => $name:literal,)*) => {
        /// Built-in variables, by their nginx names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Builtin { $($variant,)* }

        impl Builtin {
            /// Looks a built-in up by name.
            pub fn from_name(name: &str) -> Option<Builtin> {
                match name { $($name => Some(Builtin::$variant),)* _ => None }
            }
            /// The nginx name.
            pub fn name(self) -> &'static str {
                match self { $(Builtin::$variant => $name,)* }
            }
            /// Every built-in, for documentation.
            pub const ALL: &'static [Builtin] = &[$(Builtin::$variant,)*];
        }
    };
}

builtins! {
    Host => "host",
    HttpHost => "http_host",
    RemoteAddr => "remote_addr",
    RemotePort => "remote_port",
    RealipRemoteAddr => "realip_remote_addr",
    RealipRemotePort => "realip_remote_port",
    BinaryRemoteAddr => "binary_remote_addr",
    RemoteUser => "remote_user",
    ServerAddr => "server_addr",
    ServerPort => "server_port",
    ServerName => "server_name",
    ServerProtocol => "server_protocol",
    Scheme => "scheme",
    Https => "https",
    Http2 => "http2",
    Request => "request",
    RequestUri => "request_uri",
    Uri => "uri",
    DocumentUri => "document_uri",
    Args => "args",
    QueryString => "query_string",
    IsArgs => "is_args",
    RequestMethod => "request_method",
    RequestLength => "request_length",
    RequestBody => "request_body",
    RequestBodyFile => "request_body_file",
    ConnectionTime => "connection_time",
    RequestTime => "request_time",
    ContentLength => "content_length",
    ContentType => "content_type",
    ProxyHost => "proxy_host",
    ProxyPort => "proxy_port",
    ProxyAddXForwardedFor => "proxy_add_x_forwarded_for",
    UpstreamAddr => "upstream_addr",
    UpstreamStatus => "upstream_status",
    UpstreamConnectTime => "upstream_connect_time",
    UpstreamHeaderTime => "upstream_header_time",
    UpstreamResponseTime => "upstream_response_time",
    UpstreamResponseLength => "upstream_response_length",
    Status => "status",
    BytesSent => "bytes_sent",
    BodyBytesSent => "body_bytes_sent",
    GzipRatio => "gzip_ratio",
    TimeLocal => "time_local",
    TimeIso8601 => "time_iso8601",
    Msec => "msec",
    Connection => "connection",
    ConnectionRequests => "connection_requests",
    NginxVersion => "nginx_version",
    Hostname => "hostname",
    Pid => "pid",
    DocumentRoot => "document_root",
    RealpathRoot => "realpath_root",
    RequestFilename => "request_filename",
    RequestId => "request_id",
    Cookie => "http_cookie",
    LimitRate => "limit_rate",
    LimitReqStatus => "limit_req_status",
    SslServerName => "ssl_server_name",
    SslProtocol => "ssl_protocol",
    SslCipher => "ssl_cipher",
    SslSessionReused => "ssl_session_reused",
    SslClientVerify => "ssl_client_verify",
    SslClientSDn => "ssl_client_s_dn",
    SslClientIDn => "ssl_client_i_dn",
    SslClientCert => "ssl_client_cert",
    SslClientRawCert => "ssl_client_raw_cert",
    SslClientEscapedCert => "ssl_client_escaped_cert",
    SslClientFingerprint => "ssl_client_fingerprint",
    SslClientSerial => "ssl_client_serial",
    SslClientVStart => "ssl_client_v_start",
    SslClientVEnd => "ssl_client_v_end",
    SslClientVRemain => "ssl_client_v_remain",
    ConnectionsActive => "connections_active",
    ConnectionsReading => "connections_reading",
    ConnectionsWriting => "connections_writing",
    ConnectionsWaiting => "connections_waiting",
    WebsocketMessagesIn => "websocket_messages_in",
    WebsocketMessagesOut => "websocket_messages_out",
    WebsocketCloseCode => "websocket_close_code",
    WebsocketClosedBy => "websocket_closed_by",
    WebsocketDuration => "websocket_duration",
}

/// Resolves a variable name that is not a `map`/`set` variable. Returns
/// `None` for unknown names.
pub fn resolve_builtin(name: &str) -> Option<Var> {
    if let Ok(n) = name.parse::<usize>() {
        return (n <= 9).then_some(Var::Capture(n));
    }
    // `$http_cookie` is both a header and nginx's joined cookie value; the
    // header form covers it.
    if let Some(b) = Builtin::from_name(name).filter(|b| *b != Builtin::Cookie) {
        return Some(Var::Builtin(b));
    }
    let header = |rest: &str| HeaderName::from_bytes(rest.replace('_', "-").as_bytes()).ok();
    if let Some(rest) = name.strip_prefix("http_") {
        return header(rest).map(Var::Http);
    }
    if let Some(rest) = name.strip_prefix("sent_http_") {
        return header(rest).map(Var::SentHttp);
    }
    if let Some(rest) = name.strip_prefix("sent_trailer_") {
        return header(rest).map(Var::SentTrailer);
    }
    if let Some(rest) = name.strip_prefix("upstream_cookie_") {
        return Some(Var::UpstreamCookie(rest.to_string()));
    }
    if let Some(rest) = name.strip_prefix("upstream_http_") {
        return header(rest).map(Var::UpstreamHttp);
    }
    if let Some(rest) = name.strip_prefix("arg_") {
        return Some(Var::Arg(rest.to_string()));
    }
    if let Some(rest) = name.strip_prefix("cookie_") {
        return Some(Var::Cookie(rest.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_resolve_prefixed_names() {
        assert_eq!(
            resolve_builtin("http_x_real_ip"),
            Some(Var::Http(HeaderName::from_static("x-real-ip")))
        );
        assert_eq!(
            resolve_builtin("remote_addr"),
            Some(Var::Builtin(Builtin::RemoteAddr))
        );
        assert_eq!(resolve_builtin("3"), Some(Var::Capture(3)));
        assert_eq!(resolve_builtin("arg_id"), Some(Var::Arg("id".into())));
        assert_eq!(resolve_builtin("no_such_thing"), None);
        assert_eq!(
            resolve_builtin("http_cookie"),
            Some(Var::Http(HeaderName::from_static("cookie")))
        );
    }
}
