//! The running server: listening sockets, accept loops, configuration
//! generations, reload and shutdown.
//!
//! A *generation* is one loaded configuration with everything built from
//! it (balancer state, keepalive caches, TLS acceptors, open log files). It
//! is swapped atomically on reload; every request takes the current one,
//! so a reload never drops a connection: requests in flight and upgraded
//! tunnels finish on the generation they started with.
//!
//! Shutdown follows nginx's signals: `QUIT` stops accepting, closes idle
//! keep-alive connections and waits for the rest (tunnels included) up to
//! `worker_shutdown_timeout`; `TERM`/`INT` exit at once; `HUP` reloads
//! (a configuration that fails to load is logged and the old one keeps
//! serving); `USR1` reopens log files.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::balance::Balancer;
use crate::config::{Config, ListenGroup, LoadOptions};
use crate::log::os_error;
use crate::log::{self, ErrorLog, Level, LogFile, Registry};
use crate::net::{self, ClientIo};
use crate::proxy::upstream::Pool;
use crate::request::ConnInfo;

/// Per-upstream runtime state.
#[derive(Debug)]
pub struct UpstreamRuntime {
    /// Peer choice and failure accounting.
    pub balancer: Arc<Balancer>,
    /// The `keepalive` cache.
    pub pool: Option<Arc<Pool>>,
}

/// One configuration and what was built from it.
pub struct Generation {
    /// The configuration.
    pub config: Arc<Config>,
    /// Upstream state by `Upstream::index`.
    pub upstreams: Vec<UpstreamRuntime>,
    /// TLS acceptors by listen address.
    pub tls: HashMap<SocketAddr, tokio_rustls::TlsAcceptor>,
    /// Open access log files by path.
    pub access_logs: HashMap<PathBuf, Arc<LogFile>>,
    /// Fires when this generation was replaced by a reload and its
    /// `worker_shutdown_timeout` has passed, or on a final stop: its
    /// tunnels close then.
    pub retired: crate::signal::StopSignal,
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
                upstreams.push(UpstreamRuntime {
                    balancer: Arc::new(Balancer::new(u.clone())),
                    pool: u.keepalive.map(|k| Arc::new(Pool::new(k))),
                });
            }
            for group in &http.listens {
                if group.opts.ssl {
                    tls.insert(group.addr, acceptor(group)?);
                }
            }
            let mut open = |path: &PathBuf| -> Result<(), String> {
                if !access_logs.contains_key(path) {
                    let f = Registry::global().get(path).map_err(|e| {
                        format!("open() \"{}\" failed {}", path.display(), os_error(&e))
                    })?;
                    access_logs.insert(path.clone(), f);
                }
                Ok(())
            };
            for server in &http.servers {
                for t in server.conf.access_log.iter() {
                    open(&t.path)?;
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
                            open(&t.path)?;
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
        }
        Ok(Generation {
            config,
            upstreams,
            tls,
            access_logs,
            retired: crate::signal::StopSignal::new(),
        })
    }

    /// The listen group a connection accepted on `key` with local address
    /// `local` belongs to: the specific address if configured, else the
    /// wildcard it arrived on.
    pub fn group(&self, key: SocketAddr, local: SocketAddr) -> Option<Arc<ListenGroup>> {
        let http = self.config.http.as_ref()?;
        if key.ip().is_unspecified() {
            let specific = SocketAddr::new(local.ip(), key.port());
            if let Some(g) = http.listens.iter().find(|g| g.addr == specific) {
                return Some(g.clone());
            }
        }
        http.listens.iter().find(|g| g.addr == key).cloned()
    }
}

/// The TLS acceptor of a `listen ... ssl` group: one site per server of the
/// group, names chosen as `server_name` chooses servers.
fn acceptor(group: &Arc<ListenGroup>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let sites: Vec<Option<crate::tls::server::Site<'_>>> = group
        .servers
        .iter()
        .map(|s| {
            s.tls.as_ref().map(|tls| crate::tls::server::Site {
                cert: &tls.certs[0].0,
                key: &tls.certs[0].1,
                protocols: &tls.protocols,
            })
        })
        .collect();
    let names = group.clone();
    crate::tls::acceptor(
        &sites,
        group.default_server,
        Arc::new(move |name| names.names.find(name).map(|(i, _)| i)),
        group.addr,
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
    /// in-process servers given a configuration directly.
    load: std::sync::Mutex<Option<LoadOptions>>,
    next_conn: AtomicU64,
    /// Lifecycle, observed by every connection.
    pub state: watch::Sender<RunState>,
    slots: Arc<Semaphore>,
    active: AtomicUsize,
    idle: Notify,
    listeners: std::sync::Mutex<Vec<Listening>>,
    /// The retirement signal of every generation that may still have
    /// tunnels, to close them all on a final stop. Signals are kept, not
    /// generations: a tunnel holds only its waiter, so a replaced
    /// generation may be gone while its tunnels live on.
    retirements: std::sync::Mutex<Vec<crate::signal::StopSignal>>,
    /// The runtimes that accept and serve connections.
    workers: Vec<tokio::runtime::Handle>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

struct Listening {
    key: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Keeps the active-connection count while a connection (or tunnel) lives.
pub struct Active {
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
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

/// A listening socket bound before the runtime starts.
pub struct Bound {
    /// The configured address (`127.0.0.1:0`, `0.0.0.0:80`...).
    pub key: SocketAddr,
    /// The socket.
    pub listener: std::net::TcpListener,
}

/// Binds every address of `config` that needs its own socket.
pub fn bind_all(config: &Config) -> Result<Vec<Bound>, String> {
    let mut out = Vec::new();
    if let Some(http) = &config.http {
        for group in &http.listens {
            if !crate::config::listen::binds_own_socket(group, &http.listens) {
                continue;
            }
            let listener = net::bind_listener(group.addr, &group.opts)
                .map_err(|e| format!("bind() to {} failed {}", group.addr, os_error(&e)))?;
            out.push(Bound {
                key: group.addr,
                listener,
            });
        }
    }
    Ok(out)
}

/// A started server.
#[derive(Clone)]
pub struct Handle {
    /// Shared state.
    pub shared: Arc<Shared>,
}

impl Handle {
    /// Starts serving `config` on sockets bound by [`bind_all`]. Must run
    /// inside a tokio runtime. `load` enables reloading from disk.
    pub fn start(
        config: Config,
        bound: Vec<Bound>,
        load: Option<LoadOptions>,
    ) -> Result<Handle, String> {
        Self::start_on(config, bound, load, vec![tokio::runtime::Handle::current()])
    }

    /// Starts serving with one accept loop per worker runtime: every
    /// listening socket is registered in each worker, and a connection
    /// lives on the worker that accepted it (nginx's worker model, with
    /// threads). Must run inside a tokio runtime.
    pub fn start_on(
        config: Config,
        bound: Vec<Bound>,
        load: Option<LoadOptions>,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Result<Handle, String> {
        let max = config
            .main
            .worker_connections
            .saturating_mul(config.main.worker_processes)
            .max(1);
        let generation = Arc::new(Generation::build(Arc::new(config))?);
        let (state, _) = watch::channel(RunState::Running);
        let shared = Arc::new(Shared {
            retirements: std::sync::Mutex::new(vec![generation.retired.clone()]),
            generation: ArcSwap::new(generation),
            load: std::sync::Mutex::new(load),
            next_conn: AtomicU64::new(1),
            state,
            slots: Arc::new(Semaphore::new(max)),
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            listeners: std::sync::Mutex::new(Vec::new()),
            workers,
        });
        for b in bound {
            shared
                .listen(b)
                .map_err(|e| format!("listen() failed {}", os_error(&e)))?;
        }
        Ok(Handle { shared })
    }

    /// Actual bound addresses by configured address.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.shared
            .listeners
            .lock()
            .expect("listeners")
            .iter()
            .map(|l| (l.key, l.local))
            .collect()
    }

    /// Reloads from the files the configuration came from.
    pub fn reload(&self) -> Result<(), String> {
        self.shared.reload()
    }

    /// Applies a new configuration (tests, embedded use).
    pub fn apply(&self, config: Config) -> Result<(), String> {
        self.shared.apply(config)
    }

    /// Graceful stop; resolves when every connection has finished.
    pub async fn graceful_stop(&self) {
        self.shared.graceful_stop().await
    }

    /// Fast stop: everything closes now.
    pub fn stop_now(&self) {
        self.shared.stop_listeners();
        self.shared.stopping();
    }

    /// Connections (client and tunnels) currently open.
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }
}

impl Shared {
    fn listen(self: &Arc<Self>, b: Bound) -> io::Result<()> {
        let local = b.listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        // Each worker gets its own descriptor for the socket, registered in
        // its own event loop; the kernel hands each connection to one of
        // them.
        let mut sockets = Vec::with_capacity(self.workers.len());
        for _ in 1..self.workers.len() {
            sockets.push(b.listener.try_clone()?);
        }
        sockets.push(b.listener);
        for (worker, socket) in self.workers.iter().zip(sockets) {
            let shared = self.clone();
            let stop_rx = stop_rx.clone();
            let key = b.key;
            worker.spawn(async move {
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(shared, listener, key, stop_rx).await,
                    Err(e) => log::error(
                        Level::Emerg,
                        &format!("cannot register listener {key}: {e}"),
                    ),
                }
            });
        }
        self.listeners.lock().expect("listeners").push(Listening {
            key: b.key,
            local,
            stop,
        });
        Ok(())
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
            _permit: permit,
        })
    }

    /// The next connection number.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn reload(self: &Arc<Self>) -> Result<(), String> {
        let opts = self.load.lock().expect("load options").clone();
        let Some(opts) = opts else {
            return Err("nothing to reload from".into());
        };
        let config = crate::config::load(&opts).map_err(|e| e.to_string())?;
        self.apply(config)
    }

    /// Validates and switches to `config`: new addresses are bound first;
    /// if anything fails the old generation keeps serving.
    pub fn apply(self: &Arc<Self>, config: Config) -> Result<(), String> {
        let generation = Generation::build(Arc::new(config))?;
        let error_log = ErrorLog::open(&generation.config.main.error_log).map_err(|e| {
            let path = generation
                .config
                .main
                .error_log
                .first()
                .map(|t| t.path.display().to_string())
                .unwrap_or_default();
            format!("open() \"{path}\" failed {}", os_error(&e))
        })?;
        let wanted: Vec<Arc<ListenGroup>> = generation
            .config
            .http
            .as_ref()
            .map(|h| {
                h.listens
                    .iter()
                    .filter(|g| crate::config::listen::binds_own_socket(g, &h.listens))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let current: Vec<SocketAddr> = self
            .listeners
            .lock()
            .expect("listeners")
            .iter()
            .map(|l| l.key)
            .collect();
        let mut fresh = Vec::new();
        for g in &wanted {
            if !current.contains(&g.addr) {
                let listener = net::bind_listener(g.addr, &g.opts)
                    .map_err(|e| format!("bind() to {} failed {}", g.addr, os_error(&e)))?;
                fresh.push(Bound {
                    key: g.addr,
                    listener,
                });
            }
        }
        error_log.install();
        let generation = Arc::new(generation);
        {
            let mut list = self.retirements.lock().expect("retirements");
            list.retain(crate::signal::StopSignal::in_use);
            list.push(generation.retired.clone());
        }
        let old = self.generation.swap(generation);
        // Connections keep the configuration they started with; only an
        // explicit worker_shutdown_timeout bounds how long they may
        // outlive it (nginx closes old workers' connections then).
        if let Some(t) = old.config.main.worker_shutdown_timeout {
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                old.retired.trigger();
            });
        }
        for b in fresh {
            self.listen(b).map_err(|e| e.to_string())?;
        }
        let mut listeners = self.listeners.lock().expect("listeners");
        listeners.retain(|l| {
            let keep = wanted.iter().any(|g| g.addr == l.key);
            if !keep {
                let _ = l.stop.send(true);
            }
            keep
        });
        Ok(())
    }

    /// Final stop: connections and every tunnel of every generation close.
    fn stopping(&self) {
        let _ = self.state.send(RunState::Stopping);
        for retired in self.retirements.lock().expect("retirements").iter() {
            retired.trigger();
        }
    }

    fn stop_listeners(&self) {
        for l in self.listeners.lock().expect("listeners").drain(..) {
            let _ = l.stop.send(true);
        }
    }

    async fn graceful_stop(self: &Arc<Self>) {
        self.stop_listeners();
        let _ = self.state.send(RunState::Draining);
        let timeout = self.generation.load().config.main.worker_shutdown_timeout;
        let drained = async {
            loop {
                let notified = self.idle.notified();
                if self.active.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        match timeout {
            Some(t) => {
                if tokio::time::timeout(t, drained).await.is_err() {
                    self.stopping();
                    // Give closing tasks a moment to log and exit.
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        loop {
                            let notified = self.idle.notified();
                            if self.active.load(Ordering::Acquire) == 0 {
                                return;
                            }
                            notified.await;
                        }
                    })
                    .await;
                }
            }
            None => drained.await,
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    key: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    // A listener bound to one address knows every connection's local
    // address; only wildcard sockets need getsockname() per connection.
    let fixed_local = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(shared.clone(), stream, peer, key, fixed_local));
                }
                Err(e) => {
                    log::error(Level::Alert, &format!("accept() failed {}", os_error(&e)));
                    // Out of descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    key: SocketAddr,
    fixed_local: Option<SocketAddr>,
) {
    let Some(active) = shared.enter(true) else {
        let max = shared.generation.load().config.main.worker_connections;
        log::error(
            Level::Alert,
            &format!("{max} worker_connections are not enough"),
        );
        return;
    };
    let local = match fixed_local {
        Some(a) => a,
        None => match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    // TCP_NODELAY is inherited from the listening socket (see
    // net::bind_listener).
    let generation = shared.generation.load_full();
    let Some(group) = generation.group(key, net::canonical(local)) else {
        return;
    };
    let default_conf = &group.servers[group.default_server].conf;
    let header_timeout = default_conf.client_header_timeout;
    let server_tokens = default_conf.server_tokens;
    let mut info = ConnInfo {
        error_log: default_conf.error_log.clone(),
        id: shared.next_conn_id(),
        remote: net::canonical(peer),
        local: net::canonical(local),
        tls: group.opts.ssl,
        tls_session: None,
    };
    let io = if group.opts.ssl {
        let Some(acceptor) = generation.tls.get(&group.addr).cloned() else {
            return;
        };
        drop(generation);
        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                info.tls_session = Some(crate::tls::TlsSession::of(tls.get_ref().1));
                ClientIo::Tls(Box::new(tls))
            }
            Ok(Err(e)) => {
                info.log(
                    Level::Info,
                    &format!(
                        "SSL_do_handshake() failed ({e}) while SSL handshaking, client: {}, server: {}",
                        info.remote.ip(),
                        group.addr
                    ),
                );
                return;
            }
            Err(_) => return,
        }
    } else {
        drop(generation);
        ClientIo::Tcp(stream)
    };
    crate::conn::serve(
        shared,
        crate::conn::ClientConn::new(
            io,
            Arc::new(info),
            key,
            active,
            header_timeout,
            server_tokens,
        ),
    )
    .await;
}
