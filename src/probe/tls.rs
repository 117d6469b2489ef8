//! The TLS step of a probe: the handshake with the system's roots, and
//! what a browser would want to know about it (protocol, ALPN,
//! certificate subject, issuer, expiry, whether it verifies).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ConnectFailure, Options, Report, Target};
use crate::net::UpstreamIo;
use crate::tls::x509;

/// Verifies with webpki against the system's roots, records the verdict,
/// and lets the handshake go on (the probe reports, then decides).
#[derive(Debug)]
struct Recorder {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    verdict: Arc<Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            Some(v) => {
                match v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.to_string(),
                }
            }
            None => "no trusted roots on this machine".to_string(),
        };
        *self.verdict.lock().expect("verdict") = Some(verdict);
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config(verdict: Arc<Mutex<Option<String>>>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _skipped) = roots.add_parsable_certificates(native.certs);
    let inner = (!roots.is_empty())
        .then(|| {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .ok()
        })
        .flatten();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder {
            inner,
            verdict,
            provider,
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn day(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or_else(|| secs.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// Whether `addr` answers plain HTTP (for "wss:// to a plain port").
async fn answers_plain_http(target: &Target, addr: std::net::SocketAddr, opts: &Options) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("HEAD / HTTP/1.0\r\nHost: {}\r\n\r\n", target.authority()).as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"HTTP/")
    };
    tokio::time::timeout(opts.timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// The TLS handshake of a `wss://` probe.
pub async fn handshake(
    tcp: TcpStream,
    target: &Target,
    opts: &Options,
    report: &mut Report,
) -> Result<UpstreamIo, ConnectFailure> {
    let addr = tcp
        .peer_addr()
        .map_err(|e| ConnectFailure::Tls(e.to_string(), false))?;
    let verdict = Arc::new(Mutex::new(None));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(verdict.clone())));
    let name = ServerName::try_from(target.host.clone()).map_err(|_| {
        ConnectFailure::Tls(format!("invalid server name \"{}\"", target.host), false)
    })?;
    let started = Instant::now();
    let tls = match tokio::time::timeout(opts.timeout, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let plain = answers_plain_http(target, addr, opts).await;
            report.step("tls", false, Some(started.elapsed()), e.to_string());
            return Err(ConnectFailure::Tls(e.to_string(), plain));
        }
        Err(_) => {
            report.step(
                "tls",
                false,
                Some(started.elapsed()),
                "no handshake in time".into(),
            );
            return Err(ConnectFailure::Tls("no handshake in time".into(), false));
        }
    };
    let elapsed = started.elapsed();
    let (_, session) = tls.get_ref();
    let protocol = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let alpn = session.alpn_protocol().map_or("none".to_string(), |p| {
        String::from_utf8_lossy(p).into_owned()
    });
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| x509::facts(c));
    let mut detail = format!("{protocol}, ALPN {alpn}");
    if let Some(f) = &cert {
        detail.push_str(&format!(
            "\ncertificate: subject CN={}, issuer CN={}, valid {} to {}",
            f.common_names.join(","),
            f.issuer_common_names.join(","),
            day(f.not_before),
            day(f.not_after)
        ));
        if !f.dns_names.is_empty() {
            detail.push_str(&format!(", names {}", f.dns_names.join(" ")));
        }
    }
    let verdict = verdict.lock().expect("verdict").clone().unwrap_or_default();
    detail.push_str(&format!("\nverification: {verdict}"));
    let trusted = verdict == "ok";
    report.step("tls", trusted || opts.insecure, Some(elapsed), detail);
    if !trusted && !opts.insecure {
        return Err(ConnectFailure::Untrusted(verdict));
    }
    Ok(UpstreamIo::Tls(Box::new(tls)))
}
