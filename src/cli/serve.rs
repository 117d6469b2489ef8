//! `switchyard` without `-t` or `-s`: load the configuration, bind, drop
//! privileges, daemonize, write the pid file, serve on worker threads and
//! act on signals until stopped.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{Paths, emerg};
use crate::config::{self, LoadOptions};
use crate::log::{self, ErrorLog, Level};
use crate::server::{self, Handle};

/// Environment variable marking the re-executed daemon child.
const DAEMON_CHILD: &str = "SWITCHYARD_DAEMON_CHILD";

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

/// Runs the server until it is stopped; the process exit code.
pub(super) fn serve(load: LoadOptions, paths: &Paths) -> ExitCode {
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
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                emerg(&format!("cannot install signal handlers ({e})"));
                return ExitCode::from(1);
            }
        };
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
        run_signals(&handle, signals).await;
        let _ = std::fs::remove_file(&pid_path);
        ExitCode::SUCCESS
    });
    let _ = done_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    // Tasks still running (tunnels past a fast stop) are dropped here.
    main_rt.shutdown_timeout(Duration::from_millis(100));
    // Buffered access log lines (`buffer=`) are written before exit.
    log::Registry::global().flush_all();
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

/// The signals the server acts on, installed before it binds and serves so
/// that a signal sent as soon as it answers (or as soon as the pid file
/// appears) is never met by the default action.
struct Signals {
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    winch: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
            winch: signal(SignalKind::window_change())?,
        })
    }
}

/// Waits for signals and acts on them until the server stops.
async fn run_signals(handle: &Handle, signals: Signals) {
    let Signals {
        mut hup,
        mut quit,
        mut term,
        mut int,
        mut usr1,
        mut winch,
    } = signals;
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
