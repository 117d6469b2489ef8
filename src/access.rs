//! Who the client is, and whether it may come in: `allow`/`deny` rules and
//! the real client address behind trusted proxies (`set_real_ip_from`,
//! `real_ip_header`, `real_ip_recursive`).
//!
//! Addresses are compared in their canonical form: an IPv4 client that
//! reached an IPv6 socket (`::ffff:a.b.c.d`) is an IPv4 client, as nginx
//! treats it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderName;

use crate::http1::Headers;

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, a single address), or
/// `unix:` (connections over UNIX-domain sockets, which Switchyard does not
/// listen on: such a rule never matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    /// IPv4 network and mask.
    V4 {
        /// Network address (host bits cleared).
        addr: u32,
        /// Mask.
        mask: u32,
    },
    /// IPv6 network and mask.
    V6 {
        /// Network address (host bits cleared).
        addr: u128,
        /// Mask.
        mask: u128,
    },
    /// `unix:`.
    Unix,
}

/// Why a CIDR did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrError {
    /// Not an address, or a bad prefix length.
    Invalid,
}

impl Cidr {
    /// Parses `addr` or `addr/bits`. The flag is true when the address had
    /// host bits set beyond the prefix (nginx warns: "low address bits ...
    /// are meaningless"); they are cleared.
    pub fn parse(text: &str) -> Result<(Cidr, bool), CidrError> {
        if text == "unix:" {
            return Ok((Cidr::Unix, false));
        }
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| CidrError::Invalid)?;
        let bits = match bits {
            None => None,
            Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                Some(b.parse::<u32>().map_err(|_| CidrError::Invalid)?)
            }
            Some(_) => return Err(CidrError::Invalid),
        };
        Ok(match ip {
            IpAddr::V4(v4) => {
                let bits = bits.unwrap_or(32);
                if bits > 32 {
                    return Err(CidrError::Invalid);
                }
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                let raw = u32::from(v4);
                (
                    Cidr::V4 {
                        addr: raw & mask,
                        mask,
                    },
                    raw & !mask != 0,
                )
            }
            IpAddr::V6(v6) => {
                let bits = bits.unwrap_or(128);
                if bits > 128 {
                    return Err(CidrError::Invalid);
                }
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let raw = u128::from(v6);
                (
                    Cidr::V6 {
                        addr: raw & mask,
                        mask,
                    },
                    raw & !mask != 0,
                )
            }
        })
    }

    /// Whether `ip` (canonical form) is in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (Cidr::V4 { addr, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *addr,
            (Cidr::V6 { addr, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *addr,
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr::V4 { addr, mask } => {
                write!(
                    f,
                    "{}/{}",
                    std::net::Ipv4Addr::from(*addr),
                    mask.count_ones()
                )
            }
            Cidr::V6 { addr, mask } => {
                write!(
                    f,
                    "{}/{}",
                    std::net::Ipv6Addr::from(*addr),
                    mask.count_ones()
                )
            }
            Cidr::Unix => f.write_str("unix:"),
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// `all`.
    All,
    /// An address block.
    Net(Cidr),
}

/// One `allow` or `deny` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    /// `deny` (else `allow`).
    pub deny: bool,
    /// Which clients.
    pub matches: Match,
}

/// Whether `ip` may proceed: the first rule that matches decides; no
/// match allows.
pub fn allowed(rules: &[AccessRule], ip: IpAddr) -> bool {
    for rule in rules {
        let hit = match rule.matches {
            Match::All => true,
            Match::Net(cidr) => cidr.contains(ip),
        };
        if hit {
            return !rule.deny;
        }
    }
    true
}

/// Where the real client address is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default): one address.
    XRealIp,
    /// `X-Forwarded-For`: a list, read from the right.
    XForwardedFor,
    /// Any other header: one address.
    Other(HeaderName),
}

/// `set_real_ip_from` and companions, for one location.
#[derive(Debug, Clone)]
pub struct RealIp {
    /// Trusted proxies.
    pub from: Vec<Cidr>,
    /// `real_ip_header`.
    pub header: RealIpHeader,
    /// `real_ip_recursive`.
    pub recursive: bool,
}

impl RealIp {
    /// The client address the request claims through trusted proxies, or
    /// `None` when the peer is not trusted or the header is absent or bad.
    /// A port in the header (`addr:port`, `[v6]:port`) is taken; without
    /// one the port is 0.
    pub fn resolve(&self, peer: SocketAddr, headers: &Headers) -> Option<SocketAddr> {
        let name = match &self.header {
            RealIpHeader::XRealIp => HeaderName::from_static("x-real-ip"),
            RealIpHeader::XForwardedFor => http::header::HeaderName::from_static("x-forwarded-for"),
            RealIpHeader::Other(name) => name.clone(),
        };
        if self.header == RealIpHeader::XForwardedFor {
            // Several headers read as one list, in order.
            let mut joined = Vec::new();
            for v in headers.get_all(&name) {
                if !joined.is_empty() {
                    joined.push(b',');
                }
                joined.extend_from_slice(v.as_bytes());
            }
            if joined.is_empty() && !headers.contains(&name) {
                return None;
            }
            self.walk(peer, &joined)
        } else {
            let value = headers.get(&name)?;
            self.walk(peer, value.as_bytes())
        }
    }

    /// nginx's walk from the right of the list: each address is believed
    /// while the one that reported it is trusted (only the last one without
    /// `real_ip_recursive`).
    fn walk(&self, peer: SocketAddr, mut list: &[u8]) -> Option<SocketAddr> {
        let trusted = |ip: IpAddr| self.from.iter().any(|c| c.contains(ip));
        let mut current = peer;
        let mut found = None;
        loop {
            if !trusted(current.ip()) {
                return found;
            }
            // The last element, without trailing separators.
            let end = list
                .iter()
                .rposition(|&b| b != b' ' && b != b',')
                .map_or(0, |i| i + 1);
            let item_start = list[..end]
                .iter()
                .rposition(|&b| b == b' ' || b == b',')
                .map_or(0, |i| i + 1);
            let Some(addr) = parse_addr_port(&list[item_start..end]) else {
                return found;
            };
            current = addr;
            found = Some(addr);
            list = &list[..item_start];
            if !self.recursive || list.iter().all(|&b| b == b' ' || b == b',') {
                return found;
            }
        }
    }
}

/// `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]` or `[v6]:port`.
fn parse_addr_port(text: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty() {
        return None;
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(canonical(ip), 0));
    }
    let addr: SocketAddr = text.parse().ok()?;
    Some(SocketAddr::new(canonical(addr.ip()), addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let (c, low) = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(!low);
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(
            c.contains(ip("::ffff:10.1.0.9")),
            "v4-mapped clients are v4"
        );
        let (c, low) = Cidr::parse("192.168.1.77/24").unwrap();
        assert!(low, "host bits set");
        assert_eq!(c.to_string(), "192.168.1.0/24");
        let (c, _) = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:1::5")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let (c, _) = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(c.contains(ip("203.0.113.9")));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .0
                .contains(ip("127.0.0.1"))
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/",
            "10.0.0.0/x",
        ] {
            assert_eq!(Cidr::parse(bad), Err(CidrError::Invalid), "{bad}");
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let rule = |deny, s: &str| AccessRule {
            deny,
            matches: Match::Net(Cidr::parse(s).unwrap().0),
        };
        let rules = [
            rule(true, "192.168.1.1"),
            rule(false, "192.168.1.0/24"),
            AccessRule {
                deny: true,
                matches: Match::All,
            },
        ];
        assert!(!allowed(&rules, ip("192.168.1.1")));
        assert!(allowed(&rules, ip("192.168.1.2")));
        assert!(!allowed(&rules, ip("10.0.0.1")));
        assert!(allowed(&[], ip("10.0.0.1")));
    }

    fn realip(from: &[&str], header: RealIpHeader, recursive: bool) -> RealIp {
        RealIp {
            from: from.iter().map(|s| Cidr::parse(s).unwrap().0).collect(),
            header,
            recursive,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.append_str(
                n,
                crate::http1::headers::HeaderValue::from_bytes(v.as_bytes()),
            );
        }
        h
    }

    #[test]
    fn real_ip_follows_trusted_proxies_only() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let r = realip(&["127.0.0.1", "10.0.0.0/8"], RealIpHeader::XRealIp, false);
        let h = headers(&[("X-Real-IP", "203.0.113.5")]);
        assert_eq!(r.resolve(peer, &h), Some("203.0.113.5:0".parse().unwrap()));
        assert_eq!(
            r.resolve(stranger, &h),
            None,
            "untrusted peers are not believed"
        );
        assert_eq!(r.resolve(peer, &headers(&[("X-Real-IP", "junk")])), None);
        let h = headers(&[("X-Real-IP", "[2001:db8::1]:8080")]);
        assert_eq!(
            r.resolve(peer, &h),
            Some("[2001:db8::1]:8080".parse().unwrap())
        );

        let xff = headers(&[("X-Forwarded-For", "203.0.113.5, 10.0.0.2, 10.0.0.3")]);
        let plain = realip(
            &["127.0.0.1", "10.0.0.0/8"],
            RealIpHeader::XForwardedFor,
            false,
        );
        assert_eq!(
            plain.resolve(peer, &xff),
            Some("10.0.0.3:0".parse().unwrap())
        );
        let deep = realip(
            &["127.0.0.1", "10.0.0.0/8"],
            RealIpHeader::XForwardedFor,
            true,
        );
        assert_eq!(
            deep.resolve(peer, &xff),
            Some("203.0.113.5:0".parse().unwrap())
        );
        // All trusted: the leftmost one.
        let all = headers(&[("X-Forwarded-For", "10.0.0.1,10.0.0.2")]);
        assert_eq!(
            deep.resolve(peer, &all),
            Some("10.0.0.1:0".parse().unwrap())
        );
        // Several headers are one list.
        let split = headers(&[
            ("X-Forwarded-For", "203.0.113.5"),
            ("X-Forwarded-For", "10.0.0.9"),
        ]);
        assert_eq!(
            deep.resolve(peer, &split),
            Some("203.0.113.5:0".parse().unwrap())
        );
        // A bad element stops the walk at the last good address.
        let bad = headers(&[("X-Forwarded-For", "junk, 10.0.0.7")]);
        assert_eq!(
            deep.resolve(peer, &bad),
            Some("10.0.0.7:0".parse().unwrap())
        );
        let custom = realip(
            &["127.0.0.1"],
            RealIpHeader::Other(HeaderName::from_static("cf-connecting-ip")),
            false,
        );
        let h = headers(&[("CF-Connecting-IP", "192.0.2.44")]);
        assert_eq!(
            custom.resolve(peer, &h),
            Some("192.0.2.44:0".parse().unwrap())
        );
    }
}
