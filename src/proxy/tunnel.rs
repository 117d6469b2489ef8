//! Tunnels: an upgraded connection from its `101` to its end.
//!
//! [`accept`] answers the client and renders everything the end of the
//! tunnel needs (the access log lines, the error context), so the request's
//! memory is freed while the tunnel lives. [`Tunnel::run`] is the task that
//! relays until both sides are done, then logs.

use std::sync::Arc;

use tokio::time::Instant;

use super::relay;
use super::relay::bytes::Relay;
use crate::exchange::{Downstream, Exchange};
use crate::log::Level;
use crate::net::{ClientIo, UpstreamIo};
use crate::response::Reply;
use crate::response::send::{flush, own_headers};
use crate::state::Active;
use crate::upstream::UpstreamConn;

/// Accepts the upgrade on the client side (HTTP/1.1: the `101`), then
/// prepares the tunnel. `None` when the client could not be told; the
/// request is logged then.
pub async fn accept<D: Downstream>(
    ex: &mut Exchange<'_, D>,
    reply: Reply,
    upstream: UpstreamConn,
) -> Option<Box<Tunnel>> {
    let conf = ex.conf.clone();
    // `add_header ... always` applies to the 101 too (an HSTS header on the
    // WebSocket handshake), as nginx's header filter runs for it.
    let mut reply = reply;
    crate::response::headers::apply(&mut reply, &conf, &mut ex.ctx);
    let started = ex.down.start_upgrade(
        reply.reason.as_deref(),
        own_headers(&reply, &conf),
        &reply.headers,
    );
    ex.ctx.response.status = 101;
    ex.ctx.response.headers = Some(started.headers);
    let sent = flush(ex, conf.send_timeout).await;
    ex.down.end_response();
    if !sent {
        ex.ctx.response.bytes_sent = 0;
        crate::access_log::write(&mut ex.ctx, &conf, &ex.generation.access_logs);
        return None;
    }
    // Everything the tunnel needs at its end is rendered now, so the
    // request (headers, buffers) is freed while the tunnel lives.
    let UpstreamConn {
        io,
        buf,
        peer,
        lease,
        ..
    } = upstream;
    let url = format!("http://{peer}{}", ex.ctx.request_uri);
    let context = ex.context(Some(&url)).into_boxed_str();
    let lines = crate::access_log::prerender(&mut ex.ctx, &conf, &ex.generation.access_logs);
    let websocket = is_websocket(ex)
        .then(|| conf.websocket.clone())
        .filter(|w| w.needs_frames() || lines.iter().any(|l| l.needs_frames()));
    let open = is_websocket(ex).then(|| {
        let location = ex
            .ctx
            .location
            .as_ref()
            .map_or_else(String::new, |l| l.matcher.label());
        ex.ctx.conn.stats.websocket_opened(
            ex.ctx.server.primary_name(),
            &location,
            ex.ctx.upstream.proxy_host.as_deref().unwrap_or(""),
        )
    });
    // A reload that changes where this location goes drains its
    // WebSockets (with a drain window) rather than leaving them on the old
    // route.
    let route = websocket
        .as_ref()
        .filter(|w| w.drain_window.is_some())
        .map(|_| {
            let label = ex
                .ctx
                .location
                .as_ref()
                .map_or_else(String::new, |l| l.matcher.label());
            ex.generation.route_waiter(&ex.ctx.server, &label, &conf)
        });
    Some(Box::new(Tunnel {
        websocket,
        route,
        is_websocket: is_websocket(ex),
        upstream: io,
        upstream_leftover: buf.to_vec(),
        timeouts: relay::Timeouts {
            idle: conf.proxy.read_timeout,
            client_send: conf.send_timeout,
            upstream_send: conf.proxy.send_timeout,
        },
        retired: ex.generation.retired.waiter(),
        end: TunnelEnd {
            lines,
            errors: conf.error_log.clone(),
            context,
            conn_id: ex.ctx.conn.id,
            head_len: started.head_len,
            start: ex.ctx.start,
            upstream_started: ex.ctx.upstream.started,
            upgraded: None,
            stats: ex.ctx.conn.stats.clone(),
            _open: open,
            _live: None,
            _slots: std::mem::take(&mut ex.slots),
            _lease: lease,
        },
    }))
}

/// An upgraded connection waiting for its relay: the backend side, and
/// what its end needs.
pub struct Tunnel {
    upstream: UpstreamIo,
    upstream_leftover: Vec<u8>,
    timeouts: relay::Timeouts,
    retired: crate::signal::StopWaiter,
    /// A WebSocket whose frames the relay follows, for these settings.
    websocket: Option<crate::config::model::WebSocketConf>,
    /// Fires when a reload changes the WebSocket's route.
    route: Option<crate::signal::StopWaiter>,
    /// The handshake was `Upgrade: websocket` (`$websocket_*` apply).
    is_websocket: bool,
    end: TunnelEnd,
}

impl Tunnel {
    /// The task that relays until both sides are done, then logs the
    /// request. It is a plain struct future (not an `async fn`) so that an
    /// idle tunnel's task holds the relay and what its end needs, once.
    pub fn run<C: relay::Transport>(
        self,
        client: C,
        client_leftover: Vec<u8>,
        active: Active,
    ) -> TunnelTask<C> {
        let mut relay = Relay::new(
            client,
            client_leftover,
            self.upstream,
            self.upstream_leftover,
            self.timeouts,
            self.retired,
        );
        if let Some(ws) = &self.websocket {
            let mut options = websocket_options(ws, &active, &self.end.stats);
            options.route = self.route;
            relay = relay.with_websocket(options);
        }
        let mut end = self.end;
        end.upgraded = self.is_websocket.then(Instant::now);
        if self.is_websocket {
            let live = end.stats.tunnel_started();
            relay = relay.with_progress(live.progress());
            end._live = Some(live);
        }
        TunnelTask {
            relay,
            end: Some(end),
            // An upgraded request is in progress until the tunnel ends.
            _writing: active.shared().stats.writing(),
            _active: active,
        }
    }
}

/// The relay's WebSocket options for a location's `websocket_*`.
fn websocket_options(
    ws: &crate::config::model::WebSocketConf,
    active: &Active,
    stats: &Arc<crate::stats::Stats>,
) -> relay::websocket::Options {
    let sizes = relay::frames::Limits {
        max_frame: ws.max_frame_size.and_then(std::num::NonZeroU64::new),
        max_message: ws.max_message_size.and_then(std::num::NonZeroU64::new),
        rate: None,
    };
    relay::websocket::Options {
        ping: ws.ping_interval.map(|interval| relay::websocket::Ping {
            interval,
            timeout: ws.pong_timeout,
        }),
        client_limits: relay::frames::Limits {
            rate: ws.message_rate.and_then(|r| {
                Some(relay::frames::Rate {
                    per_sec_milli: std::num::NonZeroU32::new(
                        u32::try_from(r.per_sec_milli).unwrap_or(u32::MAX),
                    )?,
                    burst: u32::try_from(r.burst).unwrap_or(u32::MAX),
                })
            }),
            ..sizes
        },
        backend_limits: sizes,
        drain: ws
            .drain_window
            .map(|window| (active.shared().draining.waiter(), window)),
        stats: ws.ping_interval.map(|_| stats.clone()),
        route: None,
    }
}

/// Whether the request is a WebSocket handshake (`Upgrade: websocket`).
fn is_websocket<D: Downstream>(ex: &Exchange<'_, D>) -> bool {
    ex.ctx
        .headers
        .has_token(&http::header::UPGRADE, "websocket")
}

/// A running tunnel: the client side is a connection of its own
/// (HTTP/1.1) or a stream of a shared one (HTTP/2).
pub struct TunnelTask<C = ClientIo> {
    relay: Relay<C, UpstreamIo>,
    end: Option<TunnelEnd>,
    _writing: crate::stats::Gauge,
    _active: Active,
}

/// What a tunnel needs once it ends: its log lines and context.
struct TunnelEnd {
    lines: Vec<crate::access_log::PendingLine>,
    errors: Arc<Vec<crate::log::ErrorLogTarget>>,
    context: Box<str>,
    conn_id: u64,
    head_len: u64,
    start: Instant,
    upstream_started: Option<Instant>,
    /// When a WebSocket's relay began (`$websocket_duration`).
    upgraded: Option<Instant>,
    stats: Arc<crate::stats::Stats>,
    /// Counted in the open WebSockets until the tunnel ends.
    _open: Option<crate::stats::OpenWebSocket>,
    /// Its bytes and messages count while it runs.
    _live: Option<crate::stats::LiveTunnel>,
    _slots: Vec<crate::limits::Slot>,
    /// The backend peer counts the tunnel as an active connection.
    _lease: Option<crate::balance::Lease>,
}

impl<C: relay::Transport> std::future::Future for TunnelTask<C> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let outcome = std::task::ready!(std::pin::Pin::new(&mut self.relay).poll(cx));
        if let Some(end) = self.end.take() {
            end.finish(outcome);
        }
        std::task::Poll::Ready(())
    }
}

impl TunnelEnd {
    fn finish(self, outcome: relay::Outcome) {
        let why = match &outcome.end {
            relay::End::IdleTimeout | relay::End::UpstreamSendTimeout => Some((
                Level::Error,
                "upstream timed out (110: Connection timed out) while proxying upgraded connection"
                    .to_string(),
            )),
            relay::End::ClientSendTimeout => Some((
                Level::Info,
                "client timed out (110: Connection timed out) while proxying upgraded connection"
                    .to_string(),
            )),
            relay::End::UpstreamError(e) => Some((
                Level::Error,
                format!(
                    "recv() failed {} while proxying upgraded connection",
                    crate::log::os_error(e)
                ),
            )),
            relay::End::ClientError(e) => Some((
                Level::Info,
                format!(
                    "recv() failed {} while proxying upgraded connection",
                    crate::log::os_error(e)
                ),
            )),
            relay::End::WebSocket(reason) => websocket_log(*reason),
            relay::End::Closed | relay::End::Shutdown => None,
        };
        if let Some((level, msg)) = why {
            crate::log::error_to(
                &self.errors,
                level,
                self.conn_id,
                &format!("{msg}{}", self.context),
            );
        }
        if let Some(started) = self.upgraded {
            self.stats.tunnel_ended(&crate::stats::TunnelTotals {
                close_code: outcome.websocket.and_then(|w| w.close_code),
                closed_by: outcome.closed_by.as_str(),
                lifetime: started.elapsed(),
                route: self._open.as_ref().map_or("", |o| o.route()),
            });
        }
        crate::access_log::finish(
            &self.lines,
            crate::access_log::Totals {
                bytes_sent: self.head_len + outcome.to_client,
                body_bytes_sent: outcome.to_client,
                request_time: self.start.elapsed(),
                upstream_time: self.upstream_started.map(|s| s.elapsed()),
                websocket: self.upgraded.map(|t| crate::access_log::WebSocketTotals {
                    messages: outcome.websocket.map(|w| (w.messages_in, w.messages_out)),
                    close_code: outcome.websocket.and_then(|w| w.close_code),
                    closed_by: outcome.closed_by.as_str(),
                    duration: t.elapsed(),
                }),
            },
        );
    }
}

/// The error log line of a WebSocket the relay closed itself.
fn websocket_log(reason: relay::websocket::Reason) -> Option<(Level, String)> {
    use relay::Peer;
    use relay::websocket::Reason;
    match reason {
        Reason::PongTimeout(Peer::Backend) => Some((
            Level::Error,
            "upstream did not answer a WebSocket ping in time (websocket_pong_timeout), closed with 1011 to the client".to_string(),
        )),
        Reason::PongTimeout(Peer::Client) => Some((
            Level::Info,
            "client did not answer a WebSocket ping in time (websocket_pong_timeout), closed with 1001 to the upstream".to_string(),
        )),
        Reason::Limit(Peer::Client, v) => Some((
            Level::Warn,
            format!("client sent a {v}, closed with {} to the client and 1001 to the upstream", v.code()),
        )),
        Reason::Limit(Peer::Backend, v) => Some((
            Level::Warn,
            format!("upstream sent a {v}, closed with {} to the upstream and 1001 to the client", v.code()),
        )),
        Reason::Drained | Reason::Shutdown => None,
    }
}
