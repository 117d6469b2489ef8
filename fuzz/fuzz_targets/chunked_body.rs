//! Chunked bodies: decoding never panics, never hands out more bytes than
//! arrived, and gives the same data and verdict whatever the read sizes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::http1::{BodyKind, BodyReader};

/// A reader that hands out at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

fn decode(data: &[u8], step: usize) -> (Vec<u8>, Result<(), std::io::ErrorKind>) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut reader = BodyReader::new(BodyKind::Chunked);
        let mut io = Trickle { data, step };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        loop {
            match reader.next(&mut io, &mut buf).await {
                Ok(Some(b)) => out.extend_from_slice(&b),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e.kind())),
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (whole, verdict) = decode(data, usize::MAX);
    assert!(whole.len() <= data.len());
    let (small, small_verdict) = decode(data, 7);
    assert_eq!(verdict, small_verdict);
    if verdict.is_ok() {
        assert_eq!(whole, small);
    }
});
