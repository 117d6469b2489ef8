//! Counters of a server: what nginx keeps for `stub_status` and the
//! `$connections_*` variables (accepted and handled connections, requests,
//! connections reading a request head, writing (a request in progress, an
//! upgraded connection) or waiting (idle keep-alive)), and the Prometheus
//! metrics of the `metrics` handler.
//!
//! Relaxed atomics: each counter is exact, a snapshot of several is not
//! taken at one instant (nor is nginx's). Label values come from the
//! configuration (server and location names, upstream groups and their
//! peers) or from small fixed sets (status classes, close-code names),
//! never from what a client sends, so the number of series is bounded.
//! Nothing here is touched per WebSocket message. An open tunnel's relay
//! publishes the totals it keeps anyway into its own [`TunnelProgress`]
//! (relaxed stores, once each time it goes back to waiting, no lock); a
//! scrape adds what each open tunnel relayed since the last one, and a
//! tunnel's end adds the rest, so the message and byte counters move while
//! long-lived WebSockets run and never go backwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The counters of one server.
#[derive(Debug)]
pub struct Stats {
    accepted: AtomicU64,
    handled: AtomicU64,
    requests: AtomicU64,
    active: AtomicI64,
    reading: AtomicI64,
    writing: AtomicI64,
    metrics: Metrics,
    /// Open tunnels by id, with what the counters already hold of each. A
    /// std mutex, locked when a tunnel starts or ends and when scraped.
    live: std::sync::Mutex<Live>,
}

#[derive(Debug, Default)]
struct Live {
    next: u64,
    open: std::collections::HashMap<u64, (Arc<TunnelProgress>, Published)>,
}

/// What the counters hold of one tunnel: bytes up and down, messages in
/// and out.
type Published = [u64; 4];

/// The running totals of one open tunnel, written by its relay.
#[derive(Debug, Default)]
pub struct TunnelProgress {
    to_upstream: AtomicU64,
    to_client: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// Messages are counted (the relay follows frames).
    frames: std::sync::atomic::AtomicBool,
}

impl TunnelProgress {
    /// The tunnel's totals so far: bytes to the backend and to the client,
    /// and messages in and out when frames are followed.
    pub fn publish(&self, to_upstream: u64, to_client: u64, messages: Option<(u64, u64)>) {
        self.to_upstream.store(to_upstream, Ordering::Relaxed);
        self.to_client.store(to_client, Ordering::Relaxed);
        if let Some((m_in, m_out)) = messages {
            self.messages_in.store(m_in, Ordering::Relaxed);
            self.messages_out.store(m_out, Ordering::Relaxed);
            self.frames.store(true, Ordering::Relaxed);
        }
    }

    fn now(&self) -> Published {
        [
            self.to_upstream.load(Ordering::Relaxed),
            self.to_client.load(Ordering::Relaxed),
            self.messages_in.load(Ordering::Relaxed),
            self.messages_out.load(Ordering::Relaxed),
        ]
    }
}

/// An open tunnel counted by the metrics while it runs; its last totals
/// are added when it drops.
#[derive(Debug)]
pub struct LiveTunnel {
    stats: Arc<Stats>,
    id: u64,
    progress: Arc<TunnelProgress>,
}

impl LiveTunnel {
    /// Where the relay publishes its totals.
    pub fn progress(&self) -> Arc<TunnelProgress> {
        self.progress.clone()
    }
}

impl Drop for LiveTunnel {
    fn drop(&mut self) {
        let mut live = self.stats.live.lock().expect("live tunnels");
        if let Some((progress, published)) = live.open.remove(&self.id) {
            self.stats.metrics.add_progress(&progress, &published);
        }
        // Memory taken by a burst of WebSockets is given back after it.
        if live.open.capacity() > 64 && live.open.len() < live.open.capacity() / 4 {
            let keep = live.open.len() * 2;
            live.open.shrink_to(keep);
        }
    }
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            accepted: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            active: AtomicI64::new(0),
            reading: AtomicI64::new(0),
            writing: AtomicI64::new(0),
            metrics: Metrics::new(),
            live: std::sync::Mutex::default(),
        }
    }
}

/// The Prometheus side: families filled as requests and tunnels end,
/// gauges of the connection counters set when scraped.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    accepted: Counter,
    handled: Counter,
    connections: Family<StateLabels, PromGauge>,
    requests: Family<RequestLabels, Counter>,
    upstream: Family<UpstreamLabels, Counter>,
    websockets_open: Family<RouteLabels, PromGauge>,
    handshakes: Family<ResultLabels, Counter>,
    messages: Family<DirectionLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    closes: Family<CloseLabels, Counter>,
    lifetime: Histogram,
    ping_rtt: Histogram,
    reloads: Family<ResultLabels, Counter>,
    /// The last [`RECENT_CLOSES`] ended upgraded connections, newest
    /// last, for the status page. A std mutex, locked when a tunnel ends
    /// and when the page is read.
    recent: std::sync::Mutex<std::collections::VecDeque<RecentClose>>,
}

/// How many ended WebSockets the status page lists.
const RECENT_CLOSES: usize = 20;

/// An ended upgraded connection, as the status page lists it.
#[derive(Debug, Clone)]
struct RecentClose {
    /// Seconds since the epoch.
    at: u64,
    route: String,
    code: &'static str,
    by: &'static str,
    lasted: f64,
}

/// The embedded status page (`status_page;`): no external assets; it
/// updates itself from server-sent events of the same location.
pub const STATUS_PAGE: &str = include_str!("stats/page.html");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: String,
    status: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    peer: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    server: String,
    location: String,
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: &'static str,
    by: &'static str,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("switchyard");
        let m = Metrics {
            accepted: Counter::default(),
            handled: Counter::default(),
            connections: Family::default(),
            requests: Family::default(),
            upstream: Family::default(),
            websockets_open: Family::default(),
            handshakes: Family::default(),
            messages: Family::default(),
            bytes: Family::default(),
            closes: Family::default(),
            // 0.1 s to about five days.
            lifetime: Histogram::new(exponential_buckets(0.1, 4.0, 12)),
            // 0.5 ms to about 4 s.
            ping_rtt: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            reloads: Family::default(),
            recent: std::sync::Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            m.accepted.clone(),
        );
        registry.register("connections_handled", "Accepted client connections that were served (not refused for lack of worker_connections)", m.handled.clone());
        registry.register("connections", "Open client connections by state: reading a request head, writing (a request in progress, upgraded connections included), waiting (idle keep-alive)", m.connections.clone());
        registry.register(
            "requests",
            "Requests answered, by server (its first server_name), status class and protocol",
            m.requests.clone(),
        );
        registry.register("upstream_requests", "Attempts at a backend, by upstream group, peer and result (ok, failed: refused or unusable answer, timeout)", m.upstream.clone());
        registry.register(
            "websockets_open",
            "Open WebSockets by server, location and upstream group",
            m.websockets_open.clone(),
        );
        registry.register("websocket_handshakes", "WebSocket handshakes by result: upgraded, forbidden (websocket_allowed_origins), refused (the backend answered without 101), failed (no backend answer)", m.handshakes.clone());
        registry.register("websocket_messages", "WebSocket messages relayed, by direction, open WebSockets included (only WebSockets whose frames are followed)", m.messages.clone());
        registry.register(
            "websocket_bytes",
            "Bytes relayed through WebSockets, by direction, open ones included",
            m.bytes.clone(),
        );
        registry.register("websocket_closes", "Ended upgraded connections by close code (a name for the RFC 6455 codes, 3xxx and 4xxx for application ranges, none without a close frame) and by who closed", m.closes.clone());
        registry.register(
            "websocket_lifetime_seconds",
            "How long upgraded connections lived",
            m.lifetime.clone(),
        );
        registry.register(
            "websocket_ping_rtt_seconds",
            "Round trip of Switchyard's own WebSocket pings (websocket_ping_interval)",
            m.ping_rtt.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Adds what `progress` relayed beyond `published`, and records it as
    /// published.
    fn add_progress(&self, progress: &TunnelProgress, published: &Published) -> Published {
        let now = progress.now();
        let dirs = ["client_to_backend", "backend_to_client"];
        for (i, direction) in dirs.into_iter().enumerate() {
            let delta = now[i].saturating_sub(published[i]);
            if delta > 0 {
                self.bytes
                    .get_or_create(&DirectionLabels { direction })
                    .inc_by(delta);
            }
            if progress.frames.load(Ordering::Relaxed) {
                self.messages
                    .get_or_create(&DirectionLabels { direction })
                    .inc_by(now[2 + i].saturating_sub(published[2 + i]));
            }
        }
        now
    }
}

/// What a finished request tells the metrics.
#[derive(Debug)]
pub struct Finished<'a> {
    /// The server's name (its first `server_name`).
    pub server: &'a str,
    /// The final status.
    pub status: u16,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'static str,
    /// The upstream group (or proxied host) and each attempt's peer and
    /// status.
    pub upstream: Option<&'a str>,
    /// Attempts: peer and status.
    pub attempts: &'a [(&'a str, Option<u16>)],
    /// The request was a WebSocket handshake.
    pub websocket: bool,
}

/// What an ended tunnel tells the metrics (its bytes and messages come
/// from its [`LiveTunnel`]).
#[derive(Debug, Clone, Copy)]
pub struct TunnelTotals<'a> {
    /// The first close code, if a close frame passed.
    pub close_code: Option<u16>,
    /// `client`, `backend`, `proxy`.
    pub closed_by: &'static str,
    /// From the `101` to the end.
    pub lifetime: Duration,
    /// Where it ran (`server location -> upstream`).
    pub route: &'a str,
}

/// The name of a close code as a label: the RFC 6455 codes by number,
/// application ranges by range, anything else `other`.
fn close_label(code: Option<u16>) -> &'static str {
    const KNOWN: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code {
        None => "none",
        Some(c @ 1000..=1015) => KNOWN[usize::from(c - 1000)],
        Some(3000..=3999) => "3xxx",
        Some(4000..=4999) => "4xxx",
        Some(_) => "other",
    }
}

/// An open WebSocket counted in `websockets_open` until dropped.
#[derive(Debug)]
pub struct OpenWebSocket(PromGauge, Box<str>);

impl OpenWebSocket {
    /// Where it runs: `server location -> upstream`.
    pub fn route(&self) -> &str {
        &self.1
    }
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What `stub_status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Client connections accepted.
    pub accepted: u64,
    /// Accepted connections that were served (not refused for lack of
    /// `worker_connections`).
    pub handled: u64,
    /// Client requests.
    pub requests: u64,
    /// Client connections open.
    pub active: u64,
    /// Connections reading a request head.
    pub reading: u64,
    /// Connections with a request in progress (upgraded ones included).
    pub writing: u64,
    /// Idle keep-alive connections: the rest of `active`.
    pub waiting: u64,
}

impl Stats {
    /// A connection was accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.metrics.accepted.inc();
    }

    /// A request began.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted connection is served: it counts as active until the
    /// guard drops.
    pub fn handled(self: &Arc<Self>) -> Gauge {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.metrics.handled.inc();
        Gauge::new(self, Which::Active)
    }

    /// The connection reads a request head until the guard drops.
    pub fn reading(self: &Arc<Self>) -> Gauge {
        Gauge::new(self, Which::Reading)
    }

    /// A request is in progress until the guard drops.
    pub fn writing(self: &Arc<Self>) -> Gauge {
        Gauge::new(self, Which::Writing)
    }

    /// A request was answered (its access log line is written).
    pub fn finished(&self, f: &Finished<'_>) {
        let m = &self.metrics;
        let status = match f.status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        m.requests
            .get_or_create(&RequestLabels {
                server: f.server.to_string(),
                status,
                protocol: f.protocol,
            })
            .inc();
        for (peer, status) in f.attempts {
            let result = match status {
                Some(504) => "timeout",
                Some(502) | None => "failed",
                Some(_) => "ok",
            };
            m.upstream
                .get_or_create(&UpstreamLabels {
                    upstream: f.upstream.unwrap_or("").to_string(),
                    peer: (*peer).to_string(),
                    result,
                })
                .inc();
        }
        if f.websocket {
            let result = match f.status {
                101 => "upgraded",
                403 => "forbidden",
                500..=599 => "failed",
                _ => "refused",
            };
            m.handshakes.get_or_create(&ResultLabels { result }).inc();
        }
    }

    /// A WebSocket opened on `server`, `location`, `upstream`: counted
    /// open until the guard drops.
    pub fn websocket_opened(&self, server: &str, location: &str, upstream: &str) -> OpenWebSocket {
        let g = self
            .metrics
            .websockets_open
            .get_or_create(&RouteLabels {
                server: server.to_string(),
                location: location.to_string(),
                upstream: upstream.to_string(),
            })
            .clone();
        g.inc();
        OpenWebSocket(g, format!("{server} {location} -> {upstream}").into())
    }

    /// An upgraded connection starts relaying: its bytes and messages
    /// count while it runs.
    pub fn tunnel_started(self: &Arc<Self>) -> LiveTunnel {
        let progress = Arc::new(TunnelProgress::default());
        let mut live = self.live.lock().expect("live tunnels");
        let id = live.next;
        live.next += 1;
        live.open.insert(id, (progress.clone(), [0; 4]));
        drop(live);
        LiveTunnel {
            stats: self.clone(),
            id,
            progress,
        }
    }

    /// An upgraded connection ended.
    pub fn tunnel_ended(&self, t: &TunnelTotals<'_>) {
        let m = &self.metrics;
        m.closes
            .get_or_create(&CloseLabels {
                code: close_label(t.close_code),
                by: t.closed_by,
            })
            .inc();
        m.lifetime.observe(t.lifetime.as_secs_f64());
        let mut recent = m.recent.lock().expect("recent closes");
        if recent.len() == RECENT_CLOSES {
            recent.pop_front();
        }
        recent.push_back(RecentClose {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            route: t.route.to_string(),
            code: close_label(t.close_code),
            by: t.closed_by,
            lasted: t.lifetime.as_secs_f64(),
        });
    }

    /// One round of the status page's server-sent events: the metrics,
    /// the recent closes (newest first), and a one-second retry, so that
    /// the browser's `EventSource` asks again each second.
    pub fn status_events(&self) -> String {
        let mut out = String::from("retry: 1000\nevent: metrics\n");
        for line in self.prometheus().lines().filter(|l| !l.starts_with('#')) {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        let closes: Vec<serde_json::Value> = self
            .metrics
            .recent
            .lock()
            .expect("recent closes")
            .iter()
            .rev()
            .map(|c| {
                serde_json::json!({
                    "at": c.at, "route": c.route, "code": c.code, "by": c.by, "lasted": c.lasted,
                })
            })
            .collect();
        out.push_str("\nevent: closes\ndata: ");
        out.push_str(&serde_json::Value::Array(closes).to_string());
        out.push_str("\n\n");
        out
    }

    /// The round trip of one of Switchyard's pings.
    pub fn ping_rtt(&self, rtt: Duration) {
        self.metrics.ping_rtt.observe(rtt.as_secs_f64());
    }

    /// A reload was tried.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.metrics
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The metrics in Prometheus' text format (version 0.0.4, what
    /// `promtool check metrics` and every scraper read).
    pub fn prometheus(&self) -> String {
        {
            let mut live = self.live.lock().expect("live tunnels");
            for (progress, published) in live.open.values_mut() {
                *published = self.metrics.add_progress(progress, published);
            }
        }
        let snap = self.snapshot();
        for (state, n) in [
            ("reading", snap.reading),
            ("writing", snap.writing),
            ("waiting", snap.waiting),
        ] {
            self.metrics
                .connections
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
        let mut open = String::new();
        prometheus_client::encoding::text::encode(&mut open, &self.metrics.registry)
            .expect("writing to a String cannot fail");
        openmetrics_to_text(&open)
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
        let (active, reading, writing) =
            (get(&self.active), get(&self.reading), get(&self.writing));
        Snapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            handled: self.handled.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            active,
            reading,
            writing,
            waiting: active.saturating_sub(reading + writing),
        }
    }
}

impl Snapshot {
    /// nginx's `stub_status` page, byte for byte.
    pub fn stub_status(&self) -> String {
        format!(
            "Active connections: {} \nserver accepts handled requests\n {} {} {} \nReading: {} Writing: {} Waiting: {} \n",
            self.active,
            self.accepted,
            self.handled,
            self.requests,
            self.reading,
            self.writing,
            self.waiting
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Active,
    Reading,
    Writing,
}

/// Counts one connection (or request) in a state while it lives.
#[derive(Debug)]
pub struct Gauge {
    stats: Arc<Stats>,
    which: Which,
}

impl Gauge {
    fn new(stats: &Arc<Stats>, which: Which) -> Gauge {
        let g = Gauge {
            stats: stats.clone(),
            which,
        };
        g.counter().fetch_add(1, Ordering::Relaxed);
        g
    }

    fn counter(&self) -> &AtomicI64 {
        match self.which {
            Which::Active => &self.stats.active,
            Which::Reading => &self.stats.reading,
            Which::Writing => &self.stats.writing,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.counter().fetch_sub(1, Ordering::Relaxed);
    }
}

/// The crate writes OpenMetrics, whose counter families drop the `_total`
/// of their samples in `# HELP`/`# TYPE` and which ends with `# EOF`;
/// Prometheus' text format names the family as its samples.
fn openmetrics_to_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut help: Option<&str> = None;
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            if let Some(h) = help.take() {
                let text = h.strip_prefix(&format!("# HELP {name} ")).unwrap_or("");
                out.push_str(&format!("# HELP {name}_total {text}\n"));
            }
            out.push_str(&format!("# TYPE {name}_total counter\n"));
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_status_has_nginx_layout_and_waiting_is_the_rest() {
        let s = Arc::new(Stats::default());
        s.accepted();
        s.accepted();
        let _a = s.handled();
        let _b = s.handled();
        s.request();
        let w = s.writing();
        let snap = s.snapshot();
        assert_eq!(
            snap.stub_status(),
            "Active connections: 2 \nserver accepts handled requests\n 2 2 1 \nReading: 0 Writing: 1 Waiting: 1 \n"
        );
        drop(w);
        assert_eq!(s.snapshot().waiting, 2);
    }
}
