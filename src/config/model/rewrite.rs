//! Parts of the rewrite script as loaded: `rewrite` flags, `if`
//! conditions, `return` (the operations are in the parent module).

use std::sync::Arc;

use super::pattern::CompiledRegex;
use crate::config::template::Template;

/// What happens after a `rewrite` matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteFlag {
    /// Continue with the next rewrite directive.
    None,
    /// Stop and search locations again with the new URI.
    Last,
    /// Stop and stay in this location with the new URI.
    Break,
    /// 302 to the new URI.
    Redirect,
    /// 301 to the new URI.
    Permanent,
}

/// An `if` condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// `($var)`: true unless empty or "0".
    Value(Template),
    /// `($a = b)` / `($a != b)`.
    Compare {
        /// Left side.
        left: Template,
        /// Right side.
        right: Template,
        /// `!=`.
        negate: bool,
    },
    /// `($a ~ re)`, `~*`, `!~`, `!~*`.
    Match {
        /// Subject.
        left: Template,
        /// Pattern.
        regex: Arc<CompiledRegex>,
        /// `!~`.
        negate: bool,
    },
    /// `(-f path)`, `-d`, `-e`, `-x` and their `!` forms.
    File {
        /// The path.
        path: Template,
        /// Which test.
        test: FileTest,
        /// `!-f` and friends.
        negate: bool,
    },
}

/// File tests of `if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTest {
    /// `-f`: a regular file.
    File,
    /// `-d`: a directory.
    Dir,
    /// `-e`: exists.
    Exists,
    /// `-x`: executable.
    Exec,
}

/// A `return` directive.
#[derive(Debug, Clone)]
pub struct Return {
    /// Status code (444 closes the connection without a response).
    pub status: u16,
    /// Body text, or the redirect URL for 301/302/303/307/308.
    pub text: Option<Template>,
}
