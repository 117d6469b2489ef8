//! HTTP/1.x as a [`Downstream`]: request bodies read with their framing,
//! response heads in nginx's header order, bodies with `Content-Length`,
//! chunked or ending with the connection, `100 Continue`, `101 Switching
//! Protocols`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Version;

use super::{ClientConn, client_gone};
use crate::exchange::{Downstream, ResponseHead, Started};
use crate::http1::body::{LAST_CHUNK, encode_chunk};
use crate::http1::headers::HeaderValue;
use crate::http1::{BodyKind, Headers, write};
use crate::net::write_flushed;
use crate::request::ConnInfo;

/// Unread bodies larger than this are not worth reading just to keep the
/// connection; closing is cheaper.
const DISCARD_MAX: u64 = 64 * 1024;

impl Downstream for ClientConn {
    fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn draining(&self) -> bool {
        ClientConn::draining(self)
    }

    fn set_location(&mut self, conf: &crate::config::LocConf) {
        self.keepalive_timeout = conf.keepalive_timeout;
    }

    fn body_kind(&self) -> BodyKind {
        self.body.kind()
    }

    fn body_done(&self) -> bool {
        self.body.is_done()
    }

    async fn read_body(&mut self) -> io::Result<Option<Bytes>> {
        self.body.next(&mut self.io, &mut self.buf).await
    }

    async fn discard_body(&mut self, limit: Duration) -> bool {
        if self.body.is_done() {
            return true;
        }
        if let BodyKind::Length(n) = self.body.kind()
            && self.body.remaining() > DISCARD_MAX
            && n > DISCARD_MAX
        {
            return false;
        }
        let drain = async {
            while self.body.next(&mut self.io, &mut self.buf).await?.is_some() {}
            io::Result::Ok(())
        };
        matches!(tokio::time::timeout(limit, drain).await, Ok(Ok(())))
    }

    async fn send_continue(&mut self) {
        // Sent even when the body is already arriving, as nginx does.
        if self.version == Version::HTTP_11 {
            let _ = write_flushed(&mut self.io, b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
    }

    async fn client_gone(&self) {
        client_gone(&self.io).await;
    }

    fn linger(&mut self) {
        self.linger = true;
    }

    fn start_response(&mut self, head: ResponseHead<'_>) -> Started {
        if self.version == Version::HTTP_09 {
            // HTTP/0.9 has no status line and no headers: the body alone,
            // ended by the close.
            self.chunked = false;
            self.out.clear();
            return Started {
                headers: head.own,
                head_len: 0,
                keepalive: false,
            };
        }
        let unknown = head.has_body && head.length.is_none() && !head.head_only;
        // Trailers need chunks: a known length is dropped for them (as
        // nginx's chunked filter does when trailers are expected).
        let can_chunk = self.version == Version::HTTP_11 && head.chunked;
        let trailers = can_chunk && head.trailers && head.has_body && !head.head_only;
        self.chunked = can_chunk && (unknown || trailers);
        // A length unknown and no chunks (HTTP/1.0, or
        // `chunked_transfer_encoding off`): the body ends at close.
        let keepalive = head.keepalive && (self.chunked || !unknown);
        // nginx's order: Server, Date, Content-Type, Content-Length,
        // Last-Modified, Transfer-Encoding, Connection, then the rest.
        let mut headers = head.own;
        headers.reserve(head.headers.len() + 4);
        if let Some(ct) = head
            .headers
            .iter()
            .find(|h| h.name == http::header::CONTENT_TYPE)
        {
            headers.append_raw(ct.raw.clone(), ct.name.clone(), ct.value.clone());
        }
        // A Content-Length among the headers (a backend's, for HEAD) goes
        // in the same place as the one written from the length.
        let listed_length = head
            .headers
            .iter()
            .find(|h| h.name == http::header::CONTENT_LENGTH);
        if let Some(cl) = listed_length.filter(|_| !trailers) {
            headers.append_raw(cl.raw.clone(), cl.name.clone(), cl.value.clone());
        } else if head.has_body
            && !trailers
            && let Some(n) = head.length
        {
            headers.append_str("Content-Length", HeaderValue::from(n));
        }
        if let Some(lm) = head.last_modified {
            headers.append_str("Last-Modified", lm);
        }
        if self.chunked {
            headers.append_str("Transfer-Encoding", HeaderValue::from_static("chunked"));
        }
        headers.append_str(
            "Connection",
            HeaderValue::from_static(if keepalive { "keep-alive" } else { "close" }),
        );
        if head.vary {
            headers.append_str("Vary", HeaderValue::from_static("Accept-Encoding"));
        }
        for h in head.headers.iter() {
            if h.name == http::header::CONTENT_TYPE || h.name == http::header::CONTENT_LENGTH {
                continue;
            }
            headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
        self.out.clear();
        self.out.reserve(512);
        write::response_head(&mut self.out, head.status, head.reason, &headers);
        Started {
            headers,
            head_len: self.out.len() as u64,
            keepalive,
        }
    }

    fn queue_body(&mut self, data: &[u8]) -> u64 {
        let before = self.out.len();
        if self.chunked {
            encode_chunk(&mut self.out, data);
            self.out.extend_from_slice(LAST_CHUNK);
        } else {
            self.out.extend_from_slice(data);
        }
        (self.out.len() - before) as u64
    }

    async fn flush(&mut self) -> io::Result<()> {
        let result = write_flushed(&mut self.io, &self.out).await;
        self.out.clear();
        result
    }

    async fn send_body(&mut self, data: &[u8]) -> io::Result<u64> {
        if !self.chunked {
            write_flushed(&mut self.io, data).await?;
            return Ok(data.len() as u64);
        }
        self.out.clear();
        encode_chunk(&mut self.out, data);
        let n = self.out.len() as u64;
        write_flushed(&mut self.io, &self.out).await?;
        Ok(n)
    }

    async fn send_end(&mut self, trailers: &Headers) -> io::Result<u64> {
        if !self.chunked {
            return Ok(0);
        }
        if trailers.is_empty() {
            write_flushed(&mut self.io, LAST_CHUNK).await?;
            return Ok(LAST_CHUNK.len() as u64);
        }
        self.out.clear();
        self.out.extend_from_slice(b"0\r\n");
        write::header_lines(&mut self.out, trailers);
        self.out.extend_from_slice(b"\r\n");
        let n = self.out.len() as u64;
        write_flushed(&mut self.io, &self.out).await?;
        Ok(n)
    }

    fn end_response(&mut self) {
        self.out = Vec::new();
        self.chunked = false;
    }

    fn start_upgrade(&mut self, reason: Option<&[u8]>, own: Headers, backend: &Headers) -> Started {
        // nginx: Server, Date, Connection: upgrade, then the backend's
        // headers.
        let mut headers = own;
        headers.reserve(backend.len() + 1);
        headers.append_str("Connection", HeaderValue::from_static("upgrade"));
        for h in backend.iter() {
            headers.append_raw(h.raw.clone(), h.name.clone(), h.value.clone());
        }
        self.out.clear();
        self.out.reserve(256);
        write::response_head(&mut self.out, 101, reason, &headers);
        Started {
            headers,
            head_len: self.out.len() as u64,
            keepalive: false,
        }
    }
}
