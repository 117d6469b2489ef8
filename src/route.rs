//! Routing a request: which server (by `Host`), which location (by URI),
//! in nginx's order, and the URI normalisation that precedes it.

use std::sync::Arc;

use crate::config::{ListenGroup, Location, LocationMatch, Locations, ProxyPass, Server};
use crate::request::RequestCtx;

/// A `Host` that nginx would reject (400 "client sent invalid host header").
#[derive(Debug, PartialEq, Eq)]
pub struct BadHost;

/// The host a request is for: the absolute-form target's authority if
/// there is one, else `Host`; lowercased, without port or trailing dot.
/// `Err` for an invalid host (nginx answers 400 "client sent invalid host
/// header"); a `Host` header is checked even when the target names the
/// host, as nginx does.
pub fn request_host(host_header: Option<&[u8]>, target: &str) -> Result<Option<String>, BadHost> {
    let from_header = host_header.map(validate_host).transpose()?;
    match split_absolute(target) {
        Some((authority, _)) => validate_host(authority.as_bytes()).map(Some),
        None => Ok(from_header),
    }
}

/// Splits an absolute-form target (`scheme://authority/path?query`) into
/// the authority and the rest (`/path?query`, `?query` or empty). The
/// scheme is any run of letters, in any case, as nginx's request-line
/// parser takes it. `None` for an origin-form target.
pub fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = target.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(rest.split_at(end))
}

/// Whether an absolute-form authority has the shape nginx's request-line
/// parser accepts: a name of letters, digits, dots and hyphens (or a
/// bracketed IPv6 literal), then an optional port of digits.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
        let Some(close) = literal.find(']') else {
            return false;
        };
        let inside = &literal[..close];
        let ok = !inside.is_empty()
            && inside
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":.-_~!$&'()*+,;=".contains(&b));
        if !ok {
            return false;
        }
        ("x", &literal[close + 1..])
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// nginx's `ngx_http_validate_host`: rejects `..`, `/`, NUL and other
/// control characters and spaces anywhere in the value (port included),
/// then strips the port (after a bracketed IPv6 literal, the first `:`
/// outside it) and a trailing dot, and lowercases.
pub fn validate_host(raw: &[u8]) -> Result<String, BadHost> {
    #[derive(PartialEq)]
    enum State {
        Name,
        Literal,
        Port,
    }
    let mut state = State::Name;
    let mut dot_pos: Option<usize> = None;
    let mut host_len = raw.len();
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'.' => {
                if i > 0 && dot_pos == Some(i - 1) {
                    return Err(BadHost);
                }
                dot_pos = Some(i);
            }
            b':' if state == State::Name => {
                host_len = i;
                state = State::Port;
            }
            b'[' if i == 0 => state = State::Literal,
            b']' if state == State::Literal => {
                host_len = i + 1;
                state = State::Port;
            }
            b'/' => return Err(BadHost),
            c if c <= 0x20 || c == 0x7f => return Err(BadHost),
            _ => {}
        }
    }
    if host_len > 0 && dot_pos == Some(host_len - 1) {
        host_len -= 1;
    }
    if host_len == 0 {
        return Err(BadHost);
    }
    Ok(raw[..host_len]
        .iter()
        .map(|&c| c.to_ascii_lowercase() as char)
        .collect())
}

/// Picks the server of `group` for `host`, setting regex captures from a
/// regex `server_name`.
pub fn select_server(
    group: &ListenGroup,
    host: Option<&str>,
    ctx_caps: &mut Option<RegexHit>,
) -> Arc<Server> {
    if let Some(host) = host
        && let Some((i, re)) = group.names.find(host)
    {
        if let Some(re) = re {
            *ctx_caps = Some(RegexHit {
                regex: re.clone(),
                subject: host.to_string(),
            });
        }
        return group.servers[i].clone();
    }
    group.servers[group.default_server].clone()
}

/// A regex that matched during routing, applied to the request context
/// once it exists.
pub struct RegexHit {
    /// The regex.
    pub regex: Arc<crate::config::CompiledRegex>,
    /// What it matched.
    pub subject: String,
}

/// Why a target could not become a URI.
#[derive(Debug, PartialEq, Eq)]
pub struct BadUri;

/// Splits a request target into its normalised path (`$uri`) and query
/// (`$args`), nginx's `ngx_http_parse_complex_uri`: `%XX` decoded, `//`
/// merged, `.` and `..` segments resolved (a `..` above the root is an
/// error), and an absolute-form target reduced to its path.
pub fn normalize_target(target: &str) -> Result<(String, Option<String>), BadUri> {
    let t = match split_absolute(target) {
        Some((authority, _)) if !valid_authority(authority) => return Err(BadUri),
        Some((_, rest)) => rest,
        None => target,
    };
    let (path, args) = match t.find('?') {
        Some(i) => (&t[..i], Some(t[i + 1..].to_string())),
        None => (t, None),
    };
    // `http://host` and `http://host?query` have the empty path `/`.
    let path = if path.is_empty() && t.len() < target.len() {
        "/"
    } else {
        path
    };
    if !path.starts_with('/') {
        return Err(BadUri);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            match (
                bytes.get(i + 1).and_then(|c| hex(*c)),
                bytes.get(i + 2).and_then(|c| hex(*c)),
            ) {
                (Some(h), Some(l)) => {
                    let b = (h * 16 + l) as u8;
                    if b == 0 {
                        return Err(BadUri);
                    }
                    decoded.push(b);
                    i += 3;
                    continue;
                }
                _ => return Err(BadUri),
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|b| *b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(BadUri);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() || trailing {
        out.push(b'/');
    }
    let uri = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok((uri, args))
}

/// Escapes a decoded URI for sending upstream: nginx's `NGX_ESCAPE_URI`
/// table (control bytes, space, `"`, `#`, `%`, `<`, `>`, `?`, `\\`, `^`,
/// `` ` ``, `{`, `|`, `}`, DEL and non-ASCII become `%XX`).
pub fn escape_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    for &b in uri.as_bytes() {
        let escape = b <= 0x20 || b >= 0x7f || b"\"#%<>?\\^`{|}".contains(&b);
        if escape {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The outcome of a location search.
pub enum Found {
    /// A location matched.
    Location(Arc<Location>),
    /// `location /dir/` with `proxy_pass` was asked for as `/dir`:
    /// redirect to the slash form (nginx's auto redirect).
    Redirect(Arc<Location>),
    /// Nothing matched; the server level handles it.
    None,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Rc {
    /// Final (exact or regex match).
    Ok,
    /// A prefix matched (regexes may still win).
    Again,
    /// Nothing matched here.
    Declined,
}

/// The path of an internal redirect a backend asked for
/// (`X-Accel-Redirect`), checked as nginx's `ngx_http_parse_unsafe_uri`
/// does: `%XX` escapes decoded, then refused (`None`) when empty, holding
/// a NUL, or climbing out with `..` as a segment.
pub fn unsafe_uri_checked(uri: &str) -> Option<String> {
    fn climbs(p: &[u8]) -> bool {
        let dotdot = |rest: &[u8]| rest.starts_with(b"..") && (rest.len() == 2 || rest[2] == b'/');
        dotdot(p)
            || p.iter()
                .enumerate()
                .any(|(i, &c)| c == b'/' && dotdot(&p[i + 1..]))
    }
    let raw = uri.as_bytes();
    if raw.is_empty() || raw.contains(&0) || climbs(raw) {
        return None;
    }
    if !raw.contains(&b'%') {
        return Some(uri.to_string());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        if raw[i] == b'%'
            && let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    if out.is_empty() || out.contains(&0) || climbs(&out) {
        return None;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// nginx's `ngx_http_core_find_location`: exact match first; else the
/// longest prefix, then its nested locations; then regexes in order unless
/// the prefix was `^~`.
pub fn find_location(locs: &Locations, uri: &str, ctx: &mut RequestCtx) -> Found {
    if let Some(redirect) = auto_redirect(locs, uri) {
        return Found::Redirect(redirect);
    }
    match search(locs, uri, ctx) {
        (Some(l), _) => Found::Location(l),
        (None, _) => Found::None,
    }
}

fn search(locs: &Locations, uri: &str, ctx: &mut RequestCtx) -> (Option<Arc<Location>>, Rc) {
    // Exact locations win outright.
    for l in &locs.prefix {
        if let LocationMatch::Exact(p) = &l.matcher
            && p == uri
        {
            return (Some(l.clone()), Rc::Ok);
        }
    }
    let mut found: Option<Arc<Location>> = None;
    let mut rc = Rc::Declined;
    let mut noregex = false;
    // `prefix` is sorted longest first.
    let best = locs.prefix.iter().find(|l| match &l.matcher {
        LocationMatch::Prefix(p) | LocationMatch::PrefixNoRegex(p) => uri.starts_with(p.as_str()),
        _ => false,
    });
    if let Some(best) = best {
        found = Some(best.clone());
        rc = Rc::Again;
        noregex = matches!(best.matcher, LocationMatch::PrefixNoRegex(_));
        let (nested, nested_rc) = search(&best.children, uri, ctx);
        if nested_rc == Rc::Ok {
            return (nested, Rc::Ok);
        }
        if nested.is_some() {
            found = nested;
        }
    }
    if !noregex {
        for l in &locs.regex {
            if let LocationMatch::Regex(re) = &l.matcher
                && ctx.regex_match(re, uri.as_bytes())
            {
                let (nested, _) = search(&l.children, uri, ctx);
                return (Some(nested.unwrap_or_else(|| l.clone())), Rc::Ok);
            }
        }
    }
    (found, rc)
}

/// `uri + "/"` names a prefix location that proxies, and nothing matches
/// `uri` itself as well: nginx redirects (301) to the slash form.
fn auto_redirect(locs: &Locations, uri: &str) -> Option<Arc<Location>> {
    let mut candidate = None;
    for l in &locs.prefix {
        let Some(p) = l.path() else { continue };
        if p == uri {
            return None;
        }
        if p.len() == uri.len() + 1
            && p.ends_with('/')
            && p.starts_with(uri)
            && l.conf.proxy_pass.is_some()
        {
            candidate = Some(l.clone());
        }
    }
    let c = candidate?;
    // A longer or equal prefix match elsewhere would win; a shorter prefix
    // does not prevent the redirect (nginx's tree walk keeps DONE).
    Some(c)
}

/// Whether a location's `proxy_pass` has a URI part that replaces the
/// matched prefix.
pub fn replaces_prefix(target: &ProxyPass) -> bool {
    matches!(target, ProxyPass::Static(t) if t.uri.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_normalizes_uris_like_nginx() {
        let n = |t: &str| normalize_target(t);
        assert_eq!(n("/a/b?x=1"), Ok(("/a/b".into(), Some("x=1".into()))));
        assert_eq!(n("/a//b/./c/../d"), Ok(("/a/b/d".into(), None)));
        assert_eq!(n("/a%20b/"), Ok(("/a b/".into(), None)));
        assert_eq!(n("/a/.."), Ok(("/".into(), None)));
        assert_eq!(
            n("http://example.com/x?y"),
            Ok(("/x".into(), Some("y".into())))
        );
        assert_eq!(n("/../etc/passwd"), Err(BadUri));
        assert_eq!(n("/%zz"), Err(BadUri));
        assert_eq!(n("/%00"), Err(BadUri));
        assert_eq!(n("*"), Err(BadUri));
        assert_eq!(n("/"), Ok(("/".into(), None)));
        assert_eq!(n("HTTP://h.example"), Ok(("/".into(), None)));
        assert_eq!(
            n("http://h.example?a=/b"),
            Ok(("/".into(), Some("a=/b".into())))
        );
        assert_eq!(n("http://[::1]:80/v"), Ok(("/v".into(), None)));
        assert_eq!(n("http://h_x/"), Err(BadUri));
        assert_eq!(n("http://h:8x/"), Err(BadUri));
        assert_eq!(n("http://h%20x/"), Err(BadUri));
        assert_eq!(n("http:///x"), Err(BadUri));
    }

    #[test]
    fn route_validates_hosts() {
        assert_eq!(validate_host(b"Example.COM:8080"), Ok("example.com".into()));
        assert_eq!(validate_host(b"example.com."), Ok("example.com".into()));
        assert_eq!(validate_host(b"[::1]:80"), Ok("[::1]".into()));
        assert!(validate_host(b"a..b").is_err());
        assert!(validate_host(b"a/b").is_err());
        assert!(validate_host(b"").is_err());
        assert!(validate_host(b":80").is_err());
        assert!(validate_host(b"a b").is_err());
        assert!(validate_host(b"a\tb").is_err());
        assert!(
            validate_host(b"a:80/x").is_err(),
            "the port part is checked too"
        );
        assert!(validate_host(b"a\x7f").is_err());
        assert_eq!(validate_host(b".a"), Ok(".a".into()));
        assert_eq!(validate_host(b"[::1"), Ok("[::1".into()));
        assert_eq!(validate_host(b"[::1]"), Ok("[::1]".into()));
        assert_eq!(validate_host(b"a.:80"), Ok("a".into()));
        assert_eq!(
            request_host(None, "http://h.example/x"),
            Ok(Some("h.example".into()))
        );
        assert_eq!(
            request_host(Some(b"Other:1"), "HTTPS://H.example:8443?q"),
            Ok(Some("h.example".into()))
        );
        assert_eq!(
            request_host(Some(b"a b"), "http://h.example/"),
            Err(BadHost)
        );
        assert_eq!(request_host(None, "/x"), Ok(None));
    }

    #[test]
    fn route_escapes_uris() {
        assert_eq!(escape_uri("/a b/ü"), "/a%20b/%C3%BC");
        assert_eq!(escape_uri("/ok-._~[]@!"), "/ok-._~[]@!");
        assert_eq!(escape_uri("/q?#%"), "/q%3F%23%25");
    }
}
