//! Access log lines: `log_format` rendered with nginx's escaping.
//!
//! A variable that is not found prints `-`; found values are escaped per
//! the format's `escape=` (default: `"`, `\` and bytes outside printable
//! ASCII as `\xHH`; json: JSON string escapes; none). Literal text of the
//! format is written as is.

use std::cell::RefCell;
use std::io::Write as _;

use crate::config::template::Piece;
use crate::config::{LocConf, LogEscape, LogFormat};
use crate::request::RequestCtx;
use crate::server::Generation;

thread_local! {
    static LINE: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Writes the access log lines of a finished request.
pub fn write(ctx: &mut RequestCtx, conf: &LocConf, generation: &Generation) {
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
            line.clear();
            render(ctx, &target.format, line, value);
            line.push(b'\n');
            if let Some(file) = generation.access_logs.get(&target.path) {
                file.write_line(line);
            }
        }
    });
}

/// Renders one line of `format` (without the newline).
pub fn render(ctx: &mut RequestCtx, format: &LogFormat, line: &mut Vec<u8>, value: &mut Vec<u8>) {
    for piece in &format.template.pieces {
        match piece {
            Piece::Lit(s) => line.extend_from_slice(s.as_bytes()),
            Piece::Var(var) => {
                value.clear();
                let found = ctx.eval_into(var, value);
                match format.escape {
                    LogEscape::Default => {
                        if !found {
                            line.push(b'-');
                        } else {
                            escape_default(value, line);
                        }
                    }
                    LogEscape::Json => escape_json(value, line),
                    LogEscape::None => {
                        if found {
                            line.extend_from_slice(value);
                        } else {
                            line.push(b'-');
                        }
                    }
                }
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
                let _ = write!(out, "\\u{b:04x}");
            }
            b => out.push(b),
        }
    }
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
