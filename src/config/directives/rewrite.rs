//! The rewrite script: `set`, `return`, `rewrite`, `break`, `if`
//! (ngx_http_rewrite_module).

use super::{Args, Ctx, Directive, T2, T12, T23, arg_template};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{Builder, IfRaw, LocRaw};
use crate::config::template::Template;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("set", Ctx(8 | 16 | 64), T2, set_set, "Assigns a variable in the rewrite phase."),
    d!("return", Ctx(8 | 16 | 64), T12, set_return, "Stops processing and returns a status, text or redirect."),
    d!("rewrite", Ctx(8 | 16 | 64), T23, set_rewrite, "Rewrites `$uri` by regex; `last` searches locations again, `break` stays, `redirect`/`permanent` answer 302/301."),
    d!("break", Ctx(8 | 16 | 64), Args::None, set_break, "Stops the rewrite directives of the current level."),
    block!("if", Ctx(8 | 16 | 64), Args::AtLeast(1), set_if, Ctx::IF, leave_if, "Runs `return`, `rewrite`, `set`, `break` and nested `if` when `($var)`, `=`/`!=`, `~`/`~*`/`!~`/`!~*`, `-f`/`-d`/`-e`/`-x` holds. Inside a location it also takes nginx's `if` directives (`add_header`, `proxy_pass`, `root`, `expires`, `access_log`, `error_page`, `gzip`, `charset`, `limit_rate`, ...): when the condition holds, the block's settings apply from then on, the rest inherited from the location, its `proxy_pass` included; others are refused as not allowed there, as in nginx."),
];

// ---------------------------------------------------------------------------
// Rewrite module subset: set, return.

fn set_set(b: &mut Builder, st: &Statement) -> Result<()> {
    let var = &st.args[0].value;
    let Some(name) = var.strip_prefix('$') else {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid variable name \"{var}\""),
        ));
    };
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid variable name \"{var}\""),
        ));
    }
    if name == "limit_rate" {
        let value = arg_template(st, 1)?;
        b.rewrite_ops().push(RewriteOp::SetLimitRate(value));
        return Ok(());
    }
    if name == "args" {
        let value = arg_template(st, 1)?;
        b.rewrite_ops().push(RewriteOp::SetArgs(value));
        return Ok(());
    }
    if crate::config::var::resolve_builtin(name).is_some() {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    let value = arg_template(st, 1)?;
    let slot = b.declare(name, IndexedKind::Assigned);
    b.rewrite_ops().push(RewriteOp::Set { slot, value });
    Ok(())
}

fn set_return(b: &mut Builder, st: &Statement) -> Result<()> {
    let first = &st.args[0].value;
    let (status, text) = match first.parse::<u16>() {
        Ok(code) => {
            if code > 999 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            (
                code,
                st.args.get(1).map(|_| arg_template(st, 1)).transpose()?,
            )
        }
        Err(_) => {
            if st.args.len() != 1 {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            let lower = first.to_ascii_lowercase();
            if !(lower.starts_with("http://")
                || lower.starts_with("https://")
                || first.starts_with('$'))
            {
                return Err(ConfigError::at(
                    &st.span,
                    format!("invalid return code \"{first}\""),
                ));
            }
            (302, Some(arg_template(st, 0)?))
        }
    };
    b.rewrite_ops()
        .push(RewriteOp::Return(Return { status, text }));
    Ok(())
}

fn set_break(b: &mut Builder, _st: &Statement) -> Result<()> {
    b.rewrite_ops().push(RewriteOp::Break);
    Ok(())
}

fn set_rewrite(b: &mut Builder, st: &Statement) -> Result<()> {
    let regex = b.regex(&st.args[0].value, false, &st.span)?;
    let replacement = arg_template(st, 1)?;
    let flag = match st.args.get(2).map(|w| w.value.as_str()) {
        None => RewriteFlag::None,
        Some("last") => RewriteFlag::Last,
        Some("break") => RewriteFlag::Break,
        Some("redirect") => RewriteFlag::Redirect,
        Some("permanent") => RewriteFlag::Permanent,
        Some(other) => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid parameter \"{other}\""),
            ));
        }
    };
    b.rewrite_ops().push(RewriteOp::Rewrite {
        regex,
        replacement,
        flag,
    });
    Ok(())
}

/// `if (cond) { ... }`: the condition's words arrive split by the lexer
/// (`($a`, `=`, `b)`); the parentheses are stripped from the ends.
fn set_if(b: &mut Builder, st: &Statement) -> Result<()> {
    let mut words: Vec<String> = st.args.iter().map(|w| w.value.clone()).collect();
    let bad = || ConfigError::at(&st.span, "invalid condition");
    let first = words.first_mut().ok_or_else(bad)?;
    if first == "(" {
        words.remove(0);
    } else if let Some(rest) = first.strip_prefix('(') {
        *first = rest.to_string();
    } else {
        return Err(ConfigError::at(
            &st.span,
            format!("invalid condition \"{}\"", st.args[0].value),
        ));
    }
    let last = words.last_mut().ok_or_else(bad)?;
    if last == ")" {
        words.pop();
    } else if let Some(rest) = last.strip_suffix(')') {
        *last = rest.to_string();
    } else {
        return Err(ConfigError::at(&st.span, "missing \")\" in condition"));
    }
    let tpl = |s: &str| Template::parse(s).map_err(|e| ConfigError::at(&st.span, e.to_string()));
    let cond = match words.as_slice() {
        [v] if v.starts_with('$') => Condition::Value(tpl(v)?),
        [op, path]
            if matches!(
                op.as_str(),
                "-f" | "!-f" | "-d" | "!-d" | "-e" | "!-e" | "-x" | "!-x"
            ) =>
        {
            let negate = op.starts_with('!');
            let test = match op.trim_start_matches('!') {
                "-f" => FileTest::File,
                "-d" => FileTest::Dir,
                "-e" => FileTest::Exists,
                _ => FileTest::Exec,
            };
            Condition::File {
                path: tpl(path)?,
                test,
                negate,
            }
        }
        [left, op, right] if left.starts_with('$') => match op.as_str() {
            "=" | "!=" => Condition::Compare {
                left: tpl(left)?,
                right: tpl(right)?,
                negate: op == "!=",
            },
            "~" | "~*" | "!~" | "!~*" => Condition::Match {
                left: tpl(left)?,
                regex: b.regex(right, op.ends_with('*'), &st.span)?,
                negate: op.starts_with('!'),
            },
            other => {
                return Err(ConfigError::at(
                    &st.span,
                    format!("unexpected \"{other}\" in condition"),
                ));
            }
        },
        _ => {
            return Err(ConfigError::at(
                &st.span,
                format!("invalid condition \"{}\"", words.join(" ")),
            ));
        }
    };
    b.if_stack.push(IfRaw {
        cond,
        ops: Vec::new(),
        loc: LocRaw::default(),
        has_conf: false,
    });
    Ok(())
}

/// Ends an `if` block: its script becomes one operation of the enclosing
/// one.
fn leave_if(b: &mut Builder, _: &Statement) -> Result<()> {
    let block = b.if_stack.pop().expect("opened by set_if");
    let conf = if block.has_conf {
        let confs = &mut b.location().if_confs;
        confs.push(block.loc);
        IfConf::Pending(confs.len() - 1)
    } else {
        IfConf::None
    };
    b.rewrite_ops().push(RewriteOp::If {
        cond: block.cond,
        ops: block.ops,
        conf,
    });
    Ok(())
}
