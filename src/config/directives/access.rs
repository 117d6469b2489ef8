//! `allow`/`deny` and the real client address behind trusted proxies
//! (ngx_http_access_module, ngx_http_realip_module).

use http::HeaderName;

use super::{Args, Directive, HSL, T1, loc_flag, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("allow", HSL, T1, set_access_rule, "Allows an address, CIDR block or `all`. Rules run in order, the first match decides, and a level with any rule replaces the inherited list. As in nginx they run after the rewrite phase: a `return` in the same location answers before them. WebSocket handshakes are checked like any request."),
    d!("deny", HSL, T1, set_access_rule, "Denies an address, CIDR block or `all` with 403 and an error line \"access forbidden by rule\"."),
    d!("set_real_ip_from", HSL, T1, set_real_ip_from, "A trusted proxy (address, CIDR, or host name resolved at load): the client address is taken from `real_ip_header` for requests it sends. `$remote_addr`, `$binary_remote_addr`, `allow`/`deny`, `limit_conn` keys, `ip_hash` and logs then see the real client."),
    d!("real_ip_header", HSL, T1, set_real_ip_header, "`X-Real-IP` (default), `X-Forwarded-For`, or any header name."),
    d!("real_ip_recursive", HSL, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.realip_recursive), "With `X-Forwarded-For`, skip trusted proxies from the right instead of taking the last address."),
];

// ---------------------------------------------------------------------------
// Access rules and the real client address.

/// An address block argument; nginx warns when host bits are set.
fn arg_cidr(b: &mut Builder, st: &Statement) -> Result<crate::config::model::Cidr> {
    let text = &st.args[0].value;
    match crate::config::model::Cidr::parse(text) {
        Ok((cidr, low_bits)) => {
            if low_bits {
                b.warn(
                    &st.span,
                    format!("low address bits of {text} are meaningless"),
                );
            }
            Ok(cidr)
        }
        Err(_) => Err(ConfigError::at(
            &st.span,
            format!("invalid parameter \"{text}\""),
        )),
    }
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
