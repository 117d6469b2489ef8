//! Strings with variables in them ("complex values" in nginx's terms).
//!
//! `"$scheme://$host${uri}x"` becomes a list of literal and variable pieces.
//! Variable names are only syntax here; the model resolves each name to a
//! [`Var`] once every `map` and `set` is known, so an unknown
//! name is an error at load time rather than an empty string at run time.

use super::var::Var;

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// A variable, by name as written (without `$` or braces).
    Name(String),
    /// A variable resolved by the model.
    Var(Var),
}

/// A string that may contain `$variables`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Template {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
    /// The source text, for messages and `-T`.
    pub source: String,
}

/// Why a template did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `$` not followed by a name, or `${` without `}`.
    InvalidName(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::InvalidName(s) => write!(f, "invalid variable name in \"{s}\""),
        }
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Template {
    /// Parses `src`. `$1`..`$9` are captures (a single digit, as in nginx).
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let bytes = src.as_bytes();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = src[i..].find('$').map_or(src.len(), |n| i + n);
                lit.push_str(&src[i..next]);
                i = next;
                continue;
            }
            i += 1;
            let (name, next) = if bytes.get(i) == Some(&b'{') {
                let close = src[i..]
                    .find('}')
                    .ok_or_else(|| TemplateError::InvalidName(src.to_string()))?;
                (&src[i + 1..i + close], i + close + 1)
            } else if bytes.get(i).is_some_and(|b| b.is_ascii_digit()) {
                (&src[i..i + 1], i + 1)
            } else {
                let len = bytes[i..].iter().take_while(|b| is_name_byte(**b)).count();
                (&src[i..i + len], i + len)
            };
            if name.is_empty() || !name.bytes().all(is_name_byte) {
                return Err(TemplateError::InvalidName(src.to_string()));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Name(name.to_string()));
            i = next;
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template {
            pieces,
            source: src.to_string(),
        })
    }

    /// A template that is only literal text.
    pub fn literal(text: &str) -> Template {
        let pieces = if text.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Lit(text.to_string())]
        };
        Template {
            pieces,
            source: text.to_string(),
        }
    }

    /// True when the template has no variables.
    pub fn is_const(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Lit(_)))
    }

    /// The literal value of a constant template.
    pub fn const_value(&self) -> Option<String> {
        if !self.is_const() {
            return None;
        }
        Some(
            self.pieces
                .iter()
                .map(|p| match p {
                    Piece::Lit(s) => s.as_str(),
                    _ => "",
                })
                .collect(),
        )
    }

    /// Names of the variables used, as written.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Name(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// True when the template is exactly one variable and nothing else.
    pub fn single_var(&self) -> Option<&Var> {
        match self.pieces.as_slice() {
            [Piece::Var(v)] => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &Template) -> Vec<String> {
        t.pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => format!("'{s}'"),
                Piece::Name(n) => format!("${n}"),
                Piece::Var(_) => "var".into(),
            })
            .collect()
    }

    #[test]
    fn template_splits_literals_and_names() {
        let t = Template::parse("$scheme://$host${uri}x/$1a").unwrap();
        assert_eq!(
            names(&t),
            ["$scheme", "'://'", "$host", "$uri", "'x/'", "$1", "'a'"]
        );
        assert!(!t.is_const());
        let t = Template::parse("plain").unwrap();
        assert_eq!(t.const_value().as_deref(), Some("plain"));
        assert!(Template::parse("").unwrap().pieces.is_empty());
    }

    #[test]
    fn template_rejects_bad_names() {
        assert!(Template::parse("a$").is_err());
        assert!(Template::parse("${x").is_err());
        assert!(Template::parse("$ x").is_err());
        assert!(Template::parse("${a-b}").is_err());
    }
}
