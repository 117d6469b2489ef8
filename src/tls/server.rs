//! Terminating `listen ... ssl`: the acceptor of a listening address.
//!
//! The ClientHello is read first and its SNI name chooses the virtual
//! server, the way `server_name` chooses a server; that server's own TLS
//! settings then apply (certificate, protocols, client certificates,
//! stapled OCSP response), as nginx switches to the SSL context of the
//! server the name selects.
//!
//! Client certificates (`ssl_verify_client`) are requested during the
//! handshake and their possession proved (the CertificateVerify signature),
//! but the chain is judged after the handshake, as OpenSSL does under
//! nginx: the connection completes and the verdict (`$ssl_client_verify`)
//! decides the request's fate (400 with nginx's 495/496 pages), instead of
//! a TLS alert the browser shows as a cryptic failure.

use std::path::Path;
use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{TlsSession, certified_key, load_certs, provider, x509};
use crate::log::os_error;

/// `ssl_verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyClient {
    /// `off`: no certificate is asked for.
    #[default]
    Off,
    /// `on`: a valid certificate is required.
    On,
    /// `optional`: asked for; when sent, it must be valid.
    Optional,
    /// `optional_no_ca`: asked for; not required to chain to a CA.
    OptionalNoCa,
}

/// One virtual server's TLS settings.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// `ssl_certificate`.
    pub cert: &'a Path,
    /// `ssl_certificate_key`.
    pub key: &'a Path,
    /// `ssl_protocols` (`TLSv1.2`, `TLSv1.3`); empty: both.
    pub protocols: &'a [String],
    /// `ssl_verify_client`.
    pub verify_client: VerifyClient,
    /// `ssl_client_certificate`: CAs whose names are sent to clients and
    /// that client certificates may chain to.
    pub client_certificate: Option<&'a Path>,
    /// `ssl_trusted_certificate`: further CAs client certificates may
    /// chain to, not announced.
    pub trusted_certificate: Option<&'a Path>,
    /// `ssl_verify_depth`.
    pub verify_depth: u32,
    /// `ssl_stapling_file`: a DER OCSP response stapled to handshakes.
    pub stapling_file: Option<&'a Path>,
    /// HTTP/2 is offered by ALPN (`http2 on`, `listen ... http2`).
    pub http2: bool,
}

/// Maps an SNI name (lower case) to the index of the site that serves it.
pub type SelectSite = Arc<dyn Fn(&str) -> Option<usize> + Send + Sync>;

/// How client certificates of one site are judged after the handshake.
#[derive(Debug)]
struct ClientPolicy {
    mode: VerifyClient,
    /// `None` when no CA is configured (then every certificate fails
    /// verification with "unable to get local issuer certificate").
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The configured CA certificates: a client certificate that is one of
    /// them verifies by itself (OpenSSL's self-signed trust anchor), even
    /// where webpki cannot read it (X.509 v1).
    anchors: Vec<CertificateDer<'static>>,
    depth: u32,
}

/// The acceptor of one listening address.
pub struct Acceptor {
    configs: Vec<Option<Arc<rustls::ServerConfig>>>,
    policies: Vec<Option<ClientPolicy>>,
    default: usize,
    select: SelectSite,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("sites", &self.configs.len())
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub enum AcceptError {
    /// The handshake failed (message as rustls words it).
    Handshake(String),
}

impl std::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcceptError::Handshake(e) => f.write_str(e),
        }
    }
}

/// Whether the client's first byte opens a TLS handshake record; `false`
/// when it sends something else (plain HTTP to a TLS port, nginx's 497).
/// Waits for that byte.
pub async fn starts_tls(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok(n == 0 || first[0] == 0x16)
}

/// Requests a certificate, proves possession, judges nothing: the chain
/// is judged after the handshake (see the module documentation).
#[derive(Debug)]
struct AskForCertificate {
    hints: Vec<DistinguishedName>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verify_signature(&self.provider, message, cert, dss, false, true)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        super::verify_signature(&self.provider, message, cert, dss, true, true)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Serves one certificate (the site's), whatever the name.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn versions(protocols: &[String]) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut out: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    for p in protocols {
        let v = if p == "TLSv1.3" {
            &rustls::version::TLS13
        } else {
            &rustls::version::TLS12
        };
        if !out.iter().any(|x| std::ptr::eq(*x, v)) {
            out.push(v);
        }
    }
    if out.is_empty() {
        out = vec![&rustls::version::TLS12, &rustls::version::TLS13];
    }
    out
}

fn client_policy(
    site: &Site<'_>,
) -> Result<(Option<ClientPolicy>, Vec<DistinguishedName>), String> {
    if site.verify_client == VerifyClient::Off {
        return Ok((None, Vec::new()));
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut anchors = Vec::new();
    if let Some(path) = site.client_certificate {
        for c in load_certs(path)? {
            anchors.push(c.clone());
            let _ = roots.add(c);
        }
    }
    // Only `ssl_client_certificate`'s CAs are named to clients, each once.
    let mut hints = roots.subjects();
    let mut seen = std::collections::HashSet::new();
    hints.retain(|h| seen.insert(h.as_ref().to_vec()));
    if let Some(path) = site.trusted_certificate {
        for c in load_certs(path)? {
            anchors.push(c.clone());
            let _ = roots.add(c);
        }
    }
    let verifier = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| e.to_string())?,
        )
    };
    Ok((
        Some(ClientPolicy {
            mode: site.verify_client,
            verifier,
            anchors,
            depth: site.verify_depth,
        }),
        hints,
    ))
}

fn site_config(site: &Site<'_>) -> Result<(rustls::ServerConfig, Option<ClientPolicy>), String> {
    let mut key = certified_key(site.cert, site.key)?;
    if let Some(path) = site.stapling_file {
        let ocsp = std::fs::read(path)
            .map_err(|e| format!("open() \"{}\" failed {}", path.display(), os_error(&e)))?;
        Arc::make_mut(&mut key).ocsp = Some(ocsp);
    }
    let (policy, hints) = client_policy(site)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(site.protocols))
        .map_err(|e| e.to_string())?;
    let builder = match policy {
        Some(_) => builder.with_client_cert_verifier(Arc::new(AskForCertificate {
            hints,
            provider: provider(),
        })),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(OneCertificate(key)));
    config.alpn_protocols = if site.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((config, policy))
}

/// Builds the acceptor of a `listen ... ssl` address from the sites (one
/// per server sharing the address, in order; `None` for a server without
/// TLS settings), the default site, and how names map to sites. `addr`
/// names the address in errors.
pub fn acceptor(
    sites: &[Option<Site<'_>>],
    default: usize,
    select: SelectSite,
    addr: &dyn std::fmt::Display,
) -> Result<Acceptor, String> {
    let mut configs = Vec::with_capacity(sites.len());
    let mut policies = Vec::with_capacity(sites.len());
    for site in sites {
        match site {
            Some(site) => {
                let (config, policy) = site_config(site)?;
                configs.push(Some(Arc::new(config)));
                policies.push(policy);
            }
            None => {
                configs.push(None);
                policies.push(None);
            }
        }
    }
    if configs.iter().all(Option::is_none) {
        return Err(format!(
            "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive ({addr})"
        ));
    }
    Ok(Acceptor {
        configs,
        policies,
        default,
        select,
    })
}

/// OpenSSL's verification error for a rustls verdict: (code, text) as
/// `X509_verify_cert_error_string` words it.
fn openssl_error(e: &rustls::Error, self_signed: bool) -> (i64, &'static str) {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            (10, "certificate has expired")
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            (9, "certificate is not yet valid")
        }
        rustls::Error::InvalidCertificate(C::BadSignature) => (7, "certificate signature failure"),
        rustls::Error::InvalidCertificate(C::Revoked) => (23, "certificate revoked"),
        _ if self_signed => (18, "self signed certificate"),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            (20, "unable to get local issuer certificate")
        }
        _ => (26, "unsupported certificate purpose"),
    }
}

/// Whether an OpenSSL verification error is one `optional_no_ca` lets
/// through (nginx's `ngx_ssl_verify_error_optional`).
pub fn error_optional(code: i64) -> bool {
    matches!(code, 18 | 19 | 20 | 2 | 27 | 21)
}

/// The verdict on a client's certificate, as `$ssl_client_verify` shows
/// it, and OpenSSL's error code when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientVerdict {
    /// `SUCCESS`, `NONE` or `FAILED:reason`.
    pub text: String,
    /// The OpenSSL error code of a failure.
    pub code: Option<i64>,
}

fn judge(policy: &ClientPolicy, chain: &[CertificateDer<'static>]) -> ClientVerdict {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return ClientVerdict {
            text: "NONE".into(),
            code: None,
        };
    };
    let facts = x509::facts(end_entity);
    let self_signed = facts.as_ref().is_some_and(|f| f.subject_dn == f.issuer_dn);
    let now = UnixTime::now();
    let anchored = policy
        .anchors
        .iter()
        .any(|a| a.as_ref() == end_entity.as_ref());
    let verdict = match (&policy.verifier, &facts) {
        // A configured CA certificate presented as the client's own: it is
        // its own trust anchor, within its validity.
        (_, Some(f)) if anchored => {
            let t = now.as_secs() as i64;
            if t < f.not_before {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidYet,
                ))
            } else if t > f.not_after {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Expired,
                ))
            } else {
                Ok(())
            }
        }
        (Some(v), _) => v
            .verify_client_cert(end_entity, intermediates, now)
            .map(|_| ()),
        (None, _) => Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )),
    };
    let verdict = verdict.and_then(|()| {
        if intermediates.len() as u32 + 1 > policy.depth.max(1) {
            Err(rustls::Error::General("chain too long".into()))
        } else {
            Ok(())
        }
    });
    match verdict {
        Ok(()) => ClientVerdict {
            text: "SUCCESS".into(),
            code: None,
        },
        Err(rustls::Error::General(_)) => ClientVerdict {
            text: "FAILED:certificate chain too long".into(),
            code: Some(22),
        },
        Err(e) => {
            let (code, text) = openssl_error(&e, self_signed);
            ClientVerdict {
                text: format!("FAILED:{text}"),
                code: Some(code),
            }
        }
    }
}

/// What a completed handshake established.
pub struct Accepted {
    /// The TLS stream.
    pub stream: TlsStream<TcpStream>,
    /// The facts for `$ssl_*` variables.
    pub session: TlsSession,
    /// The client chose HTTP/2 by ALPN.
    pub h2: bool,
}

impl Acceptor {
    /// Runs the server side of a handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Accepted, AcceptError> {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(|e| AcceptError::Handshake(e.to_string()))?;
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let chosen = sni
            .as_deref()
            .and_then(|n| (self.select)(n))
            .unwrap_or(self.default);
        // A server without certificates of its own is served by the
        // default server's (then the first one that has any).
        let site = [chosen, self.default]
            .into_iter()
            .chain(0..self.configs.len())
            .find(|&i| self.configs.get(i).is_some_and(Option::is_some))
            .expect("one site has a certificate (checked when built)");
        let config = self.configs[site].clone().expect("found above");
        let stream = start
            .into_stream(config)
            .await
            .map_err(|e| AcceptError::Handshake(e.to_string()))?;
        let conn = stream.get_ref().1;
        let mut session = TlsSession::of(conn);
        session.site = chosen;
        if let Some(policy) = &self.policies[site] {
            let chain: Vec<CertificateDer<'static>> = conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            session.client = Some(super::ClientCert {
                verdict: judge(policy, &chain),
                mode: policy.mode,
                chain,
            });
        }
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Accepted {
            stream,
            session,
            h2,
        })
    }
}
