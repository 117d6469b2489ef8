//! The message-head scanners: request heads from clients, response heads
//! from backends, byte by byte, with nginx's verdicts.
//!
//! A proxy in front of other HTTP servers must read a head exactly as the
//! reference server does, or a request it forwards can mean something else
//! to the server behind it. So this is a state machine with nginx's rules
//! (not a general-purpose parser): which bytes end a method, a target, a
//! version; which header names are invalid (dropped under
//! `ignore_invalid_headers`, kept otherwise) and which bytes make the whole
//! head invalid (400); where spaces are skipped; which versions get 505.
//!
//! Request heads are scanned incrementally: [`RequestParser`] remembers
//! where it stopped, so a head that arrives a byte at a time costs one
//! pass. It also keeps the books of nginx's header buffers
//! (`client_header_buffer_size`, then up to `large_client_header_buffers`
//! of the large size, a line never split across two), so the limits give
//! the same 414 or 400 whatever way the bytes were split into reads.

mod line;
mod message;
mod request;
mod response;

pub use message::{HeadError, HeadLimits, RequestHead, ResponseHead};
pub use request::RequestParser;
pub use response::parse_response;
