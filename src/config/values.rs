//! Scalar argument syntax: times (`60s`, `1h 30m`), sizes (`16k`, `1m`),
//! flags (`on`/`off`).
//!
//! These follow nginx's `ngx_parse_time` and `ngx_parse_size`: a bare
//! number of a time is seconds (milliseconds for `*_timeout`s is not a thing:
//! nginx reads `ms` explicitly), units may be combined in decreasing order,
//! and sizes take `k`/`m`/`g` in either case.

use std::net::SocketAddr;
use std::time::Duration;

/// Parses an nginx time value (`10`, `10s`, `500ms`, `1h 30m`, `1d`).
///
/// A bare number means seconds. Units: `ms s m h d w M y`, each used at most
/// once, largest first.
pub fn parse_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut total_ms: u128 = 0;
    let mut i = 0;
    let mut last_rank = usize::MAX;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let value: u128 = s[start..i].parse().ok()?;
        // Unit, or none (seconds) at the very end.
        let (unit_ms, rank, len) = match &bytes[i..] {
            [b'm', b's', ..] => (1, 0, 2),
            [b'y', ..] => (365 * 86_400_000, 7, 1),
            [b'M', ..] => (30 * 86_400_000, 6, 1),
            [b'w', ..] => (7 * 86_400_000, 5, 1),
            [b'd', ..] => (86_400_000, 4, 1),
            [b'h', ..] => (3_600_000, 3, 1),
            [b'm', ..] => (60_000, 2, 1),
            [b's', ..] => (1000, 1, 1),
            [] | [b' ', ..] => (1000, 1, 0),
            _ => return None,
        };
        if rank >= last_rank {
            return None;
        }
        last_rank = rank;
        i += len;
        total_ms = total_ms.checked_add(value.checked_mul(unit_ms)?)?;
    }
    if total_ms > u64::MAX as u128 {
        return None;
    }
    Some(Duration::from_millis(total_ms as u64))
}

/// Parses an nginx time in whole seconds as `ngx_parse_time(.., 1)` does
/// (`expires`): units `y M w d h m s`, largest first, a trailing number
/// counts as seconds, `ms` is refused.
pub fn parse_seconds(s: &str) -> Option<i64> {
    const YEAR: i64 = 365 * 86_400;
    let b = s.as_bytes();
    let (mut value, mut total, mut valid, mut step) = (0i64, 0i64, false, 0u8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            valid = true;
            continue;
        }
        // Each unit's rank (a unit may only follow larger ones) and scale.
        let (rank, scale) = match c {
            b'y' if step == 0 => (1, YEAR),
            b'M' if step < 2 => (2, 30 * 86_400),
            b'w' if step < 3 => (3, 7 * 86_400),
            b'd' if step < 4 => (4, 86_400),
            b'h' if step < 5 => (5, 3600),
            b'm' if b.get(i) == Some(&b's') => return None,
            b'm' if step < 6 => (6, 60),
            b's' | b' ' if step < 7 => (if c == b's' { 7 } else { 8 }, 1),
            _ => return None,
        };
        step = rank;
        total = total.checked_add(value.checked_mul(scale)?)?;
        value = 0;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    total.checked_add(value)
}

/// Parses an nginx size (`1024`, `16k`, `1m`, `2G`).
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses `on`/`off` (case-insensitive, as nginx).
pub fn parse_flag(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("on") {
        Some(true)
    } else if s.eq_ignore_ascii_case("off") {
        Some(false)
    } else {
        None
    }
}

/// Splits `host:port` / `[v6]:port` / `host`; `None` for a bad port.
pub fn split_host_port(s: &str, default_port: u16) -> Option<(&str, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Some((host, default_port));
        }
        let port = after.strip_prefix(':')?.parse().ok()?;
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, port.parse().ok()?)),
        Some(_) => Some((s, default_port)),
        None => Some((s, default_port)),
    }
}

/// Resolves `host[:port]` to socket addresses (IPv4 first, as listed).
/// Port 0 (an ephemeral port) is accepted only where `allow_port_zero`
/// says so: `listen` (tests and embedded use), never for backends.
pub fn resolve_addr(
    s: &str,
    default_port: u16,
    allow_port_zero: bool,
) -> std::result::Result<Vec<SocketAddr>, String> {
    let (host, port) =
        split_host_port(s, default_port).ok_or_else(|| " (invalid port)".to_string())?;
    if port == 0 && !allow_port_zero {
        return Err(" (invalid port)".to_string());
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!(" ({e})"))?
        .collect();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(String::new());
    }
    Ok(addrs)
}

/// `s` without `prefix`, compared without ASCII case; `None` when `s`
/// does not start with it (also when its first bytes are not a whole
/// character).
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_times() {
        assert_eq!(parse_time("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("3600s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_time("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_time("2m5s"), Some(Duration::from_secs(125)));
        assert_eq!(parse_time("5s 1h"), None);
        assert_eq!(parse_time("abc"), None);
        assert_eq!(parse_time("10x"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("-1"), None);
    }

    #[test]
    fn values_parse_seconds_as_expires_reads_them() {
        assert_eq!(parse_seconds("2048"), Some(2048));
        assert_eq!(parse_seconds("15h30m33s"), Some(55_833));
        assert_eq!(parse_seconds("1h 30"), Some(3630));
        assert_eq!(parse_seconds("1y"), Some(365 * 86_400));
        assert_eq!(parse_seconds("1M1w"), Some(37 * 86_400));
        assert_eq!(parse_seconds("0"), Some(0));
        assert_eq!(parse_seconds("500ms"), None);
        assert_eq!(parse_seconds("1s1h"), None);
        assert_eq!(parse_seconds("h"), None);
        assert_eq!(parse_seconds(""), None);
        assert_eq!(parse_seconds("bad"), None);
        assert_eq!(parse_seconds("99999999999999999999"), None);
    }

    #[test]
    fn values_parse_sizes_and_flags() {
        assert_eq!(parse_size("16k"), Some(16384));
        assert_eq!(parse_size("100m"), Some(100 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("1.5m"), None);
        assert_eq!(parse_flag("ON"), Some(true));
        assert_eq!(parse_flag("off"), Some(false));
        assert_eq!(parse_flag("yes"), None);
    }
}
