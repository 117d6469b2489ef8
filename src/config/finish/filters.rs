//! The response filters' part of a location: conditional requests,
//! ranges, chunked framing, `charset*`, with nginx's defaults.

use super::Finisher;
use crate::config::error::{ConfigError, Result, Span};
use crate::config::model::*;
use crate::config::raw::LocRaw;

impl Finisher<'_> {
    /// The location's filter settings. A location converting between two
    /// named charsets needs a `charset_map` between them, as nginx checks
    /// at load.
    pub(super) fn finish_filters(&self, raw: &LocRaw) -> Result<Filters> {
        let d = Filters::default();
        let mut charset = CharsetConf {
            charset: raw.charset.clone().unwrap_or(CharsetName::Off),
            source: raw.source_charset.clone().unwrap_or(CharsetName::Off),
            override_charset: raw.override_charset.unwrap_or(false),
            types: raw.charset_types.clone().unwrap_or(d.charset.types),
            maps: self.charsets.clone(),
        };
        for name in [&mut charset.charset, &mut charset.source] {
            if let CharsetName::Var(t) = name {
                self.bind(t, &Span::command_line())?;
            }
        }
        if let (CharsetName::Name(dst), CharsetName::Name(src)) =
            (&charset.charset, &charset.source)
        {
            let maps = &charset.maps;
            let (s, t) = (maps.find(src.as_bytes()), maps.find(dst.as_bytes()));
            if s != t && s.zip(t).and_then(|(s, t)| maps.table(s, t)).is_none() {
                return Err(ConfigError::global(format!(
                    "no \"charset_map\" between the charsets \"{src}\" and \"{dst}\""
                )));
            }
        }
        Ok(Filters {
            etag: raw.etag.unwrap_or(d.etag),
            if_modified_since: raw.if_modified_since.unwrap_or(d.if_modified_since),
            max_ranges: raw.max_ranges.or(d.max_ranges),
            force_ranges: raw.force_ranges.unwrap_or(d.force_ranges),
            chunked: raw.chunked_transfer_encoding.unwrap_or(d.chunked),
            charset,
        })
    }
}
