//! Who the client is, and whether it may come in: `allow`/`deny` rules,
//! the real client address behind trusted proxies (`set_real_ip_from`,
//! `real_ip_header`, `real_ip_recursive`), and passwords (`auth_basic`).
//!
//! Addresses are compared in their canonical form: an IPv4 client that
//! reached an IPv6 socket (`::ffff:a.b.c.d`) is an IPv4 client, as nginx
//! treats it.

pub mod basic;
pub mod crypt;

use http::HeaderName;

use crate::config::{AccessRule, Match, RealIp, RealIpHeader};
use crate::http1::Headers;
use crate::net::{ConnAddr, forwarded_addr};
use crate::response::Reply;

/// What one step of the access phase (`allow`/`deny`, `auth_basic`,
/// `auth_request`) makes of a request; `satisfy` combines them.
pub enum Verdict {
    /// The step does not apply here.
    Declined,
    /// The step lets the request through.
    Allowed,
    /// The step refuses it with this answer (401, 403, or 500 when the
    /// step itself failed).
    Refused(Reply),
}

/// What `allow`/`deny` rules make of `client`: the first rule that
/// matches decides; when none matches they do not apply (under
/// `satisfy any` the other steps then decide).
pub fn decide(rules: &[AccessRule], client: ConnAddr) -> Verdict {
    for rule in rules {
        let hit = match rule.matches {
            Match::All => true,
            Match::Net(cidr) => client.in_block(&cidr),
        };
        if hit {
            return if rule.deny {
                Verdict::Refused(Reply::error(403, true))
            } else {
                Verdict::Allowed
            };
        }
    }
    Verdict::Declined
}

impl RealIp {
    /// The client address the request claims through trusted proxies, or
    /// `None` when the peer is not trusted or the header is absent or bad.
    /// A port in the header (`addr:port`, `[v6]:port`) is taken; without
    /// one the port is 0.
    pub fn resolve(&self, peer: ConnAddr, headers: &Headers) -> Option<ConnAddr> {
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
            forwarded_addr(peer, &joined, &self.from, self.recursive)
        } else {
            let value = headers.get(&name)?;
            forwarded_addr(peer, value.as_bytes(), &self.from, self.recursive)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;
    use std::net::{IpAddr, SocketAddr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn inet(s: &str) -> ConnAddr {
        ConnAddr::Inet(s.parse().unwrap())
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
        let verdict = |rules: &[AccessRule], s| match decide(
            rules,
            ConnAddr::Inet(SocketAddr::new(ip(s), 0)),
        ) {
            Verdict::Declined => "declined",
            Verdict::Allowed => "allowed",
            Verdict::Refused(r) if r.status == 403 => "refused",
            Verdict::Refused(_) => "other",
        };
        assert_eq!(verdict(&rules, "192.168.1.1"), "refused");
        assert_eq!(verdict(&rules, "192.168.1.2"), "allowed");
        assert_eq!(verdict(&rules, "10.0.0.1"), "refused");
        // No rule matching is no verdict (`satisfy any` asks the others).
        assert_eq!(verdict(&rules[..2], "10.0.0.1"), "declined");
        assert_eq!(verdict(&[], "10.0.0.1"), "declined");
    }

    #[test]
    fn unix_clients_match_all_and_unix_only() {
        let rule = |deny, m| AccessRule { deny, matches: m };
        let unix = Match::Net(Cidr::Unix);
        let everyone_v4 = Match::Net(Cidr::parse("0.0.0.0/0").unwrap().0);
        let refused = |rules: &[AccessRule], who| matches!(decide(rules, who), Verdict::Refused(_));
        let local = ConnAddr::Unix;
        assert!(refused(&[rule(true, unix)], local));
        assert!(!refused(&[rule(true, unix)], inet("127.0.0.1:1")));
        assert!(refused(&[rule(true, Match::All)], local));
        // No address block holds a unix client, not even 0.0.0.0/0.
        assert!(!refused(&[rule(true, everyone_v4)], local));
        // `set_real_ip_from unix:` trusts what a unix client reports.
        let r = realip(&["unix:"], RealIpHeader::XRealIp, false);
        let h = headers(&[("X-Real-IP", "192.0.2.1")]);
        assert_eq!(r.resolve(local, &h), Some(inet("192.0.2.1:0")));
        assert_eq!(r.resolve(inet("127.0.0.1:1"), &h), None);
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
        let peer = inet("127.0.0.1:5000");
        let stranger = inet("198.51.100.1:5000");
        let r = realip(&["127.0.0.1", "10.0.0.0/8"], RealIpHeader::XRealIp, false);
        let h = headers(&[("X-Real-IP", "203.0.113.5")]);
        assert_eq!(r.resolve(peer, &h), Some(inet("203.0.113.5:0")));
        assert_eq!(
            r.resolve(stranger, &h),
            None,
            "untrusted peers are not believed"
        );
        assert_eq!(r.resolve(peer, &headers(&[("X-Real-IP", "junk")])), None);
        let h = headers(&[("X-Real-IP", "[2001:db8::1]:8080")]);
        assert_eq!(r.resolve(peer, &h), Some(inet("[2001:db8::1]:8080")));

        let xff = headers(&[("X-Forwarded-For", "203.0.113.5, 10.0.0.2, 10.0.0.3")]);
        let plain = realip(
            &["127.0.0.1", "10.0.0.0/8"],
            RealIpHeader::XForwardedFor,
            false,
        );
        assert_eq!(plain.resolve(peer, &xff), Some(inet("10.0.0.3:0")));
        let deep = realip(
            &["127.0.0.1", "10.0.0.0/8"],
            RealIpHeader::XForwardedFor,
            true,
        );
        assert_eq!(deep.resolve(peer, &xff), Some(inet("203.0.113.5:0")));
        // All trusted: the leftmost one.
        let all = headers(&[("X-Forwarded-For", "10.0.0.1,10.0.0.2")]);
        assert_eq!(deep.resolve(peer, &all), Some(inet("10.0.0.1:0")));
        // Several headers are one list.
        let split = headers(&[
            ("X-Forwarded-For", "203.0.113.5"),
            ("X-Forwarded-For", "10.0.0.9"),
        ]);
        assert_eq!(deep.resolve(peer, &split), Some(inet("203.0.113.5:0")));
        // A bad element stops the walk at the last good address.
        let bad = headers(&[("X-Forwarded-For", "junk, 10.0.0.7")]);
        assert_eq!(deep.resolve(peer, &bad), Some(inet("10.0.0.7:0")));
        let custom = realip(
            &["127.0.0.1"],
            RealIpHeader::Other(HeaderName::from_static("cf-connecting-ip")),
            false,
        );
        let h = headers(&[("CF-Connecting-IP", "192.0.2.44")]);
        assert_eq!(custom.resolve(peer, &h), Some(inet("192.0.2.44:0")));
    }
}
