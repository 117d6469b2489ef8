//! `error_page`: answering an error with another URI, a named location or
//! a redirect, as nginx's `ngx_http_send_error_page` does.
//!
//! - `error_page 404 /404.html;` redirects internally (the method becomes
//!   `GET`, `HEAD` stays); the answer keeps the original status.
//! - `=code` gives the answer that status; `=` alone gives it the status
//!   of the page's own answer (a proxied or named location's).
//! - `@name` continues in a named location.
//! - Anything else is a URL: a `302` (or the `=` code when it is a
//!   redirect) with that `Location`.
//! - A request is redirected to an error page once, unless
//!   `recursive_error_pages on` lets the page's own error use `error_page`
//!   again (the internal redirect limit still bounds it).

use http::Method;

use crate::config::{ErrorPage, Overwrite};
use crate::exchange::{Downstream, Exchange};
use crate::log::Level;
use crate::response::Reply;

/// The state of one request's error pages.
#[derive(Debug, Default)]
pub struct Pages {
    /// The error that was redirected, and how its answer's status is
    /// chosen; `None` while no error page was used.
    applied: Option<(u16, Overwrite)>,
}

/// What to do with a reply.
pub enum Next {
    /// Send it.
    Send(Reply),
    /// Run the phases again: the URI (or named location) was changed.
    Redirected,
}

/// Statuses a URL `error_page` may answer with instead of 302.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

impl<D: Downstream> Exchange<'_, D> {
    /// Applies `error_page` to `reply` if one matches.
    pub fn error_page(&mut self, mut reply: Reply, pages: &mut Pages) -> Next {
        let conf = self.conf.clone();
        let may_redirect = pages.applied.is_none() || conf.recursive_error_pages;
        let page = (reply.special && may_redirect)
            .then(|| {
                conf.error_pages
                    .iter()
                    .find(|p| p.codes.contains(&reply.error_code))
            })
            .flatten();
        let Some(page) = page else {
            // The page's own answer: an error or redirect generated on the
            // way (a directory redirect, a 404) keeps its own status, as
            // nginx's nested special response resets it; anything else
            // gets the status the error_page chose.
            if let (Some((original, overwrite)), false) = (pages.applied, reply.special) {
                reply.status = match overwrite {
                    Overwrite::Keep if (494..=497).contains(&original) => 400,
                    Overwrite::Keep => original,
                    Overwrite::Status(s) => s,
                    Overwrite::Response => reply.status,
                };
            }
            return Next::Send(reply);
        };
        // A status that ends the connection (400, 413, ...) still does
        // with a custom page.
        if reply.close {
            self.keepalive = false;
        }
        pages.applied = Some((reply.error_code, page.overwrite));
        self.redirect_to(page)
    }

    fn redirect_to(&mut self, page: &ErrorPage) -> Next {
        let tokens = self.conf.server_tokens;
        let target = self.ctx.render_string(&page.uri);
        if let Some(name) = target.strip_prefix('@') {
            self.uri_changed = true;
            return match self.ctx.server.locations.named.get(name) {
                Some(l) => {
                    self.next_named = Some(l.clone());
                    Next::Redirected
                }
                None => {
                    self.log(
                        Level::Error,
                        &format!("could not find named location \"@{name}\""),
                        None,
                    );
                    Next::Send(Reply::error(500, tokens))
                }
            };
        }
        if !target.starts_with('/') {
            let status = match page.overwrite {
                Overwrite::Status(s) if is_redirect(s) => s,
                _ => 302,
            };
            let mut r = Reply::redirect(status, target.as_bytes(), tokens);
            r.special = false;
            return Next::Send(r);
        }
        if self.ctx.method != Method::HEAD {
            self.ctx.method = Method::GET;
        }
        self.uri_changed = true;
        match target.split_once('?') {
            Some((u, a)) => {
                self.ctx.uri = u.to_string();
                self.ctx.args = Some(a.to_string());
            }
            None => self.ctx.uri = target,
        }
        Next::Redirected
    }
}
