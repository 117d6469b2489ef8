//! Connection and request counters of a server, as nginx keeps them for
//! `stub_status` and the `$connections_*` variables: accepted and handled
//! connections, requests, and how many connections are reading a request
//! head, writing (a request in progress, an upgraded connection) or
//! waiting (idle keep-alive).
//!
//! Relaxed atomics: each counter is exact, a snapshot of several is not
//! taken at one instant (nor is nginx's).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The counters of one server.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    handled: AtomicU64,
    requests: AtomicU64,
    active: AtomicI64,
    reading: AtomicI64,
    writing: AtomicI64,
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
    }

    /// A request began.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted connection is served: it counts as active until the
    /// guard drops.
    pub fn handled(self: &Arc<Self>) -> Gauge {
        self.handled.fetch_add(1, Ordering::Relaxed);
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
