//! Configuration: nginx's language, read into a typed model.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! text --lexer--> words --ast--> statements (includes expanded, spans kept)
//!      --walk + directives/*--> raw per-level settings --finish--> model::Config
//! ```
//!
//! `-t`, `serve` and reload all run the whole pipeline; only a fully valid
//! configuration ever reaches the server. Errors are nginx's messages with
//! nginx's ` in FILE:LINE` suffix.

pub mod ast;
pub mod directives;
pub mod error;
pub mod finish;
pub mod lexer;
pub mod listen;
pub mod model;
pub mod note;
pub mod raw;
pub mod template;
pub mod values;
pub mod var;
pub mod walk;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfigError, Span};
pub use model::*;
pub use note::{Mode, Note, NoteKind};

/// Where to read a configuration from.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `-p`: the prefix relative paths resolve against.
    pub prefix: PathBuf,
    /// `-c`: the main file.
    pub conf_file: PathBuf,
    /// `-g`: extra main-context directives.
    pub params: Option<String>,
    /// How strictly to load.
    pub mode: Mode,
    /// The file holds what goes inside `http { }` (a `conf.d` file, as
    /// `include`d from an http block): read it as if included there.
    pub http_snippet: bool,
}

impl LoadOptions {
    /// Options for `conf_file` with the prefix `prefix`.
    pub fn new(prefix: impl Into<PathBuf>, conf_file: impl Into<PathBuf>) -> LoadOptions {
        LoadOptions {
            prefix: prefix.into(),
            conf_file: conf_file.into(),
            params: None,
            mode: Mode::Serve,
            http_snippet: false,
        }
    }
}

/// The directory of the main configuration file (`-p` when it has none).
fn conf_dir_of(opts: &LoadOptions) -> PathBuf {
    opts.conf_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.prefix.clone())
}

/// Reads, parses and validates a configuration.
pub fn load(opts: &LoadOptions) -> Result<Config, ConfigError> {
    let conf_dir = opts
        .conf_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.prefix.clone());
    let mut parser = ast::Parser::new(conf_dir);
    parser.mode = opts.mode;
    let params = match &opts.params {
        Some(p) => parser.parse_params(p)?,
        None => Vec::new(),
    };
    let mut stmts = parser.parse_file(&opts.conf_file)?;
    if opts.http_snippet {
        let span = stmts
            .first()
            .map(|s| s.span.clone())
            .unwrap_or_else(Span::command_line);
        stmts = vec![ast::Statement {
            name: "http".into(),
            args: Vec::new(),
            block: Some(stmts),
            span,
        }];
    }
    let mut builder = raw::Builder::new(opts.prefix.clone());
    builder.mode = opts.mode;
    builder.conf_dir = conf_dir_of(opts);
    walk::walk(&mut builder, &params, directives::Ctx::MAIN)?;
    walk::walk(&mut builder, &stmts, directives::Ctx::MAIN)?;
    let has_http = builder.main.http_seen;
    let (main, http, warnings, mut notes) = finish::finish(builder, has_http)?;
    notes.splice(0..0, parser.notes);
    Ok(Config {
        main,
        http: http.map(Arc::new),
        files: parser.files,
        warnings,
        notes,
        prefix: opts.prefix.clone(),
        conf_file: opts.conf_file.clone(),
    })
}

/// Loads a configuration from text (tests, `demo`): the text is written to
/// `dir/switchyard.conf` first so that messages and includes have a place.
pub fn load_str(text: &str, dir: &Path) -> Result<Config, ConfigError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        ConfigError::global(format!(
            "mkdir \"{}\" failed {}",
            dir.display(),
            crate::log::os_error(&e)
        ))
    })?;
    let file = dir.join("switchyard.conf");
    std::fs::write(&file, text).map_err(|e| {
        ConfigError::global(format!(
            "write \"{}\" failed {}",
            file.display(),
            crate::log::os_error(&e)
        ))
    })?;
    load(&LoadOptions::new(dir, file))
}
