//! Status pages: nginx's `stub_status` (ngx_http_stub_status_module).

use super::{Args, Directive, SL, duplicate};
use crate::config::ast::Statement;
use crate::config::error::Result;
use crate::config::model::ContentHandler;
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("stub_status", SL, Args::Take(&[0, 1]), set_stub_status, "The location answers with nginx's basic status page (active connections; accepted, handled, requests; reading, writing, waiting), byte for byte as nginx prints it, so exporters and dashboards built for nginx read it; GET and HEAD only (405 otherwise). An argument (`stub_status on;`, the old form) is taken and ignored, as by nginx."),
];

fn set_stub_status(b: &mut Builder, st: &Statement) -> Result<()> {
    let loc = b.loc();
    if loc.content_handler.is_some() {
        return Err(duplicate(st));
    }
    loc.content_handler = Some(ContentHandler::StubStatus);
    Ok(())
}
