//! The same raw requests and backend responses sent through Switchyard and
//! through a real nginx with the same configuration, in front of the same
//! recording backend: the client must get the same statuses (and the same
//! bodies from the backend), and the backend must receive the same bytes.
//!
//! Every request is followed on its connection by a second, pipelined
//! request, so that a proxy that reads a request's end differently (the
//! root of request smuggling) shows up as a different second answer or a
//! different second request at the backend. The differences we keep on
//! purpose are listed in [`DELIBERATE`] with their reasons (and in the
//! README); for those the test checks that our verdict is the documented
//! one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::harness::{Proxy, find, read_request};

/// The pipelined request after each case.
const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: next\r\nConnection: close\r\n\r\n";

/// Cases where Switchyard answers differently from nginx 1.22 on purpose.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "resp: no status line",
        "502",
        "nginx 1.22 passes an answer without a status line to the client as HTTP/0.9 (the backend's bytes, raw, whatever the client's version): the backend would choose the client's status line and headers. We answer 502.",
    ),
    (
        "resp: two-digit status",
        "502",
        "the same: not a status line, so nginx 1.22 passes the bytes raw.",
    ),
    (
        "resp: interim 100 first",
        "200 \"hello\"",
        "nginx 1.22 passes a backend's `100 Continue` to the client as the final response, and the real response after it as its body; interim responses are skipped, as RFC 9110 §15.2 has a proxy do.",
    ),
    (
        "resp: duplicate Content-Length",
        "502",
        "nginx 1.22 takes the last Content-Length; two lengths are a framing ambiguity, refused as nginx does since 1.23.",
    ),
    (
        "resp: invalid Content-Length",
        "502",
        "nginx 1.22 reads such a body until the backend closes; refused as nginx does since 1.23.",
    ),
];

/// What the recording backend answers, and whether it keeps the
/// connection open afterwards (a kept-alive backend connection).
#[derive(Clone)]
struct Script {
    response: Vec<u8>,
    hold: bool,
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nbackend";

/// A backend that records each request's bytes (head and body as framed)
/// before answering with the current script.
async fn recording_backend() -> (
    SocketAddr,
    Arc<Mutex<Script>>,
    mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(Mutex::new(Script {
        response: OK.to_vec(),
        hold: false,
    }));
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = script.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let script = shared.lock().unwrap().clone();
            tokio::spawn(async move {
                let Ok(Some(seen)) =
                    tokio::time::timeout(Duration::from_secs(5), read_request(&mut s)).await
                else {
                    return;
                };
                let mut bytes = format!("{}\r\n\r\n", seen.head).into_bytes();
                bytes.extend_from_slice(&seen.body);
                let _ = tx.send(bytes);
                let _ = s.write_all(&script.response).await;
                if script.hold {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, script, rx)
}

/// What one case produced at the client and at the backend.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Status of each response in order, with the body when it is the
    /// backend's (2xx) or the raw bytes when no status line could be read.
    responses: Vec<String>,
    /// Whether the proxy closed the connection within the wait.
    closed: bool,
    /// Requests the backend received, as bytes.
    upstream: Vec<String>,
}

/// The server's name in an error page, which rightly differs.
fn unbrand(text: std::borrow::Cow<'_, str>) -> String {
    let mut text = text.into_owned();
    for brand in ["nginx/", "switchyard/"] {
        while let Some(at) = text.find(brand) {
            let end = text[at..].find('<').map_or(text.len(), |i| at + i);
            text.replace_range(at..end, "SERVER");
        }
    }
    text
}

/// Splits what a client received into responses.
fn responses(mut data: &[u8], head_request: bool) -> Vec<String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Some(end) = find(data, b"\r\n\r\n") else {
            out.push(format!("raw {:?}", unbrand(String::from_utf8_lossy(data))));
            break;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let status: u16 = match head
            .strip_prefix("HTTP/1.1 ")
            .or(head.strip_prefix("HTTP/1.0 "))
        {
            Some(rest) => rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0),
            None => {
                out.push(format!("raw {:?}", unbrand(String::from_utf8_lossy(data))));
                break;
            }
        };
        let lower = head.to_ascii_lowercase();
        let mut rest = &data[end + 4..];
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body: Vec<u8> = if head_request || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if lower.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let Some(eol) = find(rest, b"\r\n") else {
                    rest = &[];
                    break;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&rest[..eol])
                        .split(';')
                        .next()
                        .unwrap()
                        .trim(),
                    16,
                )
                .unwrap_or(0);
                rest = &rest[eol + 2..];
                if size == 0 {
                    rest = find(rest, b"\r\n").map_or(&[][..], |i| &rest[i + 2..]);
                    break;
                }
                let take = size.min(rest.len());
                body.extend_from_slice(&rest[..take]);
                rest = &rest[(take + 2).min(rest.len())..];
            }
            body
        } else if let Some(n) = length {
            let take = n.min(rest.len());
            let b = rest[..take].to_vec();
            rest = &rest[take..];
            b
        } else {
            let b = rest.to_vec();
            rest = &[];
            b
        };
        if (200..300).contains(&status) {
            out.push(format!("{status} {:?}", String::from_utf8_lossy(&body)));
        } else {
            out.push(status.to_string());
        }
        data = rest;
        if status == 101 {
            break;
        }
    }
    out
}

/// Sends `request` (then [`NEXT`]) to `addr` and collects the verdict.
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    upstream: &mut mpsc::UnboundedReceiver<Vec<u8>>,
) -> Verdict {
    while upstream.try_recv().is_ok() {}
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut wire = request.to_vec();
    wire.extend_from_slice(NEXT);
    let _ = s.write_all(&wire).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        let mut tmp = [0u8; 65536];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&tmp[..n]),
            }
        }
    })
    .await
    .is_ok();
    // Backend connections are recorded before they are answered, so all
    // that the proxy forwarded is in by now; a short wait lets a request
    // in flight land.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut seen = Vec::new();
    while let Ok(r) = upstream.try_recv() {
        seen.push(String::from_utf8_lossy(&r).into_owned());
    }
    seen.sort();
    Verdict {
        responses: responses(&got, request.starts_with(b"HEAD ")),
        closed,
        upstream: seen,
    }
}

/// A request with `Host: h` after `line`, then `rest` (more header lines,
/// the empty line, a body).
macro_rules! req {
    ($line:literal, $($rest:tt)+) => {
        concat!($line, "\r\nHost: h\r\n", $($rest)+).as_bytes()
    };
}

/// A POST with `Host: h`, then `headers` (each ending in CRLF), the empty
/// line and `body`.
macro_rules! post {
    ($headers:literal, $body:literal) => {
        concat!("POST / HTTP/1.1\r\nHost: h\r\n", $headers, "\r\n", $body).as_bytes()
    };
}

/// A chunked POST: `Transfer-Encoding: chunked`, then `body`.
macro_rules! chunked {
    ($body:literal) => {
        post!("Transfer-Encoding: chunked\r\n", $body)
    };
}

/// The WebSocket handshake headers.
macro_rules! ws {
    () => {
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    };
}

type Case = (&'static str, &'static [u8]);

/// The request line.
#[rustfmt::skip]
const REQUEST_LINES: &[Case] = &[
    ("plain GET", req!("GET / HTTP/1.1", "\r\n")),
    ("HTTP/1.0 GET", req!("GET / HTTP/1.0", "\r\n")),
    ("HTTP/1.0 keep-alive", req!("GET / HTTP/1.0", "Connection: keep-alive\r\n\r\n")),
    ("HEAD", req!("HEAD / HTTP/1.1", "\r\n")),
    ("two spaces after the method", req!("GET  / HTTP/1.1", "\r\n")),
    ("two spaces before the version", req!("GET /  HTTP/1.1", "\r\n")),
    ("spaces after the version", req!("GET / HTTP/1.1   ", "\r\n")),
    ("tab after the method", req!("GET\t/ HTTP/1.1", "\r\n")),
    ("lower-case method", req!("get / HTTP/1.1", "\r\n")),
    ("unknown method", req!("FROB / HTTP/1.1", "\r\n")),
    ("method with underscore", req!("MY_METHOD / HTTP/1.1", "\r\n")),
    ("method with a digit", req!("GET1 / HTTP/1.1", "\r\n")),
    ("HTTP/1.2", req!("GET / HTTP/1.2", "\r\n")),
    ("HTTP/1.10", req!("GET / HTTP/1.10", "\r\n")),
    ("HTTP/1.01", req!("GET / HTTP/1.01", "\r\n")),
    ("HTTP/2.0", req!("GET / HTTP/2.0", "\r\n")),
    ("HTTP/3.0", req!("GET / HTTP/3.0", "\r\n")),
    ("HTTP/0.9 GET", b"GET /nine\r\n"),
    ("HTTP/0.9 POST", b"POST /nine\r\n"),
    ("HTTP/1 without minor", req!("GET / HTTP/1", "\r\n")),
    ("minor of four digits", req!("GET / HTTP/1.1000", "\r\n")),
    ("major with a leading zero", req!("GET / HTTP/01.1", "\r\n")),
    ("lower-case protocol", req!("GET / http/1.1", "\r\n")),
    ("empty lines before the request", b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: h\n\n"),
    ("CR without LF after the request line", b"GET / HTTP/1.1\rHost: h\r\n\r\n"),
    ("control byte in the target", req!("GET /a\x01b HTTP/1.1", "\r\n")),
    ("DEL in the target", req!("GET /a\x7fb HTTP/1.1", "\r\n")),
    ("bytes above 0x7f in the target", req!("GET /caf\u{e9} HTTP/1.1", "\r\n")),
    ("fragment in the target", req!("GET /a#frag HTTP/1.1", "\r\n")),
    ("space inside the target", req!("GET /a b HTTP/1.1", "\r\n")),
    ("percent-encoded target", req!("GET /a%20b?x=%41 HTTP/1.1", "\r\n")),
    ("absolute form", req!("GET http://example.org/path?q HTTP/1.1", "\r\n")),
    ("absolute form without Host", b"GET http://example.org/path HTTP/1.1\r\n\r\n"),
    ("absolute form with a port", req!("GET http://example.org:8080/p HTTP/1.1", "\r\n")),
    ("absolute form https", req!("GET https://example.org/p HTTP/1.1", "\r\n")),
    ("absolute form IPv6 literal", req!("GET http://[::1]:80/p HTTP/1.1", "\r\n")),
    ("absolute form host with underscore", req!("GET http://a_b.org/p HTTP/1.1", "\r\n")),
    ("absolute form without a path", req!("GET http://example.org HTTP/1.1", "\r\n")),
    ("absolute form query without a path", req!("GET http://example.org?q=1 HTTP/1.1", "\r\n")),
    ("asterisk form", req!("OPTIONS * HTTP/1.1", "\r\n")),
    ("authority form", req!("CONNECT example.org:443 HTTP/1.1", "\r\n")),
];

/// Header lines: names, values, line ends.
#[rustfmt::skip]
const HEADER_LINES: &[Case] = &[
    ("X_Forwarded_For spoof", req!("GET / HTTP/1.1", "X_Forwarded_For: 1.2.3.4\r\n\r\n")),
    ("space before the colon", req!("GET / HTTP/1.1", "X-A : v\r\n\r\n")),
    ("tab before the colon", req!("GET / HTTP/1.1", "X-A\t: v\r\n\r\n")),
    ("obs-fold with a space", req!("GET / HTTP/1.1", "X-A: v\r\n more\r\n\r\n")),
    ("obs-fold with a tab", req!("GET / HTTP/1.1", "X-A: v\r\n\tmore\r\n\r\n")),
    ("line starting with a colon", req!("GET / HTTP/1.1", ": v\r\n\r\n")),
    ("line without a colon", req!("GET / HTTP/1.1", "NoColon\r\n\r\n")),
    ("NUL in a name", req!("GET / HTTP/1.1", "X\x00A: v\r\n\r\n")),
    ("DEL in a name", req!("GET / HTTP/1.1", "X\x7fA: v\r\n\r\n")),
    ("control byte in a name", req!("GET / HTTP/1.1", "X\x01A: v\r\n\r\n")),
    ("name in mixed case", req!("GET / HTTP/1.1", "x-MiXeD: v\r\n\r\n")),
    ("name starting with a digit", req!("GET / HTTP/1.1", "1X: v\r\n\r\n")),
    ("NUL in a value", req!("GET / HTTP/1.1", "X-A: a\x00b\r\n\r\n")),
    ("bare CR in a value", req!("GET / HTTP/1.1", "X-A: a\rb\r\n\r\n")),
    ("DEL in a value", req!("GET / HTTP/1.1", "X-A: a\x7fb\r\n\r\n")),
    ("control byte in a value", req!("GET / HTTP/1.1", "X-A: a\x01b\r\n\r\n")),
    ("bytes above 0x7f in a value", req!("GET / HTTP/1.1", "X-A: caf\u{e9}\r\n\r\n")),
    ("tab inside a value", req!("GET / HTTP/1.1", "X-A: a\tb\r\n\r\n")),
    ("tab before a value", req!("GET / HTTP/1.1", "X-A:\tv\r\n\r\n")),
    ("spaces around a value", req!("GET / HTTP/1.1", "X-A:    v w    \r\n\r\n")),
    ("empty value", req!("GET / HTTP/1.1", "X-A:\r\n\r\n")),
    ("CR CR LF line end", req!("GET / HTTP/1.1", "X-A: v\r\r\n\r\n")),
    ("CR then junk after the last line", req!("GET / HTTP/1.1", "\rX\r\n")),
];

/// Content-Length, Transfer-Encoding, chunks, Expect.
#[rustfmt::skip]
const BODIES: &[Case] = &[
    ("Content-Length", post!("Content-Length: 5\r\n", "hello")),
    ("Content-Length 0", post!("Content-Length: 0\r\n", "")),
    ("Content-Length with a tab before", post!("Content-Length:\t5\r\n", "hello")),
    ("Content-Length with spaces around", post!("Content-Length:  5  \r\n", "hello")),
    ("Content-Length with a plus", post!("Content-Length: +5\r\n", "hello")),
    ("Content-Length negative", post!("Content-Length: -5\r\n", "hello")),
    ("Content-Length with leading zeros", post!("Content-Length: 0005\r\n", "hello")),
    ("Content-Length list", post!("Content-Length: 5, 5\r\n", "hello")),
    ("Content-Length two numbers", post!("Content-Length: 5 5\r\n", "hello")),
    ("Content-Length hex", post!("Content-Length: 0x5\r\n", "hello")),
    ("Content-Length empty", post!("Content-Length:\r\n", "hello")),
    ("Content-Length huge", post!("Content-Length: 99999999999999999999\r\n", "hello")),
    ("Content-Length twice, same", post!("Content-Length: 5\r\nContent-Length: 5\r\n", "hello")),
    ("Content-Length twice, different", post!("Content-Length: 5\r\nContent-Length: 3\r\n", "hello")),
    ("Content-Length shorter than the body", post!("Content-Length: 3\r\n", "hello")),
    ("GET with a body", req!("GET / HTTP/1.1", "Content-Length: 5\r\n\r\nhello")),
    ("chunked", chunked!("5\r\nhello\r\n0\r\n\r\n")),
    ("chunked in capitals", post!("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("chunked with trailing spaces", post!("Transfer-Encoding: chunked  \r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("chunked after a tab", post!("Transfer-Encoding:\tchunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("gzip, chunked", post!("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("chunked, chunked", post!("Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("identity coding", post!("Transfer-Encoding: identity\r\n", "")),
    ("unknown coding", post!("Transfer-Encoding: frob\r\n", "")),
    ("chunked and Content-Length", post!("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("Content-Length and chunked", post!("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("Transfer-Encoding twice", post!("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    ("chunked in HTTP/1.0", req!("POST / HTTP/1.0", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")),
    ("unknown coding in HTTP/1.0", req!("POST / HTTP/1.0", "Transfer-Encoding: frob\r\n\r\n")),
    ("chunk extension", chunked!("5;name=value\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension with a quoted CRLF", chunked!("5;a=\"x\r\ny\"\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension with a bare CR", chunked!("5;a\rb\r\nhello\r\n0\r\n\r\n")),
    ("chunk size after a space", chunked!(" 5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size before a space", chunked!("5 \r\nhello\r\n0\r\n\r\n")),
    ("chunk size with many leading zeros", chunked!("00000000000000000005\r\nhello\r\n0\r\n\r\n")),
    ("chunk size not hex", chunked!("5g\r\nhello\r\n0\r\n\r\n")),
    ("chunk size negative", chunked!("-5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size overflowing", chunked!("fffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    ("chunk data longer than its size", chunked!("3\r\nhello\r\n0\r\n\r\n")),
    ("chunk without CRLF after the data", chunked!("5\r\nhello0\r\n\r\n")),
    ("chunked with LF only", chunked!("5\nhello\n0\n\n")),
    ("chunked with trailers", chunked!("5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    ("last chunk with an extension", chunked!("5\r\nhello\r\n0;x=1\r\n\r\n")),
    ("two chunks", chunked!("2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")),
    ("Expect 100-continue", post!("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello")),
    ("Expect something else", post!("Content-Length: 5\r\nExpect: 42-frob\r\n", "hello")),
    ("Expect twice", post!("Content-Length: 5\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n", "hello")),
];

/// Host, upgrades, Connection.
#[rustfmt::skip]
const HOSTS_AND_UPGRADES: &[Case] = &[
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n"),
    ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n"),
    ("Host twice", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("Host empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    ("Host with a port", b"GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n"),
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
    ("Host IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
    ("Host with two dots", b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n"),
    ("Host with a trailing dot", b"GET / HTTP/1.1\r\nHost: a.b.\r\n\r\n"),
    ("Host with a slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
    ("Host with a backslash", b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n"),
    ("Host in capitals", b"GET / HTTP/1.1\r\nHost: EXAMPLE.org\r\n\r\n"),
    ("Host with a NUL", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n"),
    ("Host with bytes above 0x7f", "GET / HTTP/1.1\r\nHost: caf\u{e9}\r\n\r\n".as_bytes()),
    ("WebSocket handshake answered 200", req!("GET /ws HTTP/1.1", concat!(ws!(), "\r\n"))),
    ("Upgrade on HTTP/1.0", req!("GET /ws HTTP/1.0", concat!(ws!(), "\r\n"))),
    ("Upgrade with a body", req!("POST /ws HTTP/1.1", concat!(ws!(), "Content-Length: 5\r\n\r\nhello"))),
    ("Connection: upgrade, close", req!("GET /ws HTTP/1.1", "Upgrade: websocket\r\nConnection: upgrade, close\r\n\r\n")),
    ("Upgrade without Connection", req!("GET /ws HTTP/1.1", "Upgrade: websocket\r\n\r\n")),
    ("Upgrade h2c on a plain location", req!("GET / HTTP/1.1", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")),
    ("Connection: close", req!("GET / HTTP/1.1", "Connection: close\r\n\r\n")),
    ("Connection listing a header", req!("GET / HTTP/1.1", "Connection: X-Secret\r\nX-Secret: 1\r\n\r\n")),
    ("Keep-Alive and TE headers", req!("GET / HTTP/1.1", "Keep-Alive: 5\r\nTE: trailers\r\n\r\n")),
];

/// The request table: the fixed cases, header names with each byte nginx
/// does not take, and heads around the buffer limits.
fn request_cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> =
        [REQUEST_LINES, HEADER_LINES, BODIES, HOSTS_AND_UPGRADES]
            .concat()
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
            .collect();
    // Header names: nginx takes letters, digits and '-'; other printable
    // bytes make the line invalid (dropped), white space and controls the
    // whole request (400).
    for b in b"_.@!#$%&'*+^`|~(),/;<=>?[]{}\"\\"
        .iter()
        .copied()
        .chain([0x80u8, 0xff])
    {
        let mut req = b"GET / HTTP/1.1\r\nHost: h\r\nX".to_vec();
        req.push(b);
        req.extend_from_slice(b"Y: v\r\n\r\n");
        cases.push((format!("header name with byte 0x{b:02x}"), req));
        // The first byte of a name is scanned in a state of its own.
        let mut req = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        req.push(b);
        req.extend_from_slice(b"XY: v\r\n\r\n");
        cases.push((format!("header name starting with byte 0x{b:02x}"), req));
    }
    let line = |n: usize| format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(n));
    let header = |n: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
            "v".repeat(n)
        )
    };
    let many = |n: usize, size: usize| {
        let mut s = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..n {
            s += &format!("X-H{i:04}: {}\r\n", "v".repeat(size));
        }
        s + "\r\n"
    };
    for (name, text) in [
        ("request line of 8000 bytes", line(7980)),
        ("request line of 9000 bytes", line(9000)),
        ("header line of 8000 bytes", header(8000)),
        ("header line of 9000 bytes", header(9000)),
        ("150 headers", many(150, 4)),
        ("head of 28 KiB", many(4, 7000)),
        ("head of 36 KiB", many(5, 7300)),
        ("head of 40 KiB in small lines", many(1000, 28)),
    ] {
        cases.push((name.to_string(), text.into_bytes()));
    }
    cases
}

/// Backend answers (to `GET /`, or to a WebSocket handshake when the name
/// says so), and whether the backend keeps its connection open after.
#[rustfmt::skip]
const RESPONSES: &[(&str, &[u8], bool)] = &[
    ("resp: Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: Content-Length, kept open", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true),
    ("resp: identity coding and Content-Length, kept open", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", true),
    ("resp: chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("resp: chunked, kept open", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", true),
    ("resp: chunked and Content-Length", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("resp: chunked in HTTP/1.0", b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("resp: gzip, chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false),
    ("resp: unknown coding until close", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: frob\r\n\r\nhello", false),
    ("resp: until close", b"HTTP/1.1 200 OK\r\n\r\nhello", false),
    ("resp: HTTP/1.0 until close", b"HTTP/1.0 200 OK\r\n\r\nhello", false),
    ("resp: obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: space before a colon", b"HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: underscore in a name", b"HTTP/1.1 200 OK\r\nX_A: a\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: NUL in a value", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: bare CR in a value", b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: LF line ends", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", false),
    ("resp: no reason phrase", b"HTTP/1.1 200\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: IIS sub-status", b"HTTP/1.1 200.1 OK\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: repeated status line", b"HTTP/1.1 200 OK\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: interim 100 first", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: status 599", b"HTTP/1.1 599 Odd\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: 204 with a body", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: 304", b"HTTP/1.1 304 Not Modified\r\n\r\n", false),
    ("resp: trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", false),
    ("resp: no status line", b"hello, no status line\r\n", false),
    ("resp: two-digit status", b"HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: duplicate Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", false),
    ("resp: invalid Content-Length", b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello", false),
    ("resp: WebSocket: 101 without Sec-WebSocket-Accept", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false),
    ("resp: WebSocket: 400", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", false),
    ("resp: WebSocket: 200", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
];

/// The backend answer table, with one answer whose head is 6 KiB.
fn response_cases() -> Vec<(String, Vec<u8>, bool)> {
    let mut cases: Vec<(String, Vec<u8>, bool)> = RESPONSES
        .iter()
        .map(|(name, bytes, hold)| (name.to_string(), bytes.to_vec(), *hold))
        .collect();
    let big = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 5\r\n\r\nhello",
        "v".repeat(6000)
    );
    cases.push(("resp: header of 6 KiB".into(), big.into_bytes(), false));
    cases
}

/// The location block both proxies serve; `{b}` is the backend.
fn locations(backend: SocketAddr) -> String {
    format!(
        "client_header_timeout 2s; client_body_timeout 2s;
         location / {{ proxy_pass http://{backend}; }}
         location /ws {{ proxy_pass http://{backend}; proxy_http_version 1.1;
             proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }}"
    )
}

#[tokio::test]
#[ignore = "needs nginx (apt-get install nginx); .ci/run runs it"]
async fn differential_requests_and_responses_match_nginx() {
    let (backend, script, mut upstream) = recording_backend().await;
    let ours = Proxy::http(&format!(
        "server {{ listen 127.0.0.1:0; {} }}",
        locations(backend)
    ))
    .await;
    let server = format!(
        "server {{ listen 127.0.0.1:{{port}}; {} }}",
        locations(backend)
    );
    let nginx = tokio::task::spawn_blocking(move || crate::probe::nginx::start(&server))
        .await
        .unwrap();
    let theirs = SocketAddr::from(([127, 0, 0, 1], nginx.port));

    let requests = request_cases();
    let responses = response_cases();
    eprintln!(
        "{} request cases, {} backend answers",
        requests.len(),
        responses.len()
    );
    assert!(requests.len() >= 150, "{} request cases", requests.len());
    assert!(responses.len() >= 30, "{} response cases", responses.len());
    let mut cases: Vec<(String, Vec<u8>, Script)> = requests
        .into_iter()
        .map(|(name, bytes)| {
            let script = Script {
                response: OK.to_vec(),
                hold: false,
            };
            (name, bytes, script)
        })
        .collect();
    for (name, response, hold) in responses {
        let request = if name.contains("WebSocket") {
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec()
        } else {
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()
        };
        cases.push((name, request, Script { response, hold }));
    }

    let mut differ = Vec::new();
    let mut deliberate_seen = 0;
    for (name, request, case_script) in &cases {
        *script.lock().unwrap() = case_script.clone();
        let mine = exchange(ours.addr(), request, &mut upstream).await;
        let real = exchange(theirs, request, &mut upstream).await;
        // The backend sees each proxy's own address in no header here, so
        // the bytes must be the same; only the port of the backend
        // connection could differ, and it is not sent.
        if let Some((_, expected, _)) = DELIBERATE.iter().find(|(n, _, _)| n == name) {
            deliberate_seen += 1;
            assert_eq!(
                mine.responses.first().map(String::as_str),
                Some(*expected),
                "{name}: the documented difference changed: ours {mine:?}, nginx {real:?}"
            );
            continue;
        }
        if mine != real {
            differ.push(format!("{name}:\n  ours  {mine:?}\n  nginx {real:?}"));
        }
    }
    assert_eq!(
        deliberate_seen,
        DELIBERATE.len(),
        "a deliberate difference names no case"
    );
    assert!(
        differ.is_empty(),
        "{} of {} cases differ from nginx:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// Every status a `return` can give from 200 to 599 (444, which closes
/// the connection without an answer, aside): the status line, code and
/// reason phrase, must be nginx's, for known and unknown codes alike.
#[tokio::test]
#[ignore = "needs nginx (apt-get install nginx); .ci/run runs it"]
async fn differential_status_lines_match_nginx() {
    let codes: Vec<u16> = (200..600).filter(|&c| c != 444).collect();
    let locations: String = codes
        .iter()
        .map(|c| format!("location = /{c} {{ return {c} /text; }}\n"))
        .collect();
    let ours = Proxy::http(&format!("server {{ listen 127.0.0.1:0; {locations} }}")).await;
    let server = format!("server {{ listen 127.0.0.1:{{port}}; {locations} }}");
    let nginx = tokio::task::spawn_blocking(move || crate::probe::nginx::start(&server))
        .await
        .unwrap();
    let theirs = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    let status_line = |text: String| text.lines().next().unwrap_or("").to_string();
    let mut differ = Vec::new();
    for c in &codes {
        let request = format!("GET /{c} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let mine = status_line(crate::harness::raw(ours.addr(), request.as_bytes()).await);
        let real = status_line(crate::harness::raw(theirs, request.as_bytes()).await);
        assert!(
            real.starts_with("HTTP/1.1 "),
            "{c}: nginx answered {real:?}"
        );
        if mine != real {
            differ.push(format!("{c}: ours {mine:?}, nginx {real:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} status lines differ from nginx:\n{}",
        differ.len(),
        codes.len(),
        differ.join("\n")
    );
}
