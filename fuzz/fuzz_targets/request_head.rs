//! Request heads: the scanner never panics, and its verdict does not depend
//! on how the bytes arrive. The first input byte picks a split point and a
//! set of limits; the rest is the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::http1::parse::{HeadLimits, RequestParser};

type Verdict = Result<Option<(usize, usize, usize)>, String>;

/// Parses every head in `stream` fed in pieces cut at `cuts`.
fn run(stream: &[u8], cuts: &[usize], limits: HeadLimits) -> Vec<Verdict> {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain([stream.len()].iter()) {
        let cut = cut.clamp(fed, stream.len());
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(head)) => {
                    out.push(Ok(Some((head.len, head.headers.len(), head.dropped.len()))));
                    // Stop at the first head: what follows may be a body.
                    return out;
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out.push(Ok(None));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let limits = HeadLimits {
        first: 16 << (knob & 3),
        large: 64 << ((knob >> 2) & 3),
        large_count: 1 + usize::from((knob >> 4) & 3),
        underscores: knob & 0x40 != 0,
        ignore_invalid: knob & 0x80 == 0,
    };
    let whole = run(stream, &[], limits);
    let half = stream.len() / 2;
    let third = stream.len() / 3;
    assert_eq!(whole, run(stream, &[half], limits), "split at {half}");
    assert_eq!(whole, run(stream, &[third, 2 * third], limits), "split in thirds");
    let bytewise: Vec<usize> = (1..stream.len().min(300)).collect();
    assert_eq!(whole, run(stream, &bytewise, limits), "byte by byte");
});
