//! Terminating `listen ... ssl`: the acceptor of a listening address, which
//! picks each connection's certificate by SNI.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{certified_key, provider};

/// One virtual server's certificate.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// `ssl_certificate`.
    pub cert: &'a Path,
    /// `ssl_certificate_key`.
    pub key: &'a Path,
    /// `ssl_protocols` (`TLSv1.2`, `TLSv1.3`); empty: both.
    pub protocols: &'a [String],
}

/// Maps an SNI name (lower case) to the index of the site that serves it.
pub type SelectSite = Arc<dyn Fn(&str) -> Option<usize> + Send + Sync>;

/// Chooses a certificate by SNI, the way `server_name` chooses a server.
struct SniResolver {
    select: SelectSite,
    /// The site a name no server claims goes to (the default server).
    default: usize,
    /// Certificate of each site (None: that server has no TLS).
    keys: Vec<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let index = hello
            .server_name()
            .and_then(|name| (self.select)(&name.to_ascii_lowercase()))
            .unwrap_or(self.default);
        self.keys[index]
            .clone()
            .or_else(|| self.keys[self.default].clone())
            .or_else(|| self.keys.iter().flatten().next().cloned())
    }
}

/// Builds the acceptor of a `listen ... ssl` address from the sites (one
/// per server sharing the address, in order), the default site, and how
/// names map to sites. `addr` names the address in errors.
pub fn acceptor(
    sites: &[Option<Site<'_>>],
    default: usize,
    select: SelectSite,
    addr: SocketAddr,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut keys = Vec::new();
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    for site in sites {
        match site {
            Some(site) => {
                keys.push(Some(certified_key(site.cert, site.key)?));
                for p in site.protocols {
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
            "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive ({addr})"
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
            select,
            default,
            keys,
        }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
