//! `map`: values mapped to new variables (ngx_http_map_module).

use super::{Directive, HTTP, T1, T2, arg_template, defined_variable};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::{Builder, MapRaw};
use crate::config::template::Template;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    raw_block!("map", HTTP, T2, set_map, "Maps a value to a new variable: exact keys, `hostnames` wildcards, `~`/`~*` regexes with captures, `default`, `volatile`."),
    noop!("variables_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("variables_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("map_hash_max_size", HTTP, T1, "nginx hash sizing (no effect)."),
    noop!("map_hash_bucket_size", HTTP, T1, "nginx hash sizing (no effect)."),
];

fn set_map(b: &mut Builder, st: &Statement) -> Result<()> {
    let source = arg_template(st, 0)?;
    let name = defined_variable(st, 1)?;
    if b.indexed
        .iter()
        .any(|v| v.name == name && matches!(v.kind, IndexedKind::Map(_)))
    {
        return Err(ConfigError::at(
            &st.span,
            format!("the duplicate \"{name}\" variable"),
        ));
    }
    let map_index = b.http.maps.len();
    let mut def = MapDef {
        source,
        hostnames: false,
        exact: Default::default(),
        wildcard_head: Vec::new(),
        wildcard_tail: Vec::new(),
        regexes: Vec::new(),
        default: Template::default(),
        volatile: false,
        span: st.span.clone(),
        output: name.to_string(),
    };
    let mut default_seen = false;
    for entry in st.block.as_deref().unwrap_or(&[]) {
        if entry.block.is_some() {
            return Err(ConfigError::at(&entry.span, "unexpected \"{\""));
        }
        let key = entry.name.as_str();
        if entry.args.is_empty() && (key == "hostnames" || key == "volatile") {
            if key == "hostnames" {
                def.hostnames = true;
            } else {
                def.volatile = true;
            }
            continue;
        }
        if entry.args.len() != 1 {
            return Err(ConfigError::at(
                &entry.span,
                "invalid number of the map parameters",
            ));
        }
        let value = Template::parse(&entry.args[0].value)
            .map_err(|e| ConfigError::at(&entry.span, e.to_string()))?;
        if key == "default" {
            if default_seen {
                return Err(ConfigError::at(
                    &entry.span,
                    "duplicate default map parameter",
                ));
            }
            default_seen = true;
            def.default = value;
            continue;
        }
        if let Some(re) = key.strip_prefix("~*") {
            let re = b.regex(re, true, &entry.span)?;
            def.regexes.push((re, value));
            continue;
        }
        if let Some(re) = key.strip_prefix('~') {
            let re = b.regex(re, false, &entry.span)?;
            def.regexes.push((re, value));
            continue;
        }
        // A leading backslash escapes a literal `~` (or `\`).
        let literal = key.strip_prefix('\\').unwrap_or(key);
        let lower = literal.to_ascii_lowercase();
        if def.hostnames
            && (lower.starts_with("*.") || lower.starts_with('.') || lower.ends_with(".*"))
        {
            if let Some(rest) = lower.strip_prefix("*.") {
                def.wildcard_head
                    .push((format!(".{rest}").into_bytes(), value));
            } else if let Some(rest) = lower.strip_prefix('.') {
                def.wildcard_head
                    .push((format!(".{rest}").into_bytes(), value.clone()));
                def.exact.entry(rest.as_bytes().to_vec()).or_insert(value);
            } else if let Some(rest) = lower.strip_suffix(".*") {
                def.wildcard_tail
                    .push((format!("{rest}.").into_bytes(), value));
            }
            continue;
        }
        let key_bytes = if def.hostnames {
            lower.trim_end_matches('.').as_bytes().to_vec()
        } else {
            lower.into_bytes()
        };
        if def.exact.contains_key(&key_bytes) {
            return Err(ConfigError::at(
                &entry.span,
                format!("duplicate \"{}\" map parameter", entry.name),
            ));
        }
        def.exact.insert(key_bytes, value);
    }
    def.wildcard_head
        .sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    def.wildcard_tail
        .sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let slot = b.declare(name, IndexedKind::Map(map_index));
    b.indexed[slot].kind = IndexedKind::Map(map_index);
    b.http.maps.push(MapRaw {
        def,
        output: name.to_string(),
        span: st.span.clone(),
    });
    Ok(())
}
