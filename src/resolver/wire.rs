//! DNS messages as nginx's resolver writes and reads them: one question
//! per query (A or AAAA, recursion desired), and responses checked the way
//! `ngx_resolver_process_response` checks them, so that the same answers
//! are used, ignored or failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qtype {
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
}

impl Qtype {
    fn code(self) -> u16 {
        match self {
            Qtype::A => 1,
            Qtype::Aaaa => 28,
        }
    }
}

const CNAME: u16 = 5;
const DNAME: u16 = 39;

/// A query for `name` (already lower case, without a trailing dot).
/// `None` when a label is empty or over 63 bytes (nginx, like most stub
/// resolvers, does not cap the whole name at 255).
pub fn query(id: u16, name: &str, qtype: Qtype) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.code().to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    Some(out)
}

/// What a response means for the query it answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Not an answer to this query, or unusable: logged and ignored, the
    /// query still waits (nginx's behaviour; it may be resent).
    Ignored(String),
    /// Truncated over UDP: ask again over TCP.
    Truncated,
    /// An error code from the server (2 server failure, 3 no such name,
    /// 4 not implemented, 5 refused): the name fails.
    Failed(u8),
    /// Addresses, with the smallest TTL of the answer.
    Addresses(Vec<IpAddr>, u32),
    /// Only a CNAME: resolve its target (TTL of the answer).
    Cname(String, u32),
    /// No record of the type asked for (an empty answer): nginx's "no such
    /// name" once both families say so.
    Empty,
}

/// Reads `buf` as the response to query `id` for `name` and `qtype`.
pub fn parse(buf: &[u8], id: u16, name: &str, qtype: Qtype, tcp: bool) -> Reply {
    if buf.len() < 12 {
        return Reply::Ignored("short DNS response".into());
    }
    let ident = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    let nqs = u16::from_be_bytes([buf[4], buf[5]]);
    let nan = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
    let trunc = flags & 0x0200 != 0;
    if flags & 0xf870 != 0x8000 || (trunc && tcp) {
        return Reply::Ignored(format!(
            "invalid {} DNS response {ident} fl:{flags:04X}",
            if tcp { "TCP" } else { "UDP" }
        ));
    }
    let code = (flags & 0xf) as u8;
    if code == 1 {
        // A format error names no question: nginx logs it and goes on
        // waiting.
        return Reply::Ignored(format!(
            "DNS error (1: Format error), query id:{ident}, name:\"{name}\""
        ));
    }
    if code > 5 {
        return Reply::Ignored(format!(
            "DNS error ({code}: {}), query id:{ident}",
            strerror(u16::from(code))
        ));
    }
    if nqs != 1 {
        return Reply::Ignored("invalid number of questions in DNS response".into());
    }
    // The question: plain labels, no compression.
    let mut i = 12;
    loop {
        let Some(&len) = buf.get(i) else {
            return Reply::Ignored("short DNS response".into());
        };
        if len & 0xc0 != 0 {
            return Reply::Ignored("unexpected compression pointer in DNS response".into());
        }
        if len == 0 {
            break;
        }
        i += 1 + usize::from(len);
    }
    if i == 12 {
        return Reply::Ignored("zero-length domain name in DNS response".into());
    }
    let asked = match read_name(buf, 12) {
        Some((n, _)) => n,
        None => return Reply::Ignored("short DNS response".into()),
    };
    i += 1;
    if i + 4 + nan * 12 > buf.len() {
        return Reply::Ignored("short DNS response".into());
    }
    let rtype = u16::from_be_bytes([buf[i], buf[i + 1]]);
    let rclass = u16::from_be_bytes([buf[i + 2], buf[i + 3]]);
    if rclass != 1 {
        return Reply::Ignored(format!("unknown query class {rclass} in DNS response"));
    }
    if !asked.eq_ignore_ascii_case(name) || rtype != qtype.code() {
        return Reply::Ignored(format!("unexpected DNS response for {asked}"));
    }
    if ident != id {
        return Reply::Ignored(format!(
            "wrong ident {ident} in DNS response for {asked}, expect {id}"
        ));
    }
    if trunc {
        return Reply::Truncated;
    }
    if code != 0 {
        return Reply::Failed(code);
    }
    if nan == 0 {
        return Reply::Empty;
    }
    answers(buf, i + 4, nan, qtype)
}

/// The answer section: addresses of the type asked for, a CNAME, the
/// smallest TTL.
fn answers(buf: &[u8], mut i: usize, nan: usize, qtype: Qtype) -> Reply {
    let mut addrs = Vec::new();
    let mut cname = None;
    let mut ttl = u32::MAX;
    for _ in 0..nan {
        let start = i;
        // The owner name: labels, ended by a zero or a pointer.
        loop {
            let Some(&len) = buf.get(i) else {
                return Reply::Ignored("short DNS response".into());
            };
            if len & 0xc0 != 0 {
                i += 2;
                break;
            }
            i += 1;
            if len == 0 {
                if i - start < 2 {
                    return Reply::Ignored("invalid name in DNS response".into());
                }
                break;
            }
            i += usize::from(len);
        }
        if i + 10 >= buf.len() {
            return Reply::Ignored("short DNS response".into());
        }
        let rtype = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let class = u16::from_be_bytes([buf[i + 2], buf[i + 3]]);
        let rttl = i32::from_be_bytes([buf[i + 4], buf[i + 5], buf[i + 6], buf[i + 7]]);
        let len = usize::from(u16::from_be_bytes([buf[i + 8], buf[i + 9]]));
        if class != 1 {
            return Reply::Ignored(format!("unexpected RR class {class} in DNS response"));
        }
        ttl = ttl.min(rttl.max(0) as u32);
        i += 10;
        match (rtype, qtype) {
            (1, Qtype::A) | (28, Qtype::Aaaa) => {
                let want = if qtype == Qtype::A { 4 } else { 16 };
                if len != want {
                    return Reply::Ignored(format!(
                        "invalid {} record in DNS response",
                        if qtype == Qtype::A { "A" } else { "AAAA" }
                    ));
                }
                let Some(data) = buf.get(i..i + len) else {
                    return Reply::Ignored("short DNS response".into());
                };
                addrs.push(if want == 4 {
                    IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))
                } else {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(data);
                    IpAddr::V6(Ipv6Addr::from(b))
                });
            }
            (1, _) => return Reply::Ignored("unexpected A record in DNS response".into()),
            (28, _) => return Reply::Ignored("unexpected AAAA record in DNS response".into()),
            (CNAME, _) => cname = Some(i),
            (DNAME, _) => {}
            (other, _) => {
                // nginx logs and skips records it does not know.
                let _ = other;
            }
        }
        i += len;
    }
    if !addrs.is_empty() {
        return Reply::Addresses(addrs, ttl);
    }
    match cname.and_then(|at| read_name(buf, at)) {
        Some((target, _)) => Reply::Cname(target, ttl),
        None if cname.is_some() => Reply::Ignored("invalid CNAME in DNS response".into()),
        None => Reply::Ignored("no A or CNAME types in DNS response".into()),
    }
}

/// A name at `at`, following compression pointers (a bounded number of
/// times), lower-cased; and where the name ends in place.
fn read_name(buf: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    let mut hops = 0;
    loop {
        let len = *buf.get(at)?;
        if len & 0xc0 == 0xc0 {
            let ptr = usize::from(u16::from_be_bytes([len, *buf.get(at + 1)?]) & 0x3fff);
            end.get_or_insert(at + 2);
            hops += 1;
            if hops > 128 {
                return None;
            }
            at = ptr;
            continue;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        if len == 0 {
            return Some((out, end.unwrap_or(at + 1)));
        }
        let label = buf.get(at + 1..at + 1 + usize::from(len))?;
        if !out.is_empty() {
            out.push('.');
        }
        for &c in label {
            out.push(char::from(c.to_ascii_lowercase()));
        }
        if out.len() > 1024 {
            return None;
        }
        at += 1 + usize::from(len);
    }
}

/// nginx's texts for DNS error codes and its timeout.
pub fn strerror(code: u16) -> &'static str {
    match code {
        1 => "Format error",
        2 => "Server failure",
        3 => "Host not found",
        4 => "Unimplemented",
        5 => "Operation refused",
        110 => "Operation timed out",
        _ => "Unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `q` with `flags`, answers appended as raw records.
    fn response(q: &[u8], flags: u16, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut r = q.to_vec();
        r[2..4].copy_from_slice(&flags.to_be_bytes());
        r[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for a in answers {
            r.extend_from_slice(a);
        }
        r
    }

    fn a_record(ttl: u32, ip: [u8; 4]) -> Vec<u8> {
        let mut r = vec![0xc0, 0x0c, 0, 1, 0, 1];
        r.extend_from_slice(&ttl.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&ip);
        r
    }

    #[test]
    fn wire_addresses_cnames_and_errors() {
        let q = query(7, "a.example.net", Qtype::A).unwrap();
        let r = response(
            &q,
            0x8180,
            &[a_record(60, [127, 0, 0, 1]), a_record(30, [127, 0, 0, 2])],
        );
        assert_eq!(
            parse(&r, 7, "a.example.net", Qtype::A, false),
            Reply::Addresses(
                vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
                30
            )
        );
        // Another id, another name, another type: not ours.
        assert!(
            matches!(parse(&r, 8, "a.example.net", Qtype::A, false), Reply::Ignored(m) if m.starts_with("wrong ident 7"))
        );
        assert!(matches!(
            parse(&r, 7, "b.example.net", Qtype::A, false),
            Reply::Ignored(_)
        ));
        assert!(matches!(
            parse(&r, 7, "a.example.net", Qtype::Aaaa, false),
            Reply::Ignored(_)
        ));
        // Case does not matter.
        assert!(matches!(
            parse(&r, 7, "A.Example.NET", Qtype::A, false),
            Reply::Addresses(..)
        ));
        // Error codes, truncation, emptiness.
        assert_eq!(
            parse(
                &response(&q, 0x8183, &[]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Failed(3)
        );
        assert_eq!(
            parse(
                &response(&q, 0x8382, &[]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Truncated
        );
        assert!(matches!(
            parse(
                &response(&q, 0x8380, &[]),
                7,
                "a.example.net",
                Qtype::A,
                true
            ),
            Reply::Ignored(_)
        ));
        assert_eq!(
            parse(
                &response(&q, 0x8180, &[]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Empty
        );
        assert!(matches!(
            parse(
                &response(&q, 0x8181, &[]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Ignored(_)
        ));
        // A CNAME to "alias" + the question's parent (offset 0x0e: "example.net").
        let mut cname = vec![0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 9, 0, 8, 5];
        cname.extend_from_slice(b"alias");
        cname.extend_from_slice(&[0xc0, 0x0e]);
        assert_eq!(
            parse(
                &response(&q, 0x8180, &[cname]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Cname("alias.example.net".into(), 9)
        );
        // A zero-length A record, a short message.
        let mut bad = a_record(60, [1, 2, 3, 4]);
        bad.truncate(10);
        bad.extend_from_slice(&[0, 0]);
        assert!(matches!(
            parse(
                &response(&q, 0x8180, &[bad]),
                7,
                "a.example.net",
                Qtype::A,
                false
            ),
            Reply::Ignored(_)
        ));
        assert!(matches!(
            parse(&r[..20], 7, "a.example.net", Qtype::A, false),
            Reply::Ignored(_)
        ));
    }

    #[test]
    fn wire_names_must_fit() {
        assert!(query(1, &"a".repeat(63), Qtype::A).is_some());
        assert!(query(1, &"a".repeat(64), Qtype::A).is_none());
        assert!(query(1, "a..b", Qtype::A).is_none());
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(query(1, &long, Qtype::A).is_some());
    }
}
