//! The source layout: modules in layers with no import cycle.
//!
//! `src/lib.rs` lists every module under a numbered layer (bottom first);
//! the README's "Source layout" repeats the list. These tests read every
//! source file's `crate::`, `super::` and re-export paths and fail when a
//! module imports one of a higher layer, when any two modules (files)
//! import each other directly or through others, or when the lists and the
//! `pub mod` lines disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Layer number of each top-level module, as a `//!` list of the form
/// `N. Title` then `- [`name`]: ...` (lib.rs) or `- `name`: ...` (README).
fn layers(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut layer = 0;
    for line in text.lines() {
        let line = line.trim_start_matches("//!").trim();
        if let Some((n, _)) = line.split_once(". ")
            && let Ok(n) = n.parse::<usize>()
        {
            layer = n;
            continue;
        }
        let Some(item) = line.strip_prefix("- ") else {
            continue;
        };
        let name = item
            .trim_start_matches('[')
            .trim_start_matches('`')
            .split('`')
            .next()
            .unwrap_or("");
        if layer > 0 && !name.is_empty() && (item.contains("`:") || item.contains("`]:")) {
            assert!(
                out.insert(name.to_string(), layer).is_none(),
                "{name} is listed twice"
            );
        }
    }
    out
}

fn lib_rs() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).unwrap()
}

fn lib_layers() -> BTreeMap<String, usize> {
    let lib = lib_rs();
    let doc: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| format!("{l}\n"))
        .collect();
    let start = doc.find("# Layout").expect("lib.rs has a Layout section");
    layers(&doc[start..])
}

/// Removes comments, string and character literals, so that paths are only
/// read from code.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"' | b'#')) && !ident_before(b, i) {
            let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 1 + hashes + 1;
            i = src[body..]
                .find(&close)
                .map_or(b.len(), |e| body + e + close.len());
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime.
            let rest = &src[i + 1..];
            let len = if let Some(escaped) = rest.strip_prefix('\\') {
                escaped.find('\'').map(|e| e + 2)
            } else {
                rest.chars()
                    .next()
                    .filter(|_| rest.chars().nth(1) == Some('\''))
                    .map(char::len_utf8)
            };
            match len {
                Some(n) => i += 1 + n + 1,
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Every path of a use tree starting at `s` (after `crate::`), each as its
/// segments: `{a, b::{c, d}}` gives `a`, `b::c`, `b::d`.
fn use_paths(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[u8], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            while *i < s.len() && s[*i].is_ascii_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    tree(s, i, &path, out);
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(b',') => *i += 1,
                        Some(b'}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_ascii_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&b'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let start = *i;
            while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
                *i += 1;
            }
            if start == *i {
                out.push(path);
                return;
            }
            path.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
                continue;
            }
            out.push(path);
            return;
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    tree(s.as_bytes(), &mut i, &[], &mut out);
    out
}

/// A source file's module path (`config::directives::proxy`), or `None`
/// for the crate roots and the bench binary.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(Path::new(ROOT).join("src")).ok()?;
    let rel = rel.with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.first().map(String::as_str) {
        Some("lib" | "main" | "bin") | None => None,
        _ => Some(parts.join("::")),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The longest known module that `path` (absolute segments) names.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Inline modules (`mod tests { ... }`): where each body starts and ends,
/// and its name, so `super::` inside one resolves from it.
fn inline_mods(code: &str) -> Vec<(usize, usize, String)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if ident_before(b, at) {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = at + 4 + rest.find('{').unwrap();
        let mut depth = 0;
        let mut end = b.len();
        for (i, &c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((open, end, name));
    }
    out
}

/// Module-to-module import edges between source files.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .filter_map(|f| Some((module_of(f)?, strip(&std::fs::read_to_string(f).unwrap()))))
        .collect();
    let modules: BTreeSet<String> = sources.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, code) in &sources {
        let here: Vec<String> = module.split("::").map(str::to_string).collect();
        let mut deps = BTreeSet::new();
        let mut add = |path: Vec<String>| {
            if let Some(target) = resolve(&path, &modules)
                && target != *module
            {
                deps.insert(target);
            }
        };
        let bytes = code.as_bytes();
        let inline = inline_mods(code);
        for (at, _) in code.match_indices("crate::") {
            if ident_before(bytes, at) || code[..at].ends_with('$') {
                continue;
            }
            for p in use_paths(&code[at + 7..]) {
                add(p);
            }
        }
        for (at, _) in code.match_indices("super::") {
            if ident_before(bytes, at) || code[..at].ends_with("super::") {
                continue;
            }
            let mut base = here.clone();
            base.extend(
                inline
                    .iter()
                    .filter(|(start, end, _)| *start < at && at < *end)
                    .map(|(_, _, name)| name.clone()),
            );
            let mut rest = &code[at..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for p in use_paths(rest) {
                add(base.iter().cloned().chain(p).collect());
            }
        }
        // `pub use child::...` in a module file re-exports its child.
        for line in code.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("pub use ") {
                for p in use_paths(rest) {
                    add(here.iter().cloned().chain(p).collect());
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn layout_lib_rs_lists_every_module_in_a_layer() {
    let listed = lib_layers();
    let declared: BTreeSet<String> = lib_rs()
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    let listed_names: BTreeSet<String> = listed.keys().cloned().collect();
    assert_eq!(
        listed_names, declared,
        "lib.rs's Layout and its `pub mod` lines differ"
    );
}

#[test]
fn layout_readme_source_layout_matches_lib_rs() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let start = readme
        .find("## Source layout")
        .expect("README has a Source layout section");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |e| start + 3 + e);
    assert_eq!(
        layers(&readme[start..end]),
        lib_layers(),
        "README's Source layout is out of step with lib.rs"
    );
}

#[test]
fn layout_no_module_imports_a_higher_layer() {
    let layer = lib_layers();
    let mut wrong = Vec::new();
    for (module, deps) in import_graph() {
        let own = layer[top(&module)];
        for dep in deps {
            let theirs = layer[top(&dep)];
            if theirs > own {
                wrong.push(format!(
                    "{module} (layer {own}) imports {dep} (layer {theirs})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn layout_has_no_import_cycle() {
    let graph = import_graph();
    // Depth-first search; a back edge is a cycle.
    fn visit<'g>(
        m: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'g str, bool>,
        stack: &mut Vec<&'g str>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(true) => return None,
            Some(false) => {
                let from = stack.iter().position(|s| *s == m).unwrap();
                let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(m, false);
        stack.push(m);
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m, true);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(m, &graph, &mut state, &mut stack) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // The same between top-level modules.
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, deps) in &graph {
        let entry = tops.entry(top(m).to_string()).or_default();
        entry.extend(
            deps.iter()
                .map(|d| top(d).to_string())
                .filter(|d| d != top(m)),
        );
    }
    let mut state = BTreeMap::new();
    for m in tops.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(m, &tops, &mut state, &mut stack) {
            panic!(
                "import cycle between top-level modules: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn layout_reader_sees_imports_it_must_see() {
    // The checks above are only as good as the reader: a cycle planted in
    // text must be found.
    assert_eq!(
        use_paths("{a, b::{c, d}, e::f}"),
        vec![
            vec!["a".to_string()],
            vec!["b".into(), "c".into()],
            vec!["b".into(), "d".into()],
            vec!["e".into(), "f".into()],
        ]
    );
    assert_eq!(strip("x // crate::a\n\"crate::b\" 'c' y"), "x \n\"\"  y");
    let graph = import_graph();
    assert!(graph["handler"].contains("proxy"), "{:?}", graph["handler"]);
    assert!(graph["config::walk"].contains("config::directives::proxy"));
    assert!(graph["client::h1::downstream"].contains("client::h1"));
    assert!(graph["config::model"].contains("config::model::gzip"));
}
