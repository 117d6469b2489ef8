//! `upstream` groups: their peers, balancing method and keepalive cache
//! settings.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::error::Span;
use crate::config::template::Template;

/// `resolver`: the name servers asked at run time and how long answers
/// are kept. Each `resolver` directive is one resolver with its own cache;
/// levels that inherit it share it.
#[derive(Debug)]
pub struct ResolverConf {
    /// Position in [`Http::resolvers`](super::Http::resolvers).
    pub index: usize,
    /// Name servers, asked in turn.
    pub servers: Vec<SocketAddr>,
    /// `valid=`: how long answers are kept instead of their TTL.
    pub valid: Option<Duration>,
    /// `ipv4=`: look up A records.
    pub ipv4: bool,
    /// `ipv6=`: look up AAAA records.
    pub ipv6: bool,
}

/// An upstream group.
#[derive(Debug)]
pub struct Upstream {
    /// The name (`upstream NAME`, or `host:port` for implicit ones).
    pub name: String,
    /// Index in `Http::upstreams`.
    pub index: usize,
    /// Peers, in configuration order (one per resolved address).
    pub peers: Vec<Peer>,
    /// Balancing method.
    pub method: BalanceMethod,
    /// `keepalive N` and friends.
    pub keepalive: Option<Keepalive>,
    /// Created from a `proxy_pass` URL rather than an `upstream` block.
    pub implicit: bool,
    /// Where it was defined.
    pub span: Span,
    /// `server NAME resolve`: names looked up at run time, whose addresses
    /// join `peers`.
    pub resolved: Vec<ResolvedServer>,
    /// The resolver those names are looked up with (the `http` level's).
    pub resolver: Option<std::sync::Arc<ResolverConf>>,
}

impl Upstream {
    /// A group made from a `proxy_pass` target rather than an `upstream`
    /// block: round robin over `peers`, no keepalive cache.
    pub fn implicit(name: String, index: usize, peers: Vec<Peer>, span: Span) -> Upstream {
        Upstream {
            name,
            index,
            peers,
            method: BalanceMethod::RoundRobin,
            keepalive: None,
            implicit: true,
            span,
            resolved: Vec::new(),
            resolver: None,
        }
    }

    /// This group with `peers` instead of its own and nothing left to look
    /// up (what its `server ... resolve` names stand for at the moment).
    pub fn with_peers(&self, peers: Vec<Peer>) -> Upstream {
        Upstream {
            name: self.name.clone(),
            index: self.index,
            peers,
            method: self.method.clone(),
            keepalive: self.keepalive,
            implicit: self.implicit,
            span: self.span.clone(),
            resolved: Vec::new(),
            resolver: None,
        }
    }
}

/// `server NAME[:PORT] resolve ...`: a name looked up at run time, again
/// whenever its answer expires; each address becomes a peer with the
/// line's parameters.
#[derive(Debug, Clone)]
pub struct ResolvedServer {
    /// The name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The line's parameters (its address is replaced by each one found).
    pub params: Peer,
}

/// Where a backend listens: a TCP address or a unix domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// An IPv4 or IPv6 address and port.
    Inet(SocketAddr),
    /// A unix domain socket's path (`unix:/run/app.sock`).
    Unix(std::sync::Arc<std::path::Path>),
}

impl From<SocketAddr> for PeerAddr {
    fn from(a: SocketAddr) -> PeerAddr {
        PeerAddr::Inet(a)
    }
}

impl PeerAddr {
    /// The peer of a `unix:PATH` address, refused as nginx refuses it: an
    /// empty path, or one longer than `sun_path` holds.
    pub fn unix(path: &str) -> Result<PeerAddr, &'static str> {
        check_unix_path(path)?;
        Ok(PeerAddr::Unix(std::sync::Arc::from(std::path::Path::new(
            path,
        ))))
    }

    /// What follows `unix:` in a `proxy_pass` URL, split as nginx does:
    /// the socket's path ends at the first colon, and what comes after it,
    /// when anything does, is the URI.
    pub fn split_unix_url(rest: &str) -> (&str, Option<&str>) {
        match rest.split_once(':') {
            Some((path, uri)) => (path, Some(uri).filter(|u| !u.is_empty())),
            None => (rest, None),
        }
    }

    /// The TCP address, for a TCP peer.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Inet(a) => Some(*a),
            PeerAddr::Unix(_) => None,
        }
    }
}

/// A unix domain socket's path (of a backend or a `listen`), refused as
/// nginx refuses it: empty, or longer than `sun_path` holds.
pub fn check_unix_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("no path in the unix domain socket");
    }
    // sun_path is 108 bytes on Linux, the last one a NUL.
    if path.len() >= 108 {
        return Err("too long path in the unix domain socket");
    }
    Ok(())
}

/// As nginx writes peers in logs and `$upstream_addr`: `127.0.0.1:8080`,
/// `[::1]:8080`, `unix:/run/app.sock`.
impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Inet(a) => a.fmt(f),
            PeerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One upstream server address.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The address.
    pub addr: PeerAddr,
    /// The `server` argument as written (`backend1:8080`), which `hash
    /// consistent` hashes and logs show for names.
    pub name: String,
    /// `weight=`.
    pub weight: u32,
    /// `max_fails=` (0 disables failure accounting).
    pub max_fails: u32,
    /// `fail_timeout=`.
    pub fail_timeout: Duration,
    /// `backup`.
    pub backup: bool,
    /// `down`.
    pub down: bool,
    /// `max_conns=` (0 = unlimited).
    pub max_conns: u32,
}

impl Peer {
    /// A server with nginx's defaults (`weight=1 max_fails=1
    /// fail_timeout=10s`, no `backup`, `down` or `max_conns`).
    pub fn new(addr: impl Into<PeerAddr>, name: String) -> Peer {
        Peer {
            addr: addr.into(),
            name,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
            max_conns: 0,
        }
    }
}

/// How a peer is chosen.
#[derive(Debug, Clone)]
pub enum BalanceMethod {
    /// Smooth weighted round robin (nginx's default).
    RoundRobin,
    /// `ip_hash`.
    IpHash,
    /// `hash KEY [consistent]`.
    Hash {
        /// The key.
        key: Template,
        /// Ketama-style consistent hashing.
        consistent: bool,
    },
    /// `least_conn`.
    LeastConn,
    /// `random [two]`.
    Random {
        /// Power of two choices.
        two: bool,
    },
}

/// `keepalive` settings of an upstream.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    /// Idle connections cached per worker.
    pub max_cached: usize,
    /// `keepalive_timeout` (default 60s).
    pub timeout: Duration,
    /// `keepalive_requests` (default 1000).
    pub requests: u64,
    /// `keepalive_time` (default 1h).
    pub time: Duration,
}
