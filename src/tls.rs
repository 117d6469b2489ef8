//! TLS: terminating `listen ... ssl` with rustls (ring), choosing the
//! certificate by SNI the way `server_name` chooses a server, and TLS to
//! `https://` backends (`proxy_ssl_*`).

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::log::os_error;

pub mod client;
pub mod server;
pub mod x509;

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
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

pub(crate) fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let signer = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("cannot load certificate key \"{}\": {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// Checks a handshake signature: webpki's verdict, then, for certificates
/// webpki cannot read (X.509 v1, as `openssl req -x509` makes them), the
/// signature against the key [`x509::facts`] reads, when `raw` allows it
/// (the certificate is trusted some other way, or judged afterwards).
/// TLS 1.3 allows only the first algorithm of the scheme; TLS 1.2 tries
/// each.
pub(crate) fn verify_signature(
    provider: &rustls::crypto::CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
    tls13: bool,
    raw: bool,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use rustls::client::danger::HandshakeSignatureValid;
    let algorithms = &provider.signature_verification_algorithms;
    let checked = if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    };
    checked.or_else(|e| {
        let facts = x509::facts(cert).filter(|_| raw).ok_or(e.clone())?;
        let (_, candidates) = algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == dss.scheme)
            .ok_or(e.clone())?;
        let candidates = if tls13 { &candidates[..1] } else { candidates };
        candidates
            .iter()
            .filter(|alg| alg.public_key_alg_id().as_ref() == facts.key_algorithm.as_slice())
            .any(|alg| {
                alg.verify_signature(&facts.public_key, message, dss.signature())
                    .is_ok()
            })
            .then(HandshakeSignatureValid::assertion)
            .ok_or(e)
    })
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
    /// The site (server of the listening address) the SNI name chose.
    pub site: usize,
    /// The client's certificate and its verdict, when the chosen server
    /// asks for one (`ssl_verify_client`).
    pub client: Option<ClientCert>,
}

/// A client certificate and what its verification said.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The verdict (`$ssl_client_verify`).
    pub verdict: server::ClientVerdict,
    /// The `ssl_verify_client` mode of the server that asked.
    pub mode: server::VerifyClient,
    /// The chain the client sent, end entity first (empty: none).
    pub chain: Vec<CertificateDer<'static>>,
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
            site: 0,
            client: None,
        }
    }
}
