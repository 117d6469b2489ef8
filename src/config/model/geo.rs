//! `geo` blocks (ngx_http_geo_module): a variable whose value depends on
//! the client address, by longest matching network or by address range.
//!
//! The tables are built line by line as nginx builds them, with the same
//! verdicts on duplicates, deletions and overlaps ([`GeoTable`]'s `insert`
//! and `delete` methods return what nginx would warn about or refuse);
//! lookups are the request-time half ([`GeoDef::lookup`]). Values are
//! literal text: a geo value never expands variables.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::BitAnd;

use super::access::{Cidr, canonical};
use crate::config::error::Span;
use crate::config::template::Template;

/// One `geo` block.
#[derive(Debug)]
pub struct GeoDef {
    /// `$address`: the variable holding the address to look up; `None`
    /// looks up the client address (after `set_real_ip_from`).
    pub source: Option<Template>,
    /// `proxy` networks: when the address is one of them, the address is
    /// taken from `X-Forwarded-For` instead.
    pub proxies: Vec<Cidr>,
    /// `proxy_recursive`: walk `X-Forwarded-For` past trusted addresses.
    pub proxy_recursive: bool,
    /// `volatile`: looked up again on every use instead of once per request.
    pub volatile: bool,
    /// The networks or ranges and their values.
    pub table: GeoTable,
    /// The variable it defines, without `$`.
    pub output: String,
    /// Where the block starts.
    pub span: Span,
}

/// What the address used for lookup is, once the source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoAddr {
    /// An IP address (IPv4-mapped IPv6 is looked up as IPv4).
    Ip(IpAddr),
    /// No address: a unix-domain client, or a source that is not an
    /// address. nginx looks these up as 255.255.255.255.
    None,
}

impl GeoDef {
    /// The value for `addr`.
    pub fn lookup(&self, addr: GeoAddr) -> &[u8] {
        self.table.lookup(addr)
    }

    /// Whether `addr` is one of the `proxy` networks.
    pub fn is_proxy(&self, addr: GeoAddr) -> bool {
        match addr {
            GeoAddr::Ip(ip) => self.proxies.iter().any(|c| c.contains(ip)),
            GeoAddr::None => false,
        }
    }
}

/// Networks (the default) or `ranges`.
#[derive(Debug)]
pub enum GeoTable {
    /// Longest prefix match over IPv4 and IPv6 networks.
    Nets(NetTable),
    /// IPv4 ranges.
    Ranges(RangeTable),
}

impl GeoTable {
    fn lookup(&self, addr: GeoAddr) -> &[u8] {
        let v4 = match addr {
            GeoAddr::Ip(ip) => match canonical(ip) {
                IpAddr::V4(v4) => u32::from(v4),
                IpAddr::V6(v6) => match self {
                    GeoTable::Nets(t) => return t.lookup_v6(u128::from(v6)),
                    GeoTable::Ranges(_) => u32::MAX,
                },
            },
            GeoAddr::None => u32::MAX,
        };
        match self {
            GeoTable::Nets(t) => t.lookup_v4(v4),
            GeoTable::Ranges(t) => t.lookup(v4),
        }
    }
}

/// The values of a table, each stored once.
#[derive(Debug, Default)]
struct Values {
    list: Vec<Box<[u8]>>,
    index: HashMap<Box<[u8]>, u32>,
}

impl Values {
    fn intern(&mut self, v: &[u8]) -> u32 {
        if let Some(&i) = self.index.get(v) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(v.into());
        self.index.insert(v.into(), i);
        i
    }

    fn get(&self, i: u32) -> &[u8] {
        &self.list[i as usize]
    }
}

/// What a table change found that nginx reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Done, nothing to say.
    Done,
    /// The same network or range was already there: the new value
    /// replaced this one (a warning).
    Replaced(Vec<u8>),
    /// `delete` found nothing to delete (a warning).
    NotFound,
    /// A range that crosses an edge of, or contains, this earlier range
    /// (refused).
    Overlaps(Ipv4Addr, Ipv4Addr),
}

/// Networks with values; the most specific network holding an address
/// gives its value. `0.0.0.0/0` and `::/0` are the defaults.
#[derive(Debug, Default)]
pub struct NetTable {
    values: Values,
    v4: Prefixes<u32>,
    v6: Prefixes<u128>,
}

/// The networks of one address family, by mask (a longer prefix's mask
/// is the greater number): network address -> value.
#[derive(Debug)]
struct Prefixes<K>(BTreeMap<K, HashMap<K, u32>>);

impl<K> Default for Prefixes<K> {
    fn default() -> Self {
        Prefixes(BTreeMap::new())
    }
}

impl<K: Copy + Ord + Hash + BitAnd<Output = K>> Prefixes<K> {
    /// Sets the value of the network `addr`/`mask`; the old value.
    fn insert(&mut self, mask: K, addr: K, value: u32) -> Option<u32> {
        self.0.entry(mask).or_default().insert(addr, value)
    }

    /// Removes exactly the network `addr`/`mask`; its value.
    fn remove(&mut self, mask: K, addr: K) -> Option<u32> {
        self.0.get_mut(&mask)?.remove(&addr)
    }

    /// The value of the longest prefix holding `addr`.
    fn longest(&self, addr: K) -> Option<u32> {
        self.0
            .iter()
            .rev()
            .find_map(|(&mask, nets)| nets.get(&(addr & mask)).copied())
    }
}

impl NetTable {
    /// Sets `net`'s value; a network already there is replaced.
    pub fn insert(&mut self, net: Cidr, value: &[u8]) -> Change {
        let v = self.values.intern(value);
        let old = match net {
            Cidr::V4 { addr, mask } => self.v4.insert(mask, addr, v),
            Cidr::V6 { addr, mask } => self.v6.insert(mask, addr, v),
            Cidr::Unix => return Change::Done,
        };
        match old {
            Some(old) => Change::Replaced(self.values.get(old).to_vec()),
            None => Change::Done,
        }
    }

    /// Removes exactly `net`.
    pub fn delete(&mut self, net: Cidr) -> Change {
        let found = match net {
            Cidr::V4 { addr, mask } => self.v4.remove(mask, addr),
            Cidr::V6 { addr, mask } => self.v6.remove(mask, addr),
            Cidr::Unix => None,
        };
        if found.is_some() {
            Change::Done
        } else {
            Change::NotFound
        }
    }

    fn lookup_v4(&self, addr: u32) -> &[u8] {
        self.v4.longest(addr).map_or(b"", |v| self.values.get(v))
    }

    fn lookup_v6(&self, addr: u128) -> &[u8] {
        self.v6.longest(addr).map_or(b"", |v| self.values.get(v))
    }
}

/// IPv4 ranges with values, kept as nginx keeps them: cut at /16
/// boundaries, each /16 holding sorted pieces that do not overlap. A
/// later range inside an earlier one takes that part of it over; one that
/// crosses an earlier range's edge or holds it whole is refused.
#[derive(Debug, Default)]
pub struct RangeTable {
    values: Values,
    /// `default`.
    default: Option<u32>,
    /// Upper 16 bits -> sorted `(low, high, value)` over the lower 16.
    buckets: BTreeMap<u16, Vec<(u16, u16, u32)>>,
}

/// The /16 pieces of `start..=end`: `(bucket, low, high)`.
fn pieces(start: u32, end: u32) -> impl Iterator<Item = (u16, u16, u16)> {
    let (first, last) = ((start >> 16) as u16, (end >> 16) as u16);
    (first..=last).map(move |b| {
        let lo = if b == first { start as u16 } else { 0 };
        let hi = if b == last { end as u16 } else { u16::MAX };
        (b, lo, hi)
    })
}

impl RangeTable {
    /// Sets `default`; a second one replaces the first.
    pub fn set_default(&mut self, value: &[u8]) -> Change {
        let v = self.values.intern(value);
        match self.default.replace(v) {
            Some(old) => Change::Replaced(self.values.get(old).to_vec()),
            None => Change::Done,
        }
    }

    /// Adds `start..=end` (`start <= end`). Pieces already placed stay
    /// placed when a later piece is refused, as in nginx (the load fails
    /// anyway).
    pub fn insert(&mut self, start: u32, end: u32, value: &[u8]) -> Change {
        let v = self.values.intern(value);
        let mut verdict = Change::Done;
        for (b, lo, hi) in pieces(start, end) {
            let list = self.buckets.entry(b).or_default();
            let at = list.partition_point(|&(_, h, _)| h < lo);
            match list.get(at).copied() {
                // Disjoint from everything: after all pieces below `lo`,
                // and the next piece starts above `hi`.
                None => list.insert(at, (lo, hi, v)),
                Some((l, _, _)) if l > hi => list.insert(at, (lo, hi, v)),
                Some((l, h, old)) if l == lo && h == hi => {
                    list[at].2 = v;
                    verdict = Change::Replaced(self.values.get(old).to_vec());
                }
                Some((l, h, old)) if l <= lo && hi <= h => {
                    // Inside one piece: split it around the new one.
                    let mut parts = Vec::with_capacity(3);
                    if l < lo {
                        parts.push((l, lo - 1, old));
                    }
                    parts.push((lo, hi, v));
                    if hi < h {
                        parts.push((hi + 1, h, old));
                    }
                    list.splice(at..=at, parts);
                }
                Some((l, h, _)) => {
                    let base = u32::from(b) << 16;
                    return Change::Overlaps(
                        Ipv4Addr::from(base | u32::from(l)),
                        Ipv4Addr::from(base | u32::from(h)),
                    );
                }
            }
        }
        verdict
    }

    /// Removes the pieces of `start..=end` that have exactly its bounds;
    /// `NotFound` when some /16 had none (the others are removed).
    pub fn delete(&mut self, start: u32, end: u32) -> Change {
        let mut verdict = Change::Done;
        for (b, lo, hi) in pieces(start, end) {
            let list = self.buckets.get_mut(&b);
            match list.and_then(|l| Some((l.iter().position(|&(x, y, _)| (x, y) == (lo, hi))?, l)))
            {
                Some((i, list)) => {
                    list.remove(i);
                }
                None => verdict = Change::NotFound,
            }
        }
        verdict
    }

    fn lookup(&self, addr: u32) -> &[u8] {
        let low = addr as u16;
        let hit = self.buckets.get(&((addr >> 16) as u16)).and_then(|list| {
            let at = list.partition_point(|&(_, h, _)| h < low);
            list.get(at).filter(|&&(l, _, _)| l <= low)
        });
        match (hit, self.default) {
            (Some(&(_, _, v)), _) | (None, Some(v)) => self.values.get(v),
            (None, None) => b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Cidr {
        Cidr::parse(s).unwrap().0
    }

    fn ip(s: &str) -> GeoAddr {
        GeoAddr::Ip(s.parse().unwrap())
    }

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    fn nets(lines: &[(&str, &str)]) -> GeoTable {
        let mut t = NetTable::default();
        for (n, v) in lines {
            t.insert(net(n), v.as_bytes());
        }
        GeoTable::Nets(t)
    }

    fn ranges(lines: &[(&str, &str, &str)]) -> (GeoTable, Vec<Change>) {
        let mut t = RangeTable::default();
        let mut changes = Vec::new();
        for (a, b, v) in lines {
            changes.push(if *a == "default" {
                t.set_default(v.as_bytes())
            } else if *v == "DELETE" {
                t.delete(v4(a), v4(b))
            } else {
                t.insert(v4(a), v4(b), v.as_bytes())
            });
        }
        (GeoTable::Ranges(t), changes)
    }

    fn look(t: &GeoTable, a: GeoAddr) -> String {
        String::from_utf8(t.lookup(a).to_vec()).unwrap()
    }

    #[test]
    fn the_most_specific_network_wins_in_any_order() {
        let t = nets(&[
            ("10.1.2.0/24", "c"),
            ("0.0.0.0/0", "world"),
            ("10.0.0.0/8", "a"),
            ("10.1.0.0/16", "b"),
            ("::/0", "world6"),
            ("2001:db8::/32", "doc"),
        ]);
        assert_eq!(look(&t, ip("10.1.2.3")), "c");
        assert_eq!(look(&t, ip("10.1.3.3")), "b");
        assert_eq!(look(&t, ip("10.2.0.1")), "a");
        assert_eq!(look(&t, ip("192.0.2.1")), "world");
        assert_eq!(look(&t, ip("2001:db8::1")), "doc");
        assert_eq!(look(&t, ip("2001:db9::1")), "world6");
        // A mapped address is its IPv4 address.
        assert_eq!(look(&t, ip("::ffff:10.1.2.3")), "c");
        // No address is 255.255.255.255 in the IPv4 table.
        assert_eq!(look(&t, GeoAddr::None), "world");
        assert_eq!(look(&nets(&[("::/0", "x")]), GeoAddr::None), "");
        assert_eq!(
            look(&nets(&[("255.255.255.255/32", "none")]), GeoAddr::None),
            "none"
        );
    }

    #[test]
    fn network_duplicates_replace_and_deletes_are_exact() {
        let mut t = NetTable::default();
        assert_eq!(t.insert(net("10.0.0.0/8"), b"a"), Change::Done);
        assert_eq!(
            t.insert(net("10.0.0.0/8"), b"b"),
            Change::Replaced(b"a".to_vec())
        );
        assert_eq!(t.delete(net("10.0.0.0/16")), Change::NotFound);
        assert_eq!(t.lookup_v4(v4("10.0.0.1")), b"b");
        assert_eq!(t.delete(net("10.0.0.0/8")), Change::Done);
        assert_eq!(t.lookup_v4(v4("10.0.0.1")), b"");
    }

    #[test]
    fn later_narrower_ranges_carve_out_earlier_wider_ones() {
        let (t, changes) = ranges(&[
            ("default", "", "default"),
            ("127.0.0.0", "127.0.0.255", "test"),
            ("127.0.0.1", "127.0.0.2", "test2"),
            ("127.0.0.1", "127.0.0.1", "loopback"),
        ]);
        assert!(changes.iter().all(|c| *c == Change::Done), "{changes:?}");
        assert_eq!(look(&t, ip("127.0.0.0")), "test");
        assert_eq!(look(&t, ip("127.0.0.1")), "loopback");
        assert_eq!(look(&t, ip("127.0.0.2")), "test2");
        assert_eq!(look(&t, ip("127.0.0.3")), "test");
        assert_eq!(look(&t, ip("127.0.1.0")), "default");
        assert_eq!(look(&t, ip("2001:db8::1")), "default");
        assert_eq!(look(&t, GeoAddr::None), "default");
    }

    #[test]
    fn ranges_that_cross_or_contain_earlier_ones_are_refused() {
        let (_, c) = ranges(&[
            ("127.0.0.10", "127.0.0.20", "a"),
            ("127.0.0.15", "127.0.0.30", "b"),
        ]);
        assert_eq!(
            c[1],
            Change::Overlaps(v4("127.0.0.10").into(), v4("127.0.0.20").into())
        );
        let (_, c) = ranges(&[
            ("127.0.0.10", "127.0.0.20", "a"),
            ("127.0.0.0", "127.0.0.255", "b"),
        ]);
        assert!(matches!(c[1], Change::Overlaps(..)), "{c:?}");
        let (_, c) = ranges(&[
            ("127.0.0.10", "127.0.0.20", "a"),
            ("127.0.0.10", "127.0.0.20", "b"),
            ("default", "", "x"),
            ("default", "", "y"),
        ]);
        assert_eq!(c[1], Change::Replaced(b"a".to_vec()));
        assert_eq!(c[3], Change::Replaced(b"x".to_vec()));
    }

    #[test]
    fn ranges_span_sixteen_bit_blocks_and_delete_by_exact_pieces() {
        let (t, c) = ranges(&[
            ("default", "", "default"),
            ("10.10.3.0", "10.11.2.255", "foo"),
            ("10.12.3.0", "10.13.2.255", "foo2"),
            ("10.10.3.0", "10.11.2.255", "DELETE"),
        ]);
        assert!(c.iter().all(|c| *c == Change::Done), "{c:?}");
        assert_eq!(look(&t, ip("10.11.2.1")), "default");
        assert_eq!(look(&t, ip("10.13.2.1")), "foo2");
        assert_eq!(look(&t, ip("10.12.255.255")), "foo2");
        assert_eq!(look(&t, ip("10.12.3.0")), "foo2");
        assert_eq!(look(&t, ip("10.12.2.255")), "default");
        // Split pieces are deleted one by one; a sub-range is not a piece.
        let (t, c) = ranges(&[
            ("127.0.0.0", "127.0.0.255", "test"),
            ("127.0.0.1", "127.0.0.1", "loopback"),
            ("127.0.0.0", "127.0.0.1", "DELETE"),
            ("127.0.0.0", "127.0.0.0", "DELETE"),
        ]);
        assert_eq!(c[2], Change::NotFound);
        assert_eq!(c[3], Change::Done);
        assert_eq!(look(&t, ip("127.0.0.0")), "");
        assert_eq!(look(&t, ip("127.0.0.1")), "loopback");
        assert_eq!(look(&t, ip("127.0.0.2")), "test");
    }
}
