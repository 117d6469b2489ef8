//! Responses: what handlers produce, nginx's error pages, and the filters
//! applied on the way out, in nginx's order: conditional requests
//! ([`conditional`]), `add_header` and `expires` ([`headers`]), `charset`
//! ([`charset`]), gzip, ranges ([`range`]); [`send`] writes the result.

pub mod charset;
pub mod conditional;
pub mod headers;
pub mod httptime;
pub mod range;
pub mod send;

use std::fmt::Write as _;

use bytes::Bytes;
use http::HeaderName;

use crate::http1::headers::HeaderValue;

use crate::http1::Headers;
use crate::upstream::UpstreamBody;

/// A response to send.
pub struct Reply {
    /// Status code (444 means: close without a response).
    pub status: u16,
    /// A reason phrase to use instead of the standard one.
    pub reason: Option<Bytes>,
    /// Headers, in order (framing and `Connection` are added on write).
    pub headers: Headers,
    /// The body.
    pub body: Body,
    /// Whether the connection must close after this response.
    pub close: bool,
    /// `Server` and `Date` were passed through from a backend (or must be
    /// omitted): do not add our own.
    pub pass_server: bool,
    /// As `pass_server`, for `Date`.
    pub pass_date: bool,
    /// An error response nginx would generate itself (or an intercepted
    /// backend error): `error_page` applies to it.
    pub special: bool,
    /// The status `error_page` matches: `status`, except for nginx's own
    /// 494-497, which go out as 400.
    pub error_code: u16,
    /// What the filters know of the content beyond its header lines
    /// (boxed: replies travel by value through the phases).
    pub entity: Box<Entity>,
}

/// What nginx's response filters know of a response beyond its header
/// lines (fields of nginx's `headers_out` and request flags).
#[derive(Debug, Clone)]
pub struct Entity {
    /// The modification time (nginx's `last_modified_time`): conditional
    /// requests and `If-Range` compare with it, `expires modified` counts
    /// from it. Without a `Last-Modified` header line, one is written from
    /// it for statuses 200, 206 and 304 (a static file's).
    pub last_modified: Option<i64>,
    /// Conditional requests may be answered with 304 or 412. True for
    /// everything Switchyard produces itself; false for proxied responses
    /// (nginx answers those only from its cache, and Switchyard has none).
    pub conditional: bool,
    /// Whether ranges may be served from the body.
    pub ranges: Ranges,
    /// The response came from a backend: a `charset=` parameter in its
    /// `Content-Type` names the body's charset (nginx reads it so; its own
    /// types never do), and an empty body (the answer to a HEAD) says
    /// nothing of the length.
    pub from_backend: bool,
    /// `X-Accel-Charset` from the backend: the charset to send the body in.
    pub override_charset: Option<Bytes>,
}

/// Whether a response serves `Range` requests (nginx's `allow_ranges` and
/// `single_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranges {
    /// No: the whole body, no `Accept-Ranges`.
    No,
    /// One range at most (a body read once as it streams).
    Single,
    /// Any number, up to `max_ranges` (a file or a body in memory).
    Multi,
}

impl Default for Entity {
    fn default() -> Self {
        Entity {
            last_modified: None,
            conditional: true,
            ranges: Ranges::No,
            from_backend: false,
            override_charset: None,
        }
    }
}

impl Entity {
    /// What a backend's response head says: its `Last-Modified` time, its
    /// `Content-Type` to read a charset from, its `X-Accel-Charset`; ranges
    /// only with `proxy_force_ranges`; never answered conditionally.
    pub fn from_backend(headers: &Headers, force_ranges: bool) -> Entity {
        Entity {
            last_modified: headers
                .get(&http::header::LAST_MODIFIED)
                .and_then(|v| httptime::parse(v.as_bytes())),
            conditional: false,
            ranges: if force_ranges {
                Ranges::Single
            } else {
                Ranges::No
            },
            from_backend: true,
            override_charset: headers
                .get(&HeaderName::from_static("x-accel-charset"))
                .map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }
}

/// A response body.
pub enum Body {
    /// No body.
    Empty,
    /// A body in memory.
    Full(Bytes),
    /// Streamed from a backend.
    Upstream(Box<UpstreamBody>),
    /// A file of known length.
    File(tokio::fs::File, u64),
}

impl Body {
    /// The length when known in advance.
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Full(b) => Some(b.len() as u64),
            Body::Upstream(u) => u.content_length(),
            Body::File(_, n) => Some(*n),
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The title nginx shows on its error page for `status`.
fn page_title(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "301 Moved Permanently",
        302 => "302 Found",
        303 => "303 See Other",
        307 => "307 Temporary Redirect",
        308 => "308 Permanent Redirect",
        400 => "400 Bad Request",
        401 => "401 Authorization Required",
        402 => "402 Payment Required",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Not Allowed",
        406 => "406 Not Acceptable",
        408 => "408 Request Time-out",
        409 => "409 Conflict",
        410 => "410 Gone",
        411 => "411 Length Required",
        412 => "412 Precondition Failed",
        413 => "413 Request Entity Too Large",
        414 => "414 Request-URI Too Large",
        415 => "415 Unsupported Media Type",
        416 => "416 Requested Range Not Satisfiable",
        421 => "421 Misdirected Request",
        429 => "429 Too Many Requests",
        494 => "400 Request Header Or Cookie Too Large",
        495 => "400 The SSL certificate error",
        496 => "400 No required SSL certificate was sent",
        497 => "400 The plain HTTP request was sent to HTTPS port",
        500 => "500 Internal Server Error",
        501 => "501 Not Implemented",
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        504 => "504 Gateway Time-out",
        505 => "505 HTTP Version Not Supported",
        507 => "507 Insufficient Storage",
        _ => return None,
    })
}

/// The product name shown in `Server` and on error pages.
pub fn server_token(full: bool) -> String {
    if full {
        format!("switchyard/{}", crate::VERSION)
    } else {
        "switchyard".to_string()
    }
}

impl Reply {
    /// A response with no body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            reason: None,
            headers: Headers::new(),
            body: Body::Empty,
            close: false,
            pass_server: false,
            pass_date: false,
            special: false,
            error_code: status,
            entity: Box::default(),
        }
    }

    /// nginx's built-in page for `status` (statuses 494-497 are shown as
    /// 400, as nginx does).
    pub fn error(status: u16, server_tokens: bool) -> Reply {
        let wire_status = match status {
            494..=497 => 400,
            s => s,
        };
        let mut reply = Reply::empty(wire_status);
        reply.special = status >= 300;
        reply.error_code = status;
        if let Some(title) = page_title(status) {
            let mut page = String::with_capacity(200);
            let _ = write!(
                page,
                "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{}</center>\r\n</body>\r\n</html>\r\n",
                server_token(server_tokens)
            );
            reply
                .headers
                .append_str("Content-Type", HeaderValue::from_static("text/html"));
            reply.body = Body::Full(Bytes::from(page));
        }
        if matches!(status, 400 | 408 | 413 | 414 | 494..=497 | 500 | 501) {
            reply.close = true;
        }
        reply
    }

    /// A redirect to `location` with nginx's page.
    pub fn redirect(status: u16, location: &[u8], server_tokens: bool) -> Reply {
        let mut reply = Reply::error(status, server_tokens);
        {
            let v = HeaderValue::from_bytes(location);
            reply.headers.append_str("Location", v);
        }
        reply
    }

    /// A text response (`return 200 "text"`), typed by `default_type`.
    pub fn text(status: u16, body: Bytes, content_type: &str) -> Reply {
        let mut reply = Reply::empty(status);
        {
            let v = HeaderValue::from_string(String::from(content_type));
            reply.headers.append_str("Content-Type", v);
        }
        reply.body = Body::Full(body);
        reply
    }
}

/// The `Date` value for now, cached per second per thread.
pub fn http_date() -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_none() {
            let v = HeaderValue::from_string(String::from(&httpdate::fmt_http_date(now)));
            *c = (secs, Some(v));
        }
        c.1.clone().expect("set above")
    })
}
