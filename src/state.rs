//! Server state below the connections: the configuration *generations*
//! and what every task shares (lifecycle, connection counts, worker
//! runtimes).
//!
//! A generation is one loaded configuration with everything built from it
//! (balancer state, keepalive caches, TLS acceptors, open log files). It is
//! swapped atomically on reload; every request takes the current one, so a
//! reload never drops a connection: requests in flight and upgraded tunnels
//! finish on the generation they started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::balance::Balancer;
use crate::config::{Config, ListenAddr, ListenGroup, LoadOptions};
use crate::log::{LogFiles, Registry, os_error};
use crate::net::ConnAddr;
use crate::upstream::Pool;

/// Per-upstream runtime state.
#[derive(Debug)]
pub struct UpstreamRuntime {
    /// Peer choice and failure accounting; replaced when the addresses of
    /// its `server ... resolve` names change.
    pub balancer: Arc<ArcSwap<Balancer>>,
    /// For groups with `server ... resolve`: what keeps the peers current.
    pub refresh: Option<Arc<Refresh>>,
    /// The `keepalive` cache.
    pub pool: Option<Arc<Pool>>,
}

/// Keeps the peers of an upstream group with `server NAME resolve` current:
/// a task, started by the group's first request, that looks the names up
/// every second (answers come from the resolver's cache until their TTL or
/// `valid=` runs out) and swaps in a new balancer when the addresses
/// change. It ends when its generation is gone.
#[derive(Debug)]
pub struct Refresh {
    upstream: Arc<crate::config::Upstream>,
    balancer: std::sync::Weak<ArcSwap<Balancer>>,
    started: std::sync::atomic::AtomicBool,
    /// Whether the first lookups are done.
    ready: watch::Sender<bool>,
    /// The addresses last found, by server (`Upstream::resolved` order).
    /// A reload hands them to the new generation's group of the same name,
    /// which starts from them (as nginx's shared zone keeps them) instead
    /// of waiting for DNS, or losing its peers when DNS fails just then.
    /// A std mutex, locked once per lookup round and on reload.
    found: std::sync::Mutex<Vec<Option<Vec<std::net::IpAddr>>>>,
}

/// How often the names are looked up again (a cache hit until they expire).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

impl Refresh {
    /// Starts the task on first use, then waits (at most `limit`) until the
    /// first lookups have finished, so a group that has only resolved
    /// servers has peers before its first request is balanced.
    pub async fn ready(
        self: &Arc<Self>,
        resolvers: &[Arc<crate::resolver::Resolver>],
        limit: Duration,
    ) {
        if !self.started.swap(true, Ordering::AcqRel) {
            let Some(resolver) = self
                .upstream
                .resolver
                .as_ref()
                .and_then(|r| resolvers.get(r.index))
                .cloned()
            else {
                return;
            };
            tokio::spawn(self.clone().run(resolver, limit));
        }
        let mut rx = self.ready.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
    }

    /// Takes over the addresses `old` (the previous generation's group of
    /// the same name) found for the names both groups have.
    pub fn inherit(&self, old: &Refresh) {
        let theirs = old.found.lock().expect("found").clone();
        let mut mine = self.found.lock().expect("found");
        for (i, s) in self.upstream.resolved.iter().enumerate() {
            let same = old.upstream.resolved.iter().position(|o| o.host == s.host);
            if let Some(addrs) = same.and_then(|j| theirs.get(j).cloned().flatten()) {
                mine[i] = Some(addrs);
            }
        }
    }

    async fn run(self: Arc<Self>, resolver: Arc<crate::resolver::Resolver>, limit: Duration) {
        let servers = &self.upstream.resolved;
        let mut found = self.found.lock().expect("found").clone();
        let mut failing = vec![false; servers.len()];
        // Addresses inherited over a reload serve at once.
        if found.iter().any(Option::is_some) {
            self.publish(&found);
            self.ready.send_replace(true);
        }
        loop {
            let mut changed = false;
            for (i, s) in servers.iter().enumerate() {
                match resolver.resolve(&s.host, limit).await {
                    Ok(mut addrs) => {
                        addrs.sort();
                        failing[i] = false;
                        if found[i].as_ref() != Some(&addrs) {
                            found[i] = Some(addrs);
                            changed = true;
                        }
                    }
                    Err(why) => {
                        if !failing[i] {
                            resolver.note(&format!(
                                "{} could not be resolved ({why}) for upstream \"{}\"",
                                s.host, self.upstream.name
                            ));
                        }
                        failing[i] = true;
                        // A name that is gone (or has no address) leaves
                        // nothing to send to, as in nginx; timeouts and
                        // server failures keep the last addresses in use.
                        if why == crate::resolver::Failure::NOT_FOUND
                            && found[i].as_ref().is_some_and(|a| !a.is_empty())
                        {
                            found[i] = Some(Vec::new());
                            changed = true;
                        }
                    }
                }
            }
            if changed && !self.publish(&found) {
                return;
            }
            if self.balancer.strong_count() == 0 {
                return;
            }
            self.ready.send_replace(true);
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    }

    /// Swaps in a balancer over the static peers and `found`; false when
    /// the generation is gone.
    fn publish(&self, found: &[Option<Vec<std::net::IpAddr>>]) -> bool {
        let Some(slot) = self.balancer.upgrade() else {
            return false;
        };
        *self.found.lock().expect("found") = found.to_vec();
        let u = &self.upstream;
        let mut peers = u.peers.clone();
        for (s, addrs) in u.resolved.iter().zip(found) {
            for ip in addrs.iter().flatten() {
                let mut p = s.params.clone();
                p.addr = SocketAddr::new(*ip, s.port).into();
                peers.push(p);
            }
        }
        slot.store(Arc::new(Balancer::new(Arc::new(u.with_peers(peers)))));
        true
    }
}

/// One configuration and what was built from it.
pub struct Generation {
    /// The configuration.
    pub config: Arc<Config>,
    /// Upstream state by `Upstream::index`.
    pub upstreams: Vec<UpstreamRuntime>,
    /// TLS acceptors by listen address.
    pub tls: HashMap<ListenAddr, Arc<crate::tls::server::Acceptor>>,
    /// Open access log files by path.
    pub access_logs: LogFiles,
    /// Runtime resolvers by `ResolverConf::index`, each with its cache.
    pub resolvers: Vec<Arc<crate::resolver::Resolver>>,
    /// Fires when this generation was replaced by a reload and its
    /// `worker_shutdown_timeout` has passed, or on a final stop: its
    /// tunnels close then.
    pub retired: crate::signal::StopSignal,
    /// Routes (server identity, location label) that WebSockets with a
    /// `websocket_drain_window` run on: the route's fingerprint and the
    /// signal that closes them when a reload changes it. A std mutex,
    /// locked when such a WebSocket opens and on reload.
    routes: std::sync::Mutex<HashMap<(String, String), (String, crate::signal::StopSignal)>>,
    /// Each server's identity across reloads
    /// ([`crate::config::model::server_identity`]), by `Server::index`.
    server_ids: Vec<String>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").finish_non_exhaustive()
    }
}

impl Generation {
    /// Builds a generation; fails like nginx's `-t` would (unreadable
    /// certificates, log files that cannot be opened).
    pub fn build(config: Arc<Config>) -> Result<Generation, String> {
        let mut upstreams = Vec::new();
        let mut tls = HashMap::new();
        let mut access_logs = HashMap::new();
        if let Some(http) = &config.http {
            for u in &http.upstreams {
                let balancer = Arc::new(ArcSwap::from_pointee(Balancer::new(u.clone())));
                upstreams.push(UpstreamRuntime {
                    refresh: (!u.resolved.is_empty()).then(|| {
                        Arc::new(Refresh {
                            upstream: u.clone(),
                            balancer: Arc::downgrade(&balancer),
                            started: std::sync::atomic::AtomicBool::new(false),
                            ready: watch::channel(false).0,
                            found: std::sync::Mutex::new(vec![None; u.resolved.len()]),
                        })
                    }),
                    balancer,
                    pool: u.keepalive.map(|k| Arc::new(Pool::new(k))),
                });
            }
            for group in &http.listens {
                if group.opts.ssl {
                    tls.insert(group.addr.clone(), Arc::new(acceptor(group)?));
                }
            }
            // Each access log file, buffered when any `access_log` of it
            // says so (they all agree: the loader checked).
            let mut wanted: HashMap<PathBuf, Option<crate::log::Buffering>> = HashMap::new();
            let mut want = |t: &crate::config::AccessLogTarget| {
                if let crate::config::LogPath::File(path) = &t.path {
                    let b = wanted.entry(path.clone()).or_default();
                    *b = b.or(t.buffering);
                }
            };
            for server in &http.servers {
                for t in server.conf.access_log.iter() {
                    want(t);
                }
                for t in server.conf.error_log.iter() {
                    Registry::global().get(&t.path).map_err(|e| {
                        format!("open() \"{}\" failed {}", t.path.display(), os_error(&e))
                    })?;
                }
                let mut stack: Vec<&crate::config::Locations> = vec![&server.locations];
                while let Some(locs) = stack.pop() {
                    for l in locs
                        .prefix
                        .iter()
                        .chain(locs.regex.iter())
                        .chain(locs.named.values())
                    {
                        for t in l.conf.access_log.iter() {
                            want(t);
                        }
                        for t in l.conf.error_log.iter() {
                            Registry::global().get(&t.path).map_err(|e| {
                                format!("open() \"{}\" failed {}", t.path.display(), os_error(&e))
                            })?;
                        }
                        stack.push(&l.children);
                    }
                }
            }
            for (path, buffering) in wanted {
                let f = Registry::global()
                    .get_access(&path, buffering)
                    .map_err(|e| {
                        format!("open() \"{}\" failed {}", path.display(), os_error(&e))
                    })?;
                access_logs.insert(path, f);
            }
        }
        let resolvers = match &config.http {
            Some(http) => {
                let log = Arc::new(config.main.error_log.clone());
                http.resolvers
                    .iter()
                    .map(|c| Arc::new(crate::resolver::Resolver::new(c.clone(), log.clone())))
                    .collect()
            }
            None => Vec::new(),
        };
        let server_ids = config.http.as_ref().map_or_else(Vec::new, |h| {
            h.servers
                .iter()
                .map(|s| crate::config::model::server_identity(h, s))
                .collect()
        });
        Ok(Generation {
            config,
            upstreams,
            tls,
            access_logs,
            resolvers,
            retired: crate::signal::StopSignal::new(),
            routes: std::sync::Mutex::default(),
            server_ids,
        })
    }

    /// A waiter that fires when a reload changes the route (`server`'s
    /// location `label`, whose settings are `conf`): where its requests
    /// go (`proxy_pass`, the group's servers), or the location (or the
    /// server: its addresses and names) is gone.
    pub fn route_waiter(
        &self,
        server: &crate::config::Server,
        label: &str,
        conf: &crate::config::LocConf,
    ) -> crate::signal::StopWaiter {
        let identity = self
            .server_ids
            .get(server.index)
            .cloned()
            .unwrap_or_default();
        let mut routes = self.routes.lock().expect("routes");
        routes
            .entry((identity, label.to_string()))
            .or_insert_with(|| {
                (
                    crate::config::model::route_fingerprint(conf),
                    crate::signal::StopSignal::new(),
                )
            })
            .1
            .waiter()
    }

    /// On a reload to `new`: routes whose fingerprint changed (or that are
    /// gone) fire; the others move to `new`, to be compared at the next
    /// reload.
    fn hand_over_routes(&self, new: &Generation) {
        let old = std::mem::take(&mut *self.routes.lock().expect("routes"));
        let mut moved = new.routes.lock().expect("routes");
        for ((server, label), (fingerprint, signal)) in old {
            if !signal.in_use() {
                continue;
            }
            let now = new.config.http.as_ref().and_then(|h| {
                let i = new.server_ids.iter().position(|id| *id == server)?;
                let s = &h.servers[i];
                let l = crate::config::model::find_location(&s.locations, &label)?;
                Some(crate::config::model::route_fingerprint(&l.conf))
            });
            if now.as_ref() == Some(&fingerprint) {
                moved
                    .entry((server, label))
                    .or_insert((fingerprint, signal));
            } else {
                signal.trigger();
            }
        }
    }

    /// Gives `next`'s groups with `server ... resolve` the addresses this
    /// generation's groups of the same name found.
    fn hand_over_addresses(&self, next: &Generation) {
        for new in &next.upstreams {
            let Some(refresh) = &new.refresh else {
                continue;
            };
            let name = &refresh.upstream.name;
            let old = self.upstreams.iter().filter_map(|u| u.refresh.as_ref());
            if let Some(old) = old.into_iter().find(|o| o.upstream.name == *name) {
                refresh.inherit(old);
            }
        }
    }

    /// The listen group a connection accepted on `key` with local address
    /// `local` belongs to: the specific address if configured, else the
    /// wildcard it arrived on.
    pub fn group(&self, key: &ListenAddr, local: ConnAddr) -> Option<Arc<ListenGroup>> {
        let http = self.config.http.as_ref()?;
        if let (ListenAddr::Inet(wildcard), ConnAddr::Inet(local)) = (key, local)
            && wildcard.ip().is_unspecified()
        {
            let specific = ListenAddr::Inet(SocketAddr::new(local.ip(), wildcard.port()));
            if let Some(g) = http.listens.iter().find(|g| g.addr == specific) {
                return Some(g.clone());
            }
        }
        http.listens.iter().find(|g| g.addr == *key).cloned()
    }
}

/// The TLS acceptor of a `listen ... ssl` group: one site per server of the
/// group, names chosen as `server_name` chooses servers.
fn acceptor(group: &Arc<ListenGroup>) -> Result<crate::tls::server::Acceptor, String> {
    let sites: Vec<Option<crate::tls::server::Site<'_>>> = group
        .servers
        .iter()
        .map(|s| {
            s.tls
                .as_ref()
                .filter(|t| !t.certs.is_empty())
                .map(|tls| crate::tls::server::Site {
                    cert: &tls.certs[0].0,
                    key: &tls.certs[0].1,
                    protocols: &tls.protocols,
                    verify_client: tls.verify_client,
                    client_certificate: tls.client_certificate.as_deref(),
                    trusted_certificate: tls.trusted_certificate.as_deref(),
                    verify_depth: tls.verify_depth,
                    stapling_file: tls.stapling_file.as_deref(),
                    http2: group.opts.http2 || s.conf.http2.enable,
                })
        })
        .collect();
    let names = group.clone();
    crate::tls::server::acceptor(
        &sites,
        group.default_server,
        Arc::new(move |name| names.names.find(name).map(|(i, _)| i)),
        &group.addr,
    )
}

/// Lifecycle of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Serving.
    Running,
    /// Graceful stop: no new connections; idle ones close; the rest finish.
    Draining,
    /// Everything closes now.
    Stopping,
}

/// State shared by every task of the server.
pub struct Shared {
    /// The current generation.
    pub generation: ArcSwap<Generation>,
    /// Where the configuration was read from (for reload); `None` for
    /// in-process servers given a configuration directly. A std mutex: it
    /// is locked only by a reload, never by connections.
    pub load: std::sync::Mutex<Option<LoadOptions>>,
    next_conn: AtomicU64,
    /// Lifecycle, observed by every connection.
    pub state: watch::Sender<RunState>,
    /// Counts reloads: HTTP/2 connections send `GOAWAY` at each, so their
    /// next requests open a connection on the new configuration.
    pub reloads: watch::Sender<u64>,
    slots: Arc<Semaphore>,
    active: AtomicUsize,
    idle: Notify,
    /// The retirement signal of every generation that may still have
    /// tunnels, to close them all on a final stop. Signals are kept, not
    /// generations: a tunnel holds only its waiter, so a replaced
    /// generation may be gone while its tunnels live on.
    /// A std mutex: locked only on reload and final stop, never by
    /// connections.
    retirements: std::sync::Mutex<Vec<crate::signal::StopSignal>>,
    /// The runtimes that accept and serve connections.
    pub workers: Vec<tokio::runtime::Handle>,
    /// Fires when a graceful stop begins: WebSockets with a
    /// `websocket_drain_window` close themselves within it.
    pub draining: crate::signal::StopSignal,
    /// Connection and request counters (`stub_status`).
    pub stats: Arc<crate::stats::Stats>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Keeps the active-connection count while a connection (or tunnel) lives.
pub struct Active {
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
    /// A client connection counts in `stub_status`'s active ones.
    _counted: Option<crate::stats::Gauge>,
}

impl Active {
    /// The server this connection belongs to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if self.shared.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

impl Shared {
    /// State for serving `generation` with at most `max_connections` client
    /// connections at once, on `workers`.
    pub fn new(
        generation: Arc<Generation>,
        load: Option<LoadOptions>,
        workers: Vec<tokio::runtime::Handle>,
        max_connections: usize,
    ) -> Arc<Shared> {
        let (state, _) = watch::channel(RunState::Running);
        let (reloads, _) = watch::channel(0);
        Arc::new(Shared {
            retirements: std::sync::Mutex::new(vec![generation.retired.clone()]),
            generation: ArcSwap::new(generation),
            load: std::sync::Mutex::new(load),
            next_conn: AtomicU64::new(1),
            state,
            reloads,
            slots: Arc::new(Semaphore::new(max_connections)),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            workers,
            draining: crate::signal::StopSignal::new(),
            stats: Arc::default(),
        })
    }

    /// Counts a connection; `None` when `worker_connections` are exhausted.
    pub fn enter(self: &Arc<Self>, with_permit: bool) -> Option<Active> {
        let permit = if with_permit {
            Some(self.slots.clone().try_acquire_owned().ok()?)
        } else {
            None
        };
        self.active.fetch_add(1, Ordering::AcqRel);
        Some(Active {
            shared: self.clone(),
            _counted: permit.as_ref().map(|_| self.stats.handled()),
            _permit: permit,
        })
    }

    /// The next connection number.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections (client and tunnels) currently open.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Makes `generation` the current one. Connections keep the
    /// configuration they started with; only an explicit
    /// `worker_shutdown_timeout` of the old one bounds how long they may
    /// outlive it (nginx closes old workers' connections then).
    pub fn replace(&self, generation: Arc<Generation>) {
        {
            let mut list = self.retirements.lock().expect("retirements");
            list.retain(crate::signal::StopSignal::in_use);
            list.push(generation.retired.clone());
        }
        let old = self.generation.load();
        old.hand_over_routes(&generation);
        old.hand_over_addresses(&generation);
        drop(old);
        let old = self.generation.swap(generation);
        self.reloads.send_modify(|n| *n += 1);
        if let Some(t) = old.config.main.worker_shutdown_timeout {
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                old.retired.trigger();
            });
        }
    }

    /// Final stop: connections and every tunnel of every generation close.
    pub fn stopping(&self) {
        let _ = self.state.send(RunState::Stopping);
        for retired in self.retirements.lock().expect("retirements").iter() {
            retired.trigger();
        }
    }

    /// Resolves when no connection (nor tunnel) is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Graceful stop of connections: idle ones close, the rest finish,
    /// bounded by `worker_shutdown_timeout` (then everything closes, with a
    /// moment for closing tasks to log and exit).
    pub async fn drain(&self) {
        let _ = self.state.send(RunState::Draining);
        self.draining.trigger();
        let timeout = self.generation.load().config.main.worker_shutdown_timeout;
        match timeout {
            Some(t) => {
                if tokio::time::timeout(t, self.drained()).await.is_err() {
                    self.stopping();
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.drained()).await;
                }
            }
            None => self.drained().await,
        }
    }
}
