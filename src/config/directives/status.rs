//! Status pages: nginx's `stub_status` (ngx_http_stub_status_module) and
//! Switchyard's Prometheus `metrics`.

use super::{Args, Directive, SL, duplicate};
use crate::config::ast::Statement;
use crate::config::error::Result;
use crate::config::model::ContentHandler;
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("metrics", SL, Args::None, |b, st| set_handler(b, st, ContentHandler::Metrics), "Switchyard's: the location answers with the server's metrics in the Prometheus text format (`switchyard_*`: connections by state, requests by server, status class and protocol, backend attempts by result, open WebSockets by server, location and upstream, handshakes by result, WebSocket messages, bytes and closes, lifetimes, ping round trips, reloads). A content handler like any other: protect it with `allow`/`deny`. Label values come from the configuration, never from requests. GET and HEAD only."),
    d!("status_page", SL, Args::None, |b, st| set_handler(b, st, ContentHandler::StatusPage), "Switchyard's: the location serves a live status page (one embedded HTML page, no external assets): open WebSockets per route and upstream, connection states, message rates, the last 20 closes with their codes, backend attempts by result; it updates itself every second from server-sent events of the same location (`?events`). Protect it like `metrics`. GET and HEAD only."),
    d!("stub_status", SL, Args::Take(&[0, 1]), |b, st| set_handler(b, st, ContentHandler::StubStatus), "The location answers with nginx's basic status page (active connections; accepted, handled, requests; reading, writing, waiting), byte for byte as nginx prints it, so exporters and dashboards built for nginx read it; GET and HEAD only (405 otherwise). An argument (`stub_status on;`, the old form) is taken and ignored, as by nginx."),
];

fn set_handler(b: &mut Builder, st: &Statement, handler: ContentHandler) -> Result<()> {
    let loc = b.loc();
    if loc.content_handler.is_some() {
        return Err(duplicate(st));
    }
    loc.content_handler = Some(handler);
    Ok(())
}
