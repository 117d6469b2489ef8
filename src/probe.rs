//! `switchyard probe URL`: the manual verification steps of WebSocket
//! troubleshooting (resolve, connect, TLS, the handshake with `curl`, a
//! message with `wscat`, waiting to see who cuts an idle connection), done
//! in one command that times each step and ends with a diagnosis worded
//! for the operator. [`client`] is the interactive client built on the
//! same connection code.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::http1::parse::{ResponseHead, parse_response};
use crate::net::UpstreamIo;

pub mod client;
mod tls;

/// A WebSocket URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `wss://` (or `https://`).
    pub tls: bool,
    /// Host name or address, without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query (`/` when absent).
    pub path: String,
}

impl Target {
    /// Parses `ws://`, `wss://`, `http://` or `https://` URLs.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = [
            ("ws://", false),
            ("wss://", true),
            ("http://", false),
            ("https://", true),
        ]
        .iter()
        .find_map(|(p, tls)| {
            url.get(..p.len())
                .filter(|s| s.eq_ignore_ascii_case(p))
                .map(|_| (*tls, &url[p.len()..]))
        })
        .ok_or_else(|| format!("\"{url}\" is not a ws://, wss://, http:// or https:// URL"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let default = if tls { 443 } else { 80 };
        let (host, port) = crate::config::values::split_host_port(authority, default)
            .ok_or_else(|| format!("invalid port in \"{authority}\""))?;
        if host.is_empty() {
            return Err(format!("no host in \"{url}\""));
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// `host:port`, bracketing IPv6 addresses, as `Host` wants it.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A fresh `Sec-WebSocket-Key`.
pub fn fresh_key() -> String {
    tokio_tungstenite::tungstenite::handshake::client::generate_key()
}

/// One step of a probe.
#[derive(Clone, Debug)]
pub struct Step {
    /// `dns`, `tcp`, `tls`, `request`, `response`, `accept`, `ping`, ...
    pub name: &'static str,
    /// Whether it went as a working WebSocket needs.
    pub ok: bool,
    /// How long it took (none for steps that only report).
    pub elapsed: Option<Duration>,
    /// What happened.
    pub detail: String,
}

/// What a probe found.
#[derive(Clone, Debug)]
pub struct Report {
    /// The URL probed.
    pub url: String,
    /// Each step, in order.
    pub steps: Vec<Step>,
    /// The conclusion, for the operator.
    pub diagnosis: String,
    /// Whether the WebSocket works.
    pub works: bool,
}

/// What to probe and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Extra request headers (`Name: value`).
    pub headers: Vec<String>,
    /// `Origin` to send.
    pub origin: Option<String>,
    /// Accept any certificate.
    pub insecure: bool,
    /// Also send a binary message of this many bytes.
    pub size: Option<usize>,
    /// Then stay idle this long and report who cut the connection.
    pub idle: Option<Duration>,
    /// Bound on connecting and on each answer.
    pub timeout: Duration,
}

impl Report {
    fn step(&mut self, name: &'static str, ok: bool, elapsed: Option<Duration>, detail: String) {
        self.steps.push(Step {
            name,
            ok,
            elapsed,
            detail,
        });
    }

    fn end(mut self, works: bool, diagnosis: impl Into<String>) -> Report {
        self.works = works;
        self.diagnosis = diagnosis.into();
        self
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = format!("probe {}\n", self.url);
        for s in &self.steps {
            let t = s.elapsed.map_or(String::new(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1000.0)
            });
            let mark = if s.ok { " " } else { "!" };
            let mut lines = s.detail.lines();
            out.push_str(&format!(
                "{mark} {:<9} {t:>10}  {}\n",
                s.name,
                lines.next().unwrap_or("")
            ));
            for l in lines {
                out.push_str(&format!("  {:<9} {:>10}  {l}\n", "", ""));
            }
        }
        out.push_str(&format!("diagnosis: {}\n", self.diagnosis));
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "url": self.url,
            "works": self.works,
            "diagnosis": self.diagnosis,
            "steps": self.steps.iter().map(|s| json!({
                "step": s.name,
                "ok": s.ok,
                "ms": s.elapsed.map(|d| d.as_secs_f64() * 1000.0),
                "detail": s.detail,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A connected (and, for `wss://`, TLS-wrapped) stream.
pub struct Connected {
    /// The stream.
    pub io: UpstreamIo,
    /// The address connected to.
    pub addr: SocketAddr,
}

/// Why connecting failed, for the diagnosis.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The name does not resolve.
    Dns(String),
    /// Nothing listens (refused).
    Refused(SocketAddr),
    /// No answer in time, or unreachable.
    Unreachable(SocketAddr, String),
    /// The TLS handshake failed; `plain_http` when the port answers plain
    /// HTTP instead.
    Tls(String, bool),
    /// The certificate is not trusted (without `--insecure`).
    Untrusted(String),
}

/// Resolves, connects and (for `wss://`) does TLS, recording each step.
pub async fn connect(
    target: &Target,
    opts: &Options,
    report: &mut Report,
) -> Result<Connected, ConnectFailure> {
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        opts.timeout,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            report.step("dns", false, Some(started.elapsed()), e.to_string());
            return Err(ConnectFailure::Dns(e.to_string()));
        }
        Err(_) => {
            report.step("dns", false, Some(started.elapsed()), "timed out".into());
            return Err(ConnectFailure::Dns("timed out".into()));
        }
    };
    let Some(&addr) = addrs.first() else {
        report.step("dns", false, Some(started.elapsed()), "no address".into());
        return Err(ConnectFailure::Dns("no address".into()));
    };
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    report.step("dns", true, Some(started.elapsed()), list.join(", "));
    let started = Instant::now();
    let tcp = match tokio::time::timeout(opts.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            report.step(
                "tcp",
                false,
                Some(started.elapsed()),
                format!("{addr}: connection refused"),
            );
            return Err(ConnectFailure::Refused(addr));
        }
        Ok(Err(e)) => {
            report.step(
                "tcp",
                false,
                Some(started.elapsed()),
                format!("{addr}: {e}"),
            );
            return Err(ConnectFailure::Unreachable(addr, e.to_string()));
        }
        Err(_) => {
            let why = format!("no answer within {:?}", opts.timeout);
            report.step(
                "tcp",
                false,
                Some(started.elapsed()),
                format!("{addr}: {why}"),
            );
            return Err(ConnectFailure::Unreachable(addr, why));
        }
    };
    let _ = tcp.set_nodelay(true);
    report.step(
        "tcp",
        true,
        Some(started.elapsed()),
        format!("connected to {addr}"),
    );
    if !target.tls {
        return Ok(Connected {
            io: UpstreamIo::Tcp(tcp),
            addr,
        });
    }
    let io = tls::handshake(tcp, target, opts, report).await?;
    Ok(Connected { io, addr })
}

/// Sends the handshake and reads the answer's head (and what follows it).
async fn handshake(
    io: &mut UpstreamIo,
    target: &Target,
    opts: &Options,
    key: &str,
    report: &mut Report,
) -> io::Result<(ResponseHead, BytesMut)> {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        target.path,
        target.authority()
    );
    if let Some(o) = &opts.origin {
        request.push_str(&format!("Origin: {o}\r\n"));
    }
    for h in &opts.headers {
        request.push_str(h.trim());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    report.step("request", true, None, request.trim_end().to_string());
    let started = Instant::now();
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if buf.len() >= 2 && matches!(buf[0], 0x15 | 0x16) && buf[1] == 3 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server answered with TLS",
            ));
        }
        if let Some(head) = parse_response(&mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        {
            let mut text = format!(
                "{:?} {} {}",
                head.version,
                head.status,
                String::from_utf8_lossy(&head.reason)
            );
            for h in head.headers.iter() {
                text.push_str(&format!(
                    "\n{}: {}",
                    String::from_utf8_lossy(&h.raw),
                    String::from_utf8_lossy(h.value.as_bytes())
                ));
            }
            report.step(
                "response",
                head.status == 101,
                Some(started.elapsed()),
                text,
            );
            return Ok((head, buf));
        }
        let n = tokio::time::timeout(opts.timeout, io.read_buf(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer to the handshake"))??;
        if n == 0 {
            let got = String::from_utf8_lossy(&buf).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if got.is_empty() {
                    "closed without an answer".to_string()
                } else {
                    format!("closed after \"{}\"", got.escape_debug())
                },
            ));
        }
    }
}

/// What a status other than 101 means, in the words of the symptom table.
fn diagnose_status(head: &ResponseHead, body: &str) -> String {
    let server = head
        .headers
        .get(&http::header::SERVER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    match head.status {
        400 if body.contains("plain HTTP request was sent to HTTPS port") => {
            "ws:// to an HTTPS port: the port speaks TLS, use wss://".into()
        }
        400 => format!(
            "400 from {}: the backend refused the handshake; the usual cause is a proxy that did not forward the Upgrade and Connection headers (proxy_http_version 1.1, proxy_set_header Upgrade/Connection; `switchyard check` rule SY001)",
            if server.is_empty() { "the server".to_string() } else { format!("\"{server}\"") }
        ),
        502 => "502: the proxy could not reach its backend (nothing listens behind the proxy, or it refused the connection)".into(),
        503 => "503: refused by a limit (limit_conn, limit_req) or no backend is available".into(),
        504 => "504: the backend did not answer the handshake in time (proxy_connect_timeout / proxy_read_timeout)".into(),
        404 => "404: no WebSocket endpoint at this path (check the location and the backend's route)".into(),
        403 => "403: refused (an Origin check, allow/deny, or authentication)".into(),
        426 => "426: the server wants an upgrade the request did not carry (a proxy dropped Upgrade/Connection)".into(),
        200..=299 => format!(
            "handshake answered {}: the backend (or a static location) is not a WebSocket endpoint at this path",
            head.status
        ),
        300..=399 => format!(
            "handshake answered {} (redirect to {}): WebSocket clients do not follow redirects; use the final URL",
            head.status,
            head.headers
                .get(&http::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        ),
        s => format!("handshake answered {s}: not upgraded"),
    }
}

/// Runs a whole probe.
pub async fn probe(url: &str, opts: &Options) -> Report {
    let mut report = Report {
        url: url.to_string(),
        steps: Vec::new(),
        diagnosis: String::new(),
        works: false,
    };
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => return report.end(false, e),
    };
    let mut conn = match connect(&target, opts, &mut report).await {
        Ok(c) => c,
        Err(f) => {
            let why = match f {
                ConnectFailure::Dns(e) => format!("\"{}\" does not resolve ({e})", target.host),
                ConnectFailure::Refused(a) => format!(
                    "nothing listens at {a} (connection refused): the proxy (or backend) is not running on this port"
                ),
                ConnectFailure::Unreachable(a, e) => {
                    format!(
                        "{a} does not answer ({e}): a firewall, a wrong address, or a dead host"
                    )
                }
                ConnectFailure::Tls(e, true) => format!(
                    "wss:// to a plain-HTTP port: the port answers HTTP without TLS (use ws://, or the TLS port) [{e}]"
                ),
                ConnectFailure::Tls(e, false) => format!("TLS handshake failed: {e}"),
                ConnectFailure::Untrusted(e) => format!(
                    "the server's certificate is not trusted ({e}): browsers refuse the wss:// connection; fix the certificate, or use --insecure to test past it"
                ),
            };
            return report.end(false, why);
        }
    };
    let key = fresh_key();
    let (head, leftover) = match handshake(&mut conn.io, &target, opts, &key, &mut report).await {
        Ok(r) => r,
        Err(e) => {
            let plain_reply = !target.tls && e.to_string().contains("answered with TLS");
            let why = if plain_reply {
                "ws:// to a TLS port: the port speaks TLS, use wss://".to_string()
            } else {
                format!("no usable answer to the handshake: {e}")
            };
            report.step("response", false, None, e.to_string());
            return report.end(false, why);
        }
    };
    if head.status != 101 {
        let body = String::from_utf8_lossy(&leftover).into_owned();
        let why = diagnose_status(&head, &body);
        return report.end(false, why);
    }
    let expected = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = head
        .headers
        .get(&http::HeaderName::from_static("sec-websocket-accept"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if accept.as_deref() != Some(expected.as_str()) {
        report.step(
            "accept",
            false,
            None,
            format!("Sec-WebSocket-Accept is {accept:?}, expected \"{expected}\""),
        );
        return report.end(
            false,
            "101 with a wrong Sec-WebSocket-Accept: something on the path rewrote the handshake (browsers close such a connection)",
        );
    }
    report.step(
        "accept",
        true,
        None,
        "Sec-WebSocket-Accept matches the key".into(),
    );
    let mut config = WebSocketConfig::default();
    config.max_message_size = None;
    config.max_frame_size = None;
    let ws = WebSocketStream::from_partially_read(
        conn.io,
        leftover.to_vec(),
        Role::Client,
        Some(config),
    )
    .await;
    exchange(ws, opts, report).await
}

/// After the 101: a ping, the optional large message, the optional idle
/// wait.
async fn exchange(
    mut ws: WebSocketStream<UpstreamIo>,
    opts: &Options,
    mut report: Report,
) -> Report {
    let started = Instant::now();
    let payload = b"switchyard-probe".to_vec();
    if let Err(e) = ws.send(Message::Ping(payload.clone().into())).await {
        report.step("ping", false, None, e.to_string());
        return report.end(
            false,
            "upgraded, but the connection failed at the first frame",
        );
    }
    match wait_for(
        &mut ws,
        opts.timeout,
        |m| matches!(m, Message::Pong(p) if p.as_ref() == payload.as_slice()),
    )
    .await
    {
        Waited::Got(_) => report.step(
            "ping",
            true,
            Some(started.elapsed()),
            "pong received".into(),
        ),
        other => {
            report.step(
                "ping",
                false,
                Some(started.elapsed()),
                other.describe(started),
            );
            return report.end(
                false,
                "upgraded, but no pong came back: frames do not get through (a proxy that does not relay the tunnel, or a backend that does not answer pings)",
            );
        }
    }
    if let Some(size) = opts.size {
        let started = Instant::now();
        let data = vec![0x5a_u8; size];
        if let Err(e) = ws.send(Message::Binary(data.into())).await {
            report.step("message", false, None, format!("{size} bytes: {e}"));
            return report.end(
                false,
                format!("a {size}-byte message could not be sent: {e}"),
            );
        }
        match wait_for(
            &mut ws,
            opts.timeout.max(Duration::from_secs(10)),
            |m| matches!(m, Message::Binary(b) if b.len() == size),
        )
        .await
        {
            Waited::Got(_) => report.step(
                "message",
                true,
                Some(started.elapsed()),
                format!("{size} bytes echoed"),
            ),
            Waited::Timeout => report.step(
                "message",
                true,
                Some(started.elapsed()),
                format!("{size} bytes sent; no echo (the endpoint may not echo)"),
            ),
            other => {
                report.step(
                    "message",
                    false,
                    Some(started.elapsed()),
                    other.describe(started),
                );
                return report.end(
                    false,
                    format!(
                        "a {size}-byte message ended the connection: {}",
                        other.describe(started)
                    ),
                );
            }
        }
    }
    if let Some(idle) = opts.idle {
        let started = Instant::now();
        match wait_for(&mut ws, idle, |_| false).await {
            Waited::Timeout => report.step(
                "idle",
                true,
                Some(started.elapsed()),
                format!("still open after {:.1} s", idle.as_secs_f64()),
            ),
            other => {
                let after = started.elapsed().as_secs_f64();
                report.step(
                    "idle",
                    false,
                    Some(started.elapsed()),
                    other.describe(started),
                );
                let cause = if (59.0..62.0).contains(&after) {
                    " (nginx's default proxy_read_timeout)".to_string()
                } else {
                    String::new()
                };
                return report.end(
                    false,
                    format!(
                        "closed after {after:.1} s idle by {}: a read timeout of about {after:.0} s somewhere on the path{cause}; raise proxy_read_timeout or send pings more often",
                        other.who()
                    ),
                );
            }
        }
    }
    let _ = ws.close(None).await;
    report.end(true, "the WebSocket works")
}

/// How waiting for a frame ended.
enum Waited {
    Got(Message),
    Timeout,
    Closed(Option<(u16, String)>),
    Eof,
    Error(String),
}

impl Waited {
    fn describe(&self, since: Instant) -> String {
        let t = since.elapsed().as_secs_f64();
        match self {
            Waited::Got(m) => format!("received {m:?}"),
            Waited::Timeout => "nothing arrived".into(),
            Waited::Closed(Some((code, reason))) => {
                format!("close frame {code} \"{reason}\" after {t:.1} s")
            }
            Waited::Closed(None) => format!("close frame without a code after {t:.1} s"),
            Waited::Eof => {
                format!("TCP connection closed (FIN) after {t:.1} s, without a close frame")
            }
            Waited::Error(e) => format!("{e} after {t:.1} s"),
        }
    }

    fn who(&self) -> &'static str {
        match self {
            Waited::Closed(_) => "the server (close frame)",
            Waited::Eof => "the server or a proxy (TCP FIN without a close frame)",
            Waited::Error(e) if e.contains("reset") => "the server or a proxy (connection reset)",
            _ => "the server",
        }
    }
}

/// Reads frames until `want` accepts one, the connection ends, or `limit`
/// passes. Pings are answered by the library; other frames are skipped.
async fn wait_for(
    ws: &mut WebSocketStream<UpstreamIo>,
    limit: Duration,
    want: impl Fn(&Message) -> bool,
) -> Waited {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Waited::Timeout,
            Ok(None) => return Waited::Eof,
            Ok(Some(Err(e))) => {
                let text = e.to_string();
                return if text.contains("without closing handshake") {
                    Waited::Eof
                } else {
                    Waited::Error(text)
                };
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Waited::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Ok(Some(Ok(m))) if want(&m) => return Waited::Got(m),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Parses `90s`, `1500ms`, `2m` (nginx's time syntax).
fn duration(v: &str) -> Result<Duration, String> {
    crate::config::values::parse_time(v).ok_or_else(|| format!("invalid duration \"{v}\""))
}

const USAGE: &str =
    "usage: switchyard probe URL [--header 'Name: value']... [--origin ORIGIN] [--insecure]
                        [--size BYTES] [--idle DURATION] [--timeout DURATION] [--format text|json]
       URL: ws://, wss://, http:// or https://
exit status: 0 when the WebSocket works, 1 when it does not, 2 on bad arguments
";

/// Runs `switchyard probe ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let mut opts = Options {
        timeout: Duration::from_secs(10),
        ..Options::default()
    };
    let mut url = None;
    let mut json_out = false;
    let mut it = args.iter();
    let parsed: Result<(), String> = (|| {
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            match a.as_str() {
                "--header" | "-H" => opts.headers.push(value()?),
                "--origin" => opts.origin = Some(value()?),
                "--insecure" | "-k" => opts.insecure = true,
                "--size" => {
                    let v = value()?;
                    opts.size = Some(
                        crate::config::values::parse_size(&v)
                            .ok_or_else(|| format!("invalid size \"{v}\""))?
                            as usize,
                    );
                }
                "--idle" => opts.idle = Some(duration(&value()?)?),
                "--timeout" => opts.timeout = duration(&value()?)?,
                "--format" => {
                    json_out = match value()?.as_str() {
                        "json" => true,
                        "text" => false,
                        other => return Err(format!("unknown format \"{other}\"")),
                    }
                }
                "-h" | "--help" => return Err(String::new()),
                u if url.is_none() && !u.starts_with('-') => url = Some(u.to_string()),
                other => return Err(format!("unknown argument \"{other}\"")),
            }
        }
        Ok(())
    })();
    let url = match (parsed, url) {
        (Ok(()), Some(u)) => u,
        (Err(e), _) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        (Err(e), _) => {
            eprintln!("switchyard probe: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
        (Ok(()), None) => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard probe: {e}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(probe(&url, &opts));
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
