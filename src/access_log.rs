//! Access log lines: `log_format` rendered with nginx's escaping.
//!
//! Values are escaped per the format's `escape=` (default: `"`, `\` and
//! bytes outside printable ASCII as `\xHH`, and `-` for a variable not
//! found; json: JSON string escapes; none: as they are); with json and
//! none a variable not found prints nothing. Literal text of the format is
//! written as is.

use std::cell::RefCell;
use std::io::Write as _;

use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::template::Piece;
use crate::config::var::{Builtin, Var};
use crate::config::{AccessLogTarget, LocConf, LogEscape, LogFormat, LogPath};
use crate::log::{FdCache, Level, LogFile, LogFiles, os_error};
use crate::request::RequestCtx;

thread_local! {
    static LINE: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Counts a finished request in the server's metrics (where its log line
/// is written, whether or not `access_log` is on).
fn count(ctx: &RequestCtx) {
    let attempts: Vec<(&str, Option<u16>)> = ctx
        .upstream
        .attempts
        .iter()
        .map(|a| (a.addr.as_str(), a.status))
        .collect();
    ctx.conn.stats.finished(&crate::stats::Finished {
        server: ctx.server.primary_name(),
        status: ctx.response.status,
        protocol: crate::request::vars::version_text(ctx.version),
        upstream: ctx.upstream.proxy_host.as_deref(),
        attempts: &attempts,
        websocket: ctx.headers.has_token(&http::header::UPGRADE, "websocket"),
    });
}

/// Writes the access log lines of a finished request.
pub fn write(ctx: &mut RequestCtx, conf: &LocConf, files: &LogFiles) {
    count(ctx);
    if conf.access_log.is_empty() {
        return;
    }
    LINE.with(|cell| {
        let (line, value) = &mut *cell.borrow_mut();
        for target in conf.access_log.iter() {
            if let Some(cond) = &target.condition {
                let v = ctx.render(cond);
                if v.is_empty() || v == b"0" {
                    continue;
                }
            }
            let Some(dest) = dest(ctx, conf, target, files) else {
                continue;
            };
            line.clear();
            render(ctx, &target.format, line, value);
            line.push(b'\n');
            if let Err(message) = dest.write(line) {
                ctx.conn.log(Level::Crit, &message);
            }
        }
    });
}

/// Where one line goes: a file opened with the configuration, or a path
/// rendered from variables for this request.
#[derive(Debug)]
enum Dest {
    File(Arc<LogFile>),
    Path {
        path: PathBuf,
        cache: Option<Arc<FdCache>>,
    },
}

impl Dest {
    /// Writes `line`; the error line when a path could not be opened.
    fn write(&self, line: &[u8]) -> Result<(), String> {
        let (path, written) = match self {
            Dest::File(f) => {
                f.write_access(line);
                return Ok(());
            }
            Dest::Path { path, cache: None } => (path, crate::log::append_to(path, line)),
            Dest::Path {
                path,
                cache: Some(c),
            } => (path, c.append(path, line)),
        };
        written.map_err(|e| format!("open() \"{}\" failed {}", path.display(), os_error(&e)))
    }
}

/// The destination of `target` for this request. A path with variables is
/// written only when the location's root directory exists (nginx's check,
/// so that `access_log /var/log/$host.log` makes no file for a name
/// without a site).
fn dest(
    ctx: &mut RequestCtx,
    conf: &LocConf,
    target: &AccessLogTarget,
    files: &LogFiles,
) -> Option<Dest> {
    match &target.path {
        LogPath::File(p) => files.get(p).cloned().map(Dest::File),
        LogPath::Script(t) => {
            let root = ctx.document_root()?;
            let fault = match std::fs::metadata(&root) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some("(20: Not a directory)".to_string()),
                Err(e) => Some(os_error(&e)),
            };
            if let Some(fault) = fault {
                let message = format!("testing \"{}\" existence failed {fault}", root.display());
                ctx.conn.log(Level::Error, &message);
                return None;
            }
            let path = PathBuf::from(std::ffi::OsString::from_vec(ctx.render(t)));
            Some(Dest::Path {
                path,
                cache: conf.open_log_file_cache.clone(),
            })
        }
    }
}

/// Renders one line of `format` (without the newline).
pub fn render(ctx: &mut RequestCtx, format: &LogFormat, line: &mut Vec<u8>, value: &mut Vec<u8>) {
    for piece in &format.template.pieces {
        match piece {
            Piece::Lit(s) => line.extend_from_slice(s.as_bytes()),
            Piece::Var(var) => {
                value.clear();
                let found = ctx.eval_into(var, value);
                escape_value(format.escape, found, value, line);
            }
            Piece::Name(_) => {}
        }
    }
}

fn escape_default(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

fn escape_json(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{b:04X}");
            }
            b => out.push(b),
        }
    }
}

/// Values only known when an upgraded connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    BytesSent,
    BodyBytesSent,
    RequestTime,
    TimeLocal,
    TimeIso8601,
    Msec,
    UpstreamResponseTime,
    WebsocketMessagesIn,
    WebsocketMessagesOut,
    WebsocketCloseCode,
    WebsocketClosedBy,
    WebsocketDuration,
}

fn late(var: &Var) -> Option<Late> {
    Some(match var {
        Var::Builtin(Builtin::BytesSent) => Late::BytesSent,
        Var::Builtin(Builtin::BodyBytesSent) => Late::BodyBytesSent,
        Var::Builtin(Builtin::RequestTime) => Late::RequestTime,
        Var::Builtin(Builtin::TimeLocal) => Late::TimeLocal,
        Var::Builtin(Builtin::TimeIso8601) => Late::TimeIso8601,
        Var::Builtin(Builtin::Msec) => Late::Msec,
        Var::Builtin(Builtin::UpstreamResponseTime) => Late::UpstreamResponseTime,
        Var::Builtin(Builtin::WebsocketMessagesIn) => Late::WebsocketMessagesIn,
        Var::Builtin(Builtin::WebsocketMessagesOut) => Late::WebsocketMessagesOut,
        Var::Builtin(Builtin::WebsocketCloseCode) => Late::WebsocketCloseCode,
        Var::Builtin(Builtin::WebsocketClosedBy) => Late::WebsocketClosedBy,
        Var::Builtin(Builtin::WebsocketDuration) => Late::WebsocketDuration,
        _ => return None,
    })
}

#[derive(Debug)]
enum LinePiece {
    Text(Box<[u8]>),
    Late(Late),
}

/// An access log line rendered when a connection is upgraded, with the
/// values known only at its end (bytes, times) left to fill in. Keeping
/// this instead of the request lets an idle tunnel hold a few hundred
/// bytes rather than the whole request.
#[derive(Debug)]
pub struct PendingLine {
    dest: Dest,
    pieces: Box<[LinePiece]>,
}

/// What a finished tunnel reports for its pending lines.
#[derive(Debug, Clone, Copy)]
pub struct Totals {
    /// `$bytes_sent`.
    pub bytes_sent: u64,
    /// `$body_bytes_sent`.
    pub body_bytes_sent: u64,
    /// `$request_time`.
    pub request_time: std::time::Duration,
    /// The last attempt's `$upstream_response_time`.
    pub upstream_time: Option<std::time::Duration>,
    /// What a WebSocket tunnel reports (`$websocket_*`).
    pub websocket: Option<WebSocketTotals>,
}

/// The `$websocket_*` values of an ended tunnel.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebSocketTotals {
    /// Messages from and to the client, when frames were followed.
    pub messages: Option<(u64, u64)>,
    /// The first close code seen or sent.
    pub close_code: Option<u16>,
    /// `client`, `backend` or `proxy`.
    pub closed_by: &'static str,
    /// From the `101` to the end.
    pub duration: std::time::Duration,
}

impl PendingLine {
    /// Whether the line prints a value only a tunnel following WebSocket
    /// frames knows (message counts, close codes).
    pub fn needs_frames(&self) -> bool {
        self.pieces.iter().any(|p| {
            matches!(
                p,
                LinePiece::Late(
                    Late::WebsocketMessagesIn
                        | Late::WebsocketMessagesOut
                        | Late::WebsocketCloseCode
                )
            )
        })
    }
}

/// Renders the access lines of an upgraded request, leaving markers for
/// the values of its end.
pub fn prerender(ctx: &mut RequestCtx, conf: &LocConf, files: &LogFiles) -> Vec<PendingLine> {
    count(ctx);
    let mut out = Vec::new();
    for target in conf.access_log.iter() {
        if let Some(cond) = &target.condition {
            let v = ctx.render(cond);
            if v.is_empty() || v == b"0" {
                continue;
            }
        }
        let Some(dest) = dest(ctx, conf, target, files) else {
            continue;
        };
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut value = Vec::new();
        for piece in &target.format.template.pieces {
            match piece {
                Piece::Lit(s) => text.extend_from_slice(s.as_bytes()),
                Piece::Var(var) => {
                    if let Some(l) = late(var) {
                        if l == Late::UpstreamResponseTime {
                            // Earlier attempts are known; the last one ends
                            // with the tunnel.
                            let n = ctx.upstream.attempts.len();
                            for a in ctx.upstream.attempts.iter().take(n.saturating_sub(1)) {
                                text.extend_from_slice(crate::request::secs(a.response).as_bytes());
                                text.extend_from_slice(b", ");
                            }
                        }
                        if !text.is_empty() {
                            pieces.push(LinePiece::Text(
                                std::mem::take(&mut text).into_boxed_slice(),
                            ));
                        }
                        pieces.push(LinePiece::Late(l));
                        continue;
                    }
                    value.clear();
                    let found = ctx.eval_into(var, &mut value);
                    escape_value(target.format.escape, found, &value, &mut text);
                }
                Piece::Name(_) => {}
            }
        }
        if !text.is_empty() {
            pieces.push(LinePiece::Text(text.into_boxed_slice()));
        }
        out.push(PendingLine {
            dest,
            pieces: pieces.into_boxed_slice(),
        });
    }
    out
}

/// Writes pending lines with the tunnel's totals.
pub fn finish(lines: &[PendingLine], totals: Totals) {
    LINE.with(|cell| {
        let (line, _) = &mut *cell.borrow_mut();
        for pending in lines {
            line.clear();
            for piece in pending.pieces.iter() {
                match piece {
                    LinePiece::Text(t) => line.extend_from_slice(t),
                    LinePiece::Late(l) => {
                        let _ = match l {
                            Late::BytesSent => write!(line, "{}", totals.bytes_sent),
                            Late::BodyBytesSent => write!(line, "{}", totals.body_bytes_sent),
                            Late::RequestTime => {
                                let t = totals.request_time;
                                write!(line, "{}.{:03}", t.as_secs(), t.subsec_millis())
                            }
                            Late::TimeLocal => {
                                crate::log::time::with_local(|t| {
                                    line.extend_from_slice(t.local.as_bytes())
                                });
                                Ok(())
                            }
                            Late::TimeIso8601 => {
                                crate::log::time::with_local(|t| {
                                    line.extend_from_slice(t.iso8601.as_bytes())
                                });
                                Ok(())
                            }
                            Late::Msec => {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap_or_default();
                                write!(line, "{}.{:03}", now.as_secs(), now.subsec_millis())
                            }
                            Late::UpstreamResponseTime => {
                                line.extend_from_slice(
                                    crate::request::secs(totals.upstream_time).as_bytes(),
                                );
                                Ok(())
                            }
                            Late::WebsocketMessagesIn
                            | Late::WebsocketMessagesOut
                            | Late::WebsocketCloseCode
                            | Late::WebsocketClosedBy
                            | Late::WebsocketDuration => {
                                websocket_value(*l, totals.websocket, line);
                                Ok(())
                            }
                        };
                    }
                }
            }
            line.push(b'\n');
            if let Err(message) = pending.dest.write(line) {
                crate::log::error(Level::Crit, &message);
            }
        }
    });
}

fn escape_value(escape: LogEscape, found: bool, value: &[u8], out: &mut Vec<u8>) {
    match escape {
        LogEscape::Default if !found => out.push(b'-'),
        LogEscape::Default => escape_default(value, out),
        LogEscape::Json => escape_json(value, out),
        // Unescaped formats print nothing for a value not found, as nginx.
        LogEscape::None => out.extend_from_slice(value),
    }
}

/// A `$websocket_*` value of an ended tunnel; `-` when it has none.
fn websocket_value(l: Late, ws: Option<WebSocketTotals>, line: &mut Vec<u8>) {
    let Some(ws) = ws else {
        line.push(b'-');
        return;
    };
    let _ = match (l, ws.messages, ws.close_code) {
        (Late::WebsocketMessagesIn, Some((n, _)), _) => write!(line, "{n}"),
        (Late::WebsocketMessagesOut, Some((_, n)), _) => write!(line, "{n}"),
        (Late::WebsocketCloseCode, _, Some(code)) => write!(line, "{code}"),
        (Late::WebsocketClosedBy, ..) => write!(line, "{}", ws.closed_by),
        (Late::WebsocketDuration, ..) => write!(
            line,
            "{}.{:03}",
            ws.duration.as_secs(),
            ws.duration.subsec_millis()
        ),
        _ => write!(line, "-"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_escapes_like_nginx() {
        let mut out = Vec::new();
        escape_default(b"a\"b\\c\x01\xff", &mut out);
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xFF");
        out.clear();
        escape_json(b"a\"\n\x01", &mut out);
        assert_eq!(out, b"a\\\"\\n\\u0001");
    }
}
