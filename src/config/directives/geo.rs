//! `geo`: a variable set from the client address (ngx_http_geo_module).

use std::net::Ipv4Addr;

use super::{Args, Directive, HTTP, defined_variable, variable_name};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::model::*;
use crate::config::raw::Builder;
use crate::config::template::Template;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    raw_block!("geo", HTTP, Args::Take(&[1, 2]), set_geo, "A variable from the client address (or `$address`): networks by longest prefix, or `ranges`; `default`, `delete`, `include`, `proxy`, `proxy_recursive`, `volatile`."),
];

fn set_geo(b: &mut Builder, st: &Statement) -> Result<()> {
    let source = match st.args.len() {
        2 => {
            let name = variable_name(st, 0)?;
            Some(
                Template::parse(&format!("${{{name}}}"))
                    .map_err(|e| ConfigError::at(&st.span, e.to_string()))?,
            )
        }
        _ => None,
    };
    let name = defined_variable(st, st.args.len() - 1)?.to_string();
    let mut block = GeoBlock::default();
    for line in st.block.as_deref().unwrap_or(&[]) {
        block.line(b, line)?;
    }
    let table = match block.ranges {
        Some(t) => GeoTable::Ranges(t),
        None => GeoTable::Nets(block.nets),
    };
    let index = b.http.geos.len();
    b.http.geos.push(GeoDef {
        source,
        proxies: block.proxies,
        proxy_recursive: block.proxy_recursive,
        volatile: block.volatile,
        table,
        output: name.clone(),
        span: st.span.clone(),
    });
    // A later `geo` or `map` of the same name takes the variable over, as
    // in nginx.
    let slot = b.declare(&name, IndexedKind::Geo(index));
    b.indexed[slot].kind = IndexedKind::Geo(index);
    Ok(())
}

/// A `geo` block being read.
#[derive(Default)]
struct GeoBlock {
    nets: NetTable,
    /// Set by `ranges`.
    ranges: Option<RangeTable>,
    /// Whether a table line came yet (`ranges` must come before any).
    entries: bool,
    proxies: Vec<Cidr>,
    proxy_recursive: bool,
    volatile: bool,
}

impl GeoBlock {
    fn line(&mut self, b: &mut Builder, line: &Statement) -> Result<()> {
        if line.block.is_some() {
            return Err(ConfigError::at(&line.span, "unexpected \"{\""));
        }
        let key = line.name.as_str();
        if line.args.is_empty() {
            match key {
                "ranges" if self.entries => {
                    return Err(ConfigError::at(
                        &line.span,
                        "the \"ranges\" directive must be the first directive inside \"geo\" block",
                    ));
                }
                "ranges" => {
                    self.ranges.get_or_insert_with(RangeTable::default);
                    return Ok(());
                }
                "proxy_recursive" => {
                    self.proxy_recursive = true;
                    return Ok(());
                }
                "volatile" => {
                    self.volatile = true;
                    return Ok(());
                }
                _ => {}
            }
        }
        if line.args.len() != 1 {
            return Err(ConfigError::at(
                &line.span,
                "invalid number of the geo parameters",
            ));
        }
        let arg = line.args[0].value.as_str();
        if key == "proxy" {
            let net = network(b, line, arg)?;
            self.proxies.push(net);
            return Ok(());
        }
        self.entries = true;
        match &mut self.ranges {
            Some(t) => range_line(b, t, line, key, arg),
            None => net_line(b, &mut self.nets, line, key, arg),
        }
    }
}

/// `NET VALUE`, `default VALUE` or `delete NET` in a block of networks.
fn net_line(
    b: &mut Builder,
    t: &mut NetTable,
    line: &Statement,
    key: &str,
    arg: &str,
) -> Result<()> {
    let replaced = |b: &mut Builder, shown: &str, change: Change| {
        if let Change::Replaced(old) = change {
            b.warn(
                &line.span,
                format!(
                    "duplicate network \"{shown}\", value: \"{arg}\", old value: \"{}\"",
                    String::from_utf8_lossy(&old)
                ),
            );
        }
    };
    match key {
        "default" => {
            for all in ["0.0.0.0/0", "::/0"] {
                let net = Cidr::parse(all).expect("a valid network").0;
                let change = t.insert(net, arg.as_bytes());
                replaced(b, "default", change);
            }
        }
        "delete" => {
            let net = network(b, line, arg)?;
            if t.delete(net) == Change::NotFound {
                b.warn(&line.span, format!("no network \"{arg}\" to delete"));
            }
        }
        _ => {
            let net = network(b, line, key)?;
            let change = t.insert(net, arg.as_bytes());
            replaced(b, key, change);
        }
    }
    Ok(())
}

/// `START-END VALUE`, `default VALUE` or `delete START-END` in a block of
/// `ranges`.
fn range_line(
    b: &mut Builder,
    t: &mut RangeTable,
    line: &Statement,
    key: &str,
    arg: &str,
) -> Result<()> {
    match key {
        "default" => {
            if let Change::Replaced(old) = t.set_default(arg.as_bytes()) {
                b.warn(
                    &line.span,
                    format!(
                        "duplicate default geo range value: \"{arg}\", old value: \"{}\"",
                        String::from_utf8_lossy(&old)
                    ),
                );
            }
        }
        "delete" => {
            let (start, end) = range(line, arg)?;
            if t.delete(start, end) == Change::NotFound {
                b.warn(&line.span, format!("no address range \"{arg}\" to delete"));
            }
        }
        _ => {
            let (start, end) = range(line, key)?;
            match t.insert(start, end, arg.as_bytes()) {
                Change::Replaced(old) => b.warn(
                    &line.span,
                    format!(
                        "duplicate range \"{key}\", value: \"{arg}\", old value: \"{}\"",
                        String::from_utf8_lossy(&old)
                    ),
                ),
                Change::Overlaps(lo, hi) => {
                    return Err(ConfigError::at(
                        &line.span,
                        format!("range \"{key}\" overlaps \"{lo}-{hi}\""),
                    ));
                }
                Change::Done | Change::NotFound => {}
            }
        }
    }
    Ok(())
}

/// A network (`ADDR` or `ADDR/BITS`, IPv4 or IPv6); nginx warns when host
/// bits are set.
fn network(b: &mut Builder, line: &Statement, text: &str) -> Result<Cidr> {
    match super::cidr(b, &line.span, text) {
        Some(Cidr::Unix) | None => Err(ConfigError::at(
            &line.span,
            format!("invalid network \"{text}\""),
        )),
        Some(net) => Ok(net),
    }
}

/// `START-END`: IPv4 addresses, in order, 255.255.255.255 excluded (nginx
/// cannot hold it in a range).
fn range(line: &Statement, text: &str) -> Result<(u32, u32)> {
    let parsed = text.split_once('-').and_then(|(a, z)| {
        let (a, z) = (a.parse::<Ipv4Addr>().ok()?, z.parse::<Ipv4Addr>().ok()?);
        let (a, z) = (u32::from(a), u32::from(z));
        (a <= z && z != u32::MAX).then_some((a, z))
    });
    parsed.ok_or_else(|| ConfigError::at(&line.span, format!("invalid range \"{text}\"")))
}
