//! Settings of the response filters of a location, as loaded: conditional
//! requests (`etag`, `if_modified_since`), ranges (`max_ranges`,
//! `proxy_force_ranges`), `chunked_transfer_encoding` and the `charset*`
//! family. The filters themselves are under [`crate::response`].

use std::sync::Arc;

use crate::config::template::Template;

/// The response filters' settings of a location.
#[derive(Debug, Clone)]
pub struct Filters {
    /// `etag`: static files get an `ETag` (default on).
    pub etag: bool,
    /// `if_modified_since` (default `exact`).
    pub if_modified_since: IfModifiedSince,
    /// `max_ranges`: most ranges served in one response (`None`: no limit;
    /// `Some(0)`: ranges are never served).
    pub max_ranges: Option<u32>,
    /// `proxy_force_ranges`: serve ranges from proxied responses too.
    pub force_ranges: bool,
    /// `chunked_transfer_encoding`: HTTP/1.1 bodies of unknown length are
    /// chunked (on) or delimited by the end of the connection (off).
    pub chunked: bool,
    /// `charset` and its companions.
    pub charset: CharsetConf,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            etag: true,
            if_modified_since: IfModifiedSince::Exact,
            max_ranges: None,
            force_ranges: false,
            chunked: true,
            charset: CharsetConf::default(),
        }
    }
}

/// `if_modified_since`: how `If-Modified-Since` is compared with the
/// response's modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfModifiedSince {
    /// `off`: the header is ignored.
    Off,
    /// `exact`: not modified only when the times are equal.
    Exact,
    /// `before`: not modified when the modification time is not later.
    Before,
}

/// A `charset` or `source_charset` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharsetName {
    /// `charset off` (and neither set).
    Off,
    /// A charset name as written.
    Name(String),
    /// `$variable`: the value names the charset; a variable that is not
    /// found makes the response fail, as in nginx.
    Var(Template),
}

/// The `charset*` settings of a location.
#[derive(Debug, Clone)]
pub struct CharsetConf {
    /// `charset`: the charset responses are sent in.
    pub charset: CharsetName,
    /// `source_charset`: the charset of the content.
    pub source: CharsetName,
    /// `override_charset`: also for responses that name a charset already
    /// (proxied ones with `charset=` in their `Content-Type`).
    pub override_charset: bool,
    /// `charset_types`, lower case (`text/html` always among them); `None`
    /// for `*`.
    pub types: Option<Vec<String>>,
    /// The `charset_map` tables of the `http` block.
    pub maps: Arc<CharsetMaps>,
}

/// The MIME types `charset` applies to by default.
pub const DEFAULT_CHARSET_TYPES: &[&str] = &[
    "text/html",
    "text/xml",
    "text/plain",
    "text/vnd.wap.wml",
    "application/javascript",
    "application/rss+xml",
];

impl Default for CharsetConf {
    fn default() -> Self {
        CharsetConf {
            charset: CharsetName::Off,
            source: CharsetName::Off,
            override_charset: false,
            types: Some(
                DEFAULT_CHARSET_TYPES
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
            ),
            maps: Arc::default(),
        }
    }
}

/// Every charset the configuration names (nginx knows a charset only when
/// a `charset`, `source_charset` or `charset_map` names it) and the
/// conversion tables between them.
#[derive(Debug, Default)]
pub struct CharsetMaps {
    /// The names, as first written.
    pub names: Vec<String>,
    /// One `charset_map from to { ... }` each: both directions.
    pub tables: Vec<CharsetTable>,
}

/// A `charset_map` between two single-byte charsets.
#[derive(Debug)]
pub struct CharsetTable {
    /// The first charset named.
    pub from: String,
    /// The second charset named.
    pub to: String,
    /// Byte by byte, `from` to `to`.
    pub forward: Arc<[u8; 256]>,
    /// Byte by byte, `to` to `from`.
    pub backward: Arc<[u8; 256]>,
}

impl CharsetMaps {
    /// The configured charset called `name` (case-insensitive), as
    /// nginx's `ngx_http_get_charset`: its index, or `None` for a name the
    /// configuration never mentions.
    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The table converting charset `src` to charset `dst` (indices of
    /// [`CharsetMaps::names`]), in either direction of a `charset_map`.
    pub fn table(&self, src: usize, dst: usize) -> Option<&Arc<[u8; 256]>> {
        let (src, dst) = (&self.names[src], &self.names[dst]);
        self.tables.iter().find_map(|t| {
            if t.from.eq_ignore_ascii_case(src) && t.to.eq_ignore_ascii_case(dst) {
                Some(&t.forward)
            } else if t.to.eq_ignore_ascii_case(src) && t.from.eq_ignore_ascii_case(dst) {
                Some(&t.backward)
            } else {
                None
            }
        })
    }
}
