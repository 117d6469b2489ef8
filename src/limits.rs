//! `limit_conn` and `limit_req`: concurrent requests and request rates
//! per key, per zone.
//!
//! A `limit_conn` zone counts requests in progress per key (an upgraded
//! connection is one request for as long as its tunnel lives, so
//! `limit_conn ws 10` bounds open WebSockets per client). A `limit_req`
//! zone keeps nginx's leaky bucket per key: each request adds one, the
//! bucket drains at the zone's rate, and a request that would overflow
//! `burst` is refused (WebSocket handshakes included, which is how
//! reconnection storms are damped). Zones live in process-wide registries
//! by name so their state survives a reload, as nginx's shared memory zones
//! do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Bytes nginx's zone spends per tracked key, roughly: the zone size
/// bounds how many distinct keys can be tracked at once.
const BYTES_PER_KEY: u64 = 64;

/// Live counts of one zone.
#[derive(Debug)]
pub struct Zone {
    /// A std mutex, never held across an await, held for one hash lookup
    /// and an increment or decrement: worker threads contend only when they
    /// admit or release connections of the same zone at the same instant,
    /// as nginx's workers do on the zone's shared-memory lock.
    counts: Mutex<HashMap<Vec<u8>, u32>>,
    max_keys: usize,
}

/// A counted request; dropping it releases the slot.
#[derive(Debug)]
pub struct Slot {
    zone: Arc<Zone>,
    key: Vec<u8>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The key has `max` requests in progress already.
    Limit,
    /// The zone cannot track another key.
    ZoneFull,
}

impl Zone {
    /// Tries to count one more request for `key`.
    pub fn acquire(self: &Arc<Self>, key: &[u8], max: u32) -> Result<Slot, Refused> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let len = counts.len();
        match counts.get_mut(key) {
            Some(n) if *n >= max => return Err(Refused::Limit),
            Some(n) => *n += 1,
            None => {
                if len >= self.max_keys {
                    return Err(Refused::ZoneFull);
                }
                counts.insert(key.to_vec(), 1);
            }
        }
        Ok(Slot {
            zone: self.clone(),
            key: key.to_vec(),
        })
    }

    /// Requests in progress for `key`.
    pub fn count(&self, key: &[u8]) -> u32 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.zone.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A process-wide registry of zones by name.
type Registry<T> = OnceLock<Mutex<HashMap<String, Arc<T>>>>;

/// The zone called `name` in `registry`, made by `make` on first use.
fn named<T>(registry: &'static Registry<T>, name: &str, make: impl FnOnce() -> T) -> Arc<T> {
    let mut zones = registry
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    zones
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// How many keys a zone of `size` bytes tracks.
fn capacity(size: u64) -> usize {
    (size / BYTES_PER_KEY).max(1) as usize
}

/// The `limit_conn` zone named `name` of `size` bytes, created on first
/// use.
pub fn zone(name: &str, size: u64) -> Arc<Zone> {
    static ZONES: Registry<Zone> = OnceLock::new();
    named(&ZONES, name, || Zone {
        counts: Mutex::new(HashMap::new()),
        max_keys: capacity(size),
    })
}

/// One key's bucket in a `limit_req` zone.
#[derive(Debug)]
struct Bucket {
    /// Requests in excess of the rate, in thousandths.
    excess: i64,
    /// When `excess` was last brought up to date, in ms.
    last: u64,
    /// Position in the least-recently-used order.
    seq: u64,
}

#[derive(Debug, Default)]
struct Buckets {
    by_key: HashMap<Vec<u8>, Bucket>,
    /// seq -> key, oldest first.
    lru: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
}

/// A `limit_req_zone`'s live state.
#[derive(Debug)]
pub struct RateZone {
    /// A std mutex, never held across an await, held for one bucket update
    /// (see [`Zone::counts`]).
    buckets: Mutex<Buckets>,
    max_keys: usize,
}

/// One `limit_req` of a location, as the check needs it.
#[derive(Debug, Clone, Copy)]
pub struct RateRule<'a> {
    /// The zone's state.
    pub zone: &'a RateZone,
    /// Rate in thousandths of a request per second.
    pub rate: u64,
    /// `burst`, in thousandths.
    pub burst: u64,
    /// Excess (in thousandths) served without delay (`delay=`, `nodelay`).
    pub delay: u64,
}

/// What `limit_req` decided for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the rate.
    Pass,
    /// Refused by rule `index`, whose bucket held `excess` (thousandths).
    Reject {
        /// Which rule.
        index: usize,
        /// Its excess.
        excess: u64,
    },
    /// Let through after `ms` milliseconds; rule `index` asked for the
    /// longest wait, with `excess` (thousandths).
    Delay {
        /// Which rule.
        index: usize,
        /// Its excess.
        excess: u64,
        /// How long to wait.
        ms: u64,
    },
}

/// Milliseconds on a monotonic clock shared by every zone.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // Starts at one minute so that a new bucket's "last" of zero is always
    // long ago.
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 60_000
}

/// Time since `last`, as nginx counts it (a clock that went back counts
/// as no time).
fn elapsed(now: u64, last: u64) -> i64 {
    now.saturating_sub(last) as i64
}

impl RateZone {
    /// The excess `key` would have with one more request now, or `None`
    /// for a key not seen yet.
    fn peek(&self, buckets: &Buckets, key: &[u8], rate: u64, now: u64) -> Option<i64> {
        let b = buckets.by_key.get(key)?;
        let ms = elapsed(now, b.last);
        Some((b.excess - rate as i64 * ms / 1000 + 1000).max(0))
    }

    /// Records one request for `key`; returns its new excess.
    fn account(&self, buckets: &mut Buckets, key: &[u8], rate: u64, now: u64) -> i64 {
        let seq = buckets.next_seq;
        buckets.next_seq += 1;
        if let Some(b) = buckets.by_key.get_mut(key) {
            let ms = elapsed(now, b.last);
            b.excess = (b.excess - rate as i64 * ms / 1000 + 1000).max(0);
            if ms != 0 {
                b.last = now;
            }
            buckets.lru.remove(&b.seq);
            b.seq = seq;
            buckets.lru.insert(seq, key.to_vec());
            return b.excess;
        }
        self.make_room(buckets, rate, now);
        buckets.by_key.insert(
            key.to_vec(),
            Bucket {
                excess: 0,
                last: now,
                seq,
            },
        );
        buckets.lru.insert(seq, key.to_vec());
        0
    }

    /// nginx's expiry before a new key: up to two of the least recently
    /// used buckets that have been idle a minute and drained; when the
    /// zone is still full, the least recently used one regardless.
    fn make_room(&self, buckets: &mut Buckets, rate: u64, now: u64) {
        for _ in 0..2 {
            let Some((&seq, key)) = buckets.lru.iter().next() else {
                break;
            };
            let b = &buckets.by_key[key];
            let ms = elapsed(now, b.last);
            if ms < 60_000 || b.excess - rate as i64 * ms / 1000 > 0 {
                break;
            }
            let key = key.clone();
            buckets.lru.remove(&seq);
            buckets.by_key.remove(&key);
        }
        if buckets.by_key.len() >= self.max_keys
            && let Some((_, key)) = buckets.lru.pop_first()
        {
            buckets.by_key.remove(&key);
        }
    }

    /// Keys tracked (for tests).
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies a location's `limit_req` rules to one request, whose key for
/// rule `i` is `keys[i]` (`None`: not limited by that rule). A refusal
/// leaves every bucket as it was; otherwise each bucket counts the
/// request, and the longest delay any rule asks for applies.
pub fn check_rate(rules: &[RateRule<'_>], keys: &[Option<Vec<u8>>]) -> RateVerdict {
    let now = now_ms();
    // The zones' locks are taken one at a time, in rule order.
    for (i, (rule, key)) in rules.iter().zip(keys).enumerate() {
        let Some(key) = key else { continue };
        let buckets = rule.zone.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(excess) = rule.zone.peek(&buckets, key, rule.rate, now)
            && excess as u64 > rule.burst
        {
            return RateVerdict::Reject {
                index: i,
                excess: excess as u64,
            };
        }
    }
    let mut verdict = RateVerdict::Pass;
    let mut longest = 0;
    for (i, (rule, key)) in rules.iter().zip(keys).enumerate() {
        let Some(key) = key else { continue };
        let mut buckets = rule.zone.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let excess = rule.zone.account(&mut buckets, key, rule.rate, now) as u64;
        if excess <= rule.delay {
            continue;
        }
        let ms = (excess - rule.delay) * 1000 / rule.rate;
        if ms > longest {
            longest = ms;
            verdict = RateVerdict::Delay {
                index: i,
                excess,
                ms,
            };
        }
    }
    verdict
}

/// The `limit_req` zone named `name` of `size` bytes, created on first
/// use.
pub fn rate_zone(name: &str, size: u64) -> Arc<RateZone> {
    static ZONES: Registry<RateZone> = OnceLock::new();
    named(&ZONES, name, || RateZone {
        buckets: Mutex::new(Buckets::default()),
        max_keys: capacity(size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(zone: &RateZone, per_sec: u64, burst: u64, delay: u64) -> RateRule<'_> {
        RateRule {
            zone,
            rate: per_sec * 1000,
            burst: burst * 1000,
            delay: delay * 1000,
        }
    }

    #[test]
    fn rate_first_request_free_then_burst_then_refusal() {
        let z = rate_zone("rate-test-burst", 8192);
        let key = || vec![Some(b"k".to_vec())];
        // 1 r/s, burst 2, nodelay: three at once pass, the fourth does not.
        let nodelay = [rule(&z, 1, 2, 1_000_000)];
        assert_eq!(check_rate(&nodelay, &key()), RateVerdict::Pass);
        assert_eq!(check_rate(&nodelay, &key()), RateVerdict::Pass);
        assert_eq!(check_rate(&nodelay, &key()), RateVerdict::Pass);
        match check_rate(&nodelay, &key()) {
            RateVerdict::Reject { index: 0, excess } => assert!(excess > 2000, "{excess}"),
            other => panic!("{other:?}"),
        }
        // Another key has its own bucket; no key, no limit.
        assert_eq!(
            check_rate(&nodelay, &[Some(b"other".to_vec())]),
            RateVerdict::Pass
        );
        assert_eq!(check_rate(&nodelay, &[None]), RateVerdict::Pass);
    }

    #[test]
    fn rate_excess_within_burst_is_delayed_unless_below_delay() {
        let z = rate_zone("rate-test-delay", 8192);
        let key = || vec![Some(b"k".to_vec())];
        let queued = [rule(&z, 2, 5, 0)];
        assert_eq!(check_rate(&queued, &key()), RateVerdict::Pass);
        // Excess ~1.000 at 2 r/s: wait ~500 ms.
        match check_rate(&queued, &key()) {
            RateVerdict::Delay { ms, .. } => assert!((400..=500).contains(&ms), "{ms}"),
            other => panic!("{other:?}"),
        }
        // delay=2: the first two in excess pass at once.
        let z2 = rate_zone("rate-test-delay2", 8192);
        let two = [rule(&z2, 2, 5, 2)];
        assert_eq!(check_rate(&two, &key()), RateVerdict::Pass);
        assert_eq!(check_rate(&two, &key()), RateVerdict::Pass);
        assert_eq!(check_rate(&two, &key()), RateVerdict::Pass);
        assert!(matches!(
            check_rate(&two, &key()),
            RateVerdict::Delay { .. }
        ));
    }

    #[test]
    fn rate_refusal_by_a_later_rule_leaves_earlier_buckets_alone() {
        let wide = rate_zone("rate-test-wide", 8192);
        let narrow = rate_zone("rate-test-narrow", 8192);
        let rules = [rule(&wide, 1, 10, 1_000_000), rule(&narrow, 1, 0, 0)];
        let keys = vec![Some(b"k".to_vec()), Some(b"k".to_vec())];
        assert_eq!(check_rate(&rules, &keys), RateVerdict::Pass);
        assert!(matches!(
            check_rate(&rules, &keys),
            RateVerdict::Reject { index: 1, .. }
        ));
        assert!(matches!(
            check_rate(&rules, &keys),
            RateVerdict::Reject { index: 1, .. }
        ));
        // The wide bucket counted only the request that passed.
        let buckets = wide.buckets.lock().unwrap();
        assert_eq!(buckets.by_key[&b"k"[..]].excess, 0);
    }

    #[test]
    fn rate_zone_size_bounds_keys_evicting_the_least_recent() {
        let z = rate_zone("rate-test-small", 3 * BYTES_PER_KEY);
        let r = [rule(&z, 1, 0, 0)];
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            assert_eq!(check_rate(&r, &[Some(k.to_vec())]), RateVerdict::Pass);
        }
        assert_eq!(z.len(), 3);
        // "a" was evicted, so it starts afresh.
        assert_eq!(check_rate(&r, &[Some(b"a".to_vec())]), RateVerdict::Pass);
        // "d" is still tracked and refused.
        assert!(matches!(
            check_rate(&r, &[Some(b"d".to_vec())]),
            RateVerdict::Reject { .. }
        ));
    }

    #[test]
    fn limits_count_and_release() {
        let z = zone("limits-test", 8192);
        let a = z.acquire(b"1.2.3.4", 2).unwrap();
        let b = z.acquire(b"1.2.3.4", 2).unwrap();
        assert_eq!(z.acquire(b"1.2.3.4", 2).unwrap_err(), Refused::Limit);
        assert!(z.acquire(b"5.6.7.8", 2).is_ok());
        drop(a);
        assert_eq!(z.count(b"1.2.3.4"), 1);
        drop(b);
        assert_eq!(z.count(b"1.2.3.4"), 0);
    }

    #[test]
    fn limits_bound_keys_by_zone_size() {
        let z = zone("limits-small", 128);
        let _a = z.acquire(b"a", 1).unwrap();
        let _b = z.acquire(b"b", 1).unwrap();
        assert_eq!(z.acquire(b"c", 1).unwrap_err(), Refused::ZoneFull);
    }
}
