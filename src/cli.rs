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

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, LoadOptions};
use crate::log::{self, ErrorLog, Level};
use crate::server::{self, Handle};

/// Environment variable marking the re-executed daemon child.
const DAEMON_CHILD: &str = "SWITCHYARD_DAEMON_CHILD";

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
    "--without-http_charset_module",
    "--without-http_ssi_module",
    "--without-http_userid_module",
    "--without-http_auth_basic_module",
    "--without-http_mirror_module",
    "--without-http_autoindex_module",
    "--without-http_geo_module",
    "--without-http_split_clients_module",
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
            "configure arguments: --with-http_ssl_module --with-http_realip_module {}",
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
    };
    if o.test {
        return test_config(&load, &o);
    }
    if let Some(sig) = &o.signal {
        return send_signal(&load, sig);
    }
    serve(load, &paths)
}

fn emerg(message: &str) {
    eprintln!("switchyard: [emerg] {message}");
    log::error(Level::Emerg, message);
}

fn load_config(
    load: &LoadOptions,
    paths_error_log: Option<&Path>,
) -> Result<config::Config, String> {
    let mut config = config::load(load).map_err(|e| e.to_string())?;
    if let Some(e) = paths_error_log
        && !config.main.error_log_explicit
    {
        config.main.error_log = vec![crate::log::ErrorLogTarget {
            path: e.to_path_buf(),
            level: Level::Error,
        }];
    }
    Ok(config)
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

/// Detaches: re-runs this program as a child in its own process group with
/// standard streams closed, and waits until it has written its pid file
/// (every listener bound) or failed.
fn daemonize(pid_file: &Path) -> ExitCode {
    let Ok(exe) = std::env::current_exe() else {
        emerg("cannot find the switchyard executable to daemonize");
        return ExitCode::from(1);
    };
    let _ = std::fs::remove_file(pid_file);
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(DAEMON_CHILD, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            emerg(&format!("fork() failed ({e})"));
            return ExitCode::from(1);
        }
    };
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(pid_file)
            && text.trim() == child.id().to_string()
        {
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "switchyard: [emerg] the daemon exited during start-up ({status}); see the error log"
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("switchyard: [emerg] the daemon did not write its pid file within 10s");
    ExitCode::from(1)
}

fn serve(load: LoadOptions, paths: &Paths) -> ExitCode {
    let config = match load_config(&load, paths.error_log.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            emerg(&e);
            return ExitCode::from(1);
        }
    };
    if config.main.default_paths {
        let _ = std::fs::create_dir_all(load.prefix.join("logs"));
    }
    match ErrorLog::open(&config.main.error_log) {
        Ok(l) => l.install(),
        Err(e) => {
            emerg(&format!(
                "open() \"{}\" failed ({e})",
                config.main.error_log[0].path.display()
            ));
            return ExitCode::from(1);
        }
    }
    for w in &config.warnings {
        log::error(Level::Warn, &w.to_string());
    }
    if config.main.daemon && std::env::var_os(DAEMON_CHILD).is_none() {
        return daemonize(&config.main.pid);
    }
    let bound = match server::bind_all(&config) {
        Ok(b) => b,
        Err(e) => {
            emerg(&e);
            return ExitCode::from(1);
        }
    };
    if let Some(n) = config.main.worker_rlimit_nofile {
        use nix::sys::resource::{Resource, setrlimit};
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, n, n) {
            log::error(
                Level::Alert,
                &format!("setrlimit(RLIMIT_NOFILE, {n}) failed ({e})"),
            );
        }
    }
    if let Err(e) = switch_user(&config) {
        emerg(&e);
        return ExitCode::from(1);
    }
    let workers = config.main.worker_processes.max(1);
    let pid_path = config.main.pid.clone();
    // nginx's worker model with threads: each worker runs its own
    // single-threaded event loop (one FIFO run queue: fair under load, no
    // work-stealing machinery), the main thread's loop is worker 0 and
    // also handles signals.
    let main_rt = match runtime() {
        Ok(r) => r,
        Err(e) => {
            emerg(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    let mut handles = vec![main_rt.handle().clone()];
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    for i in 1..workers {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut done = done_rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("switchyard-worker-{i}"))
            .spawn(move || {
                let rt = match runtime() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    while !*done.borrow_and_update() {
                        if done.changed().await.is_err() {
                            break;
                        }
                    }
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            });
        match spawned
            .map_err(|e| e.to_string())
            .and_then(|t| rx.recv().map_err(|e| e.to_string()).map(|h| (t, h)))
        {
            Ok((t, Ok(h))) => {
                threads.push(t);
                handles.push(h);
            }
            Ok((_, Err(e))) | Err(e) => {
                emerg(&format!("cannot start worker {i}: {e}"));
                return ExitCode::from(1);
            }
        }
    }
    let code = main_rt.block_on(async move {
        let handle = match Handle::start_on(config, bound, Some(load), handles) {
            Ok(h) => h,
            Err(e) => {
                emerg(&e);
                return ExitCode::from(1);
            }
        };
        if let Err(e) = std::fs::write(&pid_path, format!("{}\n", std::process::id())) {
            emerg(&format!(
                "open() \"{}\" failed {}",
                pid_path.display(),
                crate::log::os_error(&e)
            ));
            handle.stop_now();
            return ExitCode::from(1);
        }
        log::error(
            Level::Notice,
            &format!("switchyard/{} started", crate::VERSION),
        );
        run_signals(&handle).await;
        let _ = std::fs::remove_file(&pid_path);
        ExitCode::SUCCESS
    });
    let _ = done_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    // Tasks still running (tunnels past a fast stop) are dropped here.
    main_rt.shutdown_timeout(Duration::from_millis(100));
    code
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn switch_user(config: &config::Config) -> Result<(), String> {
    let Some((user, group)) = &config.main.user else {
        return Ok(());
    };
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("getpwnam(\"{user}\") failed ({e})"))?
        .ok_or_else(|| format!("getpwnam(\"{user}\") failed"))?;
    if u.uid.is_root() {
        return Ok(());
    }
    let gid = match group {
        Some(g) => {
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("getgrnam(\"{g}\") failed ({e})"))?
                .ok_or_else(|| format!("getgrnam(\"{g}\") failed"))?
                .gid
        }
        None => u.gid,
    };
    nix::unistd::setgid(gid).map_err(|e| format!("setgid({gid}) failed ({e})"))?;
    nix::unistd::setuid(u.uid).map_err(|e| format!("setuid({}) failed ({e})", u.uid))?;
    Ok(())
}

/// Waits for signals and acts on them until the server stops.
async fn run_signals(handle: &Handle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut winch)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::window_change()),
    ) else {
        log::error(Level::Alert, "cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                log::error(Level::Notice, "signal 1 (SIGHUP) received, reconfiguring");
                match handle.reload() {
                    Ok(()) => log::error(Level::Notice, "reconfigured"),
                    Err(e) => log::error(Level::Emerg, &format!("{e} (the previous configuration keeps running)")),
                }
            }
            _ = usr1.recv() => {
                log::error(Level::Notice, "signal 10 (SIGUSR1) received, reopening logs");
                for (path, e) in log::Registry::global().reopen_all() {
                    log::error(Level::Alert, &format!("open() \"{}\" failed {}", path.display(), crate::log::os_error(&e)));
                }
            }
            _ = winch.recv() => {}
            _ = quit.recv() => {
                log::error(Level::Notice, "signal 3 (SIGQUIT) received, shutting down");
                handle.graceful_stop().await;
                return;
            }
            _ = term.recv() => {
                log::error(Level::Notice, "signal 15 (SIGTERM) received, exiting");
                handle.stop_now();
                return;
            }
            _ = int.recv() => {
                log::error(Level::Notice, "signal 2 (SIGINT) received, exiting");
                handle.stop_now();
                return;
            }
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
