//! Names resolved at run time (`resolver`), as nginx's resolver does it:
//! A and AAAA queries over UDP to the configured name servers in turn,
//! resent every 5 seconds to the next server until `resolver_timeout`,
//! retried over TCP when an answer comes truncated; CNAMEs followed;
//! answers cached for their smallest TTL (or `valid=`), failures never.
//! Requests waiting for the same name share one lookup, which runs on its
//! own so that a client going away does not cancel it for the others.

pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::ResolverConf;
use crate::log::Level;
use wire::{Qtype, Reply};

/// How often an unanswered query is sent again (nginx's fixed 5 s).
const RESEND: Duration = Duration::from_secs(5);
/// CNAMEs followed before giving up (nginx's `NGX_RESOLVER_MAX_RECURSION`).
const MAX_CNAMES: usize = 50;
/// Cache size at which expired answers are swept out.
const CACHE_SWEEP: usize = 4096;
/// Cache size at which, after a sweep, the cache is emptied.
const CACHE_MAX: usize = 65536;

/// Why a name did not resolve: a DNS error code (1-5) or 110 for a
/// timeout, with nginx's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure(pub u16);

impl Failure {
    /// The time limit passed.
    pub const TIMED_OUT: Failure = Failure(110);
    /// No such name (also: no address of any asked family).
    pub const NOT_FOUND: Failure = Failure(3);
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0, wire::strerror(self.0))
    }
}

type Outcome = Result<Vec<IpAddr>, Failure>;

struct Cached {
    addrs: Vec<IpAddr>,
    until: Instant,
}

/// One `resolver`: its servers, its cache and its lookups in flight.
pub struct Resolver {
    conf: Arc<ResolverConf>,
    /// Which server the next query goes to first.
    next: AtomicUsize,
    cache: Mutex<HashMap<String, Cached>>,
    pending: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    /// Where protocol oddities are logged (the error log of the
    /// configuration's main level).
    log: Arc<Vec<crate::log::ErrorLogTarget>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("servers", &self.conf.servers)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with an empty cache.
    pub fn new(conf: Arc<ResolverConf>, log: Arc<Vec<crate::log::ErrorLogTarget>>) -> Resolver {
        Resolver {
            conf,
            next: AtomicUsize::new(0),
            cache: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            log,
        }
    }

    /// The addresses of `name`, waiting at most `timeout`.
    pub async fn resolve(self: &Arc<Self>, name: &str, timeout: Duration) -> Outcome {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        {
            let cache = self.cache.lock().expect("resolver cache");
            if let Some(c) = cache.get(&key)
                && c.until > Instant::now()
            {
                return Ok(c.addrs.clone());
            }
        }
        let mut rx = {
            let mut pending = self.pending.lock().expect("resolver pending");
            match pending.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    pending.insert(key.clone(), rx.clone());
                    let me = self.clone();
                    tokio::spawn(async move {
                        let outcome = me.lookup(&key, Instant::now() + timeout).await;
                        me.pending.lock().expect("resolver pending").remove(&key);
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        match tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) => v.clone().expect("waited for a value"),
            // The lookup task cannot end without sending; treat its loss
            // like a timeout.
            Ok(Err(_)) | Err(_) => Err(Failure::TIMED_OUT),
        }
    }

    /// Resolves `name` following CNAMEs, caching what succeeds.
    async fn lookup(&self, name: &str, deadline: Instant) -> Outcome {
        let mut current = name.to_string();
        let mut ttl = u32::MAX;
        for _ in 0..MAX_CNAMES {
            match self.families(&current, deadline).await? {
                Found::Addresses(addrs, t) => {
                    ttl = ttl.min(t);
                    let keep = self
                        .conf
                        .valid
                        .unwrap_or(Duration::from_secs(u64::from(ttl)));
                    let now = Instant::now();
                    let mut cache = self.cache.lock().expect("resolver cache");
                    if cache.len() >= CACHE_SWEEP {
                        // Names come from requests ($host, $arg_...): drop
                        // what expired, and everything if that is not enough,
                        // so that the cache cannot grow without bound.
                        cache.retain(|_, c| c.until > now);
                        if cache.len() >= CACHE_MAX {
                            cache.clear();
                        }
                    }
                    cache.insert(
                        name.to_string(),
                        Cached {
                            addrs: addrs.clone(),
                            until: now + keep,
                        },
                    );
                    return Ok(addrs);
                }
                Found::Cname(target, t) => {
                    ttl = ttl.min(t);
                    current = target;
                }
            }
        }
        Err(Failure::NOT_FOUND)
    }

    /// Asks for the families the resolver looks up, at once, and combines
    /// the answers as nginx does: an error in either fails the name;
    /// otherwise addresses of both, or the CNAME, or "not found".
    async fn families(&self, name: &str, deadline: Instant) -> Result<Found, Failure> {
        let (a, aaaa) = tokio::join!(
            async {
                if self.conf.ipv4 {
                    Some(self.ask(name, Qtype::A, deadline).await)
                } else {
                    None
                }
            },
            async {
                if self.conf.ipv6 {
                    Some(self.ask(name, Qtype::Aaaa, deadline).await)
                } else {
                    None
                }
            }
        );
        // nginx drops a CNAME that came for A when AAAA came back empty:
        // the name fails (an inconsistent server; real ones send the CNAME
        // for both).
        if matches!(a, Some(Ok(Answer::Cname(..)))) && matches!(aaaa, Some(Ok(Answer::Empty))) {
            return Err(Failure::NOT_FOUND);
        }
        let mut addrs = Vec::new();
        let mut ttl = u32::MAX;
        let mut cname = None;
        for r in [a, aaaa].into_iter().flatten() {
            match r? {
                Answer::Addresses(mut found, t) => {
                    addrs.append(&mut found);
                    ttl = ttl.min(t);
                }
                Answer::Cname(target, t) => cname = Some((target, t)),
                Answer::Empty => {}
            }
        }
        if !addrs.is_empty() {
            return Ok(Found::Addresses(addrs, ttl));
        }
        match cname {
            Some((target, t)) => Ok(Found::Cname(target, t)),
            None => Err(Failure::NOT_FOUND),
        }
    }

    /// One question, asked until answered or `deadline`.
    async fn ask(&self, name: &str, qtype: Qtype, deadline: Instant) -> Result<Answer, Failure> {
        let id = random_id();
        let Some(packet) = wire::query(id, name, qtype) else {
            return Err(Failure(1));
        };
        let servers = &self.conf.servers;
        let mut turn = self.next.fetch_add(1, Ordering::Relaxed);
        let mut socket: Option<UdpSocket> = None;
        let mut buf = vec![0u8; 4096];
        loop {
            let server = servers[turn % servers.len()];
            // One socket per address family, kept across resends so a late
            // answer to an earlier send still counts.
            let same_family = socket
                .as_ref()
                .and_then(|s| s.local_addr().ok())
                .is_some_and(|l| l.is_ipv4() == server.is_ipv4());
            if !same_family {
                socket = match bind_for(server).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.note(&format!("socket() failed {}", crate::log::os_error(&e)));
                        return Err(Failure::TIMED_OUT);
                    }
                };
            }
            let socket = socket.as_ref().expect("bound above");
            if let Err(e) = socket.send_to(&packet, server).await {
                self.note(&format!(
                    "send() to {server} failed {}",
                    crate::log::os_error(&e)
                ));
            }
            let resend_at = (Instant::now() + RESEND).min(deadline);
            // Read answers until this server's turn is over.
            loop {
                let got = tokio::time::timeout_at(resend_at, socket.recv_from(&mut buf)).await;
                let (n, from) = match got {
                    Err(_) => break,
                    Ok(Err(_)) => continue,
                    Ok(Ok(v)) => v,
                };
                if !servers.contains(&from) {
                    continue;
                }
                match wire::parse(&buf[..n], id, name, qtype, false) {
                    Reply::Ignored(why) => self.note(&why),
                    Reply::Truncated => {
                        // A failed TCP attempt waits for the resend like
                        // an unanswered query.
                        if let Some(answer) =
                            self.ask_tcp(from, &packet, id, name, qtype, deadline).await
                        {
                            return answer;
                        }
                    }
                    other => return answer_of(other),
                }
            }
            if Instant::now() >= deadline {
                return Err(Failure::TIMED_OUT);
            }
            turn += 1;
        }
    }

    /// The same question over TCP (after a truncated UDP answer); `None`
    /// when the connection fails or the answer is unusable (the UDP turn
    /// then goes on).
    async fn ask_tcp(
        &self,
        server: SocketAddr,
        packet: &[u8],
        id: u16,
        name: &str,
        qtype: Qtype,
        deadline: Instant,
    ) -> Option<Result<Answer, Failure>> {
        let exchange = async {
            let mut s = TcpStream::connect(server).await?;
            let mut out = (packet.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(packet);
            s.write_all(&out).await?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut body).await?;
            std::io::Result::Ok(body)
        };
        let body = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.note(&format!(
                    "connect() to {server} failed {}",
                    crate::log::os_error(&e)
                ));
                return None;
            }
            Err(_) => return Some(Err(Failure::TIMED_OUT)),
        };
        match wire::parse(&body, id, name, qtype, true) {
            Reply::Ignored(why) => {
                self.note(&why);
                None
            }
            other => Some(answer_of(other)),
        }
    }

    /// Writes an error line to the log this resolver reports to (the main
    /// level's `error_log`).
    pub fn note(&self, message: &str) {
        crate::log::error_to(&self.log, Level::Error, 0, message);
    }
}

/// A family's answer.
enum Answer {
    Addresses(Vec<IpAddr>, u32),
    Cname(String, u32),
    Empty,
}

/// A name's answer across families.
enum Found {
    Addresses(Vec<IpAddr>, u32),
    Cname(String, u32),
}

fn answer_of(reply: Reply) -> Result<Answer, Failure> {
    match reply {
        Reply::Addresses(a, t) => Ok(Answer::Addresses(a, t)),
        Reply::Cname(c, t) => Ok(Answer::Cname(c, t)),
        Reply::Empty => Ok(Answer::Empty),
        Reply::Failed(code) => Err(Failure(u16::from(code))),
        Reply::Ignored(_) | Reply::Truncated => Err(Failure(1)),
    }
}

/// A UDP socket of the server's family.
async fn bind_for(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(any).await
}

fn random_id() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    // The system's generator does not fail on Linux; a zero id would
    // still work.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}
