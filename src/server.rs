//! The running server: listening sockets, accept loops, reload and
//! shutdown. What the connections share lives in [`crate::state`].
//!
//! Shutdown follows nginx's signals: `QUIT` stops accepting, closes idle
//! keep-alive connections and waits for the rest (tunnels included) up to
//! `worker_shutdown_timeout`; `TERM`/`INT` exit at once; `HUP` reloads
//! (a configuration that fails to load is logged and the old one keeps
//! serving); `USR1` reopens log files.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::client::h2::ConnSettings;
use crate::config::{Config, ListenAddr, ListenGroup, LoadOptions};
use crate::log::{self, ErrorLog, Level, os_error};
use crate::net::{self, ClientIo, ConnAddr, StdListener};
use crate::request::ConnInfo;
use crate::state::{Generation, Shared};

struct Listening {
    key: Arc<ListenAddr>,
    /// The TCP address bound (the port chosen for `:0`).
    local: Option<SocketAddr>,
    stop: watch::Sender<bool>,
}

impl Listening {
    /// Stops its accept loops; a unix-domain socket's file goes too.
    fn close(&self) {
        let _ = self.stop.send(true);
        net::remove_unix_socket(&self.key);
    }
}

/// A listening socket bound before the runtime starts.
pub struct Bound {
    /// The configured address (`127.0.0.1:0`, `0.0.0.0:80`,
    /// `unix:/run/app.sock`...).
    pub key: ListenAddr,
    /// The socket.
    pub listener: StdListener,
}

/// Binds every address of `config` that needs its own socket.
pub fn bind_all(config: &Config) -> Result<Vec<Bound>, String> {
    let mut out = Vec::new();
    if let Some(http) = &config.http {
        for group in &http.listens {
            if !crate::config::listen::binds_own_socket(group, &http.listens) {
                continue;
            }
            let listener = bind_or_undo(&group.addr, &group.opts, &out)?;
            out.push(Bound {
                key: group.addr.clone(),
                listener,
            });
        }
    }
    Ok(out)
}

/// Binds `addr`; when that fails, the unix-domain socket files of `done`
/// (bound for the same start or reload, which now fails) are removed, so
/// they do not refuse the next attempt.
fn bind_or_undo(
    addr: &ListenAddr,
    opts: &crate::config::ListenOpts,
    done: &[Bound],
) -> Result<StdListener, String> {
    net::bind(addr, opts).map_err(|e| {
        for b in done {
            net::remove_unix_socket(&b.key);
        }
        format!("bind() to {addr} failed {}", os_error(&e))
    })
}

/// A started server.
#[derive(Clone)]
pub struct Handle {
    /// Shared state.
    pub shared: Arc<Shared>,
    /// The listening sockets and their accept loops. A std mutex: locked
    /// only when the server starts, reloads or stops.
    listeners: Arc<std::sync::Mutex<Vec<Listening>>>,
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
        let handle = Handle {
            shared: Shared::new(generation, load, workers, max),
            listeners: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        for b in bound {
            handle
                .listen(b)
                .map_err(|e| format!("listen() failed {}", os_error(&e)))?;
        }
        Ok(handle)
    }

    /// Actual bound TCP addresses by configured address.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.listeners
            .lock()
            .expect("listeners")
            .iter()
            .filter_map(|l| Some((l.key.inet()?, l.local?)))
            .collect()
    }

    fn listen(&self, b: Bound) -> io::Result<()> {
        let local = b.listener.local_inet();
        let key = Arc::new(b.key);
        let (stop, stop_rx) = watch::channel(false);
        // Each worker gets its own descriptor for the socket, registered in
        // its own event loop; the kernel hands each connection to one of
        // them.
        let workers = &self.shared.workers;
        let mut sockets = Vec::with_capacity(workers.len());
        for _ in 1..workers.len() {
            sockets.push(b.listener.try_clone()?);
        }
        sockets.push(b.listener);
        for (worker, socket) in workers.iter().zip(sockets) {
            let shared = self.shared.clone();
            let stop_rx = stop_rx.clone();
            let key = key.clone();
            worker.spawn(async move {
                let registered = match socket {
                    StdListener::Tcp(l) => TcpListener::from_std(l).map(Accept::Tcp),
                    StdListener::Unix(l) => UnixListener::from_std(l).map(Accept::Unix),
                };
                match registered {
                    Ok(listener) => accept_loop(shared, listener, key, stop_rx).await,
                    Err(e) => log::error(
                        Level::Emerg,
                        &format!("cannot register listener {key}: {e}"),
                    ),
                }
            });
        }
        self.listeners
            .lock()
            .expect("listeners")
            .push(Listening { key, local, stop });
        Ok(())
    }

    /// Reloads from the files the configuration came from.
    pub fn reload(&self) -> Result<(), String> {
        let opts = self.shared.load.lock().expect("load options").clone();
        let Some(opts) = opts else {
            return Err("nothing to reload from".into());
        };
        match crate::config::load(&opts) {
            Ok(config) => self.apply(config),
            Err(e) => {
                self.shared.stats.reloaded(false);
                Err(e.to_string())
            }
        }
    }

    /// Validates and switches to `config`: new addresses are bound first;
    /// if anything fails the old generation keeps serving.
    pub fn apply(&self, config: Config) -> Result<(), String> {
        let result = self.switch_to(config);
        self.shared.stats.reloaded(result.is_ok());
        result
    }

    fn switch_to(&self, config: Config) -> Result<(), String> {
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
        let current: Vec<Arc<ListenAddr>> = self
            .listeners
            .lock()
            .expect("listeners")
            .iter()
            .map(|l| l.key.clone())
            .collect();
        let mut fresh = Vec::new();
        for g in &wanted {
            if !current.iter().any(|k| **k == g.addr) {
                let listener = bind_or_undo(&g.addr, &g.opts, &fresh)?;
                fresh.push(Bound {
                    key: g.addr.clone(),
                    listener,
                });
            }
        }
        error_log.install();
        self.shared.replace(Arc::new(generation));
        for b in fresh {
            self.listen(b).map_err(|e| e.to_string())?;
        }
        let mut listeners = self.listeners.lock().expect("listeners");
        listeners.retain(|l| {
            let keep = wanted.iter().any(|g| g.addr == *l.key);
            if !keep {
                l.close();
            }
            keep
        });
        Ok(())
    }

    /// Graceful stop; resolves when every connection has finished.
    pub async fn graceful_stop(&self) {
        self.stop_listeners();
        self.shared.drain().await;
    }

    /// Fast stop: everything closes now.
    pub fn stop_now(&self) {
        self.stop_listeners();
        self.shared.stopping();
    }

    /// Connections (client and tunnels) currently open.
    pub fn active(&self) -> usize {
        self.shared.active()
    }

    fn stop_listeners(&self) {
        for l in self.listeners.lock().expect("listeners").drain(..) {
            l.close();
        }
    }
}

/// A registered listening socket.
enum Accept {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Accept {
    /// The next connection: its stream and the client's address.
    async fn next(&self) -> io::Result<(ClientIo, ConnAddr)> {
        match self {
            Accept::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                Ok((ClientIo::Tcp(s), ConnAddr::Inet(net::canonical(peer))))
            }
            Accept::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((ClientIo::Unix(s), ConnAddr::Unix))
            }
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: Accept,
    key: Arc<ListenAddr>,
    mut stop: watch::Receiver<bool>,
) {
    // A listener bound to one address knows every connection's local
    // address; only wildcard sockets need getsockname() per connection.
    let fixed_local = match &listener {
        Accept::Tcp(l) => l
            .local_addr()
            .ok()
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| ConnAddr::Inet(net::canonical(a))),
        Accept::Unix(_) => Some(ConnAddr::Unix),
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.next() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(shared.clone(), stream, peer, key.clone(), fixed_local));
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
    io: ClientIo,
    peer: ConnAddr,
    key: Arc<ListenAddr>,
    fixed_local: Option<ConnAddr>,
) {
    shared.stats.accepted();
    let Some(active) = shared.enter(true) else {
        let max = shared.generation.load().config.main.worker_connections;
        log::error(
            Level::Alert,
            &format!("{max} worker_connections are not enough"),
        );
        return;
    };
    let local = match (fixed_local, &io) {
        (Some(a), _) => a,
        (None, ClientIo::Tcp(s)) => match s.local_addr() {
            Ok(a) => ConnAddr::Inet(net::canonical(a)),
            Err(_) => return,
        },
        (None, _) => return,
    };
    // TCP_NODELAY is inherited from the listening socket (see
    // net::bind_listener).
    let generation = shared.generation.load_full();
    let Some(group) = generation.group(&key, local) else {
        return;
    };
    let default_conf = &group.servers[group.default_server].conf;
    let header_timeout = default_conf.client_header_timeout;
    let defaults = crate::client::h1::ConnDefaults {
        header_timeout,
        server_tokens: default_conf.server_tokens,
        limits: crate::http1::parse::HeadLimits {
            first: default_conf.client_header_buffer_size,
            large: default_conf.large_client_header_buffers.1,
            large_count: default_conf.large_client_header_buffers.0,
            underscores: default_conf.underscores_in_headers,
            ignore_invalid: default_conf.ignore_invalid_headers,
        },
    };
    let mut info = ConnInfo {
        error_log: default_conf.error_log.clone(),
        id: shared.next_conn_id(),
        remote: peer,
        local,
        listen: key,
        tls: group.opts.ssl,
        tls_session: None,
        plain_http_on_tls: false,
        http2: "",
        since: std::time::Instant::now(),
        stats: shared.stats.clone(),
    };
    // The protocol: HTTP/2 when ALPN chose it, or when a plain client
    // starts with the preface; HTTP/1.x otherwise.
    let (io, h2) = if group.opts.ssl {
        // TLS is set up on TCP addresses only (refused at load on unix ones).
        let ClientIo::Tcp(stream) = io else {
            return;
        };
        let Some(acceptor) = generation.tls.get(&group.addr).cloned() else {
            return;
        };
        drop(generation);
        match tokio::time::timeout(header_timeout, crate::tls::server::starts_tls(&stream)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // Plain HTTP to a TLS port: read the request, answer 497.
                info.tls = false;
                info.plain_http_on_tls = true;
                return serve_plain(shared, ClientIo::Tcp(stream), info, active, defaults).await;
            }
            Ok(Err(_)) | Err(_) => return,
        }
        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(accepted)) => {
                let site = accepted.session.site;
                info.tls_session = Some(accepted.session);
                // HTTP/2 settings are the SNI-chosen server's, as nginx's.
                let h2 = accepted.h2.then(|| {
                    let server = group
                        .servers
                        .get(site)
                        .unwrap_or(&group.servers[group.default_server]);
                    ConnSettings::of(&server.conf)
                });
                (ClientIo::Tls(Box::new(accepted.stream)), h2)
            }
            Ok(Err(e)) => {
                info.log(
                    Level::Info,
                    &format!(
                        "SSL_do_handshake() failed ({e}) while SSL handshaking, client: {}, server: {}",
                        info.remote,
                        group.addr
                    ),
                );
                return;
            }
            Err(_) => return,
        }
    } else {
        drop(generation);
        // h2c with prior knowledge, beside HTTP/1.x, where the default
        // server speaks HTTP/2.
        let h2c = (group.opts.http2 || default_conf.http2.enable)
            && crate::client::h2::starts_with_preface(&io, header_timeout).await;
        (io, h2c.then(|| ConnSettings::of(default_conf)))
    };
    if let Some(settings) = h2 {
        info.http2 = if info.tls { "h2" } else { "h2c" };
        return crate::client::h2::serve(shared, io, Arc::new(info), active, settings).await;
    }
    crate::client::h1::serve(
        shared,
        crate::client::h1::ClientConn::new(io, Arc::new(info), active, defaults),
    )
    .await;
}

/// Serves a plain-HTTP client of a TLS address (its requests get 497).
async fn serve_plain(
    shared: Arc<Shared>,
    io: ClientIo,
    info: ConnInfo,
    active: crate::state::Active,
    defaults: crate::client::h1::ConnDefaults,
) {
    crate::client::h1::serve(
        shared,
        crate::client::h1::ClientConn::new(io, Arc::new(info), active, defaults),
    )
    .await;
}
