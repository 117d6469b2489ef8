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

use crate::config::Location;
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
    let Some(group) = generation.group(down.listen_key(), down.info().local) else {
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
            let missing = h.is_none() && head.version == Version::HTTP_11;
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
    ex.run().await
}

/// nginx's "client sent duplicate header line" for the conditional and
/// range request headers it reads once (`If-Modified-Since`,
/// `If-Unmodified-Since`, `If-Match`, `If-None-Match`, `If-Range`).
fn duplicate_header(headers: &crate::http1::Headers) -> Option<String> {
    use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
    let unique = [
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_MATCH,
        IF_NONE_MATCH,
        IF_RANGE,
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
    async fn run(mut self: Box<Self>) -> Next {
        // (original status, `=code` override) once an error_page redirect
        // happened; nginx applies error_page once per request.
        let mut error_page: Option<(u16, Option<u16>)> = None;
        loop {
            let mut reply = match self.route().await {
                Action::Reply(reply) => reply,
                // Boxed: proxying's state is large and only some requests
                // need it.
                Action::Proxy => match Box::pin(proxy::forward(&mut self)).await {
                    Ok(Proxied::Reply(reply)) => reply,
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
            if let Some((original, overwrite)) = error_page {
                reply.status = overwrite.unwrap_or(original);
            }
            // nginx's not-modified filter comes first among the filters,
            // and may produce a 412 that error_page handles.
            let reply = crate::response::conditional::not_modified(reply, &self.ctx, &self.conf);
            if error_page.is_none() && reply.special {
                let conf = self.conf.clone();
                if let Some(page) = conf
                    .error_pages
                    .iter()
                    .find(|p| p.codes.contains(&reply.status))
                {
                    let target = self.ctx.render_string(&page.uri);
                    error_page = Some((reply.status, page.overwrite));
                    // A status that ends the connection (400, 413, ...)
                    // still does with a custom page.
                    if reply.close {
                        self.keepalive = false;
                    }
                    drop(reply);
                    if target.starts_with("http://") || target.starts_with("https://") {
                        let status = page
                            .overwrite
                            .filter(|s| matches!(s, 301 | 302 | 303 | 307 | 308))
                            .unwrap_or(302);
                        let mut r = Reply::redirect(status, target.as_bytes(), conf.server_tokens);
                        r.special = false;
                        return self.finish(r).await;
                    }
                    if self.ctx.method != Method::HEAD {
                        self.ctx.method = Method::GET;
                    }
                    self.uri_changed = true;
                    if let Some(name) = target.strip_prefix('@') {
                        match self.ctx.server.locations.named.get(name) {
                            Some(l) => self.next_named = Some(l.clone()),
                            None => {
                                self.log(
                                    Level::Error,
                                    &format!("could not find named location \"@{name}\""),
                                    None,
                                );
                                return self.finish(Reply::error(500, conf.server_tokens)).await;
                            }
                        }
                    } else {
                        match target.split_once('?') {
                            Some((u, a)) => {
                                self.ctx.uri = u.to_string();
                                self.ctx.args = Some(a.to_string());
                            }
                            None => self.ctx.uri = target,
                        }
                    }
                    continue;
                }
            }
            return self.finish(reply).await;
        }
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
                        let mut to = format!("{}/", self.ctx.uri);
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
            // then access rules.
            self.realip();
            if let Some(reply) = self.limit_req().await {
                return Action::Reply(reply);
            }
            if let Some(reply) = self.limit_conn() {
                return Action::Reply(reply);
            }
            if !crate::access::allowed(&self.conf.access, self.ctx.remote.ip()) {
                self.log(Level::Error, "access forbidden by rule", None);
                return Action::Reply(Reply::error(403, self.conf.server_tokens));
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
