//! TLS termination: certificates and protocols (ngx_http_ssl_module).

use super::{Args, Directive, HS, T1, arg_flag, arg_number, loc_flag, put};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;
use crate::tls::server::VerifyClient;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("ssl_certificate", HS, T1, set_ssl_certificate, "PEM certificate chain for TLS termination; at http level, for servers without their own; relative paths are relative to the configuration file's directory."),
    d!("ssl_certificate_key", HS, T1, set_ssl_certificate_key, "PEM private key for the certificate."),
    d!("ssl", HS, Args::Flag, set_ssl, "Deprecated (as in nginx 1.22, with its warning): every `listen` of the server is TLS."),
    d!("ssl_protocols", HS, Args::AtLeast(1), set_ssl_protocols, "TLS versions (`TLSv1.2`, `TLSv1.3`), per server (chosen by SNI)."),
    d!("ssl_ciphers", HS, T1, set_ssl_ciphers, "Accepted; rustls chooses among its own safe suites (warning)."),
    d!("ssl_verify_client", HS, T1, set_ssl_verify_client, "Client certificates: `on` (required: 400 with nginx's 495/496 pages otherwise), `optional`, `optional_no_ca`, `off`; the chain is judged after the handshake, `$ssl_client_verify` tells the verdict."),
    d!("ssl_client_certificate", HS, T1, |b, st| { let p = b.conf_path(&st.args[0].value); put(&mut b.loc().ssl_client_certificate, p, st) }, "CAs for client certificates, named to clients."),
    d!("ssl_trusted_certificate", HS, T1, |b, st| { let p = b.conf_path(&st.args[0].value); put(&mut b.loc().ssl_client_trusted_certificate, p, st) }, "Further CAs for client certificates, not named to clients."),
    d!("ssl_verify_depth", HS, T1, |b, st| { let n = arg_number(st, 0)? as u32; put(&mut b.loc().ssl_client_verify_depth, n, st) }, "Longest client certificate chain (default 1)."),
    d!("ssl_stapling", HS, Args::Flag, |b, st| loc_flag(b, st, |l| &mut l.ssl_stapling), "Staples the OCSP response of `ssl_stapling_file`; without a file stapling is off (with a warning): responses are not fetched from responders."),
    d!("ssl_stapling_file", HS, T1, |b, st| { let p = b.conf_path(&st.args[0].value); put(&mut b.loc().ssl_stapling_file, p, st) }, "A DER OCSP response to staple (read at load and reload)."),
    d!("ssl_stapling_verify", HS, Args::Flag, set_ssl_stapling_verify, "`on` and `off` load: nginx verifies only the responses it fetches from responders, and staples `ssl_stapling_file` as given, as Switchyard does."),
    d!("ssl_stapling_responder", HS, T1, set_ssl_stapling_responder, "Refused with a message: responses are not fetched from responders (use `ssl_stapling_file`)."),
    noop!("ssl_prefer_server_ciphers", HS, Args::Flag, "Cipher preference (no effect with rustls)."),
    noop!("ssl_session_cache", HS, Args::AtLeast(1), "TLS session cache sizing (rustls keeps its own in-memory cache)."),
    noop!("ssl_session_timeout", HS, T1, "TLS session lifetime (rustls defaults)."),
    noop!("ssl_session_tickets", HS, Args::Flag, "TLS session tickets (rustls defaults)."),
    noop!("ssl_ecdh_curve", HS, T1, "Key exchange groups (rustls defaults)."),
    noop!("ssl_dhparam", HS, T1, "DH parameters (rustls has no finite-field DH)."),
    noop!("ssl_buffer_size", HS, T1, "TLS record size (rustls chooses)."),
];

fn set_ssl_certificate(b: &mut Builder, st: &Statement) -> Result<()> {
    let p = b.conf_path(&st.args[0].value);
    b.loc()
        .ssl_certificates
        .get_or_insert_default()
        .push((p, st.span.clone()));
    Ok(())
}

fn set_ssl_certificate_key(b: &mut Builder, st: &Statement) -> Result<()> {
    let p = b.conf_path(&st.args[0].value);
    b.loc()
        .ssl_certificate_keys
        .get_or_insert_default()
        .push((p, st.span.clone()));
    Ok(())
}

fn set_ssl(b: &mut Builder, st: &Statement) -> Result<()> {
    b.warn(
        &st.span,
        "the \"ssl\" directive is deprecated, use the \"listen ... ssl\" directive instead",
    );
    let v = arg_flag(st);
    put(&mut b.loc().ssl_on, v, st)
}

fn set_ssl_verify_client(b: &mut Builder, st: &Statement) -> Result<()> {
    let mode = match st.args[0].value.as_str() {
        "off" => VerifyClient::Off,
        "on" => VerifyClient::On,
        "optional" => VerifyClient::Optional,
        "optional_no_ca" => VerifyClient::OptionalNoCa,
        other => {
            return Err(ConfigError::at(
                &st.span,
                format!(
                    "invalid value \"{other}\" in \"ssl_verify_client\" directive, it must be \"on\", \"off\", \"optional\" or \"optional_no_ca\""
                ),
            ));
        }
    };
    put(&mut b.loc().ssl_verify_client, mode, st)
}

/// `ssl_stapling_verify on|off`: nginx verifies only responses it fetches
/// from responders and staples an `ssl_stapling_file` as given; Switchyard
/// fetches none, so both values load and change nothing.
fn set_ssl_stapling_verify(_: &mut Builder, st: &Statement) -> Result<()> {
    let _ = arg_flag(st);
    Ok(())
}

fn set_ssl_stapling_responder(_: &mut Builder, st: &Statement) -> Result<()> {
    Err(ConfigError::unsupported(
        &st.span,
        "\"ssl_stapling_responder\" is not supported by switchyard: OCSP responses are not fetched, staple one with \"ssl_stapling_file\"",
    ))
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
    put(&mut b.loc().ssl_protocols, protos, st)
}

fn set_ssl_ciphers(b: &mut Builder, st: &Statement) -> Result<()> {
    put(&mut b.loc().ssl_ciphers, st.args[0].value.clone(), st)?;
    b.warn(
        &st.span,
        "\"ssl_ciphers\" has no effect: rustls uses its own safe cipher suites",
    );
    Ok(())
}
