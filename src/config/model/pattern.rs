//! Compiled regular expressions of a configuration (locations, maps,
//! server names, `if`, `gzip_disable`), with the variable slots their named
//! captures fill.

use regex::bytes::Regex;

/// A regex together with the indexed slots of its named captures.
#[derive(Debug)]
pub struct CompiledRegex {
    /// The compiled expression.
    pub regex: Regex,
    /// The source, for messages.
    pub source: String,
    /// (capture group index, indexed variable slot) for named groups.
    pub named: Vec<(usize, usize)>,
}
