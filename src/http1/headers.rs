//! An ordered header list that keeps each name as it was written.
//!
//! A proxy must not rename headers: nginx forwards names in their original
//! case and writes configured ones (`add_header X-IP ...`) as configured,
//! and some clients compare case-sensitively. `http::HeaderMap` lowercases
//! names, so lookups go through a lowercase [`HeaderName`] kept beside the
//! original spelling. Requests carry a few dozen headers at most; a linear
//! scan beats hashing at that size.

use bytes::Bytes;
use http::HeaderName;

/// A header value: bytes as they go on the wire.
///
/// Values parsed from the network were validated by the parser (no CR, LF
/// or NUL). Values from the configuration are taken as written, as nginx
/// does (`add_header X "a\n"` is legal there).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeaderValue(Bytes);

impl HeaderValue {
    /// A value from a static string.
    pub const fn from_static(s: &'static str) -> HeaderValue {
        HeaderValue(Bytes::from_static(s.as_bytes()))
    }

    /// A value copied from bytes.
    pub fn from_bytes(b: &[u8]) -> HeaderValue {
        HeaderValue(Bytes::copy_from_slice(b))
    }

    /// A value sharing `b`.
    pub fn from_shared(b: Bytes) -> HeaderValue {
        HeaderValue(b)
    }

    /// A value from a string.
    pub fn from_string(s: String) -> HeaderValue {
        HeaderValue(Bytes::from(s))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, if it is UTF-8.
    pub fn to_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<u64> for HeaderValue {
    fn from(n: u64) -> Self {
        HeaderValue(Bytes::from(n.to_string()))
    }
}

impl From<usize> for HeaderValue {
    fn from(n: usize) -> Self {
        HeaderValue(Bytes::from(n.to_string()))
    }
}

/// One header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Lowercase name, for comparisons.
    pub name: HeaderName,
    /// The name as written on the wire.
    pub raw: Bytes,
    /// The value.
    pub value: HeaderValue,
}

/// Headers in order, with original spellings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Headers {
        Headers { list: Vec::new() }
    }

    /// An empty list with room for `n` headers.
    pub fn with_capacity(n: usize) -> Headers {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// Makes room for `n` more headers.
    pub fn reserve(&mut self, n: usize) {
        self.list.reserve(n);
    }

    /// Appends a header, spelling its name as `raw`.
    pub fn append_raw(&mut self, raw: impl Into<Bytes>, name: HeaderName, value: HeaderValue) {
        self.list.push(Header {
            name,
            raw: raw.into(),
            value,
        });
    }

    /// Appends a header whose wire name is `name` as given (e.g.
    /// `"Content-Type"`). Panics on an invalid name: callers pass literals
    /// or names validated at load time.
    pub fn append_str(&mut self, name: &str, value: HeaderValue) {
        let lower = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        self.append_raw(Bytes::copy_from_slice(name.as_bytes()), lower, value);
    }

    /// Appends a header with a canonical spelling of `name`
    /// (`content-length` becomes `Content-Length`).
    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        let raw = Bytes::from(title_case(name.as_str()));
        self.append_raw(raw, name, value);
    }

    /// Replaces every header `name` with one value (canonical spelling,
    /// or the spelling of the first existing one).
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(i) = self.list.iter().position(|h| h.name == name) {
            self.list[i].value = value;
            let mut j = i + 1;
            while j < self.list.len() {
                if self.list[j].name == name {
                    self.list.remove(j);
                } else {
                    j += 1;
                }
            }
        } else {
            self.append(name, value);
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.list.iter().find(|h| h.name == *name).map(|h| &h.value)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.list
            .iter()
            .filter(move |h| h.name == *name)
            .map(|h| &h.value)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.list.iter().any(|h| h.name == *name)
    }

    /// How many times `name` occurs.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.list.iter().filter(|h| h.name == *name).count()
    }

    /// Removes every header `name`; returns whether any was removed.
    pub fn remove(&mut self, name: &HeaderName) -> bool {
        let before = self.list.len();
        self.list.retain(|h| h.name != *name);
        self.list.len() != before
    }

    /// Keeps the headers for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&Header) -> bool) {
        self.list.retain(keep);
    }

    /// Iterates in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether any value of `name` contains `token` as a comma-separated,
    /// case-insensitive element (`Connection: keep-alive, Upgrade`).
    pub fn has_token(&self, name: &HeaderName, token: &str) -> bool {
        self.get_all(name).any(|v| has_token(v.as_bytes(), token))
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// Whether a comma-separated header value contains `token`
/// (case-insensitive, surrounding spaces ignored).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// `content-length` -> `Content-Length`; `www-authenticate` ->
/// `Www-Authenticate` (the usual canonical spelling).
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_and_spelling() {
        let mut h = Headers::new();
        h.append_str("X-IP", HeaderValue::from_static("1"));
        h.append_str("Host", HeaderValue::from_static("a"));
        h.append_str("x-ip", HeaderValue::from_static("2"));
        let name = HeaderName::from_static("x-ip");
        let values: Vec<_> = h.get_all(&name).map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, ["1", "2"]);
        let raws: Vec<_> = h.iter().map(|x| x.raw.clone()).collect();
        assert_eq!(
            raws,
            [
                Bytes::from("X-IP"),
                Bytes::from("Host"),
                Bytes::from("x-ip")
            ]
        );
        h.set(name.clone(), HeaderValue::from_static("3"));
        assert_eq!(h.count(&name), 1);
        assert_eq!(h.iter().next().unwrap().raw, Bytes::from("X-IP"));
        assert!(h.remove(&http::header::HOST));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn headers_answer_lookups() {
        let mut h = Headers::with_capacity(4);
        assert!(h.is_empty());
        let name = HeaderName::from_static("connection");
        assert!(!h.contains(&name));
        assert!(!h.remove(&name));
        h.append(name.clone(), HeaderValue::from_static("keep-alive"));
        h.append_str("X-Empty", HeaderValue::from_static(""));
        h.append(name.clone(), HeaderValue::from_static("x, Upgrade"));
        assert!(h.contains(&name) && !h.is_empty());
        assert_eq!((h.len(), h.count(&name)), (3, 2));
        assert!(h.has_token(&name, "upgrade"), "a later line counts too");
        assert!(!h.has_token(&name, "close"));
        let empty = h.get(&HeaderName::from_static("x-empty")).unwrap();
        assert!(empty.is_empty() && !h.get(&name).unwrap().is_empty());
        // Set on an absent name appends it in canonical spelling.
        h.set(
            HeaderName::from_static("content-length"),
            HeaderValue::from(5u64),
        );
        let last = h.iter().last().unwrap();
        assert_eq!(
            (&last.raw[..], last.value.as_bytes()),
            (&b"Content-Length"[..], &b"5"[..])
        );
        h.retain(|x| x.name != name);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn headers_find_tokens() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(!has_token(b"upgrades", "upgrade"));
        assert_eq!(title_case("sec-websocket-accept"), "Sec-Websocket-Accept");
    }
}
