//! TLS: terminating `listen ... ssl` with rustls (ring), choosing the
//! certificate by SNI the way `server_name` chooses a server, and TLS to
//! `https://` backends (`proxy_ssl_*`).

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::log::os_error;
use crate::config::{ListenGroup, ProxySsl};

pub mod x509;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot load certificate \"{}\": open() failed {}",
            path.display(),
            os_error(&e)
        )
    })?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(file)).collect();
    let certs =
        certs.map_err(|e| format!("cannot load certificate \"{}\": {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cannot load certificate \"{}\": no PEM certificate found",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot load certificate key \"{}\": open() failed {}",
            path.display(),
            os_error(&e)
        )
    })?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| format!("cannot load certificate key \"{}\": {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "cannot load certificate key \"{}\": no PEM private key found",
                path.display()
            )
        })
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signer = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("cannot load certificate key \"{}\": {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// Chooses a certificate by SNI using the listen group's server names.
#[derive(Debug)]
struct SniResolver {
    group: Arc<ListenGroup>,
    /// Certificate of each server of the group (None: server has no TLS).
    keys: Vec<Option<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello
            .server_name()
            .and_then(|name| self.group.names.find(&name.to_ascii_lowercase()))
            .map(|(i, _)| i)
            .unwrap_or(self.group.default_server);
        self.keys[index]
            .clone()
            .or_else(|| self.keys[self.group.default_server].clone())
            .or_else(|| self.keys.iter().flatten().next().cloned())
    }
}

/// Builds the acceptor of a `listen ... ssl` group.
pub fn acceptor(group: &Arc<ListenGroup>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut keys = Vec::new();
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    for server in &group.servers {
        match &server.tls {
            Some(tls) => {
                let (cert, key) = &tls.certs[0];
                keys.push(Some(certified_key(cert, key)?));
                for p in &tls.protocols {
                    let v = if p == "TLSv1.3" {
                        &rustls::version::TLS13
                    } else {
                        &rustls::version::TLS12
                    };
                    if !versions.iter().any(|x| std::ptr::eq(*x, v)) {
                        versions.push(v);
                    }
                }
            }
            None => keys.push(None),
        }
    }
    if keys.iter().all(Option::is_none) {
        return Err(format!(
            "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive ({})",
            group.addr
        ));
    }
    if versions.is_empty() {
        versions = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver {
            group: group.clone(),
            keys,
        }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What a terminated TLS connection negotiated (the `$ssl_*` variables),
/// named as OpenSSL names it so log formats written for nginx keep their
/// meaning.
#[derive(Debug, Clone)]
pub struct TlsSession {
    /// `$ssl_server_name`: the SNI name the client sent.
    pub server_name: Option<String>,
    /// `$ssl_protocol`: `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// `$ssl_cipher`, e.g. `TLS_AES_128_GCM_SHA256` or
    /// `ECDHE-RSA-AES128-GCM-SHA256`.
    pub cipher: &'static str,
    /// `$ssl_session_reused`: the handshake resumed a session.
    pub resumed: bool,
}

impl TlsSession {
    /// Reads the facts of an established server-side connection.
    pub fn of(conn: &rustls::ServerConnection) -> TlsSession {
        use rustls::CipherSuite as C;
        let protocol = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = match conn.negotiated_cipher_suite().map(|s| s.suite()) {
            Some(C::TLS13_AES_128_GCM_SHA256) => "TLS_AES_128_GCM_SHA256",
            Some(C::TLS13_AES_256_GCM_SHA384) => "TLS_AES_256_GCM_SHA384",
            Some(C::TLS13_CHACHA20_POLY1305_SHA256) => "TLS_CHACHA20_POLY1305_SHA256",
            Some(C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) => "ECDHE-ECDSA-AES128-GCM-SHA256",
            Some(C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384) => "ECDHE-ECDSA-AES256-GCM-SHA384",
            Some(C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256) => {
                "ECDHE-ECDSA-CHACHA20-POLY1305"
            }
            Some(C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) => "ECDHE-RSA-AES128-GCM-SHA256",
            Some(C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) => "ECDHE-RSA-AES256-GCM-SHA384",
            Some(C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256) => "ECDHE-RSA-CHACHA20-POLY1305",
            _ => "",
        };
        TlsSession {
            server_name: conn.server_name().map(str::to_string),
            protocol,
            cipher,
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }
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
        let algorithms = &self.provider.signature_verification_algorithms;
        let checked = if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        };
        checked.or_else(|e| {
            self.verify_pinned_signature(message, cert, dss, tls13)
                .ok_or(e)
        })
    }

    /// The handshake signature of a certificate webpki cannot read (X.509
    /// v1), checked with the key read by [`x509::facts`], when the
    /// certificate is pinned or not verified at all. TLS 1.3 allows only
    /// the first algorithm of the scheme; TLS 1.2 tries each.
    fn verify_pinned_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Option<HandshakeSignatureValid> {
        if let Some(check) = &self.check
            && !check.trusted.iter().any(|t| t.as_ref() == cert.as_ref())
        {
            return None;
        }
        let facts = x509::facts(cert)?;
        let algorithms = &self.provider.signature_verification_algorithms;
        let (_, candidates) = algorithms.mapping.iter().find(|(s, _)| *s == dss.scheme)?;
        let candidates = if tls13 { &candidates[..1] } else { candidates };
        candidates
            .iter()
            .filter(|alg| alg.public_key_alg_id().as_ref() == facts.key_algorithm.as_slice())
            .any(|alg| {
                alg.verify_signature(&facts.public_key, message, dss.signature())
                    .is_ok()
            })
            .then(HandshakeSignatureValid::assertion)
    }
}

/// Builds the client configuration for backends of a location.
pub fn client_config(ssl: &ProxySsl) -> Result<Arc<rustls::ClientConfig>, String> {
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
    config.enable_sni = ssl.server_name;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !ssl.session_reuse {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}
