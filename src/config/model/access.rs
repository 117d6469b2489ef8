//! `allow`/`deny` rules, the trusted-proxy settings of `realip`, password
//! checks and `limit_except`, as loaded. Evaluation is [`crate::access`]
//! and the access phase of [`crate::handler`].
//!
//! Addresses are compared in their canonical form: an IPv4 client that
//! reached an IPv6 socket (`::ffff:a.b.c.d`) is an IPv4 client, as nginx
//! treats it.

use std::fmt;
use std::net::IpAddr;

use std::path::PathBuf;

use http::HeaderName;

use crate::config::template::Template;

/// `auth_basic` and `auth_basic_user_file`.
#[derive(Debug)]
pub struct AuthBasic {
    /// The realm; `off` (possibly from a variable) turns the check off.
    pub realm: Template,
    /// The password file (absolute when written without variables).
    pub user_file: Template,
    /// What a relative path from a variable is relative to.
    pub conf_dir: PathBuf,
}

/// What `auth_request_set` sets: a variable of the configuration, or one
/// of the built-in variables that may be set (`$args`, `$limit_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTarget {
    /// An indexed variable.
    Slot(usize),
    /// `$args`.
    Args,
    /// `$limit_rate`.
    LimitRate,
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, a single address), or
/// `unix:` (clients on UNIX-domain sockets, `listen unix:`).
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

/// The canonical form of an address: IPv4-mapped IPv6 shown as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
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
}
