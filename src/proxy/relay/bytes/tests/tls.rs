//! The relay between TLS streams: close_notify at the end, flushed
//! messages while open.

use super::*;

/// A TLS pair over loopback: the test's end, and the relay's end as the
/// relay holds it. `server_side`: the relay is the TLS server (a client
/// connection), else the TLS client (a backend connection).
mod tls_pair {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["relay.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let provider = crate::tls::provider();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// The relay terminates TLS from a client: (test client, relay's end).
    pub async fn client() -> (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        crate::net::ClientIo,
    ) {
        let (server, client) = configs();
        let (a, b) = super::tcp_pair().await;
        let name = ServerName::try_from("relay.test").unwrap();
        let (ours, theirs) = tokio::join!(
            tokio_rustls::TlsConnector::from(client).connect(name, a),
            tokio_rustls::TlsAcceptor::from(server).accept(b)
        );
        (
            ours.unwrap(),
            crate::net::ClientIo::Tls(Box::new(theirs.unwrap())),
        )
    }

    /// The relay speaks TLS to a backend: (relay's end, test backend).
    pub async fn upstream() -> (
        crate::net::UpstreamIo,
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) {
        let (server, client) = configs();
        let (a, b) = super::tcp_pair().await;
        let name = ServerName::try_from("relay.test").unwrap();
        let (theirs, ours) = tokio::join!(
            tokio_rustls::TlsConnector::from(client).connect(name, a),
            tokio_rustls::TlsAcceptor::from(server).accept(b)
        );
        (
            crate::net::UpstreamIo::Tls(Box::new(theirs.unwrap())),
            ours.unwrap(),
        )
    }
}

/// Reads to the end of a TLS stream within 10 s: `Ok` only for a clean
/// end (close_notify); a bare TCP FIN is an `UnexpectedEof` error.
async fn read_tls_to_end(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("no end of stream within 10 s")?;
    Ok(got)
}

/// TLS on both sides, each side ending in turn: whichever direction ends
/// second (when the whole tunnel is ending and plain TCP would skip the
/// shutdown), its TLS destination still gets close_notify, and bytes
/// written before it arrive.
#[tokio::test]
async fn tls_ends_get_close_notify_whichever_side_closes_first() {
    for client_first in [true, false] {
        let (mut client, client_end) = tls_pair::client().await;
        let (upstream_end, mut backend) = tls_pair::upstream().await;
        let relay = spawn_between(
            client_end,
            upstream_end,
            timeouts(30),
            crate::signal::StopSignal::new().waiter(),
            None,
        );
        if client_first {
            client.write_all(b"from the client").await.unwrap();
            client.shutdown().await.unwrap();
            let got = read_tls_to_end(&mut backend).await.unwrap();
            assert_eq!(got, b"from the client");
            backend.write_all(b"from the backend").await.unwrap();
            backend.shutdown().await.unwrap();
            let got = read_tls_to_end(&mut client).await;
            assert_eq!(got.unwrap(), b"from the backend", "client first");
        } else {
            backend.write_all(b"from the backend").await.unwrap();
            backend.shutdown().await.unwrap();
            let got = read_tls_to_end(&mut client).await.unwrap();
            assert_eq!(got, b"from the backend");
            client.write_all(b"from the client").await.unwrap();
            client.shutdown().await.unwrap();
            let got = read_tls_to_end(&mut backend).await;
            assert_eq!(got.unwrap(), b"from the client", "backend first");
        }
        let out = tokio::time::timeout(Duration::from_secs(10), relay)
            .await
            .expect("the relay did not end")
            .unwrap();
        assert!(matches!(out.end, End::Closed), "{:?}", out.end);
        let first = if client_first {
            By::Client
        } else {
            By::Backend
        };
        assert_eq!(out.closed_by, first, "who ended first");
    }
}

/// Through TLS on both sides, a message is delivered while the tunnel
/// stays open (what the TLS layer holds is flushed when the source has
/// nothing more).
#[tokio::test]
async fn tls_messages_arrive_while_the_tunnel_is_open() {
    let (mut client, client_end) = tls_pair::client().await;
    let (upstream_end, mut backend) = tls_pair::upstream().await;
    let _relay = spawn_between(
        client_end,
        upstream_end,
        timeouts(30),
        crate::signal::StopSignal::new().waiter(),
        None,
    );
    for round in 0..3 {
        let up = format!("up {round}");
        client.write_all(up.as_bytes()).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; up.len()];
        tokio::time::timeout(Duration::from_secs(10), backend.read_exact(&mut got))
            .await
            .expect("the client's message did not arrive")
            .unwrap();
        assert_eq!(got, up.as_bytes());
        let down = format!("down {round}");
        backend.write_all(down.as_bytes()).await.unwrap();
        backend.flush().await.unwrap();
        let mut got = vec![0u8; down.len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the backend's message did not arrive")
            .unwrap();
        assert_eq!(got, down.as_bytes());
    }
}
