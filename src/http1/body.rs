//! Reading message bodies: `Content-Length`, chunked (RFC 9112 §7.1) and
//! close-delimited, from a connection's read buffer and socket.
//!
//! Data is handed out as `Bytes` split off the read buffer, so a body
//! passes from one socket to the other without being copied.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::parse::BodyKind;

/// How much to ask the socket for per read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted (nginx streams past long
/// chunk extensions; lines are held whole here, so they are bounded).
const MAX_LINE: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailers,
}

/// Decodes one message body.
#[derive(Debug, Clone)]
pub struct BodyReader {
    kind: BodyKind,
    remaining: u64,
    chunk: Chunk,
    done: bool,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads more bytes into `buf`; `Ok(0)` is end of stream.
pub async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

impl BodyReader {
    /// A reader for a body framed as `kind`.
    pub fn new(kind: BodyKind) -> BodyReader {
        BodyReader {
            kind,
            remaining: match kind {
                BodyKind::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size,
            done: matches!(kind, BodyKind::None | BodyKind::Length(0)),
        }
    }

    /// The framing.
    pub fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes still expected for a `Content-Length` body.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Returns the next piece of body data, or `None` at the end. A
    /// close-delimited body ends at end of stream; any other body ending
    /// early is an `UnexpectedEof` error.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
    ) -> io::Result<Option<Bytes>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(data) = self.decode(buf)? {
                return Ok(Some(data));
            }
            if self.done {
                return Ok(None);
            }
            if fill(io, buf).await? == 0 {
                if self.kind == BodyKind::Close {
                    self.done = true;
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the body was complete",
                ));
            }
        }
    }

    /// Decodes what `buf` holds; `Ok(None)` means more input is needed (or
    /// the body just ended, see `done`).
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.kind {
            BodyKind::None => {
                self.done = true;
                Ok(None)
            }
            BodyKind::Length(_) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (self.remaining.min(buf.len() as u64)) as usize;
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.done = true;
                }
                Ok(Some(buf.split_to(n).freeze()))
            }
            BodyKind::Close => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(buf.split().freeze()))
            }
            BodyKind::Chunked => self.decode_chunked(buf),
        }
    }

    fn decode_chunked(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (left.min(buf.len() as u64)) as usize;
                    let rest = left - n as u64;
                    self.chunk = if rest == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(rest)
                    };
                    return Ok(Some(buf.split_to(n).freeze()));
                }
                Chunk::DataEnd => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err(invalid("invalid chunked body"));
                    }
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.contains(&b'\r') {
                        return Err(invalid("client sent invalid chunked body"));
                    }
                    if line.is_empty() {
                        self.done = true;
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// Takes one line (without its CRLF or LF) off the front of `buf`.
fn take_line(buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    match memchr::memchr(b'\n', buf) {
        Some(i) => {
            let mut line = buf.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(invalid("chunk line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line (its line end removed) as nginx reads it: hex digits
/// from the first byte (no leading white space; any number of leading
/// zeros), then the end, or `;`, space or tab and an extension of any
/// bytes but CR. A size that could overflow a file offset is invalid.
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    const MAX: u64 = i64::MAX as u64;
    let bad = || invalid("client sent invalid chunked body");
    if line.contains(&b'\r') {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for (i, &d) in line.iter().enumerate() {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            b';' | b' ' | b'\t' if i > 0 => break,
            _ => return Err(bad()),
        };
        if n > MAX / 16 {
            return Err(bad());
        }
        n = n * 16 + u64::from(v);
    }
    if line.is_empty() || n > MAX - 5 {
        return Err(bad());
    }
    Ok(n)
}

/// Writes `data` as one chunk (`<hex>\r\n<data>\r\n`) into `out`.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(kind: BodyKind, wire: &[u8]) -> io::Result<(Vec<u8>, BytesMut)> {
        let mut reader = BodyReader::new(kind);
        let mut io = &wire[wire.len().min(3)..];
        let mut buf = BytesMut::from(&wire[..wire.len().min(3)]);
        let mut out = Vec::new();
        while let Some(b) = reader.next(&mut io, &mut buf).await? {
            out.extend_from_slice(&b);
        }
        let mut rest = buf;
        rest.extend_from_slice(io);
        Ok((out, rest))
    }

    #[tokio::test]
    async fn body_reads_chunked_with_extensions_and_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\nworld!\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, rest) = read_all(BodyKind::Chunked, wire).await.unwrap();
        assert_eq!(body, b"helloworld!");
        assert_eq!(&rest[..], b"NEXT");
    }

    #[tokio::test]
    async fn body_reads_length_and_leaves_the_rest() {
        let (body, rest) = read_all(BodyKind::Length(4), b"abcdefg").await.unwrap();
        assert_eq!(body, b"abcd");
        assert_eq!(&rest[..], b"efg");
    }

    #[tokio::test]
    async fn body_reports_truncation_and_bad_chunks() {
        let err = read_all(BodyKind::Length(10), b"abc").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_all(BodyKind::Chunked, b"zz\r\n").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = read_all(BodyKind::Chunked, b"3\r\nabcX\r\n")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let (body, _) = read_all(BodyKind::Close, b"until eof").await.unwrap();
        assert_eq!(body, b"until eof");
    }

    #[tokio::test]
    async fn body_chunk_lines_follow_nginx() {
        for ok in [
            &b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n"[..],
            b"5 \r\nhello\r\n0\t;x\r\n\r\n",
            b"5;a=\"q;r\"\r\nhello\r\n0\r\nT: v\r\n\r\n",
        ] {
            let (body, _) = read_all(BodyKind::Chunked, ok).await.unwrap();
            assert_eq!(body, b"hello", "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b" 5\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"5x\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\r\nhello\r\n0\r\nT: a\rb\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
        ] {
            let err = read_all(BodyKind::Chunked, bad).await.unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn body_chunk_sizes_take_either_case_up_to_the_largest_offset() {
        let (body, _) = read_all(
            BodyKind::Chunked,
            b"A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(body, b"0123456789abcdefghijk");
        // nginx keeps a chunk size 5 below the largest off_t.
        assert_eq!(
            parse_chunk_size(b"7ffffffffffffffa").unwrap(),
            i64::MAX as u64 - 5
        );
        assert!(parse_chunk_size(b"7ffffffffffffffb").is_err());
    }

    #[test]
    fn body_chunk_lines_are_bounded() {
        let mut buf = BytesMut::from(&vec![b'1'; MAX_LINE][..]);
        assert!(take_line(&mut buf).unwrap().is_none(), "at the limit: wait");
        buf.extend_from_slice(b"1");
        assert!(take_line(&mut buf).is_err(), "over it: refuse");
    }

    #[tokio::test]
    async fn body_fill_reads_in_large_pieces() {
        // A full buffer gets room for 16 KiB (written out here, not
        // READ_CHUNK, so that the test states the size), so a long body
        // takes a few large reads, not many small ones.
        const WANT: usize = 16 * 1024;
        let data = vec![7u8; 3 * WANT];
        let mut io = &data[..];
        let mut buf = BytesMut::new();
        assert!(fill(&mut io, &mut buf).await.unwrap() >= WANT);
        let mut buf = BytesMut::with_capacity(WANT);
        buf.extend_from_slice(&data[..WANT - 100]);
        assert!(fill(&mut io, &mut buf).await.unwrap() >= WANT);
    }

    #[test]
    fn body_encodes_chunks() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world, 26 bytes long");
        assert_eq!(out, b"1a\r\nhello world, 26 bytes long\r\n");
    }
}
