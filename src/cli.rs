//! The command line: nginx's flags, and Switchyard's own subcommands.
//!
//! ```text
//! switchyard [-?hvVtTq] [-s signal] [-p prefix] [-e filename] [-c filename] [-g directives]
//! switchyard demo [--listen ADDR]
//! switchyard directives [--markdown]
//! ```
//!
//! Flags may be grouped (`-tq`) and take their value attached or as the
//! next argument (`-cfile`, `-c file`), as nginx's `ngx_get_options`.

mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, LoadOptions};
use crate::log::{self, ErrorLog, Level};

/// nginx-style options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-?`/`-h`
    pub help: bool,
    /// `-v`
    pub version: bool,
    /// `-V`
    pub configure: bool,
    /// `-t`
    pub test: bool,
    /// `-T`
    pub dump: bool,
    /// `-q`
    pub quiet: bool,
    /// `-s`
    pub signal: Option<String>,
    /// `-p`
    pub prefix: Option<PathBuf>,
    /// `-e`
    pub error_log: Option<PathBuf>,
    /// `-c`
    pub conf: Option<PathBuf>,
    /// `-g`
    pub params: Option<String>,
}

/// Parses nginx-style arguments (without the program name).
pub fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(flags) = arg.strip_prefix('-') else {
            return Err(format!("invalid option: \"{arg}\""));
        };
        if flags.is_empty() {
            return Err(format!("invalid option: \"{arg}\""));
        }
        let bytes: Vec<char> = flags.chars().collect();
        let mut j = 0;
        while j < bytes.len() {
            let c = bytes[j];
            j += 1;
            match c {
                '?' | 'h' => o.help = true,
                'v' => o.version = true,
                'V' => {
                    o.version = true;
                    o.configure = true
                }
                't' => o.test = true,
                'T' => {
                    o.test = true;
                    o.dump = true
                }
                'q' => o.quiet = true,
                'p' | 'e' | 'c' | 'g' | 's' => {
                    let value: String = if j < bytes.len() {
                        let v: String = bytes[j..].iter().collect();
                        j = bytes.len();
                        v
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => {
                                let what = match c {
                                    'p' => "\"-p\" requires directory name",
                                    'e' => "\"-e\" requires file name",
                                    'c' => "\"-c\" requires file name",
                                    'g' => "\"-g\" requires parameter",
                                    _ => "\"-s\" requires parameter",
                                };
                                return Err(what.to_string());
                            }
                        }
                    };
                    match c {
                        'p' => o.prefix = Some(PathBuf::from(value)),
                        'e' => o.error_log = Some(PathBuf::from(value)),
                        'c' => o.conf = Some(PathBuf::from(value)),
                        'g' => o.params = Some(value),
                        _ => {
                            if !matches!(value.as_str(), "stop" | "quit" | "reopen" | "reload") {
                                return Err(format!("invalid option: \"-s {value}\""));
                            }
                            o.signal = Some(value)
                        }
                    }
                }
                other => return Err(format!("invalid option: \"{other}\"")),
            }
        }
        i += 1;
    }
    Ok(o)
}

const USAGE: &str = "Usage: switchyard [-?hvVtTq] [-s signal] [-p prefix]
                  [-e filename] [-c filename] [-g directives]
       switchyard demo [--listen ADDR]
       switchyard directives [--markdown]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: the current directory)
  -e filename   : set error log file (default: logs/error.log)
  -c filename   : set configuration file (default: conf/switchyard.conf)
  -g directives : set global directives out of configuration file

Subcommands:
  demo          : run the proxy with a built-in chat backend and page
  directives    : list the supported nginx directives
";

/// nginx modules Switchyard does not implement, named as nginx's
/// `configure` names them, so tools reading `-V` can tell.
const WITHOUT: &[&str] = &[
    "--without-http_ssi_module",
    "--without-http_userid_module",
    "--without-http_mirror_module",
    "--without-http_autoindex_module",
    "--without-http_referer_module",
    "--without-http_fastcgi_module",
    "--without-http_uwsgi_module",
    "--without-http_scgi_module",
    "--without-http_grpc_module",
    "--without-http_memcached_module",
    "--without-http_empty_gif_module",
    "--without-http_browser_module",
    "--without-http-cache",
    "--without-mail_pop3_module",
    "--without-mail_imap_module",
    "--without-mail_smtp_module",
    "--without-stream_limit_conn_module",
];

fn print_version(configure: bool) {
    eprintln!("switchyard version: switchyard/{}", crate::VERSION);
    if configure {
        // Tools that gate features on nginx's version read this line.
        eprintln!(
            "nginx version: nginx/{} (configuration and command line compatible; this is switchyard)",
            crate::NGINX_COMPAT_VERSION
        );
        eprintln!("built with rustls 0.23 (ring)");
        eprintln!("TLS SNI support enabled");
        eprintln!(
            "configure arguments: --with-http_ssl_module --with-http_v2_module --with-http_realip_module --with-http_auth_request_module --with-http_stub_status_module {}",
            WITHOUT.join(" ")
        );
    }
}

/// Resolved locations of prefix, configuration and startup error log.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `-p`, absolute, with a trailing separator semantics.
    pub prefix: PathBuf,
    /// `-c`, absolute.
    pub conf: PathBuf,
    /// `-e`, absolute (or `stderr`).
    pub error_log: Option<PathBuf>,
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Resolves `-p`, `-c`, `-e` the way nginx does: relative to the prefix,
/// which is relative to the working directory.
pub fn resolve_paths(o: &Options) -> Paths {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let prefix = match &o.prefix {
        Some(p) => absolute(&cwd, p),
        None => cwd,
    };
    let conf = absolute(
        &prefix,
        o.conf
            .as_deref()
            .unwrap_or(Path::new("conf/switchyard.conf")),
    );
    let error_log = o.error_log.as_ref().map(|e| {
        if e.as_os_str() == "stderr" {
            e.clone()
        } else {
            absolute(&prefix, e)
        }
    });
    Paths {
        prefix,
        conf,
        error_log,
    }
}

/// Runs the command line (arguments without the program name).
pub fn main(args: Vec<String>) -> ExitCode {
    match args.first().map(String::as_str) {
        Some("demo") => return crate::demo::main(&args[1..]),
        Some("check") => return crate::check::main(&args[1..]),
        Some("probe") => return crate::probe::main(&args[1..]),
        Some("client") => return crate::probe::client::main(&args[1..]),
        Some("directives") => {
            let markdown = args.iter().any(|a| a == "--markdown");
            print!(
                "{}",
                if markdown {
                    crate::docs::directives_markdown()
                } else {
                    crate::docs::directives_text()
                }
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let o = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("switchyard: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    if o.help {
        print_version(false);
        eprint!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if o.version {
        print_version(o.configure);
        if !o.test && o.signal.is_none() {
            return ExitCode::SUCCESS;
        }
    }
    let paths = resolve_paths(&o);
    if let Some(e) = &paths.error_log {
        // `-e` receives start-up messages (and is the default error log).
        if let Ok(log) = ErrorLog::open(&[crate::log::ErrorLogTarget {
            path: e.clone(),
            level: Level::Notice,
        }]) {
            log.install();
        }
    }
    let load = LoadOptions {
        prefix: paths.prefix.clone(),
        conf_file: paths.conf.clone(),
        params: o.params.clone(),
        mode: config::Mode::Serve,
        http_snippet: false,
    };
    if o.test {
        return test_config(&load, &o);
    }
    if let Some(sig) = &o.signal {
        return send_signal(&load, sig);
    }
    serve::serve(load, &paths)
}

/// Reports a fatal start-up error on stderr and in the error log.
fn emerg(message: &str) {
    eprintln!("switchyard: [emerg] {message}");
    log::error(Level::Emerg, message);
}

fn test_config(load: &LoadOptions, o: &Options) -> ExitCode {
    let file = load.conf_file.display().to_string();
    let result = config::load(load).map_err(|e| e.to_string()).and_then(|c| {
        crate::state::Generation::build(std::sync::Arc::new(c)).map(|g| g.config.clone())
    });
    match result {
        Ok(config) => {
            if !o.quiet {
                for w in &config.warnings {
                    eprintln!("switchyard: [warn] {w}");
                }
                // WebSocket diagnostics, as `switchyard check` words them.
                for f in crate::check::lint(&config, &crate::check::Options::default())
                    .iter()
                    .filter(|f| f.severity <= crate::check::Severity::Warning)
                {
                    eprintln!(
                        "switchyard: [warn] {} [{}] in {}",
                        f.message, f.code, f.span
                    );
                }
                eprintln!("switchyard: the configuration file {file} syntax is ok");
                eprintln!("switchyard: configuration file {file} test is successful");
            }
            if o.dump {
                for f in &config.files {
                    println!("# configuration file {}:", f.path.display());
                    println!("{}", f.text);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard: [emerg] {e}");
            eprintln!("switchyard: configuration file {file} test failed");
            ExitCode::from(1)
        }
    }
}

fn send_signal(load: &LoadOptions, sig: &str) -> ExitCode {
    let config = match config::load(load) {
        Ok(c) => c,
        Err(e) => {
            emerg(&e.to_string());
            return ExitCode::from(1);
        }
    };
    let pid_path = &config.main.pid;
    let text = match std::fs::read_to_string(pid_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "switchyard: [error] open() \"{}\" failed {}",
                pid_path.display(),
                crate::log::os_error(&e)
            );
            return ExitCode::from(1);
        }
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        eprintln!(
            "switchyard: [error] invalid PID number \"{}\" in \"{}\"",
            text.trim(),
            pid_path.display()
        );
        return ExitCode::from(1);
    };
    use nix::sys::signal::Signal;
    let signal = match sig {
        "stop" => Signal::SIGTERM,
        "quit" => Signal::SIGQUIT,
        "reopen" => Signal::SIGUSR1,
        _ => Signal::SIGHUP,
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "switchyard: [alert] kill({pid}, {}) failed ({}: {})",
                signal as i32,
                e as i32,
                e.desc()
            );
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn cli_parses_nginx_style_options() {
        let o = parse_options(&args("-p /tmp/x/ -c nginx.conf -e error.log")).unwrap();
        assert_eq!(o.prefix.as_deref(), Some(Path::new("/tmp/x/")));
        assert_eq!(o.conf.as_deref(), Some(Path::new("nginx.conf")));
        assert_eq!(o.error_log.as_deref(), Some(Path::new("error.log")));
        let o = parse_options(&args("-tq -cfile.conf")).unwrap();
        assert!(o.test && o.quiet);
        assert_eq!(o.conf.as_deref(), Some(Path::new("file.conf")));
        let o = parse_options(&args("-s reload")).unwrap();
        assert_eq!(o.signal.as_deref(), Some("reload"));
        assert!(parse_options(&args("-s restart")).is_err());
        assert!(parse_options(&args("-x")).is_err());
        assert!(parse_options(&args("-c")).is_err());
        let o = parse_options(&args("-T")).unwrap();
        assert!(o.test && o.dump);
    }
}
