//! Access log targets and `log_format`s as loaded.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::template::Template;

/// An `access_log` target.
#[derive(Debug, Clone)]
pub struct AccessLogTarget {
    /// Where lines go.
    pub path: LogPath,
    /// The format.
    pub format: Arc<LogFormat>,
    /// `if=`: log only when the value is not empty and not "0".
    pub condition: Option<Template>,
    /// `buffer=`, `flush=`, `gzip` (files without variables only).
    pub buffering: Option<crate::log::Buffering>,
}

/// An access log's path (relative paths are already resolved against the
/// prefix).
#[derive(Debug, Clone)]
pub enum LogPath {
    /// A file, opened when the configuration loads.
    File(PathBuf),
    /// A path with variables, rendered for every line.
    Script(Template),
}

/// A `log_format`.
#[derive(Debug)]
pub struct LogFormat {
    /// The name.
    pub name: String,
    /// The line, without the trailing newline.
    pub template: Template,
    /// `escape=default|json|none`.
    pub escape: LogEscape,
}

/// How variable values are escaped in log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEscape {
    /// `"`, `\`, bytes < 32 and > 126 as `\xHH`.
    Default,
    /// JSON string escaping.
    Json,
    /// Nothing escaped.
    None,
}
