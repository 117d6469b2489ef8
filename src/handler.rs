//! One request, from head to response: nginx's phases in order.
//!
//! 1. **server selection** by `Host` among the servers of the listening
//!    address, and URI normalisation;
//! 2. **server rewrite**: server-level `set` / `return`;
//! 3. **location** search (exact, longest prefix and nested, regexes);
//! 4. **location rewrite**: the location's `set` / `return`;
//! 5. **preaccess**: `limit_conn`;
//! 6. **content**: `proxy_pass`, `try_files`, static files; internal
//!    redirects (`try_files` fallback, index files) go back to step 3;
//! 7. **log**: the access log line, when the response (or the tunnel of an
//!    upgraded connection) is done.

use std::sync::Arc;

use http::{Method, Version};
use tokio::time::Instant;

use crate::config::{ListenGroup, Location, SetTarget};
use crate::exchange::{Downstream, Exchange, Refusal};
use crate::http1::RequestHead;
use crate::limits;
use crate::log::Level;
use crate::proxy::tunnel::Tunnel;
use crate::proxy::{self, Proxied};
use crate::request::{RequestCtx, ResponseInfo, UpstreamInfo};
use crate::response::Reply;
use crate::rewrite::Flow;
use crate::route::{self, Found};
use crate::state::Shared;
use crate::static_files::{self, Content};

mod builtin;

/// Internal redirects allowed per request before nginx's "rewrite or
/// internal redirection cycle" error.
const MAX_REDIRECTS: usize = 10;

/// What the connection does after a request.
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close.
    Close,
    /// Become a tunnel.
    Upgrade(Box<Tunnel>),
}

enum Action {
    Reply(Reply),
    Proxy,
}

/// Handles one request on `conn`.
pub async fn handle<D: Downstream>(
    shared: &Arc<Shared>,
    down: &mut D,
    head: RequestHead,
    framing: Result<(), Refusal>,
) -> Next {
    let start = Instant::now();
    let generation = shared.generation.load_full();
    let Some(http) = generation.config.http.clone() else {
        return Next::Close;
    };
    let Some(group) = generation.group(&down.info().listen, down.info().local) else {
        return Next::Close;
    };
    let default_server = group.servers[group.default_server].clone();

    let keepalive = match head.version {
        Version::HTTP_10 => head
            .headers
            .has_token(&http::header::CONNECTION, "keep-alive"),
        _ => !head.headers.has_token(&http::header::CONNECTION, "close"),
    };
    let hosts = head.headers.count(&http::header::HOST);
    let host = if hosts > 1 {
        Err("client sent duplicate host header")
    } else {
        route::request_host(
            head.headers.get(&http::header::HOST).map(|v| v.as_bytes()),
            &head.target,
        )
        .map_err(|_| "client sent invalid host header")
    };
    let mut hit = None;
    let (server, host, bad) = match host {
        Ok(h) => {
            let server = route::select_server(&group, h.as_deref(), &mut hit);
            // nginx wants the header even when the target is absolute.
            let missing = hosts == 0 && head.version == Version::HTTP_11;
            let name = h.unwrap_or_else(|| server.primary_name().to_string());
            (
                server,
                name,
                missing.then_some("client sent HTTP/1.1 request without \"Host\" header"),
            )
        }
        Err(why) => (
            default_server.clone(),
            default_server.primary_name().to_string(),
            Some(why),
        ),
    };
    let (uri, args, bad) = match route::normalize_target(&head.target) {
        Ok((u, a)) => (u, a, bad),
        Err(_) => (
            String::new(),
            None,
            bad.or(Some("client sent invalid request")),
        ),
    };
    let ctx = RequestCtx {
        conn: down.info().clone(),
        http: http.clone(),
        server: server.clone(),
        location: None,
        method: head.method.clone(),
        version: head.version,
        // nginx's `$request_uri` of an absolute-form target is its path
        // and query.
        request_uri: match route::split_absolute(&head.target) {
            Some((_, rest)) if rest.starts_with('/') => rest.to_string(),
            Some((_, rest)) => format!("/{rest}"),
            None => head.target.clone(),
        },
        uri,
        args,
        headers: head.headers,
        host,
        indexed: Vec::new(),
        captures: None,
        upstream: UpstreamInfo::default(),
        response: ResponseInfo::default(),
        start,
        request_length: head.len as u64,
        body: Default::default(),
        connection_requests: down.requests(),
        limit_rate: None,
        remote: down.info().remote,
        realip_peer: None,
        limit_req_status: None,
    };
    // One allocation per request holds the whole exchange; the futures
    // below then carry a pointer instead of copies of it.
    let mut ex = Box::new(Exchange {
        shared,
        generation,
        down,
        keepalive,
        conf: server.conf.clone(),
        slots: Vec::new(),
        uri_changed: false,
        rewritten: false,
        next_named: None,
        accel_headers: None,
        subrequest: None,
        ctx,
    });
    if let Some(hit) = hit {
        ex.ctx.regex_match(&hit.regex, hit.subject.as_bytes());
    }
    // nginx keeps one value of these request headers and refuses a
    // request that repeats one.
    let bad = bad
        .map(str::to_string)
        .or_else(|| duplicate_header(&ex.ctx.headers));
    if let Some(why) = bad {
        ex.log(Level::Info, &why, None);
        let tokens = ex.conf.server_tokens;
        return ex.finish(Reply::error(400, tokens)).await;
    }
    if let Err(refusal) = framing {
        ex.log(Level::Info, refusal.why, None);
        let tokens = ex.conf.server_tokens;
        return ex.finish(Reply::error(refusal.status, tokens)).await;
    }
    // TRACE would echo the request, credentials included, back to whoever
    // can make a browser send one; nginx refuses it and so does this.
    if ex.ctx.method == Method::TRACE {
        ex.log(Level::Info, "client sent TRACE method", None);
        ex.keepalive = false;
        let tokens = ex.conf.server_tokens;
        return ex.finish(Reply::error(405, tokens)).await;
    }
    let refusal = tls_refusal(&ex.ctx, &group);
    if let Some((status, why)) = refusal {
        ex.log(Level::Info, &why, None);
        let reply = Reply::error(status, ex.conf.server_tokens);
        return ex.run(Some(reply)).await;
    }
    ex.run(None).await
}

/// What TLS makes of a request before its phases (nginx checks this once
/// the head is read): plain HTTP on a TLS address (497), a client
/// certificate that failed verification (495) or is missing where
/// required (496), a `Host` whose server asks for client certificates but
/// is not the one the SNI name chose (421). The status and the log line.
fn tls_refusal(ctx: &RequestCtx, group: &ListenGroup) -> Option<(u16, String)> {
    use crate::tls::server::{VerifyClient, error_optional};
    if ctx.conn.plain_http_on_tls {
        return Some((497, "client sent plain HTTP request to HTTPS port".into()));
    }
    let session = ctx.conn.tls_session.as_ref()?;
    let mode = ctx
        .server
        .tls
        .as_ref()
        .map_or(VerifyClient::Off, |t| t.verify_client);
    if mode == VerifyClient::Off {
        return None;
    }
    let negotiated = group.servers.get(session.site).map(|s| s.index);
    if session.server_name.is_some() && negotiated != Some(ctx.server.index) {
        return Some((
            421,
            "client attempted to request the server name different from the one that was negotiated"
                .into(),
        ));
    }
    let client = session.client.as_ref();
    if let Some(code) = client.and_then(|c| c.verdict.code)
        && (mode != VerifyClient::OptionalNoCa || !error_optional(code))
    {
        let text = client.map_or("", |c| c.verdict.text.trim_start_matches("FAILED:"));
        return Some((
            495,
            format!("client SSL certificate verify error: ({code}:{text})"),
        ));
    }
    if mode == VerifyClient::On && client.is_none_or(|c| c.chain.is_empty()) {
        return Some((496, "client sent no required SSL certificate".into()));
    }
    None
}

/// nginx's "client sent duplicate header line" for the request headers
/// it reads once (Host, Content-Length and Transfer-Encoding have their
/// own checks and messages).
fn duplicate_header(headers: &crate::http1::Headers) -> Option<String> {
    use http::header::{
        AUTHORIZATION, CONTENT_RANGE, EXPECT, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
        IF_UNMODIFIED_SINCE,
    };
    let unique = [
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_MATCH,
        IF_NONE_MATCH,
        CONTENT_RANGE,
        IF_RANGE,
        EXPECT,
        AUTHORIZATION,
    ];
    let mut seen: Vec<&crate::http1::headers::Header> = Vec::new();
    for h in headers.iter().filter(|h| unique.contains(&h.name)) {
        if let Some(first) = seen.iter().find(|f| f.name == h.name) {
            let line = |h: &crate::http1::headers::Header| {
                format!(
                    "{}: {}",
                    String::from_utf8_lossy(&h.raw),
                    String::from_utf8_lossy(h.value.as_bytes())
                )
            };
            return Some(format!(
                "client sent duplicate header line: \"{}\", previous value: \"{}\" while reading client request headers",
                line(h),
                line(first)
            ));
        }
        seen.push(h);
    }
    None
}

impl<D: Downstream> Exchange<'_, D> {
    /// The phases, then error pages; `first` answers the request without
    /// routing it (a refusal the phases never see, still subject to
    /// `error_page`).
    async fn run(mut self: Box<Self>, mut first: Option<Reply>) -> Next {
        let mut pages = crate::error_page::Pages::default();
        let mut accel_redirects = 0;
        loop {
            let routed = match first.take() {
                Some(reply) => Action::Reply(reply),
                None => self.route().await,
            };
            let reply = match routed {
                Action::Reply(reply) => reply,
                // Boxed: proxying's state is large and only some requests
                // need it.
                Action::Proxy => match Box::pin(proxy::forward(&mut self)).await {
                    Ok(Proxied::Reply(reply)) => reply,
                    Ok(Proxied::Redirect(to)) => {
                        accel_redirects += 1;
                        match self.accel_redirect(to, accel_redirects) {
                            Some(reply) => reply,
                            None => continue,
                        }
                    }
                    Ok(Proxied::Upgrade(reply, upstream)) => {
                        return match Box::pin(proxy::tunnel::accept(&mut self, reply, upstream))
                            .await
                        {
                            Some(tunnel) => Next::Upgrade(tunnel),
                            None => Next::Close,
                        };
                    }
                    Err(e) => {
                        let status = e.status();
                        if status == 499 {
                            self.ctx.response.status = 499;
                            self.keepalive = false;
                            crate::access_log::write(
                                &mut self.ctx,
                                &self.conf,
                                &self.generation.access_logs,
                            );
                            return Next::Close;
                        }
                        let mut reply = Reply::error(status, self.conf.server_tokens);
                        if matches!(e, proxy::ProxyError::UnexpectedUpgrade) {
                            // nginx sends no body here; clients that asked
                            // for nothing special get an empty 502.
                            reply.body = crate::response::Body::Empty;
                            reply.headers = crate::http1::Headers::new();
                            reply.special = false;
                        }
                        reply
                    }
                },
            };
            let reply = match self.error_page(reply, &mut pages) {
                crate::error_page::Next::Send(reply) => reply,
                crate::error_page::Next::Redirected => continue,
            };
            // nginx's not-modified filter comes first among the header
            // filters; a 412 it makes is an error of its own, which
            // error_page handles.
            let before = reply.status;
            let reply = crate::response::conditional::not_modified(reply, &self.ctx, &self.conf);
            if reply.status == 412 && before != 412 {
                match self.error_page(reply, &mut pages) {
                    crate::error_page::Next::Send(reply) => return self.finish(reply).await,
                    crate::error_page::Next::Redirected => continue,
                }
            }
            return self.finish(reply).await;
        }
    }

    /// `X-Accel-Redirect` from a backend: an internal redirect to a URI
    /// (the method becomes GET, except HEAD) or to a named location, as
    /// nginx does; the kept backend headers go into the final response.
    /// `None` when the request goes on; otherwise the reply to send.
    fn accel_redirect(&mut self, to: proxy::AccelRedirect, count: usize) -> Option<Reply> {
        let tokens = self.conf.server_tokens;
        if count > MAX_REDIRECTS {
            self.log(
                Level::Error,
                &format!(
                    "rewrite or internal redirection cycle while internally redirecting to \"{}\"",
                    to.target
                ),
                None,
            );
            return Some(Reply::error(500, tokens));
        }
        self.accel_headers = Some(to.headers);
        self.uri_changed = true;
        if let Some(name) = to.target.strip_prefix('@') {
            return match self.ctx.server.locations.named.get(name) {
                Some(l) => {
                    self.next_named = Some(l.clone());
                    None
                }
                None => {
                    self.log(
                        Level::Error,
                        &format!("could not find named location \"@{name}\""),
                        None,
                    );
                    Some(Reply::error(500, tokens))
                }
            };
        }
        let (uri, args) = match to.target.split_once('?') {
            Some((u, a)) => (u, Some(a)),
            None => (to.target.as_str(), None),
        };
        let Some(uri) = route::unsafe_uri_checked(uri) else {
            self.log(
                Level::Error,
                &format!("unsafe URI \"{uri}\" was detected"),
                None,
            );
            return Some(Reply::error(404, tokens));
        };
        if self.ctx.method != Method::HEAD {
            self.ctx.method = Method::GET;
        }
        self.ctx.uri = uri;
        self.ctx.args = args.map(str::to_string);
        None
    }

    /// Phases 2 to 6; returns what to send.
    async fn route(&mut self) -> Action {
        let server = self.ctx.server.clone();
        let mut target: Option<Arc<Location>> = self.next_named.take();
        // Internal redirects start over at the server rewrite phase;
        // `rewrite ... last` goes straight back to the location search.
        let mut server_rewrite = target.is_none();
        // nginx's post-read phase: the server's real_ip settings.
        self.realip();
        let mut searches = 0;
        'search: while searches < MAX_REDIRECTS {
            searches += 1;
            if server_rewrite {
                server_rewrite = false;
                match self.rewrite(&server.rewrite) {
                    Flow::Reply(reply) => return Action::Reply(reply),
                    Flow::Next | Flow::Break | Flow::Last => {}
                }
            }
            let location = match target.take() {
                Some(named) => Some(named),
                None => match route::find_location(
                    &server.locations,
                    &self.ctx.uri.clone(),
                    &mut self.ctx,
                ) {
                    Found::Location(l) => Some(l),
                    Found::Redirect(_) => {
                        let mut to = format!("{}/", crate::route::escape_uri(&self.ctx.uri));
                        if let Some(a) = &self.ctx.args {
                            to.push('?');
                            to.push_str(a);
                        }
                        let to = self.absolute_url(&to);
                        return Action::Reply(Reply::redirect(
                            301,
                            to.as_bytes(),
                            self.conf.server_tokens,
                        ));
                    }
                    Found::None => None,
                },
            };
            self.conf = location
                .as_ref()
                .map_or_else(|| server.conf.clone(), |l| l.conf.clone());
            if let Some(block) = self.conf.limit_except.clone()
                && block.applies_to(&self.ctx.method)
            {
                self.conf = block.conf.clone();
            }
            self.ctx.location = location.clone();
            if let Some(l) = &location {
                if l.conf.internal && !self.uri_changed {
                    return Action::Reply(Reply::error(404, self.conf.server_tokens));
                }
                match self.rewrite(&l.rewrite) {
                    Flow::Reply(reply) => return Action::Reply(reply),
                    Flow::Last => continue 'search,
                    Flow::Next | Flow::Break => {}
                }
            }
            // Preaccess: a location's own real_ip settings, then limits;
            // then the access phase. Subrequests skip both, as in nginx.
            self.realip();
            if self.subrequest.is_none() {
                if let Some(reply) = self.limit_req().await {
                    return Action::Reply(reply);
                }
                if let Some(reply) = self.limit_conn() {
                    return Action::Reply(reply);
                }
                if let Some(reply) = self.access_phase().await {
                    return Action::Reply(reply);
                }
            }
            if let Some(handler) = self.conf.content_handler {
                return Action::Reply(self.builtin_content(handler));
            }
            if self.conf.proxy_pass.is_some() {
                return Action::Proxy;
            }
            match static_files::content(self).await {
                Content::Reply(reply) => return Action::Reply(reply),
                Content::Redirect(uri) => {
                    self.ctx.uri = uri;
                    self.uri_changed = true;
                    server_rewrite = true;
                }
                Content::Named(name) => match server.locations.named.get(&name) {
                    Some(l) => {
                        target = Some(l.clone());
                        self.uri_changed = true;
                    }
                    None => {
                        self.log(
                            Level::Error,
                            &format!("could not find named location \"@{name}\""),
                            None,
                        );
                        return Action::Reply(Reply::error(500, self.conf.server_tokens));
                    }
                },
            }
        }
        self.log(
            Level::Error,
            &format!(
                "rewrite or internal redirection cycle while internally redirecting to \"{}\"",
                self.ctx.uri
            ),
            None,
        );
        Action::Reply(Reply::error(500, self.conf.server_tokens))
    }

    /// nginx's access phase: `allow`/`deny`, then `auth_basic`, then
    /// `auth_request`, combined as `satisfy` says (`all`: every step that
    /// applies must let the request through; `any`: one is enough, and a
    /// 401 is preferred over a 403 when none does); `auth_delay` holds
    /// 401s back. `None` lets the request through.
    async fn access_phase(&mut self) -> Option<Reply> {
        use crate::access::Verdict;
        let conf = self.conf.clone();
        let any = conf.satisfy_any;
        let mut refused: Option<Reply> = None;
        for step in 0..3 {
            let verdict = match step {
                0 => self.access_rules(any),
                1 => match &conf.auth_basic {
                    Some(auth) => crate::access::basic::check(self, auth).await,
                    None => Verdict::Declined,
                },
                _ => match &conf.auth_request {
                    Some(uri) => self.auth_request(uri).await,
                    None => Verdict::Declined,
                },
            };
            match verdict {
                Verdict::Declined => {}
                Verdict::Allowed if any => return None,
                Verdict::Allowed => {}
                Verdict::Refused(reply) if any && matches!(reply.status, 401 | 403) => {
                    if refused.as_ref().is_none_or(|r| r.status != 401) {
                        refused = Some(reply);
                    }
                }
                Verdict::Refused(reply) => return Some(self.auth_delay(reply).await),
            }
        }
        match refused {
            Some(reply) => Some(self.auth_delay(reply).await),
            None => None,
        }
    }

    /// `allow`/`deny`; under `satisfy all` a refusal is logged.
    fn access_rules(&self, any: bool) -> crate::access::Verdict {
        use crate::access::Verdict;
        match crate::access::decide(&self.conf.access, self.ctx.remote) {
            Verdict::Refused(_) => {
                if !any {
                    self.log(Level::Error, "access forbidden by rule", None);
                }
                Verdict::Refused(Reply::error(403, self.conf.server_tokens))
            }
            other => other,
        }
    }

    /// The `auth_request` step: the subrequest's status decides (2xx lets
    /// the request through, 401 and 403 refuse, anything else is a 500).
    /// Made again after an internal redirect, as nginx forgets module
    /// state there.
    async fn auth_request(&mut self, uri: &str) -> crate::access::Verdict {
        use crate::access::Verdict;
        let (status, challenges) = self.auth_subrequest(uri).await;
        let tokens = self.conf.server_tokens;
        match status {
            403 => Verdict::Refused(Reply::error(403, tokens)),
            401 => {
                let mut reply = Reply::error(401, tokens);
                for h in challenges {
                    reply.headers.append_raw(h.raw, h.name, h.value);
                }
                Verdict::Refused(reply)
            }
            200..=299 => Verdict::Allowed,
            other => {
                self.log(
                    Level::Error,
                    &format!("auth request unexpected status: {other}"),
                    None,
                );
                Verdict::Refused(Reply::error(500, tokens))
            }
        }
    }

    /// Runs the `auth_request` subrequest to `uri`: a GET with the client's
    /// headers and no body, through this server's locations (internal ones
    /// included), sharing this request's variables; then applies
    /// `auth_request_set` with the subrequest's variables. Returns its
    /// status and `WWW-Authenticate` headers (all of them, as nginx since
    /// 1.23.1). Boxed: a subrequest is a request, so
    /// this future contains the phases that contain it.
    fn auth_subrequest<'s>(
        &'s mut self,
        uri: &'s str,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = (u16, Vec<crate::http1::headers::Header>)> + Send + 's,
        >,
    > {
        Box::pin(async move {
            let mut side = SubrequestSide {
                info: self.down.info().clone(),
                requests: self.down.requests(),
            };
            let parent = &mut self.ctx;
            let ctx = RequestCtx {
                conn: parent.conn.clone(),
                http: parent.http.clone(),
                server: parent.server.clone(),
                location: None,
                method: Method::GET,
                version: parent.version,
                request_uri: parent.request_uri.clone(),
                uri: uri.to_string(),
                args: None,
                headers: parent.headers.clone(),
                host: parent.host.clone(),
                indexed: std::mem::take(&mut parent.indexed),
                captures: None,
                upstream: UpstreamInfo::default(),
                response: ResponseInfo::default(),
                start: Instant::now(),
                request_length: 0,
                body: Default::default(),
                connection_requests: parent.connection_requests,
                limit_rate: None,
                remote: parent.remote,
                realip_peer: parent.realip_peer,
                limit_req_status: None,
            };
            let mut sub = Exchange {
                shared: self.shared,
                generation: self.generation.clone(),
                down: &mut side,
                ctx,
                keepalive: false,
                conf: self.ctx.server.conf.clone(),
                slots: Vec::new(),
                uri_changed: true,
                rewritten: false,
                next_named: None,
                accel_headers: None,
                subrequest: Some(crate::exchange::Subrequest {
                    main_method: self.ctx.method.clone(),
                    uri: uri.to_string(),
                }),
            };
            let reply = match sub.route().await {
                Action::Reply(reply) => reply,
                Action::Proxy => match proxy::forward(&mut sub).await {
                    Ok(Proxied::Reply(reply) | Proxied::Upgrade(reply, _)) => reply,
                    Ok(Proxied::Redirect(_)) => {
                        self.log(
                            Level::Error,
                            "X-Accel-Redirect in the answer to an auth_request subrequest is not supported",
                            None,
                        );
                        Reply::error(500, self.conf.server_tokens)
                    }
                    Err(e) => Reply::error(e.status(), sub.conf.server_tokens),
                },
            };
            let challenges: Vec<_> = reply
                .headers
                .iter()
                .filter(|h| h.name == http::header::WWW_AUTHENTICATE)
                .cloned()
                .collect();
            for (target, value) in self.conf.auth_request_set.iter() {
                let v = sub.ctx.render(value);
                match *target {
                    SetTarget::Slot(slot) => sub.ctx.assign(slot, v),
                    SetTarget::Args => {
                        self.ctx.args = Some(String::from_utf8_lossy(&v).into_owned())
                    }
                    SetTarget::LimitRate => {
                        let text = String::from_utf8_lossy(&v);
                        self.ctx.limit_rate =
                            Some(crate::config::values::parse_size(&text).unwrap_or(0));
                    }
                }
            }
            self.ctx.indexed = std::mem::take(&mut sub.ctx.indexed);
            (reply.status, challenges)
        })
    }

    /// `auth_delay`: a 401 waits before it is sent.
    async fn auth_delay(&self, reply: Reply) -> Reply {
        if reply.status == 401 && !self.conf.auth_delay.is_zero() {
            tokio::time::sleep(self.conf.auth_delay).await;
        }
        reply
    }

    /// Replaces the client address with the one trusted proxies report,
    /// once per request (`set_real_ip_from`, `real_ip_header`).
    fn realip(&mut self) {
        if self.ctx.realip_peer.is_some() {
            return;
        }
        let Some(realip) = self.conf.realip.clone() else {
            return;
        };
        if let Some(addr) = realip.resolve(self.ctx.remote, &self.ctx.headers) {
            self.ctx.realip_peer = Some(self.ctx.remote);
            self.ctx.remote = addr;
        }
    }

    /// `limit_req`, once per request: refuses, waits, or lets through.
    async fn limit_req(&mut self) -> Option<Reply> {
        if self.ctx.limit_req_status.is_some() || self.conf.limit_req.is_empty() {
            return None;
        }
        let conf = self.conf.clone();
        let mut keys = Vec::with_capacity(conf.limit_req.len());
        for rule in conf.limit_req.iter() {
            let key = self.ctx.render(&rule.zone.key);
            if key.len() > 65535 {
                self.log(
                    Level::Error,
                    &format!(
                        "the value of the \"{}\" key is more than 65535 bytes: \"{}\"",
                        rule.zone.key.source,
                        String::from_utf8_lossy(&key)
                    ),
                    None,
                );
            }
            keys.push((!key.is_empty() && key.len() <= 65535).then_some(key));
        }
        if keys.iter().all(Option::is_none) {
            // No key, no verdict (`$limit_req_status` stays empty).
            return None;
        }
        let rules: Vec<limits::RateRule<'_>> = conf
            .limit_req
            .iter()
            .map(|r| limits::RateRule {
                zone: &r.zone.state,
                rate: r.zone.rate,
                burst: r.burst,
                delay: r.delay,
            })
            .collect();
        let dry = if conf.limit_req_dry_run {
            ", dry run"
        } else {
            ""
        };
        let zone_name = |i: usize| &conf.limit_req[i].zone.name;
        match limits::check_rate(&rules, &keys) {
            limits::RateVerdict::Pass => {
                self.ctx.limit_req_status = Some("PASSED");
                None
            }
            limits::RateVerdict::Reject { index, excess } => {
                self.log(
                    conf.limit_req_log_level,
                    &format!(
                        "limiting requests{dry}, excess: {}.{:03} by zone \"{}\"",
                        excess / 1000,
                        excess % 1000,
                        zone_name(index)
                    ),
                    None,
                );
                if conf.limit_req_dry_run {
                    self.ctx.limit_req_status = Some("REJECTED_DRY_RUN");
                    return None;
                }
                self.ctx.limit_req_status = Some("REJECTED");
                Some(Reply::error(
                    conf.limit_req_status.as_u16(),
                    conf.server_tokens,
                ))
            }
            limits::RateVerdict::Delay { index, excess, ms } => {
                self.log(
                    conf.limit_req_log_level.less_severe(),
                    &format!(
                        "delaying request{dry}, excess: {}.{:03}, by zone \"{}\"",
                        excess / 1000,
                        excess % 1000,
                        zone_name(index)
                    ),
                    None,
                );
                if conf.limit_req_dry_run {
                    self.ctx.limit_req_status = Some("DELAYED_DRY_RUN");
                    return None;
                }
                self.ctx.limit_req_status = Some("DELAYED");
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                None
            }
        }
    }

    /// `limit_conn`, once per request.
    fn limit_conn(&mut self) -> Option<Reply> {
        if !self.slots.is_empty() {
            return None;
        }
        let conf = self.conf.clone();
        for rule in conf.limit_conn.iter() {
            let key = self.ctx.render(&rule.zone.key);
            if key.is_empty() {
                continue;
            }
            if key.len() > 255 {
                self.log(
                    Level::Error,
                    &format!(
                        "the value of the \"{}\" key is more than 255 bytes: \"{}\"",
                        rule.zone.key.source,
                        String::from_utf8_lossy(&key)
                    ),
                    None,
                );
                continue;
            }
            match rule.zone.state.acquire(&key, rule.max) {
                Ok(slot) => self.slots.push(slot),
                Err(refused) => {
                    let msg = match refused {
                        limits::Refused::Limit => {
                            format!("limiting connections by zone \"{}\"", rule.zone.name)
                        }
                        limits::Refused::ZoneFull => format!(
                            "could not allocate node in limit_conn zone \"{}\"",
                            rule.zone.name
                        ),
                    };
                    self.log(conf.limit_conn_log_level, &msg, None);
                    self.slots.clear();
                    return Some(Reply::error(
                        conf.limit_conn_status.as_u16(),
                        conf.server_tokens,
                    ));
                }
            }
        }
        None
    }

    /// Applies header filters, writes the response, logs it.
    pub async fn finish(mut self: Box<Self>, mut reply: Reply) -> Next {
        let conf = self.conf.clone();
        if let Some(kept) = self.accel_headers.take() {
            // After X-Accel-Redirect: the backend's Content-Type and
            // Accept-Ranges win over the new content's, the other kept
            // headers are added.
            for h in kept.iter() {
                if h.name == http::header::CONTENT_TYPE || h.name == http::header::ACCEPT_RANGES {
                    reply.headers.set(h.name.clone(), h.value.clone());
                } else {
                    reply
                        .headers
                        .append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
                }
            }
        }
        crate::response::headers::apply(&mut reply, &conf, &mut self.ctx);
        // A body the handler did not read must be drained before the next
        // request can be parsed; small ones are, large ones close (with a
        // lingering read). A client waiting for `100 Continue` may never
        // send the body once it has a final answer, so that connection
        // closes too; so does one that closes anyway.
        if !self.down.body_done() {
            let expects_continue = self
                .ctx
                .headers
                .has_token(&http::header::EXPECT, "100-continue");
            let drained = self.keepalive
                && !expects_continue
                && self.down.discard_body(conf.client_body_timeout).await;
            if !drained {
                self.keepalive = false;
                self.down.linger();
            }
        }
        if Box::pin(crate::response::send::respond(&mut self, reply)).await {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// The client side of a subrequest: no body, and nothing is written (its
/// answer is only looked at).
struct SubrequestSide {
    info: Arc<crate::request::ConnInfo>,
    requests: u64,
}

impl Downstream for SubrequestSide {
    fn info(&self) -> &Arc<crate::request::ConnInfo> {
        &self.info
    }
    fn requests(&self) -> u64 {
        self.requests
    }
    fn draining(&self) -> bool {
        false
    }
    fn set_location(&mut self, _: &crate::config::LocConf) {}
    fn body_kind(&self) -> crate::http1::BodyKind {
        crate::http1::BodyKind::None
    }
    fn body_done(&self) -> bool {
        true
    }
    async fn read_body(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        Ok(None)
    }
    async fn discard_body(&mut self, _: std::time::Duration) -> bool {
        true
    }
    async fn send_continue(&mut self) {}
    async fn client_gone(&self) {
        std::future::pending::<()>().await;
    }
    fn linger(&mut self) {}
    fn start_response(&mut self, _: crate::exchange::ResponseHead<'_>) -> crate::exchange::Started {
        crate::exchange::Started {
            headers: crate::http1::Headers::new(),
            head_len: 0,
            keepalive: false,
        }
    }
    fn queue_body(&mut self, _: &[u8]) -> u64 {
        0
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    async fn send_body(&mut self, _: &[u8]) -> std::io::Result<u64> {
        Ok(0)
    }
    async fn send_end(&mut self, _: &crate::http1::Headers) -> std::io::Result<u64> {
        Ok(0)
    }
    fn end_response(&mut self) {}
    fn start_upgrade(
        &mut self,
        _: Option<&[u8]>,
        _: crate::http1::Headers,
        _: &crate::http1::Headers,
    ) -> crate::exchange::Started {
        crate::exchange::Started {
            headers: crate::http1::Headers::new(),
            head_len: 0,
            keepalive: false,
        }
    }
}
