//! The rewrite script of a server or location (nginx's rewrite module):
//! `set`, `return`, `rewrite`, `break` and `if`, run in the rewrite phases.

use bytes::Bytes;

use crate::config::{Condition, FileTest, RewriteFlag, RewriteOp};
use crate::exchange::{Downstream, Exchange};
use crate::response::Reply;

/// How a rewrite script ended.
pub enum Flow {
    /// Ran to the end.
    Next,
    /// `break` (or `rewrite ... break`): stay in this location.
    Break,
    /// `rewrite ... last`: search locations again.
    Last,
    /// `return` or a redirecting `rewrite`.
    Reply(Reply),
}

impl<D: Downstream> Exchange<'_, D> {
    /// Runs a rewrite script (`set`, `return`, `if`, `break`, `rewrite`).
    /// Runs a rewrite script.
    pub fn rewrite(&mut self, ops: &[RewriteOp]) -> Flow {
        for op in ops {
            match op {
                RewriteOp::Set { slot, value } => {
                    let v = self.ctx.render(value);
                    self.ctx.assign(*slot, v);
                }
                RewriteOp::SetArgs(value) => {
                    let v = self.ctx.render_string(value);
                    self.ctx.args = Some(v);
                }
                RewriteOp::SetLimitRate(value) => {
                    let v = self.ctx.render_string(value);
                    self.ctx.limit_rate = Some(crate::config::values::parse_size(&v).unwrap_or(0));
                }
                RewriteOp::Return(r) => {
                    let text = r.text.as_ref().map(|t| self.ctx.render(t));
                    return Flow::Reply(self.return_reply(r.status, text));
                }
                RewriteOp::Break => return Flow::Break,
                RewriteOp::If { cond, ops, conf } => {
                    if self.test(cond) {
                        // nginx's implicit location: the block's settings
                        // apply to the request from here on.
                        if let crate::config::IfConf::Conf(c) = conf {
                            self.conf = c.clone();
                        }
                        match self.rewrite(ops) {
                            Flow::Next => {}
                            other => return other,
                        }
                    }
                }
                RewriteOp::Rewrite {
                    regex,
                    replacement,
                    flag,
                } => {
                    let uri = self.ctx.uri.clone();
                    if !self.ctx.regex_match(regex, uri.as_bytes()) {
                        continue;
                    }
                    let new = self.ctx.render_string(replacement);
                    if let Some(flow) = self.apply_rewrite(new, *flag) {
                        return flow;
                    }
                }
            }
        }
        Flow::Next
    }

    /// Applies a matched `rewrite`; `Some` when it ends the script.
    fn apply_rewrite(&mut self, new: String, flag: RewriteFlag) -> Option<Flow> {
        let tokens = self.conf.server_tokens;
        // A trailing `?` drops the old arguments; otherwise new arguments
        // come first and the old ones are appended.
        let (target, keep_args) = match new.strip_suffix('?') {
            Some(t) => (t.to_string(), false),
            None => (new, true),
        };
        let (path, new_args) = match target.split_once('?') {
            Some((p, a)) => (p.to_string(), Some(a.to_string())),
            None => (target, None),
        };
        let args = match (new_args, keep_args.then(|| self.ctx.args.clone()).flatten()) {
            (Some(n), Some(old)) => Some(format!("{n}&{old}")),
            (Some(n), None) => Some(n),
            (None, old) => old,
        };
        let absolute = path.starts_with("http://") || path.starts_with("https://");
        if absolute || matches!(flag, RewriteFlag::Redirect | RewriteFlag::Permanent) {
            let mut url = if absolute {
                path
            } else {
                self.absolute_url(&path)
            };
            if let Some(a) = &args {
                url.push('?');
                url.push_str(a);
            }
            let status = if flag == RewriteFlag::Permanent {
                301
            } else {
                302
            };
            return Some(Flow::Reply(Reply::redirect(status, url.as_bytes(), tokens)));
        }
        self.ctx.uri = path;
        self.ctx.args = args;
        self.uri_changed = true;
        self.rewritten = true;
        match flag {
            RewriteFlag::Last => Some(Flow::Last),
            RewriteFlag::Break => Some(Flow::Break),
            _ => None,
        }
    }

    /// Evaluates an `if` condition.
    fn test(&mut self, cond: &Condition) -> bool {
        match cond {
            Condition::Value(t) => {
                let v = self.ctx.render(t);
                !(v.is_empty() || v == b"0")
            }
            Condition::Compare {
                left,
                right,
                negate,
            } => {
                let l = self.ctx.render(left);
                let r = self.ctx.render(right);
                (l == r) != *negate
            }
            Condition::Match {
                left,
                regex,
                negate,
            } => {
                let l = self.ctx.render(left);
                self.ctx.regex_match(regex, &l) != *negate
            }
            Condition::File { path, test, negate } => {
                let p = self.ctx.render_string(path);
                let meta = std::fs::metadata(&p);
                let holds = match test {
                    FileTest::File => meta.is_ok_and(|m| m.is_file()),
                    FileTest::Dir => meta.is_ok_and(|m| m.is_dir()),
                    FileTest::Exists => meta.is_ok(),
                    FileTest::Exec => {
                        use std::os::unix::fs::PermissionsExt;
                        meta.is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    }
                };
                holds != *negate
            }
        }
    }

    fn return_reply(&mut self, status: u16, text: Option<Vec<u8>>) -> Reply {
        let tokens = self.conf.server_tokens;
        match (status, text) {
            (444, _) => Reply::empty(444),
            (301 | 302 | 303 | 307 | 308, Some(url)) => {
                let url = String::from_utf8_lossy(&url).into_owned();
                let url = if url.starts_with('/') {
                    self.absolute_url(&url)
                } else {
                    url
                };
                Reply::redirect(status, url.as_bytes(), tokens)
            }
            (_, Some(body)) => Reply::text(status, Bytes::from(body), &self.conf.default_type),
            (s, None) if s >= 300 => Reply::error(s, tokens),
            // nginx types an empty answer too (`return 200;` has
            // `Content-Type: text/plain` and `charset` applies).
            (s, None) if (200..300).contains(&s) && s != 204 => {
                Reply::text(s, Bytes::new(), &self.conf.default_type)
            }
            (s, None) => Reply::empty(s),
        }
    }
}
