//! Who may come in: `allow`/`deny` and the real client address behind
//! trusted proxies (ngx_http_access_module, ngx_http_realip_module),
//! passwords (ngx_http_auth_basic_module), an authorising subrequest
//! (ngx_http_auth_request_module), `satisfy`, `auth_delay` and
//! `limit_except`.

use http::HeaderName;

use super::{
    Args, Ctx, Directive, HSL, HSLL, LOCATION, T1, T2, arg_template, duplicate, loc_flag, loc_time,
    put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::{IndexedKind, SetTarget};
use crate::config::raw::{Builder, LimitExceptRaw};

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("allow", HSLL, T1, set_access_rule, "Allows an address, CIDR block or `all`. Rules run in order, the first match decides, and a level with any rule replaces the inherited list. As in nginx they run after the rewrite phase: a `return` in the same location answers before them. WebSocket handshakes are checked like any request."),
    d!("deny", HSLL, T1, set_access_rule, "Denies an address, CIDR block or `all` with 403 and an error line \"access forbidden by rule\"."),
    d!("set_real_ip_from", HSL, T1, set_real_ip_from, "A trusted proxy (address, CIDR, or host name resolved at load): the client address is taken from `real_ip_header` for requests it sends. `$remote_addr`, `$binary_remote_addr`, `allow`/`deny`, `limit_conn` keys, `ip_hash` and logs then see the real client."),
    d!("real_ip_header", HSL, T1, set_real_ip_header, "`X-Real-IP` (default), `X-Forwarded-For`, or any header name."),
    d!("real_ip_recursive", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.realip_recursive), "With `X-Forwarded-For`, skip trusted proxies from the right instead of taking the last address."),
    d!("auth_basic", HSLL, T1, |b, st| { let realm = arg_template(st, 0)?; put(&mut b.loc().auth_basic, realm, st) }, "Asks for a password (401 with `WWW-Authenticate: Basic realm=\"...\"`); variables allowed; `off` turns an inherited one off. Needs `auth_basic_user_file` (without it nothing is checked, as in nginx, and a warning says so)."),
    d!("auth_basic_user_file", HSLL, T1, set_auth_basic_user_file, "The password file, read at each request as nginx does: `user:hash[:comment]` lines, `#` comments; hashes `$apr1$`, `{PLAIN}`, `{SHA}`, `{SSHA}`, and crypt's yescrypt `$y$`, bcrypt `$2a$`/`$2b$`/`$2y$`, `$5$`, `$6$`, `$1$`, `$sha1$`, DES; compared in constant time. Relative to the configuration's directory; variables allowed. A missing file answers 403, an unreadable one 500."),
    d!("auth_request", HSL, T1, set_auth_request, "Authorises each request by a subrequest to a URI of the same server (usually an `internal` location that proxies to oauth2-proxy or similar): 2xx lets it through, 401 (its `WWW-Authenticate` passed on) and 403 refuse, anything else is a 500. The subrequest is a GET with the client's headers and no body. WebSocket handshakes are authorised before they are proxied. `off` turns an inherited one off."),
    d!("auth_request_set", HSL, T2, set_auth_request_set, "Sets a variable from the finished subrequest, e.g. `auth_request_set $user $upstream_http_x_auth_request_user;` (its variables are the subrequest's)."),
    d!("satisfy", HSL, T1, set_satisfy, "`all` (default): `allow`/`deny`, `auth_basic` and `auth_request` must all let the request through; `any`: one is enough."),
    d!("auth_delay", HSL, T1, |b, st| loc_time(b, st, |l| &mut l.auth_delay), "Delays 401 answers (password guessing costs time)."),
    block!("limit_except", LOCATION, Args::AtLeast(1), set_limit_except, Ctx::LIMIT_EXCEPT, leave_limit_except, "Access rules for every method but those listed (GET includes HEAD): `allow`, `deny`, `auth_basic`, `auth_basic_user_file`, `access_log` and `proxy_pass` inside."),
];

// ---------------------------------------------------------------------------
// Passwords, subrequests, satisfy, limit_except.

fn set_auth_basic_user_file(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut file = arg_template(st, 0)?;
    if file.is_const() {
        // Static paths resolve now; with variables, at each request.
        let path = b.conf_path(&st.args[0].value);
        file = crate::config::template::Template::literal(&path.to_string_lossy());
    }
    if b.loc().auth_basic_user_file.is_some() {
        return Err(duplicate(st));
    }
    b.loc().auth_basic_user_file = Some(file);
    Ok(())
}

fn set_auth_request(b: &mut Builder, st: &Statement) -> Result<()> {
    let uri = match st.args[0].value.as_str() {
        "off" => String::new(),
        u => u.to_string(),
    };
    put(&mut b.loc().auth_request, uri, st)
}

fn set_auth_request_set(b: &mut Builder, st: &Statement) -> Result<()> {
    let var = &st.args[0].value;
    let name = match var.strip_prefix('$') {
        Some(n) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') => n,
        _ => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid variable name \"{var}\""),
            ));
        }
    };
    let target = match name {
        "args" => SetTarget::Args,
        "limit_rate" => SetTarget::LimitRate,
        _ if crate::config::var::resolve_builtin(name).is_some() => {
            return Err(ConfigError::at(
                &st.span,
                format!("the duplicate \"{name}\" variable"),
            ));
        }
        _ => SetTarget::Slot(b.declare(name, IndexedKind::Assigned)),
    };
    let value = arg_template(st, 1)?;
    b.loc()
        .auth_request_set
        .get_or_insert_default()
        .push((target, value, st.span.clone()));
    Ok(())
}

fn set_satisfy(b: &mut Builder, st: &Statement) -> Result<()> {
    let any = match st.args[0].value.as_str() {
        "all" => false,
        "any" => true,
        other => {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "invalid value \"{other}\" in \"satisfy\" directive, it must be \"all\" or \"any\""
                ),
            ));
        }
    };
    put(&mut b.loc().satisfy_any, any, st)
}

/// The methods `limit_except` may name, as nginx spells them.
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "MKCOL",
    "COPY",
    "MOVE",
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "LOCK",
    "UNLOCK",
    "PATCH",
];

fn set_limit_except(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.location().limit_except.is_some() {
        return Err(duplicate(st));
    }
    let mut methods = Vec::new();
    for arg in &st.args {
        let name = arg.value.as_str();
        if !METHODS.contains(&name) {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid method \"{name}\""),
            ));
        }
        let m = http::Method::from_bytes(name.as_bytes()).expect("a known method");
        if m == http::Method::GET {
            methods.push(http::Method::HEAD);
        }
        methods.push(m);
    }
    b.location().limit_except = Some(LimitExceptRaw {
        methods,
        loc: Default::default(),
        span: Some(st.span.clone()),
    });
    Ok(())
}

fn leave_limit_except(_: &mut Builder, _: &Statement) -> Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------
// Access rules and the real client address.

/// An address block argument; nginx warns when host bits are set.
fn arg_cidr(b: &mut Builder, st: &Statement) -> Result<crate::config::model::Cidr> {
    let text = &st.args[0].value;
    super::cidr(b, &st.span, text)
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid parameter \"{text}\"")))
}

fn set_access_rule(b: &mut Builder, st: &Statement) -> Result<()> {
    use crate::config::model::{AccessRule, Match};
    let matches = if st.args[0].value == "all" {
        Match::All
    } else {
        Match::Net(arg_cidr(b, st)?)
    };
    let rule = AccessRule {
        deny: st.name == "deny",
        matches,
    };
    b.loc().access.get_or_insert_default().push(rule);
    Ok(())
}

fn set_real_ip_from(b: &mut Builder, st: &Statement) -> Result<()> {
    use std::net::ToSocketAddrs;
    let text = st.args[0].value.clone();
    let blocks = match crate::config::model::Cidr::parse(&text) {
        Ok(_) => vec![arg_cidr(b, st)?],
        // A host name stands for the addresses it resolves to now.
        Err(_) => {
            let addrs: Vec<_> = (text.as_str(), 0)
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default();
            if addrs.is_empty() {
                return Err(ConfigError::at(
                    &st.span,
                    format!("host not found in set_real_ip_from \"{text}\""),
                ));
            }
            addrs
                .iter()
                .map(|a| {
                    crate::config::model::Cidr::parse(&a.ip().to_string())
                        .expect("an address")
                        .0
                })
                .collect()
        }
    };
    b.loc().realip_from.get_or_insert_default().extend(blocks);
    Ok(())
}

fn set_real_ip_header(b: &mut Builder, st: &Statement) -> Result<()> {
    use crate::config::model::RealIpHeader;
    let v = st.args[0].value.as_str();
    let header = match v {
        "X-Real-IP" => RealIpHeader::XRealIp,
        "X-Forwarded-For" => RealIpHeader::XForwardedFor,
        "proxy_protocol" => {
            return Err(ConfigError::at(
                &st.span,
                "\"real_ip_header proxy_protocol\" needs the PROXY protocol, which switchyard does not implement",
            ));
        }
        _ => RealIpHeader::Other(
            HeaderName::from_bytes(v.as_bytes())
                .map_err(|_| ConfigError::at(&st.span, format!("invalid header name \"{v}\"")))?,
        ),
    };
    put(&mut b.loc().realip_header, header, st)
}
