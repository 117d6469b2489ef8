//! Forwarding a request to a backend and turning its answer into a reply.
//!
//! The request sent upstream is nginx's (`ngx_http_proxy_create_request`):
//! the request line with `proxy_http_version`, then the configured headers
//! (`proxy_set_header`, nginx's defaults `Host: $proxy_host` and
//! `Connection: close` included), then the client's headers except those
//! the configuration names, then the body with its framing recomputed.
//!
//! **WebSocket-first.** When a client asks for `Upgrade: websocket`, the
//! handshake is forwarded as an upgrade even if the location lacks
//! `proxy_http_version 1.1` and the `Upgrade`/`Connection` header lines:
//! HTTP/1.1 is used and `Upgrade` plus `Connection: upgrade` are sent. The
//! two most common causes of failed WebSockets behind nginx cannot happen.
//! A location opts out with `proxy_set_header Upgrade "";`, which behaves
//! as nginx does. Other `Upgrade` protocols follow nginx exactly: they are
//! upgraded only if the configured headers pass them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, Method, Version};

use crate::http1::headers::HeaderValue;
use tokio::time::{Instant, timeout};

use super::error::{ProxyError, Side};
use super::request_body::{ReqBody, prepare_body, send_spooled, stream_body};
use crate::balance::{Balancer, NoPeer};
use crate::config::{BalanceMethod, IgnoreHeaders, PeerAddr, ProxyPass, UpgradePolicy, Upstream};
use crate::exchange::{Downstream, Exchange};
use crate::http1::body::{self};
use crate::http1::headers::has_token;
use crate::http1::parse::{BodyKind, ResponseHead, parse_response, response_body_kind};
use crate::http1::{Headers, write};
use crate::log::Level;
use crate::net::UpstreamIo;
use crate::response::{Body, Entity, Reply};
use crate::upstream::{self, Pool, UpstreamBody, UpstreamConn};

/// What proxying produced.
pub enum Proxied {
    /// A response to send.
    Reply(Reply),
    /// A `101`: send the reply, then join the client and this connection.
    Upgrade(Reply, UpstreamConn),
    /// `X-Accel-Redirect`: the backend's answer is dropped and the request
    /// goes on internally at another URI or named location.
    Redirect(AccelRedirect),
}

/// What `X-Accel-Redirect` asks for.
pub struct AccelRedirect {
    /// The header's value: a URI (with arguments) or `@name`.
    pub target: String,
    /// The backend headers nginx keeps for the redirected response:
    /// `Content-Type`, `Set-Cookie`, `Content-Disposition`,
    /// `Cache-Control`, `Expires`, `Accept-Ranges`.
    pub headers: Headers,
}

/// Backend headers that survive an `X-Accel-Redirect` (nginx's
/// `redirect` flag in its upstream header table).
const KEPT_ON_ACCEL_REDIRECT: &[&str] = &[
    "content-type",
    "set-cookie",
    "content-disposition",
    "cache-control",
    "expires",
    "accept-ranges",
];

/// Where a request goes.
struct Target {
    balancer: Arc<Balancer>,
    pool: Option<Arc<Pool>>,
    tls: bool,
    proxy_host: String,
    proxy_port: u16,
    /// The URI sent upstream.
    uri: String,
}

/// Forwards the request of `ex` to its `proxy_pass` target.
pub async fn forward<D: Downstream>(ex: &mut Exchange<'_, D>) -> Result<Proxied, ProxyError> {
    let conf = ex.conf.clone();
    let p = &conf.proxy;
    let pass = conf
        .proxy_pass
        .clone()
        .expect("proxy action without proxy_pass");
    let target = match resolve_target(ex, &pass).await {
        Ok(t) => t,
        Err(e) => return Err(logged(ex, e)),
    };
    ex.ctx.upstream.proxy_host = Some(target.proxy_host.clone());
    ex.ctx.upstream.proxy_port = Some(target.proxy_port);

    let client_upgrade = ex.ctx.headers.get(&http::header::UPGRADE).cloned();
    let websocket = client_upgrade
        .as_ref()
        .is_some_and(|v| has_token(v.as_bytes(), "websocket"));
    // A WebSocket over HTTP/2 (RFC 8441) arrives here as the equivalent
    // HTTP/1.1 handshake, with a key of our own.
    if websocket
        && conf.websocket.allowed_origins.is_some()
        && let Err(e) = check_origin(ex)
    {
        return Err(logged(ex, e));
    }
    let ws_first = websocket
        && p.upgrade != UpgradePolicy::Disabled
        && (ex.ctx.version == Version::HTTP_11 || ex.down.websocket_key().is_some());
    let version = if ws_first {
        Version::HTTP_11
    } else {
        p.http_version
    };

    let body = match prepare_body(ex, version).await {
        Ok(b) => b,
        Err(e) => return Err(logged(ex, e)),
    };
    let (head, reusable) = build_head(ex, &target, version, ws_first, &body);
    let replayable = !matches!(body, ReqBody::Stream(_));
    let idempotent =
        !matches!(ex.ctx.method, Method::POST | Method::PATCH) && ex.ctx.method.as_str() != "LOCK";

    // A cached connection the backend closed meanwhile is retried on a
    // fresh one, as nginx does, when a retry would be allowed anyway: the
    // backend may have seen the request before closing.
    let retry_cached =
        replayable && p.next_upstream.error && (idempotent || p.next_upstream.non_idempotent);

    let key = match &target.balancer.upstream.method {
        BalanceMethod::Hash { key, .. } => ex.ctx.render(key),
        _ => Vec::new(),
    };
    // ip_hash reads a unix-domain client as nginx does: three zero bytes.
    let client = ex
        .ctx
        .remote
        .ip()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let mut pick = target.balancer.start(client, key, p.next_upstream_tries);
    let started = Instant::now();
    let scheme = if target.tls { "https" } else { "http" };
    use crate::request::Attempt;

    loop {
        let chosen = match pick.next_peer() {
            Ok(c) => c,
            Err(NoPeer::NoLive) => {
                let url = format!("{scheme}://{}{}", pick.upstream_name(), target.uri);
                ex.log(
                    Level::Error,
                    &ProxyError::NoLiveUpstreams.message(),
                    Some(&url),
                );
                ex.ctx.upstream.attempts.push(Attempt {
                    addr: pick.upstream_name().to_string(),
                    status: Some(502),
                    ..Attempt::default()
                });
                return Err(ProxyError::NoLiveUpstreams);
            }
        };
        ex.ctx.upstream.attempts.push(Attempt {
            addr: chosen.addr.to_string(),
            ..Attempt::default()
        });
        // As nginx names the backend in its log lines; a unix socket's
        // path ends with a colon there (`http://unix:/run/app.sock:/uri`).
        let url = match &chosen.addr {
            PeerAddr::Unix(_) => format!("{scheme}://{}:{}", chosen.addr, target.uri),
            PeerAddr::Inet(_) => format!("{scheme}://{}{}", chosen.addr, target.uri),
        };
        let attempt_start = Instant::now();
        let result = attempt(ex, &target, &chosen.addr, &head, &body, retry_cached).await;
        let this = ex.ctx.upstream.attempts.last_mut().expect("pushed above");
        match result {
            Ok((resp, mut conn, connected)) => {
                let status = resp.status;
                this.connect = Some(connected.duration_since(attempt_start));
                this.header = Some(attempt_start.elapsed());
                this.status = Some(status);
                let more = pick.tries > 1
                    && replayable
                    && (idempotent || p.next_upstream.non_idempotent)
                    && (p.next_upstream_timeout.is_zero()
                        || started.elapsed() < p.next_upstream_timeout);
                if p.next_upstream.retries_status(status) && more {
                    this.response = Some(attempt_start.elapsed());
                    pick.free(&chosen, !(status == 403 || status == 404));
                    continue;
                }
                conn.lease = Some(pick.succeed(&chosen));
                ex.ctx.upstream.started = Some(attempt_start);
                let result =
                    finish_response(ex, &target, resp, conn, client_upgrade.is_some(), reusable);
                if let Err(e) = &result {
                    ex.log(e.level(), &e.message(), Some(&url));
                }
                return result;
            }
            Err(AttemptError { error, connected }) => {
                this.connect = connected.map(|c| c.duration_since(attempt_start));
                this.response = Some(attempt_start.elapsed());
                if error.side() == Side::Downstream {
                    // The client failed (went away, sent a bad or too
                    // large body, too slowly): not the peer's fault.
                    this.status = Some(error.status());
                    pick.release(&chosen);
                    ex.log(error.level(), &error.message(), Some(&url));
                    return Err(error);
                }
                this.status = Some(if error.is_timeout() { 504 } else { 502 });
                ex.log(Level::Error, &error.message(), Some(&url));
                if let Some(warning) = pick.free(&chosen, true) {
                    let action = if connected.is_some() {
                        "reading response header from upstream"
                    } else {
                        "connecting to upstream"
                    };
                    ex.log(
                        Level::Warn,
                        &format!("{warning} while {action}"),
                        Some(&url),
                    );
                }
                let nu = &p.next_upstream;
                let allowed = (error.is_error() && nu.error)
                    || (error.is_timeout() && nu.timeout)
                    || (error.is_invalid_header() && nu.invalid_header);
                let sent = connected.is_some();
                let more = pick.tries > 0
                    && replayable
                    && (!sent || idempotent || nu.non_idempotent)
                    && (p.next_upstream_timeout.is_zero()
                        || started.elapsed() < p.next_upstream_timeout);
                if allowed && more {
                    continue;
                }
                return Err(error);
            }
        }
    }
}

/// `websocket_allowed_origins`: a handshake from an origin not listed is
/// refused before any backend is chosen.
fn check_origin<D: Downstream>(ex: &mut Exchange<'_, D>) -> Result<(), ProxyError> {
    use crate::config::var::{Builtin, Var};
    let origin = ex
        .ctx
        .headers
        .get(&http::header::ORIGIN)
        .map(|v| v.as_bytes().to_vec());
    let mut own = Vec::new();
    ex.ctx.eval_into(&Var::Builtin(Builtin::Scheme), &mut own);
    own.extend_from_slice(b"://");
    ex.ctx.eval_into(&Var::Builtin(Builtin::HttpHost), &mut own);
    let own = String::from_utf8_lossy(&own);
    if ex.conf.websocket.origin_allowed(origin.as_deref(), &own) {
        return Ok(());
    }
    Err(ProxyError::ForbiddenOrigin(
        origin.map(|o| String::from_utf8_lossy(&o).into_owned()),
    ))
}

/// Logs an error raised before any backend was contacted.
fn logged<D: Downstream>(ex: &Exchange<'_, D>, e: ProxyError) -> ProxyError {
    ex.log(e.level(), &e.message(), None);
    e
}

/// Finds the upstream group and URI for `pass`; a host named by
/// variables that is neither an address nor an upstream group is looked up
/// with the location's `resolver`.
async fn resolve_target<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    pass: &ProxyPass,
) -> Result<Target, ProxyError> {
    match pass {
        ProxyPass::Static(t) => {
            let (balancer, pool) = group_state(ex, t.upstream.index).await;
            let uri = match (&t.uri, &t.location_prefix) {
                _ if ex.rewritten => client_uri(ex),
                (Some(u), Some(prefix)) if ex.ctx.uri.starts_with(prefix.as_str()) => {
                    let mut s = u.clone();
                    s.push_str(&crate::route::escape_uri(&ex.ctx.uri[prefix.len()..]));
                    append_args(&mut s, ex.ctx.args.as_deref());
                    s
                }
                (Some(u), _) => {
                    let mut s = u.clone();
                    append_args(&mut s, ex.ctx.args.as_deref());
                    s
                }
                (None, _) => client_uri(ex),
            };
            Ok(Target {
                balancer,
                pool,
                tls: t.tls,
                proxy_host: t.proxy_host.clone(),
                proxy_port: t.proxy_port,
                uri,
            })
        }
        ProxyPass::Dynamic { url, .. } => {
            let url = ex.ctx.render_string(url);
            let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
                (false, r)
            } else if let Some(r) = url.strip_prefix("https://") {
                (true, r)
            } else {
                return Err(ProxyError::InvalidUrl(url));
            };
            if let Some(socket) = crate::config::values::strip_prefix_ci(rest, "unix:") {
                return unix_target(ex, tls, &url, socket);
            }
            let (hostport, path) = match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            };
            if hostport.is_empty() {
                return Err(ProxyError::InvalidUrl(url.clone()));
            }
            let default_port = if tls { 443 } else { 80 };
            let (host, port) = crate::config::values::split_host_port(hostport, default_port)
                .ok_or_else(|| ProxyError::InvalidUrl(url.clone()))?;
            let uri = match path {
                Some(p) => p.to_string(),
                None => client_uri(ex),
            };
            let http = ex.ctx.http.clone();
            let group = http
                .upstreams
                .iter()
                .find(|u| {
                    !u.implicit
                        && (u.name == hostport || (u.name == host && !hostport.contains(':')))
                })
                .or_else(|| {
                    http.upstreams
                        .iter()
                        .find(|u| u.implicit && u.name == hostport)
                });
            let (balancer, pool) = match group {
                Some(u) => group_state(ex, u.index).await,
                None => {
                    let bare = host.trim_start_matches('[').trim_end_matches(']');
                    let addrs = match bare.parse::<std::net::IpAddr>() {
                        Ok(ip) => vec![ip],
                        Err(_) => {
                            let Some(rc) = ex.conf.resolver.clone() else {
                                return Err(ProxyError::NoResolver(host.to_string()));
                            };
                            let resolver = ex.generation.resolvers[rc.index].clone();
                            resolver
                                .resolve(host, ex.conf.resolver_timeout)
                                .await
                                .map_err(|why| ProxyError::Unresolved(host.to_string(), why))?
                        }
                    };
                    let peers = addrs
                        .into_iter()
                        .map(|ip| {
                            crate::config::Peer::new(
                                SocketAddr::new(ip, port),
                                hostport.to_string(),
                            )
                        })
                        .collect();
                    let upstream = Arc::new(Upstream::implicit(
                        hostport.to_string(),
                        usize::MAX,
                        peers,
                        crate::config::Span::command_line(),
                    ));
                    (Arc::new(Balancer::new(upstream)), None)
                }
            };
            Ok(Target {
                balancer,
                pool,
                tls,
                proxy_host: hostport.to_string(),
                proxy_port: port,
                uri,
            })
        }
    }
}

/// The current balancer and keepalive cache of upstream group `index`; a
/// group with `server ... resolve` first has its names looked up.
async fn group_state<D: Downstream>(
    ex: &Exchange<'_, D>,
    index: usize,
) -> (Arc<Balancer>, Option<Arc<Pool>>) {
    let rt = &ex.generation.upstreams[index];
    if let Some(refresh) = &rt.refresh {
        refresh
            .ready(&ex.generation.resolvers, ex.conf.resolver_timeout)
            .await;
    }
    (rt.balancer.load_full(), rt.pool.clone())
}

/// A `proxy_pass` with variables that produced `http://unix:PATH[:URI]`
/// (or `https://`).
fn unix_target<D: Downstream>(
    ex: &Exchange<'_, D>,
    tls: bool,
    url: &str,
    socket: &str,
) -> Result<Target, ProxyError> {
    let (path, uri) = PeerAddr::split_unix_url(socket);
    let uri = uri.map_or_else(|| client_uri(ex), str::to_string);
    let addr = PeerAddr::unix(path).map_err(|_| ProxyError::InvalidUrl(url.to_string()))?;
    let name = format!("unix:{path}");
    let upstream = Arc::new(Upstream::implicit(
        name.clone(),
        usize::MAX,
        vec![crate::config::Peer::new(addr, name)],
        crate::config::Span::command_line(),
    ));
    Ok(Target {
        balancer: Arc::new(Balancer::new(upstream)),
        pool: None,
        tls,
        proxy_host: "localhost".to_string(),
        proxy_port: 80,
        uri,
    })
}

fn append_args(s: &mut String, args: Option<&str>) {
    if let Some(a) = args {
        s.push('?');
        s.push_str(a);
    }
}

/// The URI to send when `proxy_pass` has no URI part: the client's own
/// (`$request_uri`), unless an internal redirect changed it.
fn client_uri<D: Downstream>(ex: &Exchange<'_, D>) -> String {
    if ex.uri_changed {
        let mut s = crate::route::escape_uri(&ex.ctx.uri);
        append_args(&mut s, ex.ctx.args.as_deref());
        return s;
    }
    ex.ctx.request_uri.clone()
}

/// The request head sent upstream, and whether the connection may be
/// reused afterwards (we did not send `Connection: close`).
fn build_head<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    target: &Target,
    version: Version,
    ws_first: bool,
    body: &ReqBody,
) -> (Vec<u8>, bool) {
    let conf = ex.conf.clone();
    let p = &conf.proxy;
    let mut headers = Headers::with_capacity(ex.ctx.headers.len() + p.headers.len());
    let mut reusable = true;
    for rule in p.headers.iter() {
        let mut value = ex.ctx.render(&rule.value);
        if ws_first {
            if rule.name == http::header::UPGRADE
                && (p.upgrade == UpgradePolicy::Auto || value.is_empty())
            {
                value = ex
                    .ctx
                    .headers
                    .get(&http::header::UPGRADE)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
            }
            if rule.name == http::header::CONNECTION && !has_token(&value, "upgrade") {
                value = b"upgrade".to_vec();
            }
        }
        if value.is_empty() {
            continue;
        }
        if rule.name == http::header::CONNECTION && has_token(&value, "close") {
            reusable = false;
        }
        {
            let v = HeaderValue::from_bytes(&value);
            headers.append_raw(
                Bytes::copy_from_slice(rule.display.as_bytes()),
                rule.name.clone(),
                v,
            );
        }
    }
    match body {
        ReqBody::Buffered(b) => {
            headers.append_str("Content-Length", HeaderValue::from(b.len()));
        }
        ReqBody::Stream(BodyKind::Length(n)) | ReqBody::Spooled(_, n) => {
            headers.append_str("Content-Length", HeaderValue::from(*n));
        }
        ReqBody::Stream(_) => {
            headers.append_str("Transfer-Encoding", HeaderValue::from_static("chunked"));
        }
        ReqBody::None => {}
    }
    if p.pass_request_headers {
        for h in ex.ctx.headers.iter() {
            if h.name == http::header::CONTENT_LENGTH
                || h.name == http::header::TRANSFER_ENCODING
                || p.headers.iter().any(|r| r.name == h.name)
            {
                continue;
            }
            headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
    }
    let mut out = Vec::with_capacity(512);
    write::request_head(&mut out, &ex.ctx.method, &target.uri, version, &headers);
    if let ReqBody::Buffered(b) = body {
        out.extend_from_slice(b);
    }
    (out, reusable)
}

struct AttemptError {
    error: ProxyError,
    /// When the connection was established (None: it never was).
    connected: Option<Instant>,
}

impl From<ProxyError> for AttemptError {
    fn from(error: ProxyError) -> Self {
        AttemptError {
            error,
            connected: None,
        }
    }
}

/// One try: connect (or reuse), send, read the response head.
async fn attempt<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    target: &Target,
    addr: &PeerAddr,
    head: &[u8],
    body: &ReqBody,
    retry_cached: bool,
) -> Result<(ResponseHead, UpstreamConn, Instant), AttemptError> {
    let conf = ex.conf.clone();
    let p = &conf.proxy;
    // A cached connection may have been closed by the backend in the
    // meantime. A failure to send on it is retried on a fresh connection
    // without counting against the peer (nothing reached the backend, no
    // body was read yet); a failure to get any answer is retried only
    // when `retry_cached` allows it.
    let mut cached = target.pool.as_ref().and_then(|pool| pool.take(addr));
    loop {
        let was_cached = cached.is_some();
        let mut conn = match cached.take() {
            Some(c) => c,
            None => open(ex, target, addr).await?,
        };
        let connected = Instant::now();
        conn.requests += 1;
        let fail = |error: ProxyError| AttemptError {
            error,
            connected: Some(connected),
        };
        match timeout(
            p.send_timeout,
            crate::net::write_flushed(&mut conn.io, head),
        )
        .await
        {
            Err(_) => return Err(fail(ProxyError::SendTimeout)),
            Ok(Err(_)) if was_cached => continue,
            Ok(Err(e)) => return Err(fail(ProxyError::Send(e))),
            Ok(Ok(())) => {}
        }
        match body {
            ReqBody::Stream(kind) => stream_body(ex, &mut conn, *kind).await.map_err(fail)?,
            ReqBody::Spooled(file, _) => send_spooled(file, &mut conn, p.send_timeout)
                .await
                .map_err(fail)?,
            ReqBody::None | ReqBody::Buffered(_) => {}
        }
        match read_head(ex, &mut conn, p.read_timeout, p.ignore_client_abort).await {
            Ok(resp) => return Ok((resp, conn, connected)),
            Err(ProxyError::PrematureClose | ProxyError::Recv(_))
                if was_cached && retry_cached && conn.buf.is_empty() =>
            {
                continue;
            }
            Err(e) => return Err(fail(e)),
        }
    }
}

/// Opens a new connection to `addr` (TLS for `https://`).
async fn open<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    target: &Target,
    addr: &PeerAddr,
) -> Result<UpstreamConn, ProxyError> {
    let conf = ex.conf.clone();
    let io = upstream::connect(addr, conf.proxy.connect_timeout).await?;
    let io = if target.tls {
        let Some(tls_conf) = conf.proxy.ssl.client.clone() else {
            return Err(ProxyError::Tls("no TLS settings for this location".into()));
        };
        let name = match &conf.proxy.ssl.name {
            Some(t) => ex.ctx.render_string(t),
            None => target.proxy_host.clone(),
        };
        let host =
            crate::config::values::split_host_port(&name, 443).map_or(name.as_str(), |(h, _)| h);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ProxyError::Tls(format!("invalid server name \"{host}\"")))?;
        let connector = tokio_rustls::TlsConnector::from(tls_conf);
        let limit = conf.proxy.connect_timeout;
        match io {
            UpstreamIo::Tcp(s) => UpstreamIo::Tls(Box::new(
                tls_handshake(&connector, server_name, s, limit).await?,
            )),
            UpstreamIo::Unix(s) => UpstreamIo::TlsUnix(Box::new(
                tls_handshake(&connector, server_name, s, limit).await?,
            )),
            tls => tls,
        }
    } else {
        io
    };
    Ok(UpstreamConn {
        io,
        buf: BytesMut::new(),
        peer: addr.clone(),
        requests: 0,
        created: Instant::now(),
        cached: false,
        lease: None,
    })
}

/// The TLS handshake with a backend over `stream`, within `limit`.
async fn tls_handshake<S>(
    connector: &tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
    stream: S,
    limit: Duration,
) -> Result<tokio_rustls::client::TlsStream<S>, ProxyError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match timeout(limit, connector.connect(name, stream)).await {
        Err(_) => Err(ProxyError::ConnectTimeout),
        Ok(Err(e)) => Err(ProxyError::Tls(e.to_string())),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Reads the response head, skipping interim `1xx` (but not `101`), and
/// watching for the client going away meanwhile (nginx's 499).
async fn read_head<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    up: &mut UpstreamConn,
    limit: Duration,
    ignore_abort: bool,
) -> Result<ResponseHead, ProxyError> {
    let deadline = Instant::now() + limit;
    let max_head = ex.conf.proxy.buffer_size.max(1024);
    loop {
        let buffered = up.buf.len();
        match parse_response(&mut up.buf) {
            Ok(Some(_)) if buffered - up.buf.len() > max_head => {
                return Err(ProxyError::TooBigHeader);
            }
            Ok(Some(head)) if head.status >= 100 && head.status < 200 && head.status != 101 => {
                continue;
            }
            Ok(Some(head)) => return Ok(head),
            Ok(None) if up.buf.len() >= max_head => return Err(ProxyError::TooBigHeader),
            Ok(None) => {}
            Err(e) => return Err(ProxyError::InvalidHeader(e.to_string())),
        }
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, body::fill(&mut up.io, &mut up.buf)) => r,
            _ = ex.down.client_gone(), if !ignore_abort => return Err(ProxyError::ClientClosed),
        };
        match read {
            Err(_) => return Err(ProxyError::ReadTimeout),
            Ok(Ok(0)) => return Err(ProxyError::PrematureClose),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ProxyError::Recv(e)),
        }
    }
}

/// Hop-by-hop headers never passed from a backend response (RFC 9110
/// §7.6.1); framing is recomputed for the client.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "content-length"
    )
}

/// `proxy_redirect`: the first rule that matches rewrites a `Location`
/// value, or the URL after `url=` of a `Refresh`; `None` when none does.
fn rewrite_redirect<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    rules: &[crate::config::RedirectRule],
    value: &[u8],
    refresh: bool,
) -> Option<Vec<u8>> {
    let start = if refresh {
        let lower = value.to_ascii_lowercase();
        memchr::memmem::find(&lower, b"url=")? + 4
    } else {
        0
    };
    let (head, url) = value.split_at(start);
    for rule in rules {
        let rest: &[u8] = match &rule.pattern {
            crate::config::RedirectPattern::Prefix(t) => {
                let prefix = ex.ctx.render(t);
                match url.strip_prefix(prefix.as_slice()) {
                    Some(rest) => rest,
                    None => continue,
                }
            }
            crate::config::RedirectPattern::Regex(re) => {
                if !ex.ctx.regex_match(re, url) {
                    continue;
                }
                b""
            }
        };
        let mut out = head.to_vec();
        out.extend_from_slice(&ex.ctx.render(&rule.replacement));
        out.extend_from_slice(rest);
        return Some(out);
    }
    None
}

fn finish_response<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    target: &Target,
    resp: ResponseHead,
    conn: UpstreamConn,
    client_asked_upgrade: bool,
    reusable: bool,
) -> Result<Proxied, ProxyError> {
    let conf = ex.conf.clone();
    let p = &conf.proxy;
    ex.ctx.upstream.headers = Some(resp.headers.clone());
    if resp.status != 101
        && !p.ignore.has(IgnoreHeaders::REDIRECT)
        && let Some(to) = resp
            .headers
            .get(&HeaderName::from_static("x-accel-redirect"))
    {
        // The backend connection is not read further: closed, not reused.
        drop(conn);
        let mut headers = Headers::new();
        for h in resp.headers.iter() {
            if KEPT_ON_ACCEL_REDIRECT.contains(&h.name.as_str()) {
                headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
            }
        }
        return Ok(Proxied::Redirect(AccelRedirect {
            target: String::from_utf8_lossy(to.as_bytes()).into_owned(),
            headers,
        }));
    }
    if !p.ignore.has(IgnoreHeaders::LIMIT_RATE)
        && let Some(rate) = resp
            .headers
            .get(&HeaderName::from_static("x-accel-limit-rate"))
            // nginx's ngx_atoi: digits only.
            .filter(|v| !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit))
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse::<u64>().ok())
    {
        ex.ctx.limit_rate = Some(rate);
    }
    let mut reply = Reply::empty(resp.status);
    reply.entity = Box::new(Entity::from_backend(
        &resp.headers,
        conf.filters.force_ranges,
    ));
    if p.ignore.has(IgnoreHeaders::CHARSET) {
        reply.entity.override_charset = None;
    }
    if !resp.reason.is_empty() {
        reply.reason = Some(resp.reason.clone());
    }
    // proxy_intercept_errors: a backend error with an error_page defined
    // for it is replaced by that page.
    reply.special = p.intercept_errors
        && resp.status >= 300
        && conf
            .error_pages
            .iter()
            .any(|e| e.codes.contains(&resp.status));
    reply.pass_server = !p.hide_headers.contains(&http::header::SERVER);
    reply.pass_date = !p.hide_headers.contains(&http::header::DATE);

    if resp.status == 101 {
        if !client_asked_upgrade {
            return Err(ProxyError::UnexpectedUpgrade);
        }
        if let Some(key) = ex.down.websocket_key() {
            let expected =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let accept = resp
                .headers
                .get(&HeaderName::from_static("sec-websocket-accept"));
            if accept.is_none_or(|a| a.as_bytes() != expected.as_bytes()) {
                return Err(ProxyError::InvalidHeader(
                    "\"Sec-WebSocket-Accept\" does not match the key sent".into(),
                ));
            }
        }
        for h in resp.headers.iter() {
            if is_hop_by_hop(&h.name) || p.hide_headers.contains(&h.name) {
                continue;
            }
            reply
                .headers
                .append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
        return Ok(Proxied::Upgrade(reply, conn));
    }

    let upgrade = HeaderName::from_static("upgrade");
    for h in resp.headers.iter() {
        if is_hop_by_hop(&h.name) || h.name == upgrade || p.hide_headers.contains(&h.name) {
            continue;
        }
        let mut value = h.value.clone();
        if h.name == http::header::LOCATION || h.name == http::header::REFRESH {
            let refresh = h.name == http::header::REFRESH;
            if let Some(v) = rewrite_redirect(ex, &p.redirects, value.as_bytes(), refresh) {
                value = HeaderValue::from_bytes(&v);
            }
            // As nginx's header filter does: a Location that is a path
            // becomes an absolute URL on this server.
            if !refresh
                && value.as_bytes().first() == Some(&b'/')
                && let Ok(path) = std::str::from_utf8(value.as_bytes())
            {
                value = HeaderValue::from_bytes(ex.absolute_url(path).as_bytes());
            }
        }
        reply
            .headers
            .append_raw(h.raw.clone(), h.name.clone(), value);
    }
    if conf.filters.force_ranges {
        // The range filter says whether ranges are served, not the backend.
        reply.headers.remove(&http::header::ACCEPT_RANGES);
    }
    let kind = response_body_kind(&resp, &ex.ctx.method)
        .map_err(|e| ProxyError::InvalidHeader(e.into()))?;
    let keep = reusable
        && resp.version == Version::HTTP_11
        && !resp.headers.has_token(&http::header::CONNECTION, "close")
        && kind != BodyKind::Close;
    let pool = if keep { target.pool.clone() } else { None };
    reply.body = match kind {
        BodyKind::None => {
            if let (Some(pool), true) = (&pool, conn.buf.is_empty()) {
                pool.put(conn);
            }
            // HEAD and 304 keep the backend's Content-Length.
            if let Some(cl) = resp.headers.get(&http::header::CONTENT_LENGTH)
                && ex.ctx.method == Method::HEAD
            {
                reply.headers.append_str("Content-Length", cl.clone());
            }
            Body::Empty
        }
        kind => Body::Upstream(Box::new(UpstreamBody::new(
            conn,
            kind,
            p.read_timeout,
            pool,
        ))),
    };
    Ok(Proxied::Reply(reply))
}
