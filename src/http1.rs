//! HTTP/1.x on the wire: heads, bodies and their framing, for both the
//! client side (requests in, responses out) and the backend side (requests
//! out, responses in).
//!
//! Head scanning follows nginx's parser byte for byte (see [`head`]);
//! framing, body decoding and head serialisation are ours too, so that Switchyard can reproduce
//! nginx's bytes: header names as written, nginx's header order, exact
//! `$bytes_sent`, LF-only tolerance, and a clean hand-over of the raw
//! socket (with any pipelined bytes) when a connection is upgraded.

pub mod body;
pub mod head;
pub mod headers;
pub mod parse;
pub mod write;

pub use body::BodyReader;
pub use headers::{Header, Headers};
pub use parse::{BodyKind, RequestHead, ResponseHead};
