//! The tokenizer: configuration text to statements' words.
//!
//! It follows nginx's `ngx_conf_read_token` rules so that every file nginx
//! accepts reads the same here:
//!
//! * words are separated by spaces, tabs, CR and LF, and end at `;` or `{`;
//! * `"..."` and `'...'` quote a word; after the closing quote the next
//!   character must be a separator, `;`, `{` or `)` (which then starts a
//!   word of its own, as in `if ($a = "b")`);
//! * a backslash takes the next character literally while scanning, and
//!   `\"`, `\'`, `\\`, `\t`, `\r`, `\n` are unescaped in the word's value
//!   (any other `\x` keeps its backslash, which regexes rely on);
//! * `#` starts a comment only where a word could start;
//! * `${` inside a word does not open a block, so `${var}text` is one word;
//! * `}` ends a block only where a word could start.

use std::sync::Arc;

use super::error::{ConfigError, Result, Span};

/// One argument word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The unescaped value.
    pub value: String,
    /// Whether it was written in quotes (`"..."` or `'...'`).
    pub quoted: bool,
    /// Line where the word starts.
    pub line: u32,
    /// Byte offset of its first character (its opening quote, if quoted).
    pub start: u32,
    /// Byte offset just past its last character (its closing quote).
    pub end: u32,
}

/// What ended a run of words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `;`
    Semicolon,
    /// `{`
    BlockStart,
    /// `}` (with no words before it)
    BlockEnd,
    /// End of input with no words pending.
    Eof,
}

/// Reads statements' words from one file or from the `-g` string.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    file: Option<Arc<str>>,
}

impl<'a> Lexer<'a> {
    /// A lexer over a file's contents; `file` is the name used in errors.
    pub fn new(src: &'a str, file: Option<Arc<str>>) -> Lexer<'a> {
        Lexer {
            src: src.as_bytes(),
            pos: 0,
            line: if file.is_some() { 1 } else { 0 },
            file,
        }
    }

    /// The span for the current position.
    pub fn span(&self) -> Span {
        let pos = self.pos.min(self.src.len()) as u32;
        Span {
            file: self.file.clone(),
            line: self.line,
            start: pos,
            end: pos,
        }
    }

    /// The current byte offset.
    pub fn offset(&self) -> u32 {
        self.pos.min(self.src.len()) as u32
    }

    fn span_at(&self, line: u32) -> Span {
        Span {
            line,
            ..self.span()
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.span(), message)
    }

    /// Reads the words of the next statement and what terminated it.
    pub fn next_statement(&mut self) -> Result<(Vec<Word>, End)> {
        let mut words: Vec<Word> = Vec::new();
        loop {
            // Skip separators and comments until a word or a terminator.
            let Some(&ch) = self.src.get(self.pos) else {
                if words.is_empty() {
                    return Ok((words, End::Eof));
                }
                return Err(self.eof_error());
            };
            match ch {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                }
                b'#' => self.skip_comment(),
                b';' | b'{' => {
                    self.pos += 1;
                    if words.is_empty() {
                        return Err(self.error(format!("unexpected \"{}\"", ch as char)));
                    }
                    let end = if ch == b';' {
                        End::Semicolon
                    } else {
                        End::BlockStart
                    };
                    return Ok((words, end));
                }
                b'}' => {
                    self.pos += 1;
                    if !words.is_empty() {
                        return Err(self.error("unexpected \"}\""));
                    }
                    return Ok((words, End::BlockEnd));
                }
                b'"' | b'\'' => {
                    let word = self.quoted_word(ch)?;
                    words.push(word);
                    // nginx requires a separator (or `;`/`{`) after a quote,
                    // except `)`, which starts the next word: the closing
                    // parenthesis of `if ($x = "a")`.
                    match self.src.get(self.pos) {
                        None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b')') => {}
                        Some(&other) => {
                            return Err(self.error(format!("unexpected \"{}\"", other as char)));
                        }
                    }
                }
                _ => {
                    let word = self.plain_word()?;
                    words.push(word);
                }
            }
        }
    }

    fn eof_error(&self) -> ConfigError {
        if self.file.is_none() {
            self.error("unexpected end of parameter, expecting \";\"")
        } else {
            self.error("unexpected end of file, expecting \";\" or \"}\"")
        }
    }

    fn skip_comment(&mut self) {
        while let Some(&ch) = self.src.get(self.pos) {
            if ch == b'\n' {
                return;
            }
            self.pos += 1;
        }
    }

    /// A word in quotes; `self.pos` is at the opening quote.
    fn quoted_word(&mut self, quote: u8) -> Result<Word> {
        let line = self.line;
        let opening = self.pos as u32;
        self.pos += 1;
        let start = self.pos;
        loop {
            let Some(&ch) = self.src.get(self.pos) else {
                return Err(ConfigError::at(
                    &self.span_at(line),
                    format!(
                        "unexpected end of file, missing terminating \"{}\" character",
                        quote as char
                    ),
                ));
            };
            match ch {
                b'\\' => {
                    // The escaped character is taken as is while scanning.
                    if self.src.get(self.pos + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.pos += 2;
                }
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                _ if ch == quote => {
                    let value = unescape(&self.src[start..self.pos]);
                    self.pos += 1;
                    return Ok(Word {
                        value: self.utf8(value, line)?,
                        quoted: true,
                        line,
                        start: opening,
                        end: self.pos as u32,
                    });
                }
                _ => self.pos += 1,
            }
        }
    }

    /// An unquoted word; `self.pos` is at its first character.
    fn plain_word(&mut self) -> Result<Word> {
        let line = self.line;
        let start = self.pos;
        let mut after_dollar = false;
        while let Some(&ch) = self.src.get(self.pos) {
            match ch {
                b'{' if after_dollar => {}
                b'\\' => {
                    if self.src.get(self.pos + 1) == Some(&b'\n') {
                        self.line += 1;
                    }
                    self.pos += 2;
                    after_dollar = false;
                    continue;
                }
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' => break,
                _ => {}
            }
            after_dollar = ch == b'$';
            self.pos += 1;
        }
        let end = self.pos.min(self.src.len());
        let value = unescape(&self.src[start..end]);
        Ok(Word {
            value: self.utf8(value, line)?,
            quoted: false,
            line,
            start: start as u32,
            end: end as u32,
        })
    }

    fn utf8(&self, bytes: Vec<u8>, line: u32) -> Result<String> {
        String::from_utf8(bytes)
            .map_err(|_| ConfigError::at(&self.span_at(line), "invalid UTF-8 in parameter"))
    }
}

/// Applies nginx's escape rules to a raw word.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'"' | b'\'' | b'\\' => {
                    out.push(raw[i + 1]);
                    i += 2;
                    continue;
                }
                b't' => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(src: &str) -> Result<Vec<(Vec<String>, End)>> {
        let mut lexer = Lexer::new(src, Some(Arc::from("t.conf")));
        let mut out = Vec::new();
        loop {
            let (words, end) = lexer.next_statement()?;
            let done = end == End::Eof;
            out.push((words.into_iter().map(|w| w.value).collect(), end));
            if done {
                return Ok(out);
            }
        }
    }

    fn words(src: &str) -> Vec<String> {
        statements(src).unwrap().remove(0).0
    }

    #[test]
    fn lexer_splits_words_and_terminators() {
        let got = statements("a b;\nc {\n}\n").unwrap();
        assert_eq!(got[0], (vec!["a".into(), "b".into()], End::Semicolon));
        assert_eq!(got[1], (vec!["c".into()], End::BlockStart));
        assert_eq!(got[2], (vec![], End::BlockEnd));
        assert_eq!(got[3], (vec![], End::Eof));
    }

    #[test]
    fn lexer_handles_quotes_and_escapes() {
        assert_eq!(words(r#"a "b c" 'd;e';"#), ["a", "b c", "d;e"]);
        assert_eq!(
            words(r#"a "x\"y" 'it\'s' "t\tn";"#),
            ["a", "x\"y", "it's", "t\tn"]
        );
        // Unknown escapes keep the backslash (regexes need it).
        assert_eq!(words(r"location ~ \.php$;"), ["location", "~", r"\.php$"]);
        // An escaped space joins the word but keeps its backslash, as nginx.
        assert_eq!(words(r"a b\ c;"), ["a", r"b\ c"]);
        assert_eq!(words("a '';"), ["a", ""]);
    }

    #[test]
    fn lexer_comments_only_at_word_start() {
        assert_eq!(words("a # comment ; \n b;"), ["a", "b"]);
        assert_eq!(words("a b#c;"), ["a", "b#c"]);
    }

    #[test]
    fn lexer_keeps_braced_variables_in_words() {
        assert_eq!(words("set $a ${b}c;"), ["set", "$a", "${b}c"]);
        assert_eq!(words("a x};"), ["a", "x}"]);
    }

    #[test]
    fn lexer_reports_errors_like_nginx() {
        let err = statements("a \"b\"c;").unwrap_err();
        assert_eq!(err.to_string(), "unexpected \"c\" in t.conf:1");
        let err = statements("\n;").unwrap_err();
        assert_eq!(err.to_string(), "unexpected \";\" in t.conf:2");
        let err = statements("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected end of file, expecting \";\" or \"}\" in t.conf:1"
        );
        let err = statements("a }").unwrap_err();
        assert_eq!(err.to_string(), "unexpected \"}\" in t.conf:1");
        let mut lexer = Lexer::new("daemon off", None);
        let err = lexer.next_statement().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected end of parameter, expecting \";\" in command line"
        );
    }

    #[test]
    fn lexer_counts_lines_inside_quotes() {
        let mut lexer = Lexer::new("a \"x\ny\";\nb;", Some(Arc::from("t.conf")));
        lexer.next_statement().unwrap();
        let (words, _) = lexer.next_statement().unwrap();
        assert_eq!(words[0].line, 3);
    }
}
