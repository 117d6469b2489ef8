//! The `gzip*` settings of a location, as loaded. The filter itself is
//! [`crate::gzip`].

use std::sync::Arc;

use http::Version;

use super::pattern::CompiledRegex;

/// `gzip_proxied` flags.
pub mod proxied {
    /// `off`: never for proxied requests.
    pub const OFF: u16 = 1;
    /// `expired`: the response has an `Expires` in the past.
    pub const EXPIRED: u16 = 2;
    /// `no-cache`: `Cache-Control` has `no-cache`.
    pub const NO_CACHE: u16 = 4;
    /// `no-store`: `Cache-Control` has `no-store`.
    pub const NO_STORE: u16 = 8;
    /// `private`: `Cache-Control` has `private`.
    pub const PRIVATE: u16 = 16;
    /// `no_last_modified`: the response has no `Last-Modified`.
    pub const NO_LAST_MODIFIED: u16 = 32;
    /// `no_etag`: the response has no `ETag`.
    pub const NO_ETAG: u16 = 64;
    /// `auth`: the request has `Authorization`.
    pub const AUTH: u16 = 128;
    /// `any`: always.
    pub const ANY: u16 = 256;

    /// The keywords, in nginx's spelling.
    pub const NAMES: &[(&str, u16)] = &[
        ("off", OFF),
        ("expired", EXPIRED),
        ("no-cache", NO_CACHE),
        ("no-store", NO_STORE),
        ("private", PRIVATE),
        ("no_last_modified", NO_LAST_MODIFIED),
        ("no_etag", NO_ETAG),
        ("auth", AUTH),
        ("any", ANY),
    ];
}

/// One `gzip_disable` entry.
#[derive(Debug, Clone)]
pub enum Disable {
    /// `msie6`: MSIE 4 to 6 (not 6 with SV1).
    Msie6,
    /// A case-insensitive regular expression on `User-Agent`.
    Regex(Arc<CompiledRegex>),
}

/// The `gzip*` settings of a location.
#[derive(Debug, Clone)]
pub struct GzipConf {
    /// `gzip`.
    pub enable: bool,
    /// `gzip_types` (lower case, without parameters); `None` is `*`.
    pub types: Option<Vec<String>>,
    /// `gzip_comp_level`, 1 to 9.
    pub level: u32,
    /// `gzip_min_length`, compared with a known `Content-Length`.
    pub min_length: u64,
    /// `gzip_http_version`.
    pub http_version: Version,
    /// `gzip_proxied` flags.
    pub proxied: u16,
    /// `gzip_vary`.
    pub vary: bool,
    /// `gzip_disable`.
    pub disable: Vec<Disable>,
}

impl Default for GzipConf {
    fn default() -> Self {
        GzipConf {
            enable: false,
            types: Some(vec!["text/html".into()]),
            level: 1,
            min_length: 20,
            http_version: Version::HTTP_11,
            proxied: proxied::OFF,
            vary: false,
            disable: Vec::new(),
        }
    }
}
