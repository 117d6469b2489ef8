//! `limit_conn`: concurrent requests per key, per zone.
//!
//! A zone counts requests in progress per key (an upgraded connection is
//! one request for as long as its tunnel lives, so `limit_conn ws 10`
//! bounds open WebSockets per client). Zones live in a process-wide
//! registry by name so counts survive a reload, as nginx's shared memory
//! zones do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Bytes nginx's zone spends per tracked key, roughly: the zone size
/// bounds how many distinct keys can be tracked at once.
const BYTES_PER_KEY: u64 = 64;

/// Live counts of one zone.
#[derive(Debug)]
pub struct Zone {
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

/// The zone named `name` of `size` bytes, created on first use.
pub fn zone(name: &str, size: u64) -> Arc<Zone> {
    static ZONES: OnceLock<Mutex<HashMap<String, Arc<Zone>>>> = OnceLock::new();
    let mut zones = ZONES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    zones
        .entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(Zone {
                counts: Mutex::new(HashMap::new()),
                max_keys: (size / BYTES_PER_KEY).max(1) as usize,
            })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

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
