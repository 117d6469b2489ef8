//! Findings as text (the source line with the offending part underlined,
//! in colour only on a terminal), JSON, or SARIF 2.1.0.

use std::fmt::Write as _;
use std::io::IsTerminal;

use annotate_snippets::{Level, Renderer, Snippet};
use serde_json::{Value, json};

use super::{Finding, Format, Severity, rules};
use crate::config::{Config, ConfigError, Span};

/// Where a span is: file, 1-based line and column.
pub fn position(span: &Span, files: &[crate::config::ast::SourceFile]) -> (String, u32, u32) {
    let file = span.file.as_deref().unwrap_or("command line").to_string();
    let column = source_of(span, files).map_or(1, |text| {
        let start = (span.start as usize).min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..start].chars().count() as u32 + 1
    });
    (file, span.line, column)
}

fn source_of<'f>(span: &Span, files: &'f [crate::config::ast::SourceFile]) -> Option<&'f str> {
    let file = span.file.as_deref()?;
    files
        .iter()
        .find(|f| f.path.to_string_lossy() == file)
        .map(|f| f.text.as_str())
}

fn level(s: Severity) -> Level {
    match s {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
        Severity::Info => Level::Info,
    }
}

/// One finding as text.
pub fn text(f: &Finding, files: &[crate::config::ast::SourceFile], color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let title = f.message.clone();
    let (file, line, column) = position(&f.span, files);
    // The renderer adds the line and column to a snippet's origin.
    let place = format!("{file}:{line}:{column}");
    let fix = f.fix.as_ref().map(|fix| format!("fix:\n{fix}"));
    let explain = format!("switchyard check --explain {}", f.code);
    let mut message = level(f.severity).title(&title).id(f.code);
    if let Some(text) = source_of(&f.span, files) {
        let start = (f.span.start as usize).min(text.len());
        let end = (f.span.end as usize).clamp(start, text.len());
        // Underline the statement's first line only: a block statement's
        // span ends at its `{`.
        let end = text[start..end].find('\n').map_or(end, |i| start + i);
        let end = if end == start {
            (start + 1).min(text.len())
        } else {
            end
        };
        message = message.snippet(
            Snippet::source(text)
                .line_start(1)
                .origin(&file)
                .fold(true)
                .annotation(level(f.severity).span(start..end).label(f.code)),
        );
    } else {
        message = message.footer(Level::Note.title(&place));
    }
    if let Some(fix) = &fix {
        message = message.footer(Level::Help.title(fix));
    }
    message = message.footer(Level::Note.title(&explain));
    let mut out = String::new();
    let _ = writeln!(out, "{}", renderer.render(message));
    out
}

/// One finding as a JSON object.
pub fn json(f: &Finding, files: &[crate::config::ast::SourceFile]) -> Value {
    let (file, line, column) = position(&f.span, files);
    json!({
        "code": f.code,
        "severity": f.severity.name(),
        "file": file,
        "line": line,
        "column": column,
        "message": f.message,
        "fix": f.fix,
    })
}

/// The findings as a SARIF 2.1.0 log.
pub fn sarif(findings: &[Finding], files: &[crate::config::ast::SourceFile]) -> Value {
    let rules: Vec<Value> = rules::RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.code,
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.explain },
                "help": { "text": r.explain },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let (file, line, column) = position(&f.span, files);
            let mut message = f.message.clone();
            if let Some(fix) = &f.fix {
                message.push_str("\nFix:\n");
                message.push_str(fix);
            }
            json!({
                "ruleId": f.code,
                "level": match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Info => "note",
                },
                "message": { "text": message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": file },
                        "region": { "startLine": line.max(1), "startColumn": column },
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "switchyard",
                "version": crate::VERSION,
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// All findings in `format`, as printed.
pub fn render(findings: &[Finding], config: &Config, format: Format, color: bool) -> String {
    match format {
        Format::Text => {
            let mut out = String::new();
            for f in findings {
                out.push_str(&text(f, &config.files, color));
            }
            let count = |s| findings.iter().filter(|f| f.severity == s).count();
            let _ = writeln!(
                out,
                "{} error(s), {} warning(s), {} note(s)",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            );
            out
        }
        Format::Json => {
            let list: Vec<Value> = findings.iter().map(|f| json(f, &config.files)).collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            )
        }
        Format::Sarif => format!(
            "{}\n",
            serde_json::to_string_pretty(&sarif(findings, &config.files)).unwrap_or_default()
        ),
    }
}

/// Prints the findings to stdout.
pub fn print(findings: &[Finding], config: &Config, format: Format) {
    let color = format == Format::Text && std::io::stdout().is_terminal();
    print!("{}", render(findings, config, format, color));
}

/// Reports a configuration that could not be loaded.
pub fn print_load_error(e: &ConfigError, format: Format) {
    let (file, line) = e.span.as_ref().map_or((String::new(), 0), |s| {
        (
            s.file.as_deref().unwrap_or("command line").to_string(),
            s.line,
        )
    });
    match format {
        Format::Text => eprintln!("error[SY000]: {e}"),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!([{
                "code": "SY000", "severity": "error", "file": file, "line": line,
                "column": 1, "message": e.message, "fix": Value::Null,
            }]))
            .unwrap_or_default()
        ),
        Format::Sarif => {
            let f = Finding {
                code: "SY000",
                severity: Severity::Error,
                span: e.span.clone().unwrap_or_else(Span::command_line),
                message: e.message.clone(),
                fix: None,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&sarif(&[f], &[])).unwrap_or_default()
            );
        }
    }
}
