//! The walker: applies statements to the [`Builder`] in nginx's order
//! (`ngx_conf_handler`): name, context, terminator, arity, then the
//! directive's setter; for blocks of directives it opens the level, walks
//! the block's statements in the inner context and closes the level.
//!
//! The rows come from every family's table under [`super::directives`];
//! this is the only place that looks them up and the only place that
//! recurses into blocks.

use super::ast::Statement;
use super::directives::{
    Args, Ctx, Directive, NOT_IMPLEMENTED, Support, access, charset, core, geo, gzip, http2,
    limits, log, map, proxy, rewrite, server, split_clients, ssl, static_files, status, upstream,
    websocket,
};
use super::error::{ConfigError, Result, Span};
use super::note::{Mode, Note, NoteKind};
use super::raw::Builder;

/// Every family's table.
const TABLES: &[&[Directive]] = &[
    core::DIRECTIVES,
    log::DIRECTIVES,
    server::DIRECTIVES,
    ssl::DIRECTIVES,
    http2::DIRECTIVES,
    upstream::DIRECTIVES,
    map::DIRECTIVES,
    geo::DIRECTIVES,
    split_clients::DIRECTIVES,
    proxy::DIRECTIVES,
    static_files::DIRECTIVES,
    limits::DIRECTIVES,
    access::DIRECTIVES,
    gzip::DIRECTIVES,
    charset::DIRECTIVES,
    rewrite::DIRECTIVES,
    websocket::DIRECTIVES,
    status::DIRECTIVES,
];

/// Every directive Switchyard knows, family by family.
pub fn all() -> impl Iterator<Item = &'static Directive> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// Finds the row for `name` usable in `ctx` (some names exist in two
/// contexts with different meanings, e.g. `keepalive_timeout` in `http`
/// and in `upstream`); falls back to any row with that name so the caller
/// can report "not allowed here".
pub fn lookup_in(name: &str, ctx: Ctx) -> Option<&'static Directive> {
    let mut any = None;
    for d in all().filter(|d| d.name == name) {
        if d.contexts.contains(ctx) {
            return Some(d);
        }
        any = Some(d);
    }
    any
}

/// Applies statements in context `ctx`.
pub fn walk(b: &mut Builder, stmts: &[Statement], ctx: Ctx) -> Result<()> {
    let saved = b.ctx;
    b.ctx = ctx;
    for st in stmts {
        match apply(b, st) {
            Ok(()) => {}
            // Linting an nginx configuration: what nginx has and Switchyard
            // lacks is noted and skipped, block and all.
            Err(e) if e.unsupported && b.mode == Mode::LintNginx => {
                record(b, &format!("skipped:{}", st.name), &st.span);
                b.notes.push(Note {
                    kind: NoteKind::Skipped,
                    span: st.span.clone(),
                    message: e.message,
                });
            }
            Err(e) => return Err(e),
        }
    }
    b.ctx = saved;
    Ok(())
}

/// Records where directive `name` was written, on the level it applies to
/// (main and events levels share one record).
fn record(b: &mut Builder, name: &str, span: &Span) {
    let origins = match b.ctx {
        Ctx::HTTP | Ctx::SERVER | Ctx::LOCATION | Ctx::IF | Ctx::LIMIT_EXCEPT => {
            &mut b.loc().origins
        }
        Ctx::MAIN | Ctx::EVENTS => &mut b.main.origins,
        _ => return,
    };
    origins
        .entry(name.to_string())
        .or_default()
        .push(span.clone());
}

/// Checks one statement against its row and applies it.
fn apply(b: &mut Builder, st: &Statement) -> Result<()> {
    let Some(d) = lookup_in(&st.name, b.ctx) else {
        let why = NOT_IMPLEMENTED
            .iter()
            .find(|(n, _)| *n == st.name)
            .map(|(_, module)| format!(" ({module} is not implemented by switchyard)"))
            .unwrap_or_default();
        let message = format!("unknown directive \"{}\"{why}", st.name);
        // An nginx module's directive, unknown to Switchyard alone.
        return Err(if b.mode == Mode::LintNginx {
            ConfigError::unsupported(&st.span, message)
        } else {
            ConfigError::at(&st.span, message)
        });
    };
    // Inside a location, an `if` takes nginx's LIF directives too.
    let lif = b.in_location_if() && d.contexts.contains(Ctx::LOCATION_IF);
    if b.ctx == Ctx::IF
        && !d.contexts.contains(Ctx::IF)
        && !lif
        && d.contexts.contains(Ctx::LOCATION)
    {
        return Err(ConfigError::at(
            &st.span,
            format!("\"{}\" directive is not allowed here", st.name),
        ));
    }
    if !d.contexts.contains(b.ctx) && !lif {
        return Err(ConfigError::at(
            &st.span,
            format!("\"{}\" directive is not allowed here", st.name),
        ));
    }
    if !d.block && st.block.is_some() {
        return Err(ConfigError::at(
            &st.span,
            format!("directive \"{}\" is not terminated by \";\"", st.name),
        ));
    }
    if d.block && st.block.is_none() {
        return Err(ConfigError::at(
            &st.span,
            format!("directive \"{}\" has no opening \"{{\"", st.name),
        ));
    }
    if !d.args.accepts(st.args.len()) {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid number of arguments in \"{}\" directive", st.name),
        ));
    }
    if let Args::Flag = d.args
        && super::values::parse_flag(&st.args[0].value).is_none()
    {
        return Err(ConfigError::at(
            &st.span,
            format!(
                "invalid value \"{}\" in \"{}\" directive, it must be \"on\" or \"off\"",
                st.args[0].value, st.name
            ),
        ));
    }
    let warning = match d.support {
        Support::Full => None,
        Support::Ignored => Some(format!(
            "\"{}\" directive is accepted but has no effect in switchyard",
            st.name
        )),
        // nginx's words (ngx_conf_deprecated).
        Support::Obsolete(instead) => Some(format!(
            "the \"{}\" directive is obsolete, use the \"{instead}\" directive instead",
            st.name
        )),
    };
    if let Some(warning) = warning {
        b.warnings.push(ConfigError::at(&st.span, warning));
    }
    record(b, d.name, &st.span);
    (d.set)(b, st)?;
    if let Some(inner) = d.body {
        walk(b, st.block.as_deref().unwrap_or(&[]), inner.ctx)?;
        (inner.leave)(b, st)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_have_unique_name_context_pairs() {
        let rows: Vec<&Directive> = all().collect();
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                assert!(
                    !(a.name == b.name && a.contexts.contains(b.contexts)),
                    "{} appears twice for one context",
                    a.name
                );
            }
        }
    }

    #[test]
    fn directives_lookup_by_context() {
        assert!(lookup_in("keepalive_timeout", Ctx::UPSTREAM).is_some());
        assert!(lookup_in("proxy_pass", Ctx::HTTP).is_some());
        assert!(lookup_in("proxy_pas", Ctx::LOCATION).is_none());
    }
}
