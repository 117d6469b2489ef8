//! `switchyard check`: lints a configuration, Switchyard's or nginx's, for
//! the ways WebSockets break behind a proxy.
//!
//! The configuration is loaded as the server loads it, in a lint
//! [`Mode`]: files missing on this machine and host names that do not
//! resolve here become findings instead of errors, and with `--nginx`
//! directives Switchyard does not implement are noted and skipped. The
//! rules ([`rules`]) then run over the typed model, not over text; each
//! finding has a stable code, a severity, a place, one sentence on what
//! breaks and for whom, and the fix as a configuration snippet.
//! [`render`] prints them as text (with the source line underlined), JSON
//! or SARIF 2.1.0.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, LoadOptions, Mode, Span};

pub mod render;
pub mod rules;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// WebSockets (or the configuration) break.
    Error,
    /// Likely to break for some clients, or a security risk.
    Warning,
    /// Worth knowing; nothing breaks.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The rule's stable code (`SY003`).
    pub code: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// The statement (or argument) it is about.
    pub span: Span,
    /// What breaks, and for whom.
    pub message: String,
    /// The fix, as a configuration snippet.
    pub fix: Option<String>,
}

/// What `check` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The file is an nginx configuration: lint with nginx's semantics.
    pub nginx: bool,
    /// The nginx release whose semantics apply (`--nginx-version`).
    pub nginx_version: (u32, u32, u32),
    /// Also connect to each backend of a WebSocket location and try a
    /// handshake (`--probe-backends`).
    pub probe_backends: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nginx: false,
            nginx_version: (1, 22, 1),
            probe_backends: false,
        }
    }
}

/// Every finding for `config`, in file order.
pub fn lint(config: &Config, opts: &Options) -> Vec<Finding> {
    let mut findings = rules::from_notes(config, opts);
    findings.extend(rules::run(config, opts));
    findings.sort_by(|a, b| {
        (a.span.file.as_deref(), a.span.start, a.code).cmp(&(
            b.span.file.as_deref(),
            b.span.start,
            b.code,
        ))
    });
    findings.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
    findings
}

/// Loads the file to lint. A file of http-level statements with no
/// `http` block (a `conf.d` file) is read as the inside of one; the flag
/// says so.
pub fn load_file(load: &mut LoadOptions) -> Result<(Config, bool), config::ConfigError> {
    match config::load(load) {
        Ok(c) => Ok((c, false)),
        Err(e) if e.message.ends_with("directive is not allowed here") => {
            load.http_snippet = true;
            match config::load(load) {
                Ok(c) => Ok((c, true)),
                Err(_) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The note that a file was read as the inside of an `http` block.
pub fn snippet_finding(config: &Config) -> Finding {
    let file: std::sync::Arc<str> = config.conf_file.display().to_string().into();
    Finding {
        code: "SY903",
        severity: Severity::Info,
        span: Span {
            file: Some(file),
            line: 1,
            start: 0,
            end: 0,
        },
        message: "the file has http-level directives and no http block: checked as the inside of `http { }` (a conf.d file)".into(),
        fix: None,
    }
}

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people: the source line, the offending part underlined.
    Text,
    /// One JSON object per finding, in an array.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}

struct Args {
    file: Option<PathBuf>,
    prefix: Option<PathBuf>,
    format: Format,
    strict: bool,
    explain: Option<String>,
    opts: Options,
}

const USAGE: &str = "usage: switchyard check [-c FILE] [-p PREFIX] [--nginx] [--nginx-version X.Y.Z]
                        [--format text|json|sarif] [--strict] [--probe-backends]
       switchyard check --explain CODE
exit status: 0 no errors, 1 errors (or warnings with --strict), 2 the configuration could not be read
";

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        file: None,
        prefix: None,
        format: Format::Text,
        strict: false,
        explain: None,
        opts: Options::default(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-c" => out.file = Some(PathBuf::from(value("-c")?)),
            "-p" => out.prefix = Some(PathBuf::from(value("-p")?)),
            "--nginx" => out.opts.nginx = true,
            "--nginx-version" => {
                let v = value("--nginx-version")?;
                out.opts.nginx_version = parse_version(&v)
                    .ok_or_else(|| format!("invalid --nginx-version \"{v}\" (expected X.Y.Z)"))?;
                out.opts.nginx = true;
            }
            "--format" => {
                out.format = match value("--format")?.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    "sarif" => Format::Sarif,
                    other => return Err(format!("unknown format \"{other}\"")),
                }
            }
            "--strict" => out.strict = true,
            "--probe-backends" => out.opts.probe_backends = true,
            "--explain" => out.explain = Some(value("--explain")?),
            "-h" | "--help" => return Err(String::new()),
            other if !other.starts_with('-') && out.file.is_none() => {
                out.file = Some(PathBuf::from(other));
            }
            other => return Err(format!("unknown argument \"{other}\"")),
        }
    }
    Ok(out)
}

/// `X.Y` or `X.Y.Z`.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().transpose().ok()?.unwrap_or(0);
    parts.next().is_none().then_some((major, minor, patch))
}

/// Runs `switchyard check ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("switchyard check: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    if let Some(code) = &args.explain {
        return match rules::find(code) {
            Some(rule) => {
                println!("{}: {}\n\n{}", rule.code, rule.title, rule.explain);
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "switchyard check: no rule \"{code}\" (codes: SY001 to SY009, SY0xx, SY1xx; see the README)"
                );
                ExitCode::from(2)
            }
        };
    }
    let file = args.file.clone().unwrap_or_else(|| {
        if args.opts.nginx {
            PathBuf::from("/etc/nginx/nginx.conf")
        } else {
            PathBuf::from("conf/switchyard.conf")
        }
    });
    // Relative `root`s and logs resolve against the prefix, as they do
    // when serving (the current directory unless -p says otherwise);
    // includes resolve against the file's own directory.
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let mut load = LoadOptions::new(prefix, file);
    load.mode = if args.opts.nginx {
        Mode::LintNginx
    } else {
        Mode::Lint
    };
    let (config, snippet) = match load_file(&mut load) {
        Ok(c) => c,
        Err(e) => {
            render::print_load_error(&e, args.format);
            return ExitCode::from(2);
        }
    };
    let mut findings = lint(&config, &args.opts);
    if snippet {
        findings.insert(0, snippet_finding(&config));
    }
    render::print(&findings, &config, args.format);
    let failing = findings
        .iter()
        .any(|f| f.severity == Severity::Error || (args.strict && f.severity == Severity::Warning));
    if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
