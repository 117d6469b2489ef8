//! Main and `events` contexts: the process, its workers, and the `http`
//! block (nginx's core and events modules).

use super::{
    ANY, Args, Ctx, Directive, EVENTS, MAIN, T1, T12, arg_flag, arg_number, arg_time, duplicate,
    invalid_value, put,
};
use crate::config::ast::Statement;
use crate::config::error::{ConfigError, Result};
use crate::config::raw::Builder;

/// The directives of this family, in the order the README lists them.
#[rustfmt::skip]
pub static DIRECTIVES: &[Directive] = &[
    d!("include", ANY, T1, unreachable_include, "Includes files matching a glob, relative to the configuration's directory."),
    d!("daemon", MAIN, Args::Flag, |b, st| { let v = arg_flag(st); put(&mut b.main.daemon, v, st) }, "Detach from the terminal after start-up (default on)."),
    d!("master_process", MAIN, Args::Flag, |b, st| { let v = arg_flag(st); put(&mut b.main.master_process, v, st) }, "Accepted for compatibility: switchyard is always one process with worker threads."),
    d!("pid", MAIN, T1, |b, st| { let p = b.full_path(&st.args[0].value); put(&mut b.main.pid, p, st) }, "Pid file, written once every listener is bound."),
    d!("worker_processes", MAIN, T1, set_worker_processes, "Runtime worker threads (`auto` = number of cores)."),
    d!("worker_rlimit_nofile", MAIN, T1, |b, st| { let n = arg_number(st, 0)?; put(&mut b.main.worker_rlimit_nofile, n, st) }, "Raises RLIMIT_NOFILE at start-up."),
    d!("worker_shutdown_timeout", MAIN, T1, |b, st| { let t = arg_time(st, 0)?; put(&mut b.main.worker_shutdown_timeout, t, st) }, "Bound on a graceful stop: open connections (upgraded too) are closed after it."),
    d!("user", MAIN, T12, set_user, "Account to switch to after binding, when started as root."),
    noop!("worker_cpu_affinity", MAIN, Args::AtLeast(1), "CPU pinning of nginx workers (no effect)."),
    noop!("worker_priority", MAIN, T1, "Scheduling priority of nginx workers (no effect)."),
    noop!("pcre_jit", MAIN, Args::Flag, "PCRE JIT (no effect: regexes use the regex crate)."),
    noop!("timer_resolution", MAIN, T1, "nginx timer granularity (no effect)."),
    noop!("lock_file", MAIN, T1, "nginx accept mutex file (no effect)."),
    noop!("thread_pool", MAIN, Args::AtLeast(1), "nginx thread pools for file I/O (no effect)."),
    noop!("working_directory", MAIN, T1, "Core dump directory (no effect)."),
    block!("events", MAIN, Args::None, set_events, Ctx::EVENTS, leave_nothing, "Connection processing settings."),
    d!("worker_connections", EVENTS, T1, |b, st| { let n = arg_number(st, 0)? as usize; put(&mut b.main.worker_connections, n, st) }, "Most client connections per worker thread."),
    noop!("use", EVENTS, T1, "Event method (no effect: epoll via tokio)."),
    noop!("multi_accept", EVENTS, Args::Flag, "Accept several connections per event (no effect)."),
    noop!("accept_mutex", EVENTS, Args::Flag, "Accept serialisation (no effect)."),
    noop!("accept_mutex_delay", EVENTS, T1, "Accept serialisation delay (no effect)."),
    block!("http", MAIN, Args::None, set_http, Ctx::HTTP, leave_nothing, "The HTTP server."),
];

fn unreachable_include(_: &mut Builder, st: &Statement) -> Result<()> {
    Err(ConfigError::at(
        &st.span,
        "\"include\" directive is not terminated by \";\"",
    ))
}

fn set_worker_processes(b: &mut Builder, st: &Statement) -> Result<()> {
    let v = &st.args[0].value;
    let n = if v == "auto" {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        v.parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid_value(st, 0))?
    };
    put(&mut b.main.worker_processes, n, st)
}

fn set_user(b: &mut Builder, st: &Statement) -> Result<()> {
    let user = st.args[0].value.clone();
    let group = st.args.get(1).map(|g| g.value.clone());
    put(&mut b.main.user, (user, group), st)
}

fn set_events(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.main.events_seen {
        return Err(duplicate(st));
    }
    b.main.events_seen = true;
    Ok(())
}

fn set_http(b: &mut Builder, st: &Statement) -> Result<()> {
    if b.main.http_seen {
        return Err(duplicate(st));
    }
    b.main.http_seen = true;
    Ok(())
}

/// Closes a block whose opening left nothing to undo (`events`, `http`).
fn leave_nothing(_: &mut Builder, _: &Statement) -> Result<()> {
    Ok(())
}
