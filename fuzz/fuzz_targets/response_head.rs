//! Backend response heads and their body framing: never a panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::http1::parse::{parse_response, response_body_kind};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(head)) = parse_response(&mut buf) {
        assert!(head.len <= data.len());
        let _ = response_body_kind(&head, &http::Method::GET);
    }
});
