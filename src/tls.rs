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

use crate::config::error::os_error;
use crate::config::{ListenGroup, ProxySsl};

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

/// Accepts any backend certificate: `proxy_ssl_verify off` (nginx's
/// default). The connection is still encrypted.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds the client configuration for backends of a location.
pub fn client_config(ssl: &ProxySsl) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if ssl.verify {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &ssl.trusted_certificate {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| {
                    format!("cannot use trusted certificate \"{}\": {e}", path.display())
                })?;
            }
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
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
