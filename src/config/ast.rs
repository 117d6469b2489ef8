//! The syntax tree: statements with their words, blocks and places.
//!
//! This is the raw, untyped shape of a configuration after `include`
//! expansion. It keeps spans for diagnostics; nothing here knows what a
//! directive means (that is [`super::directives`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Result, Span};
use super::lexer::{End, Lexer, Word};
use super::note::{Mode, Note, NoteKind};
use crate::log::os_error;

/// How deep `include` may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One directive as written: `name args... ;` or `name args... { block }`.
#[derive(Clone, Debug)]
pub struct Statement {
    /// The directive name (first word).
    pub name: String,
    /// The remaining words.
    pub args: Vec<Word>,
    /// The block body, for `{ ... }` statements.
    pub block: Option<Vec<Statement>>,
    /// Where the statement starts.
    pub span: Span,
}

impl Statement {
    /// The argument values as string slices.
    pub fn values(&self) -> Vec<&str> {
        self.args.iter().map(|a| a.value.as_str()).collect()
    }

    /// The span of argument `i` (the statement's own span if out of range).
    pub fn arg_span(&self, i: usize) -> Span {
        match self.args.get(i) {
            Some(word) => Span {
                file: self.span.file.clone(),
                line: word.line,
                start: word.start,
                end: word.end,
            },
            None => self.span.clone(),
        }
    }
}

/// A source file that was read, kept for `-T` (dump the configuration).
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as opened.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// Parses files into statements, expanding `include` as it goes.
pub struct Parser {
    /// Directory that relative `include` paths are resolved against (the
    /// main configuration file's directory, as nginx's conf prefix).
    conf_dir: PathBuf,
    /// Every file read, in order, for `-T`.
    pub files: Vec<SourceFile>,
    /// How strictly to load (lint modes note missing included files).
    pub mode: Mode,
    /// What a lint-mode parse noted instead of failing.
    pub notes: Vec<Note>,
}

impl Parser {
    /// A parser resolving relative includes against `conf_dir`.
    pub fn new(conf_dir: impl Into<PathBuf>) -> Parser {
        Parser {
            conf_dir: conf_dir.into(),
            files: Vec::new(),
            mode: Mode::Serve,
            notes: Vec::new(),
        }
    }

    /// Reads and parses a whole file.
    pub fn parse_file(&mut self, path: &Path) -> Result<Vec<Statement>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::global(format!(
                "open() \"{}\" failed {}",
                path.display(),
                os_error(&e)
            ))
        })?;
        self.parse_text(path, text, 0)
    }

    /// Parses the `-g` string as main-context statements.
    pub fn parse_params(&mut self, params: &str) -> Result<Vec<Statement>> {
        let mut lexer = Lexer::new(params, None);
        let mut out = Vec::new();
        loop {
            let (words, end) = lexer.next_statement()?;
            match end {
                End::Eof => return Ok(out),
                End::BlockEnd => return Err(ConfigError::at(&lexer.span(), "unexpected \"}\"")),
                End::BlockStart => {
                    return Err(ConfigError::at(
                        &lexer.span(),
                        "block directives are not supported in -g option",
                    ));
                }
                End::Semicolon => out.push(statement(words, None, &lexer)),
            }
        }
    }

    fn parse_text(&mut self, path: &Path, text: String, depth: usize) -> Result<Vec<Statement>> {
        let name: Arc<str> = Arc::from(path.display().to_string());
        self.files.push(SourceFile {
            path: path.to_path_buf(),
            text: text.clone(),
        });
        let mut lexer = Lexer::new(&text, Some(name));
        let body = self.parse_block(&mut lexer, false, depth)?;
        Ok(body)
    }

    fn parse_block(
        &mut self,
        lexer: &mut Lexer<'_>,
        nested: bool,
        depth: usize,
    ) -> Result<Vec<Statement>> {
        let mut out = Vec::new();
        loop {
            let (words, end) = lexer.next_statement()?;
            match end {
                End::Eof if nested => {
                    return Err(ConfigError::at(
                        &lexer.span(),
                        "unexpected end of file, expecting \"}\"",
                    ));
                }
                End::Eof => return Ok(out),
                End::BlockEnd if !nested => {
                    return Err(ConfigError::at(&lexer.span(), "unexpected \"}\""));
                }
                End::BlockEnd => return Ok(out),
                End::BlockStart => {
                    let mut st = statement(words, None, lexer);
                    st.block = Some(self.parse_block(lexer, true, depth)?);
                    out.push(st);
                }
                End::Semicolon => {
                    let st = statement(words, None, lexer);
                    if st.name == "include" {
                        out.extend(self.include(&st, depth)?);
                    } else {
                        out.push(st);
                    }
                }
            }
        }
    }

    /// Expands `include PATTERN;` into the statements of every matching file,
    /// in sorted order. A pattern without wildcards must name an existing
    /// file; a wildcard pattern may match nothing (nginx's rules).
    fn include(&mut self, st: &Statement, depth: usize) -> Result<Vec<Statement>> {
        if st.args.len() != 1 {
            return Err(ConfigError::at(
                &st.span,
                "invalid number of arguments in \"include\" directive",
            ));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::at(
                &st.span,
                "include nesting is too deep (a file includes itself?)",
            ));
        }
        let pattern = &st.args[0].value;
        let full = self.conf_dir.join(pattern);
        let has_glob = pattern.contains(['*', '?', '[']);
        let paths: Vec<PathBuf> = if has_glob {
            let matches = glob::glob(&full.to_string_lossy()).map_err(|e| {
                ConfigError::at(
                    &st.span,
                    format!("invalid include pattern \"{pattern}\": {e}"),
                )
            })?;
            let mut paths: Vec<PathBuf> = matches.filter_map(|m| m.ok()).collect();
            paths.retain(|p| p.is_file());
            paths.sort();
            paths
        } else {
            vec![full]
        };
        let mut out = Vec::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    let message = format!("open() \"{}\" failed {}", path.display(), os_error(&e));
                    if self.mode.lint() {
                        self.notes.push(Note {
                            kind: NoteKind::MissingFile,
                            span: st.span.clone(),
                            message,
                        });
                        continue;
                    }
                    return Err(ConfigError::at(&st.span, message));
                }
            };
            out.extend(self.parse_text(&path, text, depth + 1)?);
        }
        if has_glob && out.is_empty() && self.mode.lint() {
            self.notes.push(Note {
                kind: NoteKind::MissingFile,
                span: st.span.clone(),
                message: format!("include \"{pattern}\" matches no file on this machine"),
            });
        }
        Ok(out)
    }
}

/// A statement from its words; the lexer has just read its terminator.
fn statement(mut words: Vec<Word>, block: Option<Vec<Statement>>, lexer: &Lexer<'_>) -> Statement {
    let first = words.remove(0);
    let mut span = lexer.span();
    span.line = first.line;
    span.start = first.start;
    span.end = lexer.offset();
    Statement {
        name: first.value,
        args: words,
        block,
        span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("switchyard-ast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn parser_builds_nested_blocks() {
        let dir = tmpdir("nested");
        let main = dir.join("main.conf");
        std::fs::write(&main, "http {\n  server {\n    listen 80;\n  }\n}\n").unwrap();
        let mut parser = Parser::new(&dir);
        let stmts = parser.parse_file(&main).unwrap();
        assert_eq!(stmts.len(), 1);
        let http = &stmts[0];
        assert_eq!(http.name, "http");
        let server = &http.block.as_ref().unwrap()[0];
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(listen.name, "listen");
        assert_eq!(listen.values(), ["80"]);
        assert_eq!(listen.span.line, 3);
    }

    #[test]
    fn parser_expands_include_globs_in_sorted_order() {
        let dir = tmpdir("glob");
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "b;\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "a;\n").unwrap();
        std::fs::write(dir.join("conf.d/skip.txt"), "c;\n").unwrap();
        std::fs::write(dir.join("main.conf"), "x { include conf.d/*.conf; }\n").unwrap();
        let mut parser = Parser::new(&dir);
        let stmts = parser.parse_file(&dir.join("main.conf")).unwrap();
        let names: Vec<_> = stmts[0]
            .block
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(parser.files.len(), 3);
    }

    #[test]
    fn parser_reports_missing_include_and_unbalanced_braces() {
        let dir = tmpdir("errors");
        std::fs::write(dir.join("main.conf"), "include nope.conf;\n").unwrap();
        let err = Parser::new(&dir)
            .parse_file(&dir.join("main.conf"))
            .unwrap_err();
        assert!(err.message.starts_with("open() \""), "{err}");
        assert!(
            err.message
                .ends_with("failed (2: No such file or directory)"),
            "{err}"
        );
        std::fs::write(dir.join("main.conf"), "http {\n").unwrap();
        let err = Parser::new(&dir)
            .parse_file(&dir.join("main.conf"))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unexpected end of file, expecting \"}\"")
        );
        std::fs::write(dir.join("main.conf"), "}\n").unwrap();
        let err = Parser::new(&dir)
            .parse_file(&dir.join("main.conf"))
            .unwrap_err();
        assert!(err.to_string().starts_with("unexpected \"}\""));
        std::fs::write(dir.join("main.conf"), "include main.conf;\n").unwrap();
        let err = Parser::new(&dir)
            .parse_file(&dir.join("main.conf"))
            .unwrap_err();
        assert!(err.message.contains("too deep"), "{err}");
    }

    #[test]
    fn parser_reads_command_line_params() {
        let mut parser = Parser::new("/");
        let stmts = parser
            .parse_params("daemon off; worker_processes 2;")
            .unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[1].span.to_string(), "command line");
        let err = parser.parse_params("events { }").unwrap_err();
        assert_eq!(
            err.to_string(),
            "block directives are not supported in -g option in command line"
        );
    }
}
