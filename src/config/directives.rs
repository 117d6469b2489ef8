//! The directive table: every directive Switchyard accepts, where, with how
//! many arguments, and what it does.
//!
//! This table is the single source of truth. The walker checks names,
//! contexts and arity against it in nginx's order; the README's directive
//! table is generated from it (`switchyard directives --markdown`), and a
//! test fails when the README is stale.

use std::time::Duration;

use super::ast::Statement;
use super::error::{ConfigError, Result, Span};
use super::model::Cidr;
pub use super::raw::Ctx;
use super::raw::{Builder, LocRaw};
use super::template::Template;
use super::values::{parse_flag, parse_size, parse_time};

/// How many arguments a directive takes.
#[derive(Clone, Copy, Debug)]
pub enum Args {
    /// None.
    None,
    /// Exactly one of these counts.
    Take(&'static [usize]),
    /// One argument, `on` or `off`.
    Flag,
    /// At least this many.
    AtLeast(usize),
}

impl Args {
    /// Whether `n` arguments are acceptable.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Args::None => n == 0,
            Args::Take(counts) => counts.contains(&n),
            Args::Flag => n == 1,
            Args::AtLeast(min) => n >= min,
        }
    }

    /// Text for documentation.
    pub fn describe(self) -> String {
        match self {
            Args::None => "none".into(),
            Args::Flag => "on \\| off".into(),
            Args::AtLeast(n) => format!("{n} or more"),
            Args::Take(counts) => {
                let v: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
                v.join(" or ")
            }
        }
    }
}

/// How fully a directive is implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// Implemented with nginx's semantics (divergences are documented).
    Full,
    /// Accepted as a no-op with a warning: tunes nginx internals only
    /// (buffers, hashes, sendfile...), never security or routing.
    Ignored,
    /// Obsolete in nginx too and ignored there, with a warning naming the
    /// directive that replaced it (this one).
    Obsolete(&'static str),
}

/// Handler signature.
pub type SetFn = fn(&mut Builder, &Statement) -> Result<()>;

/// A block whose statements are directives: the walker applies the row's
/// `set` (which opens the level), then the statements in `ctx`, then
/// `leave` (which closes it). Setters never walk statements themselves, so
/// the walker is the only place that recurses.
#[derive(Clone, Copy)]
pub struct Body {
    /// The context of the statements inside.
    pub ctx: Ctx,
    /// Closes the level once its statements are applied.
    pub leave: SetFn,
}

/// One row of the table.
pub struct Directive {
    /// Name, spelled as nginx spells it.
    pub name: &'static str,
    /// Where it may appear.
    pub contexts: Ctx,
    /// Argument count.
    pub args: Args,
    /// Whether it takes a `{ }` block.
    pub block: bool,
    /// Applies it (for a block with [`Body`]: opens the level).
    pub set: SetFn,
    /// For blocks of directives: their context and closing step. `None`
    /// for simple directives and for blocks that read their own contents
    /// (`map`, `types`).
    pub body: Option<Body>,
    /// Implementation status.
    pub support: Support,
    /// One line for the README.
    pub doc: &'static str,
}

/// nginx directives that Switchyard deliberately does not implement, with
/// the nginx module they belong to, so the "unknown directive" error can say
/// why instead of suggesting a typo.
pub const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("gzip_static", "ngx_http_gzip_static_module"),
    ("gunzip", "ngx_http_gunzip_module"),
    ("ssi", "ngx_http_ssi_module"),
    ("sub_filter", "ngx_http_sub_module"),
    ("fastcgi_pass", "ngx_http_fastcgi_module"),
    ("uwsgi_pass", "ngx_http_uwsgi_module"),
    ("scgi_pass", "ngx_http_scgi_module"),
    ("grpc_pass", "ngx_http_grpc_module"),
    ("proxy_cache_path", "proxy caching"),
    ("proxy_store", "proxy caching"),
    ("autoindex", "ngx_http_autoindex_module"),
    ("stream", "the stream module"),
    ("mail", "the mail module"),
    ("load_module", "dynamic modules"),
    ("secure_link", "ngx_http_secure_link_module"),
];

// ---------------------------------------------------------------------------
// Row constructors, used by every family's table (defined before the family
// modules so that they are in scope there).

/// A simple directive.
macro_rules! d {
    ($name:literal, $ctx:expr, $args:expr, $set:expr, $doc:literal) => {
        $crate::config::directives::Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: false,
            set: $set,
            body: None,
            support: $crate::config::directives::Support::Full,
            doc: $doc,
        }
    };
}

/// A block of directives in context `$inner`: `$set` opens it, `$leave`
/// closes it.
macro_rules! block {
    ($name:literal, $ctx:expr, $args:expr, $set:expr, $inner:expr, $leave:expr, $doc:literal) => {
        $crate::config::directives::Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: true,
            set: $set,
            body: Some($crate::config::directives::Body {
                ctx: $inner,
                leave: $leave,
            }),
            support: $crate::config::directives::Support::Full,
            doc: $doc,
        }
    };
}

/// A block that `$set` reads itself (`map`, `types`).
macro_rules! raw_block {
    ($name:literal, $ctx:expr, $args:expr, $set:expr, $doc:literal) => {
        $crate::config::directives::Directive {
            name: $name,
            contexts: $ctx,
            args: $args,
            block: true,
            set: $set,
            body: None,
            support: $crate::config::directives::Support::Full,
            doc: $doc,
        }
    };
}

/// A performance knob accepted with a warning and no effect.
macro_rules! noop {
    ($name:literal, $ctx:expr, $args:expr, $doc:literal) => {
        $crate::config::directives::Directive {
            support: $crate::config::directives::Support::Ignored,
            ..d!($name, $ctx, $args, $crate::config::directives::ignore, $doc)
        }
    };
}

/// A directive nginx made obsolete and ignores, naming its replacement
/// (`$instead`) in the warning.
macro_rules! obsolete {
    ($name:literal, $ctx:expr, $args:expr, $instead:literal, $doc:literal) => {
        $crate::config::directives::Directive {
            support: $crate::config::directives::Support::Obsolete($instead),
            ..d!($name, $ctx, $args, $crate::config::directives::ignore, $doc)
        }
    };
}

// ---------------------------------------------------------------------------
// The families, one per nginx module (or group of closely related ones).

pub mod access;
pub mod charset;
pub mod core;
pub mod geo;
pub mod gzip;
pub mod http2;
pub mod limits;
pub mod log;
pub mod map;
pub mod proxy;
pub mod rewrite;
pub mod server;
pub mod split_clients;
pub mod ssl;
pub mod static_files;
pub mod status;
pub mod upstream;
pub mod websocket;

// ---------------------------------------------------------------------------
// Shorthands for the tables.

const T1: Args = Args::Take(&[1]);
const T2: Args = Args::Take(&[2]);
const T12: Args = Args::Take(&[1, 2]);
const T23: Args = Args::Take(&[2, 3]);
const MAIN: Ctx = Ctx::MAIN;
const EVENTS: Ctx = Ctx::EVENTS;
const HTTP: Ctx = Ctx::HTTP;
const SERVER: Ctx = Ctx::SERVER;
const LOCATION: Ctx = Ctx::LOCATION;
const UPSTREAM: Ctx = Ctx::UPSTREAM;
const HSL: Ctx = Ctx::HSL;
const HS: Ctx = Ctx::HS;
const SL: Ctx = Ctx::SL;
/// http, server, location and `limit_except`.
const HSLL: Ctx = Ctx(Ctx::HSL.0 | Ctx::LIMIT_EXCEPT.0);
/// http, server, location and `if` in a location (nginx's LIF).
const HSLI: Ctx = Ctx(Ctx::HSL.0 | Ctx::LOCATION_IF.0);
/// http, server, location, `limit_except` and `if` in a location.
const HSLLI: Ctx = Ctx(HSLL.0 | Ctx::LOCATION_IF.0);
const ANY: Ctx = Ctx(0xffff);

fn loc_time(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<Duration>,
) -> Result<()> {
    let v = arg_time(st, 0)?;
    put(f(b.loc()), v, st)
}

fn loc_flag(
    b: &mut Builder,
    st: &Statement,
    f: fn(&mut LocRaw) -> &mut Option<bool>,
) -> Result<()> {
    let v = arg_flag(st);
    put(f(b.loc()), v, st)
}

fn loc_size(b: &mut Builder, st: &Statement, f: fn(&mut LocRaw) -> &mut Option<u64>) -> Result<()> {
    let v = arg_size(st, 0)?;
    put(f(b.loc()), v, st)
}

fn ignore(_: &mut Builder, _: &Statement) -> Result<()> {
    Ok(())
}

fn arg_time(st: &Statement, i: usize) -> Result<Duration> {
    parse_time(&st.args[i].value).ok_or_else(|| invalid_value(st, i))
}

fn arg_size(st: &Statement, i: usize) -> Result<u64> {
    parse_size(&st.args[i].value).ok_or_else(|| invalid_value(st, i))
}

fn arg_flag(st: &Statement) -> bool {
    parse_flag(&st.args[0].value).expect("flag checked by the walker")
}

fn arg_number(st: &Statement, i: usize) -> Result<u64> {
    st.args[i]
        .value
        .parse::<u64>()
        .map_err(|_| invalid_value(st, i))
}

fn arg_template(st: &Statement, i: usize) -> Result<Template> {
    Template::parse(&st.args[i].value).map_err(|e| ConfigError::at(&st.span, e.to_string()))
}

/// An HTTP version argument: `1.0` or `1.1`.
fn arg_http_version(st: &Statement) -> Result<http::Version> {
    match st.args[0].value.as_str() {
        "1.0" => Ok(http::Version::HTTP_10),
        "1.1" => Ok(http::Version::HTTP_11),
        other => Err(ConfigError::at(
            &st.span,
            format!(
                "invalid value \"{other}\" in \"{}\" directive, it must be \"1.0\" or \"1.1\"",
                st.name
            ),
        )),
    }
}

/// An address block (`ADDR[/BITS]` or `unix:`), `None` when `text` is
/// not one. nginx warns when host bits are set beyond the prefix (they
/// are cleared).
fn cidr(b: &mut Builder, span: &Span, text: &str) -> Option<Cidr> {
    let (net, low_bits) = Cidr::parse(text).ok()?;
    if low_bits {
        b.warn(span, format!("low address bits of {text} are meaningless"));
    }
    Some(net)
}

/// The name (without `$`) of the variable argument `i` names: refused
/// unless it starts with `$`.
fn variable_name(st: &Statement, i: usize) -> Result<&str> {
    let text = &st.args[i].value;
    text.strip_prefix('$')
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConfigError::at(&st.span, format!("invalid variable name \"{text}\"")))
}

/// The name (without `$`) of the variable that argument `i` defines
/// (`map`, `geo`, `split_clients`): refused as [`variable_name`] does, and
/// when a built-in variable has it.
fn defined_variable(st: &Statement, i: usize) -> Result<&str> {
    let name = variable_name(st, i)?;
    if super::var::resolve_builtin(name).is_some() {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    Ok(name)
}

fn invalid_value(st: &Statement, i: usize) -> ConfigError {
    ConfigError::at(
        &st.span,
        format!(
            "\"{}\" directive invalid value \"{}\"",
            st.name, st.args[i].value
        ),
    )
}

fn put<T>(slot: &mut Option<T>, value: T, st: &Statement) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(st));
    }
    *slot = Some(value);
    Ok(())
}

// ---------------------------------------------------------------------------
// Generic setters (nginx's `ngx_conf_set_*_slot`).

fn duplicate(st: &Statement) -> ConfigError {
    ConfigError::at(&st.span, format!("\"{}\" directive is duplicate", st.name))
}
