//! Built-in content handlers: `stub_status`, `metrics`, `status_page`.

use http::Method;

use crate::config::model::ContentHandler;
use crate::exchange::{Downstream, Exchange};
use crate::response::Reply;

impl<D: Downstream> Exchange<'_, D> {
    /// A built-in content handler's answer.
    pub(super) fn builtin_content(&mut self, handler: ContentHandler) -> Reply {
        if self.ctx.method != Method::GET && self.ctx.method != Method::HEAD {
            return Reply::error(405, self.conf.server_tokens);
        }
        match handler {
            ContentHandler::StubStatus => {
                let page = self.shared.stats.snapshot().stub_status();
                Reply::text(200, bytes::Bytes::from(page), "text/plain")
            }
            ContentHandler::StatusPage if self.ctx.args.as_deref() == Some("events") => {
                let mut reply = Reply::text(
                    200,
                    bytes::Bytes::from(self.shared.stats.status_events()),
                    "text/event-stream",
                );
                reply.headers.append_str(
                    "Cache-Control",
                    crate::http1::headers::HeaderValue::from_static("no-cache"),
                );
                reply
            }
            ContentHandler::StatusPage => Reply::text(
                200,
                bytes::Bytes::from_static(crate::stats::STATUS_PAGE.as_bytes()),
                "text/html",
            ),
            ContentHandler::Metrics => Reply::text(
                200,
                bytes::Bytes::from(self.shared.stats.prometheus()),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
        }
    }
}
