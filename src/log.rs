//! Error and access logs in nginx's formats.
//!
//! Error lines look like nginx's so existing tooling reads them:
//!
//! ```text
//! 2026/11/22 10:00:00 [error] 4242#4243: *17 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: example.com, request: "GET /ws HTTP/1.1", upstream: "http://127.0.0.1:9000/ws", host: "example.com"
//! ```
//!
//! Files are opened once and shared through a registry keyed by path, so a
//! reload that keeps a log keeps its file, and `-s reopen` (SIGUSR1) reopens
//! every file in place for log rotation. Lines are written with one
//! `write(2)` each on an `O_APPEND` descriptor, as nginx does without
//! `buffer=`, so concurrent writers never interleave within a line. An
//! access log with `buffer=` collects whole lines and writes them in one
//! go when the buffer is full, `flush=` after the first line went in, on
//! `-s reopen` and at exit; with `gzip` each write is one gzip member
//! (`zcat` reads the concatenation). Logs whose path holds variables are
//! opened per line, or kept open by an [`FdCache`]
//! (`open_log_file_cache`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

/// Log severity, nginx's eight levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `emerg`
    Emerg,
    /// `alert`
    Alert,
    /// `crit`
    Crit,
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `notice`
    Notice,
    /// `info`
    Info,
    /// `debug`
    Debug,
}

impl Level {
    /// Parses a level name.
    pub fn from_name(s: &str) -> Option<Level> {
        Some(match s {
            "emerg" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" => Level::Crit,
            "error" => Level::Error,
            "warn" => Level::Warn,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    /// The name as printed in brackets.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// One step less severe, `info` at the least (nginx logs `limit_req`
    /// delays this way).
    pub fn less_severe(self) -> Level {
        match self {
            Level::Emerg => Level::Alert,
            Level::Alert => Level::Crit,
            Level::Crit => Level::Error,
            Level::Error => Level::Warn,
            Level::Warn => Level::Notice,
            _ => Level::Info,
        }
    }
}

/// Where an `error_log` writes, and from which level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLogTarget {
    /// File path, `stderr`, or `/dev/null`-like sinks.
    pub path: PathBuf,
    /// Minimum level written.
    pub level: Level,
}

/// Formats an OS error the way nginx does: `(2: No such file or directory)`.
pub fn os_error(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let text = err.to_string();
            // std appends " (os error N)"; nginx prints "(N: text)".
            let text = text
                .rsplit_once(" (os error")
                .map(|(head, _)| head.to_string())
                .unwrap_or(text);
            format!("({code}: {text})")
        }
        None => format!("({err})"),
    }
}

/// One of the process's standard output streams, as a log target.
#[derive(Debug, Clone, Copy)]
enum StdStream {
    Stdout,
    Stderr,
}

/// An access log's `buffer=`, `flush=` and `gzip[=LEVEL]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    /// Bytes collected before a write.
    pub size: usize,
    /// Written at the latest this long after the first line went in.
    pub flush: Option<Duration>,
    /// gzip level (1-9): each write is one compressed gzip member.
    pub gzip: Option<u32>,
}

/// Lines collected for a buffered log.
#[derive(Debug)]
struct Buffer {
    conf: Buffering,
    data: Vec<u8>,
    /// Bumped at every write, so a `flush=` timer set for older lines
    /// leaves newer ones alone.
    round: u64,
}

/// An open log file that can be reopened in place.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: ArcSwap<Option<File>>,
    /// `buffer=`: access log lines waiting to be written.
    buffer: Mutex<Option<Buffer>>,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// The process's own stream for `stderr`, `/dev/stderr` and
    /// `/dev/stdout`. Writing to the inherited descriptor, rather than
    /// opening the device again, shares its file offset: when the output
    /// is redirected to a file, the log lines and everything else the
    /// process prints interleave instead of overwriting each other.
    fn std_stream(path: &Path) -> Option<StdStream> {
        match path.as_os_str().to_str()? {
            "stderr" | "/dev/stderr" => Some(StdStream::Stderr),
            "/dev/stdout" => Some(StdStream::Stdout),
            _ => None,
        }
    }

    /// Writes `line` (which must end in a newline) with a single write.
    pub fn write_line(&self, line: &[u8]) {
        if let Some(stream) = Self::std_stream(&self.path) {
            let mut rest = line;
            while !rest.is_empty() {
                let written = match stream {
                    StdStream::Stdout => nix::unistd::write(std::io::stdout(), rest),
                    StdStream::Stderr => nix::unistd::write(std::io::stderr(), rest),
                };
                match written {
                    Ok(0) => break,
                    Ok(n) => rest = &rest[n..],
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            return;
        }
        let guard = self.file.load();
        if let Some(file) = guard.as_ref() {
            let _ = (&*file).write_all(line);
        }
    }

    /// Writes an access log line: into the buffer when the log has one.
    pub fn write_access(self: &Arc<Self>, line: &[u8]) {
        let mut guard = self.buffer.lock().expect("log buffer poisoned");
        let Some(buffer) = guard.as_mut() else {
            drop(guard);
            return self.write_line(line);
        };
        if buffer.data.len() + line.len() > buffer.conf.size {
            self.write_out(buffer);
        }
        if line.len() > buffer.conf.size {
            return self.write_line(line);
        }
        let first = buffer.data.is_empty();
        buffer.data.extend_from_slice(line);
        if let (true, Some(after), Ok(rt)) = (
            first,
            buffer.conf.flush,
            tokio::runtime::Handle::try_current(),
        ) {
            let (file, round) = (Arc::downgrade(self), buffer.round);
            rt.spawn(async move {
                tokio::time::sleep(after).await;
                if let Some(file) = Weak::upgrade(&file) {
                    file.flush_round(Some(round));
                }
            });
        }
    }

    /// Writes what the buffer holds (`Some(round)`: only if no write
    /// happened since that round began).
    fn flush_round(&self, round: Option<u64>) {
        let mut guard = self.buffer.lock().expect("log buffer poisoned");
        if let Some(buffer) = guard.as_mut()
            && round.is_none_or(|r| r == buffer.round)
        {
            self.write_out(buffer);
        }
    }

    /// Writes the buffered lines: once, compressed as one gzip member with
    /// `gzip`.
    fn write_out(&self, buffer: &mut Buffer) {
        buffer.round += 1;
        if buffer.data.is_empty() {
            return;
        }
        match buffer.conf.gzip {
            Some(level) => {
                let mut z = flate2::write::GzEncoder::new(
                    Vec::with_capacity(buffer.data.len() / 4 + 32),
                    flate2::Compression::new(level),
                );
                let packed = z.write_all(&buffer.data).and_then(|_| z.finish());
                if let Ok(packed) = packed {
                    self.write_line(&packed);
                }
            }
            None => self.write_line(&buffer.data),
        }
        buffer.data.clear();
    }

    /// Sets the buffering the current configuration asks for; lines
    /// buffered under other settings are written first.
    fn set_buffering(&self, conf: Option<Buffering>) {
        let mut guard = self.buffer.lock().expect("log buffer poisoned");
        if guard.as_ref().map(|b| b.conf) == conf {
            return;
        }
        if let Some(old) = guard.as_mut() {
            self.write_out(old);
        }
        *guard = conf.map(|conf| Buffer {
            conf,
            data: Vec::with_capacity(conf.size),
            round: 0,
        });
    }

    /// Reopens the file (log rotation).
    pub fn reopen(&self) -> std::io::Result<()> {
        if Self::std_stream(&self.path).is_some() {
            return Ok(());
        }
        // Lines buffered so far belong to the file being rotated away.
        self.flush_round(None);
        let f = Self::open(&self.path)?;
        self.file.store(Arc::new(Some(f)));
        Ok(())
    }
}

/// Open log files by path (a configuration generation's access logs).
pub type LogFiles = HashMap<PathBuf, Arc<LogFile>>;

/// Open log files by path, shared by every configuration generation.
#[derive(Debug, Default)]
pub struct Registry {
    /// A std mutex: taken when a configuration loads or logs reopen, never
    /// by requests (they hold their files' `Arc`s).
    files: Mutex<HashMap<PathBuf, Arc<LogFile>>>,
}

impl Registry {
    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(Registry::default)
    }

    /// Opens (or finds) the file at `path`.
    pub fn get(&self, path: &Path) -> std::io::Result<Arc<LogFile>> {
        let mut files = self.files.lock().expect("log registry poisoned");
        if let Some(f) = files.get(path) {
            return Ok(f.clone());
        }
        let file = if LogFile::std_stream(path).is_some() {
            None
        } else {
            Some(LogFile::open(path)?)
        };
        let lf = Arc::new(LogFile {
            path: path.to_path_buf(),
            file: ArcSwap::from_pointee(file),
            buffer: Mutex::new(None),
        });
        files.insert(path.to_path_buf(), lf.clone());
        Ok(lf)
    }

    /// Opens (or finds) an access log, buffered as `buffering` says.
    pub fn get_access(
        &self,
        path: &Path,
        buffering: Option<Buffering>,
    ) -> std::io::Result<Arc<LogFile>> {
        let file = self.get(path)?;
        file.set_buffering(buffering);
        Ok(file)
    }

    /// Every open file (the lock is not held while they are used).
    fn all(&self) -> Vec<Arc<LogFile>> {
        let files = self.files.lock().expect("log registry poisoned");
        files.values().cloned().collect()
    }

    /// Writes every buffered line (at exit).
    pub fn flush_all(&self) {
        for f in self.all() {
            f.flush_round(None);
        }
    }

    /// Reopens every file; returns the failures.
    pub fn reopen_all(&self) -> Vec<(PathBuf, std::io::Error)> {
        self.all()
            .iter()
            .filter_map(|f| f.reopen().err().map(|e| (f.path.clone(), e)))
            .collect()
    }
}

/// Appends `line` to the log at `path`, opened for this write alone (a
/// log whose path holds variables, without `open_log_file_cache`).
pub fn append_to(path: &Path, line: &[u8]) -> std::io::Result<()> {
    (&LogFile::open(path)?).write_all(line)
}

/// `open_log_file_cache`: descriptors of logs whose path holds variables,
/// kept open once a path was written `min_uses` times within `inactive`,
/// at most `max` paths (the least recently written one makes room),
/// reopened after `valid` so a rotated or removed file is followed.
#[derive(Debug)]
pub struct FdCache {
    max: usize,
    inactive: Duration,
    min_uses: u32,
    valid: Duration,
    entries: Mutex<HashMap<PathBuf, CachedLog>>,
}

#[derive(Debug)]
struct CachedLog {
    file: Option<Arc<File>>,
    uses: u32,
    used: Instant,
    opened: Instant,
}

impl FdCache {
    /// A cache with nginx's parameters.
    pub fn new(max: usize, inactive: Duration, min_uses: u32, valid: Duration) -> FdCache {
        FdCache {
            max: max.max(1),
            inactive,
            min_uses,
            valid,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Appends `line` to the log at `path`. A path that cannot be opened
    /// takes no place in the cache.
    pub fn append(&self, path: &Path, line: &[u8]) -> std::io::Result<()> {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("log cache poisoned");
        entries.retain(|_, e| now.duration_since(e.used) < self.inactive);
        if let Some(e) = entries.get_mut(path) {
            e.uses += 1;
            e.used = now;
            if let Some(f) = &e.file
                && now.duration_since(e.opened) < self.valid
            {
                let f = f.clone();
                drop(entries);
                return (&*f).write_all(line);
            }
            e.file = None;
        }
        let file = Arc::new(LogFile::open(path)?);
        match entries.get_mut(path) {
            Some(e) => {
                if e.uses >= self.min_uses {
                    e.file = Some(file.clone());
                    e.opened = now;
                }
            }
            None => {
                if entries.len() >= self.max
                    && let Some(oldest) = entries
                        .iter()
                        .min_by_key(|(_, e)| e.used)
                        .map(|(p, _)| p.clone())
                {
                    entries.remove(&oldest);
                }
                let cached = (self.min_uses <= 1).then(|| file.clone());
                entries.insert(
                    path.to_path_buf(),
                    CachedLog {
                        file: cached,
                        uses: 1,
                        used: now,
                        opened: now,
                    },
                );
            }
        }
        drop(entries);
        (&*file).write_all(line)
    }
}

/// The main error log: where process-level messages go.
#[derive(Debug)]
pub struct ErrorLog {
    targets: Vec<(Arc<LogFile>, Level)>,
}

static MAIN_LOG: OnceLock<ArcSwap<ErrorLog>> = OnceLock::new();

fn main_log() -> &'static ArcSwap<ErrorLog> {
    MAIN_LOG.get_or_init(|| {
        ArcSwap::from_pointee(ErrorLog {
            targets: vec![(
                Arc::new(LogFile {
                    path: PathBuf::from("stderr"),
                    file: ArcSwap::from_pointee(None),
                    buffer: Mutex::new(None),
                }),
                Level::Notice,
            )],
        })
    })
}

impl ErrorLog {
    /// Opens the targets of a configuration.
    pub fn open(targets: &[ErrorLogTarget]) -> std::io::Result<ErrorLog> {
        let mut out = Vec::new();
        for t in targets {
            out.push((Registry::global().get(&t.path)?, t.level));
        }
        Ok(ErrorLog { targets: out })
    }

    /// Makes this the process's main error log.
    pub fn install(self) {
        main_log().store(Arc::new(self));
    }

    /// Whether a message at `level` would be written anywhere.
    pub fn enabled(&self, level: Level) -> bool {
        self.targets.iter().any(|(_, l)| level <= *l)
    }

    /// Writes one message (without context) at `level`.
    pub fn write(&self, level: Level, conn: Option<u64>, message: &str) {
        if !self.enabled(level) {
            return;
        }
        let line = format_line(level, conn, message);
        for (file, min) in &self.targets {
            if level <= *min {
                file.write_line(line.as_bytes());
            }
        }
    }
}

/// Formats an error log line in nginx's layout.
pub fn format_line(level: Level, conn: Option<u64>, message: &str) -> String {
    let tid = nix::unistd::gettid();
    let mut line = String::with_capacity(message.len() + 64);
    time::with_local(|t| line.push_str(&t.err));
    line.push_str(&format!(
        " [{}] {}#{}: ",
        level.name(),
        std::process::id(),
        tid
    ));
    if let Some(c) = conn {
        line.push_str(&format!("*{c} "));
    }
    line.push_str(message);
    line.push('\n');
    line
}

/// Writes to the main error log.
pub fn error(level: Level, message: &str) {
    main_log().load().write(level, None, message);
}

/// Writes a request-related line to the error logs of a location.
pub fn error_to(targets: &[ErrorLogTarget], level: Level, conn: u64, message: &str) {
    if !targets.iter().any(|t| level <= t.level) {
        return;
    }
    let line = format_line(level, Some(conn), message);
    for t in targets {
        if level <= t.level
            && let Ok(f) = Registry::global().get(&t.path)
        {
            f.write_line(line.as_bytes());
        }
    }
}

/// The machine's host name (`$hostname`).
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// Cached time strings, recomputed at most once a second per thread.
pub mod time {
    use std::cell::RefCell;

    /// The current second in every format the logs need.
    #[derive(Debug, Default)]
    pub struct Now {
        second: i64,
        /// `22/Nov/2026:10:00:00 +0000` (`$time_local`).
        pub local: String,
        /// `2026-11-22T10:00:00+00:00` (`$time_iso8601`).
        pub iso8601: String,
        /// `2026/11/22 10:00:00` (error log).
        pub err: String,
    }

    thread_local! {
        static NOW: RefCell<Now> = RefCell::new(Now { second: i64::MIN, ..Now::default() });
    }

    /// Calls `f` with the current time strings.
    pub fn with_local<R>(f: impl FnOnce(&Now) -> R) -> R {
        let now = chrono::Local::now();
        let second = now.timestamp();
        NOW.with(|cell| {
            let mut cached = cell.borrow_mut();
            if cached.second != second {
                cached.second = second;
                cached.local = now.format("%d/%b/%Y:%H:%M:%S %z").to_string();
                cached.iso8601 = now.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
                cached.err = now.format("%Y/%m/%d %H:%M:%S").to_string();
            }
            f(&cached)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_order_like_nginx() {
        assert!(Level::Emerg < Level::Error);
        assert!(Level::Error < Level::Info);
        assert_eq!(Level::from_name("warn"), Some(Level::Warn));
        assert_eq!(Level::from_name("verbose"), None);
    }

    #[test]
    fn log_line_has_nginx_layout() {
        let line = format_line(Level::Error, Some(7), "boom");
        // 2026/11/22 10:00:00 [error] 123#124: *7 boom
        let re =
            regex::Regex::new(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#\d+: \*7 boom\n$")
                .unwrap();
        assert!(re.is_match(&line), "{line}");
    }

    #[test]
    fn log_time_formats() {
        time::with_local(|t| {
            let re =
                regex::Regex::new(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$").unwrap();
            assert!(re.is_match(&t.local), "{}", t.local);
        });
    }
}
