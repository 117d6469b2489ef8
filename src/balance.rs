//! Choosing a backend: nginx's balancing methods, choice for choice.
//!
//! Sticky methods only help if every proxy in a fleet makes the same
//! choice for the same client, and operators migrating from nginx expect
//! the same client to land on the same backend after the switch. So these
//! follow nginx's `ngx_http_upstream_round_robin.c`,
//! `ngx_http_upstream_ip_hash_module.c`, `ngx_http_upstream_hash_module.c`
//! and `ngx_http_upstream_least_conn_module.c` step by step:
//!
//! * round robin is the *smooth weighted* variant, with `effective_weight`
//!   recovering after failures;
//! * `ip_hash` hashes the first three octets of an IPv4 address (all 16 of
//!   IPv6) starting from 89, `h = (h * 113 + byte) % 6271`;
//! * `hash` uses `((crc32([rehash] key) >> 16) & 0x7fff) + previous`;
//! * `hash ... consistent` places `160 * weight` CRC32 points per server
//!   (`crc32(host "\0" port prev_hash_le)`), as Cache::Memcached::Fast;
//! * `least_conn` compares `conns / weight`, ties broken by round robin;
//! * sticky methods fall back to round robin after 20 unsuitable picks.
//!
//! Failure accounting is nginx's too: a failed attempt counts against
//! `max_fails` within `fail_timeout` (whole seconds, as nginx's clock), a
//! success only clears the count once the window has been re-checked, and
//! backup servers are used when every primary is unavailable.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::{BalanceMethod, Peer, Upstream};

/// Wall-clock seconds, nginx's `ngx_time()`.
#[cfg(not(test))]
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Unit tests run on a clock of their own, moved by `tests::advance`, so
/// that `fail_timeout` windows are checked to the second without sleeping.
#[cfg(test)]
fn now_secs() -> i64 {
    tests::CLOCK.with(std::cell::Cell::get)
}

/// Mutable per-peer state, shared by every request.
#[derive(Debug, Clone, Default)]
struct PeerState {
    current_weight: i64,
    effective_weight: i64,
    fails: u32,
    accessed: i64,
    checked: i64,
    conns: u32,
}

impl PeerState {
    /// One step of nginx's smooth weighted round robin for a candidate:
    /// its current weight grows by its effective weight (returned, for the
    /// total), and an effective weight lowered by failures recovers by 1.
    fn step(&mut self, peer: &Peer) -> i64 {
        let added = self.effective_weight;
        self.current_weight += added;
        if self.effective_weight < peer.weight as i64 {
            self.effective_weight += 1;
        }
        added
    }
}

/// A primary or backup set of peers.
#[derive(Debug)]
struct Group {
    peers: Vec<Peer>,
    /// A std mutex, never held across an await, held for one peer choice
    /// or one failure record: threads contend only when they pick a peer of
    /// the same group at the same instant (nginx shares the same state
    /// between workers under the upstream zone's lock).
    state: Mutex<Vec<PeerState>>,
    total_weight: u64,
    single: bool,
    /// Peers that are not `down` (nginx's `peers->tries`).
    tries: usize,
}

impl Group {
    fn new(peers: Vec<Peer>) -> Group {
        let state = peers
            .iter()
            .map(|p| PeerState {
                effective_weight: p.weight as i64,
                ..PeerState::default()
            })
            .collect();
        Group {
            total_weight: peers.iter().map(|p| p.weight as u64).sum(),
            single: peers.len() == 1,
            tries: peers.iter().filter(|p| !p.down).count(),
            peers,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PeerState>> {
        // A panic while holding this lock cannot leave the weights
        // inconsistent in a way that matters; keep balancing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runtime state of one upstream group.
#[derive(Debug)]
pub struct Balancer {
    /// The configuration it balances.
    pub upstream: Arc<Upstream>,
    primary: Group,
    backup: Option<Group>,
    /// Consistent-hash ring: (point, index into `primary.peers` of a peer
    /// with that server name).
    points: Vec<(u32, usize)>,
}

/// A peer picked for one attempt.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// Where to connect.
    pub addr: crate::config::PeerAddr,
    /// The `server` name as written.
    pub name: String,
    backup: bool,
    index: usize,
}

/// Why no peer could be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoPeer {
    /// Every peer is down or failed: nginx's "no live upstreams".
    NoLive,
}

/// The state of one request's sequence of attempts.
#[derive(Debug)]
pub struct Pick {
    balancer: Arc<Balancer>,
    in_backup: bool,
    tried: Vec<bool>,
    /// Attempts left (nginx's `pc->tries`).
    pub tries: usize,
    /// Sticky methods: unsuitable picks so far (round robin after 20).
    sticky_tries: usize,
    hash: u64,
    rehash: u64,
    key: Vec<u8>,
}

impl Balancer {
    /// Builds the runtime state of `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> Balancer {
        let primary: Vec<Peer> = upstream
            .peers
            .iter()
            .filter(|p| !p.backup)
            .cloned()
            .collect();
        let backup: Vec<Peer> = upstream
            .peers
            .iter()
            .filter(|p| p.backup)
            .cloned()
            .collect();
        let primary = Group::new(primary);
        let points = match upstream.method {
            BalanceMethod::Hash {
                consistent: true, ..
            } => ring(&primary.peers),
            _ => Vec::new(),
        };
        let backup = (!backup.is_empty()).then(|| {
            let mut g = Group::new(backup);
            g.single = false;
            g
        });
        let mut primary = primary;
        if backup.is_some() {
            primary.single = false;
        }
        Balancer {
            upstream,
            primary,
            backup,
            points,
        }
    }

    /// Starts a request's attempts. `client` is the client address
    /// (`ip_hash`), `key` the rendered `hash` key.
    pub fn start(self: &Arc<Self>, client: IpAddr, key: Vec<u8>, max_tries: usize) -> Pick {
        let mut tries = self.primary.tries + self.backup.as_ref().map_or(0, |b| b.tries);
        if max_tries > 0 && tries > max_tries {
            tries = max_tries;
        }
        let (hash, key) = match &self.upstream.method {
            BalanceMethod::IpHash => (89, ip_hash_bytes(client)),
            BalanceMethod::Hash {
                consistent: true, ..
            } => {
                let h = crc32(&key);
                (find_point(&self.points, h) as u64, key)
            }
            _ => (0, key),
        };
        Pick {
            balancer: self.clone(),
            in_backup: false,
            tried: vec![
                false;
                self.primary
                    .peers
                    .len()
                    .max(self.backup.as_ref().map_or(0, |b| b.peers.len()))
            ],
            tries,
            sticky_tries: 0,
            hash,
            rehash: 0,
            key,
        }
    }

    fn group(&self, backup: bool) -> &Group {
        if backup {
            self.backup
                .as_ref()
                .expect("backup group exists when in backup")
        } else {
            &self.primary
        }
    }
}

/// The bytes `ip_hash` hashes: three octets of IPv4, sixteen of IPv6.
fn ip_hash_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3].to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[..3].to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    h.finalize()
}

/// The consistent-hash ring of `peers`, sorted and de-duplicated.
fn ring(peers: &[Peer]) -> Vec<(u32, usize)> {
    let mut points = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let server = peer.name.as_bytes();
        let (host, port): (&[u8], &[u8]) =
            if server.len() >= 5 && server[..5].eq_ignore_ascii_case(b"unix:") {
                (&server[5..], b"")
            } else {
                match server.iter().rposition(|c| *c == b':') {
                    Some(j) => (&server[..j], &server[j + 1..]),
                    None => (server, b""),
                }
            };
        let mut base = crc32fast::Hasher::new();
        base.update(host);
        base.update(b"\0");
        base.update(port);
        let mut prev: u32 = 0;
        for _ in 0..peer.weight * 160 {
            let mut h = base.clone();
            h.update(&prev.to_le_bytes());
            let point = h.finalize();
            points.push((point, i));
            prev = point;
        }
    }
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    points
}

/// Index of the first point at or after `hash` (wrapping to 0).
fn find_point(points: &[(u32, usize)], hash: u32) -> usize {
    points.partition_point(|p| p.0 < hash)
}

impl Pick {
    /// Picks the next peer, or reports that none is available. The caller
    /// must report the attempt's result with [`Pick::free`].
    pub fn next_peer(&mut self) -> Result<Chosen, NoPeer> {
        let b = self.balancer.clone();
        let sticky = match &b.upstream.method {
            BalanceMethod::IpHash => true,
            BalanceMethod::Hash { .. } => !self.key.is_empty(),
            _ => false,
        };
        if sticky
            && !self.in_backup
            && self.sticky_tries <= 20
            && !b.primary.single
            && let Some(c) = self.sticky_pick(&b)
        {
            return Ok(c);
        }
        if matches!(b.upstream.method, BalanceMethod::LeastConn) && !self.in_backup {
            if let Some(c) = self.least_conn_pick(&b, false) {
                return Ok(c);
            }
            return self.after_primary_failed(&b, true);
        }
        self.round_robin(&b)
    }

    fn round_robin(&mut self, b: &Balancer) -> Result<Chosen, NoPeer> {
        let group = b.group(self.in_backup);
        let now = now_secs();
        let mut state = group.lock();
        let picked = if group.single {
            let peer = &group.peers[0];
            let st = &state[0];
            (!(peer.down || peer.max_conns > 0 && st.conns >= peer.max_conns)).then_some(0)
        } else {
            smooth_pick(group, &mut state, &self.tried, now, |_| true)
        };
        match picked {
            Some(i) => {
                state[i].conns += 1;
                drop(state);
                Ok(self.chosen(group, i))
            }
            None => {
                drop(state);
                self.after_primary_failed(b, false)
            }
        }
    }

    fn after_primary_failed(&mut self, b: &Balancer, least_conn: bool) -> Result<Chosen, NoPeer> {
        if !self.in_backup && b.backup.is_some() {
            self.in_backup = true;
            self.tried.iter_mut().for_each(|t| *t = false);
            if least_conn {
                if let Some(c) = self.least_conn_pick(b, true) {
                    return Ok(c);
                }
                return Err(NoPeer::NoLive);
            }
            return self.round_robin(b);
        }
        Err(NoPeer::NoLive)
    }

    fn chosen(&mut self, group: &Group, i: usize) -> Chosen {
        self.tried[i] = true;
        Chosen {
            addr: group.peers[i].addr.clone(),
            name: group.peers[i].name.clone(),
            backup: self.in_backup,
            index: i,
        }
    }

    /// ip_hash and hash: walk the hash until a usable peer turns up.
    fn sticky_pick(&mut self, b: &Balancer) -> Option<Chosen> {
        let group = &b.primary;
        let now = now_secs();
        let mut state = group.lock();
        if let BalanceMethod::Hash {
            consistent: true, ..
        } = b.upstream.method
        {
            return self.chash_pick(b, &mut state, now);
        }
        loop {
            let hash = match b.upstream.method {
                BalanceMethod::IpHash => {
                    let mut h = self.hash;
                    for &byte in &self.key {
                        h = (h * 113 + byte as u64) % 6271;
                    }
                    self.hash = h;
                    h
                }
                _ => {
                    let mut c = crc32fast::Hasher::new();
                    if self.rehash > 0 {
                        c.update(self.rehash.to_string().as_bytes());
                    }
                    c.update(&self.key);
                    let h = ((c.finalize() >> 16) & 0x7fff) as u64;
                    self.hash = self.hash.wrapping_add(h);
                    self.rehash += 1;
                    self.hash
                }
            };
            let mut w = hash % group.total_weight.max(1);
            let mut p = 0;
            while w >= group.peers[p].weight as u64 {
                w -= group.peers[p].weight as u64;
                p += 1;
            }
            if usable(&group.peers[p], &state[p], self.tried[p], now) {
                if now - state[p].checked > group.peers[p].fail_timeout.as_secs() as i64 {
                    state[p].checked = now;
                }
                state[p].conns += 1;
                drop(state);
                return Some(self.chosen(group, p));
            }
            self.sticky_tries += 1;
            if self.sticky_tries > 20 {
                return None;
            }
        }
    }

    fn chash_pick(&mut self, b: &Balancer, state: &mut [PeerState], now: i64) -> Option<Chosen> {
        let group = &b.primary;
        if b.points.is_empty() {
            return None;
        }
        loop {
            let (_, server_peer) = b.points[(self.hash as usize) % b.points.len()];
            let server = &group.peers[server_peer].name;
            let mut best: Option<usize> = None;
            let mut total: i64 = 0;
            for (i, peer) in group.peers.iter().enumerate() {
                if !usable(peer, &state[i], self.tried[i], now) || peer.name != *server {
                    continue;
                }
                let st = &mut state[i];
                total += st.step(peer);
                let cw = st.current_weight;
                if best.is_none_or(|bi| cw > state[bi].current_weight) {
                    best = Some(i);
                }
            }
            if let Some(i) = best {
                state[i].current_weight -= total;
                if now - state[i].checked > group.peers[i].fail_timeout.as_secs() as i64 {
                    state[i].checked = now;
                }
                state[i].conns += 1;
                return Some(self.chosen(group, i));
            }
            self.hash += 1;
            self.sticky_tries += 1;
            if self.sticky_tries > 20 {
                return None;
            }
        }
    }

    fn least_conn_pick(&mut self, b: &Balancer, backup: bool) -> Option<Chosen> {
        let group = b.group(backup);
        let now = now_secs();
        let mut state = group.lock();
        if group.single {
            drop(state);
            return self.round_robin(b).ok();
        }
        let mut best: Option<usize> = None;
        let mut many = false;
        for (i, peer) in group.peers.iter().enumerate() {
            if !usable(peer, &state[i], self.tried[i], now) {
                continue;
            }
            match best {
                None => best = Some(i),
                Some(bi) => {
                    let lhs = state[i].conns as u64 * group.peers[bi].weight as u64;
                    let rhs = state[bi].conns as u64 * peer.weight as u64;
                    if lhs < rhs {
                        best = Some(i);
                        many = false;
                    } else if lhs == rhs {
                        many = true;
                    }
                }
            }
        }
        let mut bi = best?;
        if many {
            let first = bi;
            let mut total = 0;
            for i in first..group.peers.len() {
                let peer = &group.peers[i];
                if !usable(peer, &state[i], self.tried[i], now) {
                    continue;
                }
                let lhs = state[i].conns as u64 * group.peers[first].weight as u64;
                let rhs = state[first].conns as u64 * peer.weight as u64;
                if lhs != rhs {
                    continue;
                }
                let st = &mut state[i];
                total += st.step(peer);
                if state[i].current_weight > state[bi].current_weight {
                    bi = i;
                }
            }
            state[bi].current_weight -= total;
        }
        if now - state[bi].checked > group.peers[bi].fail_timeout.as_secs() as i64 {
            state[bi].checked = now;
        }
        state[bi].conns += 1;
        drop(state);
        Some(self.chosen(group, bi))
    }

    /// Reports the end of an attempt: `failed` counts against the peer's
    /// `max_fails`. Returns a warning to log when the peer was disabled.
    pub fn free(&mut self, chosen: &Chosen, failed: bool) -> Option<String> {
        self.settle(chosen, failed, true)
    }

    /// Reports a successful attempt whose connection stays in use (a
    /// response body still to read, a tunnel): the peer keeps counting it
    /// for `least_conn` and `max_conns` until the returned lease is
    /// dropped.
    pub fn succeed(&mut self, chosen: &Chosen) -> Lease {
        self.settle(chosen, false, false);
        Lease {
            balancer: self.balancer.clone(),
            backup: chosen.backup,
            index: chosen.index,
        }
    }

    fn settle(&mut self, chosen: &Chosen, failed: bool, release: bool) -> Option<String> {
        let b = self.balancer.clone();
        let group = b.group(chosen.backup);
        let peer = &group.peers[chosen.index];
        let mut state = group.lock();
        let st = &mut state[chosen.index];
        if release {
            st.conns = st.conns.saturating_sub(1);
        }
        if self.tries > 0 {
            self.tries -= 1;
        }
        if group.single && !chosen.backup {
            return None;
        }
        let mut warning = None;
        if failed {
            let now = now_secs();
            st.fails += 1;
            st.accessed = now;
            st.checked = now;
            if let Some(step) = peer.weight.checked_div(peer.max_fails) {
                st.effective_weight -= step as i64;
                if st.fails >= peer.max_fails {
                    warning = Some("upstream server temporarily disabled".to_string());
                }
            }
            if st.effective_weight < 0 {
                st.effective_weight = 0;
            }
        } else if st.accessed < st.checked {
            st.fails = 0;
        }
        warning
    }

    /// Releases a peer without counting the attempt (a connection that was
    /// never used, e.g. the client went away before connecting).
    pub fn release(&mut self, chosen: &Chosen) {
        let b = self.balancer.clone();
        let group = b.group(chosen.backup);
        let mut state = group.lock();
        state[chosen.index].conns = state[chosen.index].conns.saturating_sub(1);
    }

    /// The upstream's name (shown in `$upstream_addr` when no peer was
    /// available).
    pub fn upstream_name(&self) -> &str {
        &self.balancer.upstream.name
    }
}

/// One connection's share of a peer's active count (`least_conn`,
/// `max_conns`), given back when dropped.
#[derive(Debug)]
pub struct Lease {
    balancer: Arc<Balancer>,
    backup: bool,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.balancer.group(self.backup).lock();
        state[self.index].conns = state[self.index].conns.saturating_sub(1);
    }
}

/// Whether a peer can take an attempt now.
fn usable(peer: &Peer, st: &PeerState, tried: bool, now: i64) -> bool {
    if tried || peer.down {
        return false;
    }
    if peer.max_fails > 0
        && st.fails >= peer.max_fails
        && now - st.checked <= peer.fail_timeout.as_secs() as i64
    {
        return false;
    }
    !(peer.max_conns > 0 && st.conns >= peer.max_conns)
}

/// nginx's `ngx_http_upstream_get_peer`: smooth weighted round robin.
fn smooth_pick(
    group: &Group,
    state: &mut [PeerState],
    tried: &[bool],
    now: i64,
    filter: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut total: i64 = 0;
    for (i, peer) in group.peers.iter().enumerate() {
        if !filter(i) || !usable(peer, &state[i], tried[i], now) {
            continue;
        }
        let st = &mut state[i];
        total += st.step(peer);
        if best.is_none_or(|b| state[i].current_weight > state[b].current_weight) {
            best = Some(i);
        }
    }
    let i = best?;
    state[i].current_weight -= total;
    if now - state[i].checked > group.peers[i].fail_timeout.as_secs() as i64 {
        state[i].checked = now;
    }
    Some(i)
}

#[cfg(test)]
mod tests;
