//! TLS termination: certificates and protocols (ngx_http_ssl_module).

use super::{Args, Ctx, Directive, HS, T1, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("ssl_certificate", HS, T1, set_ssl_certificate, "PEM certificate chain for TLS termination."),
    d!("ssl_certificate_key", HS, T1, set_ssl_certificate_key, "PEM private key for the certificate."),
    d!("ssl_protocols", HS, Args::AtLeast(1), set_ssl_protocols, "TLS versions (`TLSv1.2`, `TLSv1.3`)."),
    d!("ssl_ciphers", HS, T1, set_ssl_ciphers, "Accepted; rustls chooses among its own safe suites (warning)."),
    noop!("ssl_prefer_server_ciphers", HS, Args::Flag, "Cipher preference (no effect with rustls)."),
    noop!("ssl_session_cache", HS, Args::AtLeast(1), "TLS session cache sizing (rustls keeps its own in-memory cache)."),
    noop!("ssl_session_timeout", HS, T1, "TLS session lifetime (rustls defaults)."),
    noop!("ssl_session_tickets", HS, Args::Flag, "TLS session tickets (rustls defaults)."),
    noop!("ssl_ecdh_curve", HS, T1, "Key exchange groups (rustls defaults)."),
    noop!("ssl_dhparam", HS, T1, "DH parameters (rustls has no finite-field DH)."),
];

fn set_ssl_certificate(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::HTTP {
        return Err(ConfigError::unsupported(
            &st.span,
            "\"ssl_certificate\" is supported in server blocks only by switchyard",
        ));
    }
    let p = b.full_path(&st.args[0].value);
    b.server().certs.push((p, st.span.clone()));
    Ok(())
}

fn set_ssl_certificate_key(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::HTTP {
        return Err(ConfigError::unsupported(
            &st.span,
            "\"ssl_certificate_key\" is supported in server blocks only by switchyard",
        ));
    }
    let p = b.full_path(&st.args[0].value);
    b.server().keys.push((p, st.span.clone()));
    Ok(())
}

fn set_ssl_protocols(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut protos = Vec::new();
    for w in &st.args {
        match w.value.as_str() {
            "TLSv1.2" | "TLSv1.3" => protos.push(w.value.clone()),
            "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => {
                b.warn(
                    &st.span,
                    format!(
                        "\"{}\" is not supported (rustls offers TLSv1.2 and TLSv1.3 only)",
                        w.value
                    ),
                );
            }
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid value \"{other}\""),
                ));
            }
        }
    }
    if b.ctx == Ctx::SERVER {
        put(&mut b.server().ssl_protocols, protos, st)
    } else {
        Ok(())
    }
}

fn set_ssl_ciphers(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.ctx == Ctx::SERVER {
        put(&mut b.server().ssl_ciphers, st.args[0].value.clone(), st)?;
    }
    b.warn(
        &st.span,
        "\"ssl_ciphers\" has no effect: rustls uses its own safe cipher suites",
    );
    Ok(())
}
