//! TLS to `https://` backends (`proxy_ssl_*`): the rustls client
//! configuration of a location, with nginx's (OpenSSL's) verification rules.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{load_certs, load_key, provider, x509};

/// What a location asks of its backend TLS connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions<'a> {
    /// `proxy_ssl_verify`: check the backend's certificate.
    pub verify: bool,
    /// `proxy_ssl_trusted_certificate`: the anchors (required with
    /// `verify`).
    pub trusted_certificate: Option<&'a Path>,
    /// `proxy_ssl_certificate` and `proxy_ssl_certificate_key`: our client
    /// certificate.
    pub certificate: Option<(&'a Path, &'a Path)>,
    /// `proxy_ssl_server_name`: send SNI.
    pub send_sni: bool,
    /// `proxy_ssl_session_reuse`.
    pub session_reuse: bool,
}

/// Checks backend certificates (`proxy_ssl_verify`) as nginx (OpenSSL)
/// does where webpki is stricter than OpenSSL, and only there:
///
/// - a certificate without DNS names in subjectAltName is matched on its
///   subject common name (OpenSSL's fallback; webpki knows only
///   subjectAltName), once webpki has accepted the chain;
/// - a backend presenting a certificate that is itself listed in
///   `proxy_ssl_trusted_certificate` is its own anchor, even when it is
///   marked as a CA or is an X.509 v1 certificate (as `openssl req -x509`
///   makes them), provided it is within its validity period and names the
///   backend.
///
/// Everything else (chains, signatures, expiry, names) is webpki's verdict.
/// With `proxy_ssl_verify off` (nginx's default) any certificate is
/// accepted; the connection is still encrypted and the handshake signature
/// still checked.
#[derive(Debug)]
struct BackendVerifier {
    /// `None`: `proxy_ssl_verify off`.
    check: Option<Check>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// What `proxy_ssl_verify on` checks against.
#[derive(Debug)]
struct Check {
    /// `None` when no trusted certificate can serve as a webpki anchor.
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    trusted: Vec<CertificateDer<'static>>,
}

impl BackendVerifier {
    /// Whether `name` is one the certificate was issued for, by OpenSSL's
    /// rules.
    fn names(facts: &x509::CertFacts, name: &ServerName<'_>) -> bool {
        match name {
            ServerName::DnsName(dns) => {
                let dns = dns.as_ref();
                if facts.dns_names.is_empty() {
                    facts
                        .common_names
                        .iter()
                        .any(|cn| x509::dns_name_matches(cn, dns))
                } else {
                    facts
                        .dns_names
                        .iter()
                        .any(|san| x509::dns_name_matches(san, dns))
                }
            }
            ServerName::IpAddress(ip) => {
                let ip = std::net::IpAddr::from(*ip);
                facts.ip_addresses.contains(&ip)
            }
            _ => false,
        }
    }
}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as E;
        let Some(check) = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        let verdict = match &check.webpki {
            Some(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            None => Err(rustls::Error::InvalidCertificate(E::UnknownIssuer)),
        };
        let err = match verdict {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        let facts = x509::facts(end_entity);
        let name_error = matches!(
            err,
            rustls::Error::InvalidCertificate(
                E::NotValidForName | E::NotValidForNameContext { .. }
            )
        );
        if name_error {
            // The chain was good; only the name check differs.
            return match facts {
                Some(f) if f.dns_names.is_empty() && Self::names(&f, server_name) => {
                    Ok(ServerCertVerified::assertion())
                }
                _ => Err(err),
            };
        }
        let pinned = check
            .trusted
            .iter()
            .any(|t| t.as_ref() == end_entity.as_ref());
        let Some(facts) = facts.filter(|_| pinned) else {
            return Err(err);
        };
        let now = now.as_secs() as i64;
        if now < facts.not_before {
            return Err(rustls::Error::InvalidCertificate(E::NotValidYet));
        }
        if now > facts.not_after {
            return Err(rustls::Error::InvalidCertificate(E::Expired));
        }
        if !Self::names(&facts, server_name) {
            return Err(rustls::Error::InvalidCertificate(E::NotValidForName));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl BackendVerifier {
    /// The handshake signature: webpki's check, then ours for
    /// certificates it cannot read.
    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The raw-key check only for certificates that are pinned, or not
        // verified at all.
        let raw = match &self.check {
            Some(check) => check.trusted.iter().any(|t| t.as_ref() == cert.as_ref()),
            None => true,
        };
        super::verify_signature(&self.provider, message, cert, dss, tls13, raw)
    }
}

/// Builds the client configuration for backends of a location.
pub fn config(ssl: &ClientOptions<'_>) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier = if ssl.verify {
        let path = ssl
            .trusted_certificate
            .as_ref()
            .ok_or("no proxy_ssl_trusted_certificate for proxy_ssl_verify")?;
        let trusted = load_certs(path)?;
        let mut roots = rustls::RootCertStore::empty();
        // Certificates webpki cannot use as anchors (X.509 v1, say) can
        // still be trusted as the backend's own certificate.
        let (_added, _ignored) = roots.add_parsable_certificates(trusted.iter().cloned());
        if roots.is_empty() && trusted.iter().all(|c| x509::facts(c).is_none()) {
            return Err(format!(
                "cannot use trusted certificate \"{}\": no usable certificate",
                path.display()
            ));
        }
        // No anchor webpki can use (only X.509 v1 certificates, say): then
        // only the pinned certificates themselves verify.
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .ok();
        BackendVerifier {
            check: Some(Check { webpki, trusted }),
            provider: provider.clone(),
        }
    } else {
        BackendVerifier {
            check: None,
            provider: provider.clone(),
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match &ssl.certificate {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = ssl.send_sni;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !ssl.session_reuse {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}
