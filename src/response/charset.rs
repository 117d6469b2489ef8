//! nginx's charset filter: `; charset=NAME` on the `Content-Type` of
//! responses of `charset_types`, and the body converted byte by byte when
//! `source_charset` (or the charset a backend names) differs and a
//! `charset_map` joins the two.
//!
//! nginx keeps a response's MIME type and its charset apart; so does this
//! filter (`ContentType`), and the header is rewritten only when it
//! changes something.

use std::sync::Arc;

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::Reply;
use crate::config::template::Piece;
use crate::config::{CharsetConf, CharsetName, LocConf};
use crate::http1::headers::HeaderValue;
use crate::request::RequestCtx;

/// What the filter decided beyond the headers it rewrote.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Convert every body byte through this table.
    pub recode: Option<Arc<[u8; 256]>>,
    /// An error line for the log (nginx's wording).
    pub complaint: Option<String>,
}

/// A `charset $variable` whose variable is not found: nginx fails the
/// response (the connection closes without one).
#[derive(Debug)]
pub struct Failed;

/// nginx's view of a `Content-Type`: the value, how much of it is the
/// type (`content_type_len`), and the charset to append or already named.
struct ContentType {
    value: Vec<u8>,
    type_len: usize,
    charset: Option<Vec<u8>>,
}

impl ContentType {
    /// Reads the header; a backend's `charset=` parameter is split off as
    /// nginx's upstream module does (quotes dropped).
    fn read(value: &[u8], backend: bool) -> ContentType {
        let mut ct = ContentType {
            value: value.to_vec(),
            type_len: value.len(),
            charset: None,
        };
        if !backend {
            return ct;
        }
        let mut p = 0;
        while p < value.len() {
            if value[p] != b';' {
                p += 1;
                continue;
            }
            let semicolon = p;
            p += 1;
            while p < value.len() && value[p] == b' ' {
                p += 1;
            }
            if p == value.len() {
                break;
            }
            let rest = &value[p..];
            if rest.len() < 8 || !rest[..8].eq_ignore_ascii_case(b"charset=") {
                continue;
            }
            let mut cs = &rest[8..];
            cs = cs.strip_prefix(b"\"").unwrap_or(cs);
            cs = cs.strip_suffix(b"\"").unwrap_or(cs);
            ct.type_len = semicolon;
            ct.charset = Some(cs.to_vec());
            break;
        }
        ct
    }

    /// nginx's `ngx_http_set_charset`: not for 301 and 302 (old browsers
    /// kept a redirect's charset for the page it led to).
    fn set_charset(&mut self, status: u16, name: &[u8]) {
        self.charset = (!matches!(status, 301 | 302)).then(|| name.to_vec());
    }

    /// Keeps only the type, so that the charset is written after it.
    fn truncate(&mut self) {
        self.value.truncate(self.type_len);
    }

    /// The header as nginx writes it.
    fn render(&self) -> Vec<u8> {
        let mut out = self.value.clone();
        if let Some(cs) = self.charset.as_ref().filter(|c| !c.is_empty())
            && self.type_len == self.value.len()
        {
            out.extend_from_slice(b"; charset=");
            out.extend_from_slice(cs);
        }
        out
    }
}

/// Evaluates a `charset` or `source_charset` value; `Ok(None)` for `off`.
fn name_of(name: &CharsetName, ctx: &mut RequestCtx) -> Result<Option<Vec<u8>>, Failed> {
    match name {
        CharsetName::Off => Ok(None),
        CharsetName::Name(n) => Ok(Some(n.as_bytes().to_vec())),
        CharsetName::Var(t) => match t.pieces.as_slice() {
            [Piece::Var(v)] => ctx.eval(v).map(Some).ok_or(Failed),
            _ => Err(Failed),
        },
    }
}

/// Whether `mime` (the type part, lower-cased) is one of `charset_types`.
fn listed(conf: &CharsetConf, mime: &[u8]) -> bool {
    let Some(types) = &conf.types else {
        return true;
    };
    let mime = mime.to_ascii_lowercase();
    types.iter().any(|t| t.as_bytes() == mime.as_slice())
}

/// Applies the location's `charset*` settings to `reply`.
pub fn apply(reply: &mut Reply, ctx: &mut RequestCtx, conf: &LocConf) -> Result<Outcome, Failed> {
    let c = &conf.filters.charset;
    let maps = &c.maps;
    let pass = Ok(Outcome::default());
    // The common case, checked before anything is read.
    if c.charset == CharsetName::Off && reply.entity.override_charset.is_none() {
        return pass;
    }
    let Some(value) = reply.headers.get(&CONTENT_TYPE).filter(|v| !v.is_empty()) else {
        return pass;
    };
    let mut ct = ContentType::read(value.as_bytes(), reply.entity.from_backend);
    // The charset to send: X-Accel-Charset, or the location's.
    let override_charset = reply
        .entity
        .override_charset
        .as_ref()
        .filter(|o| !o.is_empty());
    let (dst_name, dst) = if let Some(name) = override_charset {
        match maps.find(name) {
            Some(i) => (name.to_vec(), Some(i)),
            None => {
                return Ok(Outcome {
                    recode: None,
                    complaint: Some(format!(
                        "unknown charset \"{}\" to override",
                        String::from_utf8_lossy(name)
                    )),
                });
            }
        }
    } else {
        if c.charset == CharsetName::Off {
            return pass;
        }
        if ct.charset.is_some() {
            if !c.override_charset {
                return pass;
            }
        } else if !listed(c, &ct.value[..ct.type_len]) {
            return pass;
        }
        let name = name_of(&c.charset, ctx)?.unwrap_or_default();
        let index = maps.find(&name);
        (name, index)
    };
    // The charset the content is in: the one the response names, or
    // `source_charset`.
    let source = match &ct.charset {
        Some(cs) => Some(cs.clone()),
        None => name_of(&c.source, ctx)?,
    };
    let status = reply.status;
    let no_map = |src: &[u8]| Outcome {
        recode: None,
        complaint: Some(format!(
            "no \"charset_map\" between the charsets \"{}\" and \"{}\"",
            String::from_utf8_lossy(src),
            String::from_utf8_lossy(&dst_name)
        )),
    };
    let mut recode = None;
    match source {
        None => ct.set_charset(status, &dst_name),
        Some(src_name) => {
            let src = maps.find(&src_name);
            if src.is_none() || dst.is_none() {
                // nginx compares the names over the destination's length.
                let same = src == dst
                    && src_name.len() >= dst_name.len()
                    && src_name[..dst_name.len()].eq_ignore_ascii_case(&dst_name);
                if !same {
                    return Ok(no_map(&src_name));
                }
                ct.set_charset(status, &dst_name);
            } else if src == dst {
                ct.truncate();
                ct.set_charset(status, &dst_name);
            } else {
                if reply
                    .headers
                    .get(&CONTENT_ENCODING)
                    .is_some_and(|v| !v.is_empty())
                {
                    return pass;
                }
                let (Some(s), Some(d)) = (src, dst) else {
                    unreachable!("both checked above");
                };
                let Some(table) = maps.table(s, d) else {
                    return Ok(no_map(&src_name));
                };
                ct.truncate();
                ct.set_charset(status, &dst_name);
                recode = Some(table.clone());
            }
        }
    }
    let rendered = ct.render();
    if reply.headers.get(&CONTENT_TYPE).map(|v| v.as_bytes()) != Some(rendered.as_slice()) {
        reply
            .headers
            .set(CONTENT_TYPE, HeaderValue::from_bytes(&rendered));
    }
    Ok(Outcome {
        recode,
        complaint: None,
    })
}

/// Converts `data` through `table`.
pub fn recode(table: &[u8; 256], data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| table[usize::from(*b)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_reads_a_backend_content_type_as_nginx() {
        let ct = ContentType::read(b"text/html; charset=\"koi8-r\"", true);
        assert_eq!(&ct.value[..ct.type_len], b"text/html");
        assert_eq!(ct.charset.as_deref(), Some(&b"koi8-r"[..]));
        let ct = ContentType::read(b"text/html;  Charset=B", true);
        assert_eq!(ct.charset.as_deref(), Some(&b"B"[..]));
        let ct = ContentType::read(b"text/html; q=1", true);
        assert_eq!(ct.type_len, ct.value.len());
        assert_eq!(ct.charset, None);
        // Our own types are never read for a charset.
        let ct = ContentType::read(b"text/html; charset=x", false);
        assert_eq!(ct.charset, None);
        let mut ct = ContentType::read(b"text/plain", false);
        ct.set_charset(200, b"utf-8");
        assert_eq!(ct.render(), b"text/plain; charset=utf-8");
        ct.set_charset(302, b"utf-8");
        assert_eq!(ct.render(), b"text/plain");
    }
}
