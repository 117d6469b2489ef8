//! `split_clients`: a variable that splits clients by a hash
//! (ngx_http_split_clients_module).

use super::{Directive, HTTP, T2, arg_template, defined_variable};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    raw_block!("split_clients", HTTP, T2, set_split_clients, "A variable from a MurmurHash2 of a value, by percentages (`PERCENT% VALUE`, `* VALUE` for the rest), as nginx splits."),
];

fn set_split_clients(b: &mut Builder, st: &Statement) -> Result<()> {
    let source = arg_template(st, 0)?;
    let name = defined_variable(st, 1)?;
    let mut shares = Vec::new();
    let mut values = Vec::new();
    for line in st.block.as_deref().unwrap_or(&[]) {
        if line.block.is_some() {
            return Err(ConfigError::at(&line.span, "unexpected \"{\""));
        }
        if line.args.len() != 1 {
            return Err(ConfigError::at(
                &line.span,
                "invalid number of the split_clients parameters",
            ));
        }
        let key = line.name.as_str();
        let share = match key {
            "*" => Some(0),
            _ => key.strip_prefix('%').map_or_else(
                || {
                    key.strip_suffix('%')
                        .and_then(hundredths)
                        .filter(|&n| n > 0)
                },
                |_| None,
            ),
        };
        let Some(share) = share else {
            return Err(ConfigError::at(
                &line.span,
                format!("invalid percent value \"{key}\""),
            ));
        };
        shares.push(share);
        values.push(line.args[0].value.clone().into_bytes().into_boxed_slice());
    }
    let bounds = split_bounds(&shares)
        .ok_or_else(|| ConfigError::at(&st.span, "percent total is greater than 100%"))?;
    let index = b.http.splits.len();
    b.http.splits.push(SplitDef {
        source,
        parts: bounds.into_iter().zip(values).collect(),
        output: name.to_string(),
        span: st.span.clone(),
    });
    let slot = b.declare(name, IndexedKind::Split(index));
    b.indexed[slot].kind = IndexedKind::Split(index);
    Ok(())
}

/// A percentage with at most two decimals, in hundredths (`12.5` is 1250).
fn hundredths(text: &str) -> Option<u32> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 {
        return None;
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(frac)
}
