//! Configuration errors, worded as nginx words them.
//!
//! Every message that refers to a place in a file ends in ` in FILE:LINE`
//! (or ` in command line` for `-g` directives), exactly like nginx's
//! `ngx_conf_log_error`, so that operators and tools that grep nginx's
//! `[emerg]` lines read ours unchanged.

use std::fmt;
use std::sync::Arc;

/// Where a token or statement came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The file as it was opened; `None` for the `-g` command-line string.
    pub file: Option<Arc<str>>,
    /// 1-based line number.
    pub line: u32,
    /// Byte offset in the file where it starts (0 when unknown).
    pub start: u32,
    /// Byte offset just past its end: a statement ends after its `;` or
    /// `{` (equal to `start` when unknown).
    pub end: u32,
}

impl Span {
    /// A span inside the `-g` string.
    pub fn command_line() -> Span {
        Span {
            file: None,
            line: 0,
            start: 0,
            end: 0,
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file, self.line),
            None => f.write_str("command line"),
        }
    }
}

/// A configuration error: a message in nginx's vocabulary plus, usually, a
/// place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The message without the location suffix, e.g. `unknown directive "x"`.
    pub message: String,
    /// Where it happened, when the error is about a place in the config.
    pub span: Option<Span>,
    /// Valid for nginx, refused by Switchyard because it does not implement
    /// it: `check --nginx` records such a statement and goes on.
    pub unsupported: bool,
}

impl ConfigError {
    /// An error located at `span`.
    pub fn at(span: &Span, message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            span: Some(span.clone()),
            unsupported: false,
        }
    }

    /// A refusal of something nginx accepts but Switchyard does not
    /// implement, located at `span`.
    pub fn unsupported(span: &Span, message: impl Into<String>) -> ConfigError {
        ConfigError {
            unsupported: true,
            ..ConfigError::at(span, message)
        }
    }

    /// An error that belongs to no particular line (e.g. a missing file named
    /// on the command line).
    pub fn global(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            span: None,
            unsupported: false,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(span) => write!(f, "{} in {}", self.message, span),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand used throughout the config module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
