//! Logging set-up: turns `[log]` into the process's tracing subscriber, once,
//! at start (called from `main`).
//!
//! This module owns the log terminals and their writers; it decides nothing
//! about what is logged (that is each layer's `tracing::*!` call).
//!
//! * **Terminals.** `console` is standard error, `file` the file of
//!   `[log.file]`; each has its own format. `RUST_LOG` overrides `level`.
//! * **Never blocking a shard.** Every terminal writes through
//!   `tracing_appender::non_blocking` (tokio-rs' tracing-appender): the
//!   thread that logs only formats the line and queues it; a `ringgate-log-*`
//!   thread writes it. In lossy mode a full queue (128k lines: a stalled disk
//!   or journal) drops lines rather than waiting. The [`LogGuard`] flushes
//!   what is queued when dropped: keep it until exit.
//! * **Colours** only on a console that is a terminal (`IsTerminal` on
//!   stderr); never in a file, nor in a console redirected to a file or pipe.
//! * **Rotation** is the `file-rotate` crate's (0.8): time-stamped suffixes
//!   (`ringgate.log.20260102T030405`), deletion of rotated files by age
//!   ([`FileLimit::Age`], judged from that suffix at each rotation), gzip on
//!   rotation, and hour/day rotation in local time. It was picked over
//!   `tracing-appender`'s own `rolling` module, which has no size limit, no
//!   age limit (only a file count) and no compression. file-rotate takes one
//!   content limit at a time, so when both `max_size` and `rotation` are set
//!   it rotates by time itself and [`SizeCap`] calls its public
//!   [`FileRotate::rotate`] once the file has passed `max_size` (the only
//!   code here that decides when to rotate: a byte count). Its writes,
//!   renames and gzip all run on the file terminal's writer thread.
//! * **Stacks.** Events at `stack_level` or more severe get a backtrace
//!   appended ([`WithStack`]): on a text line as indented lines after it, in
//!   JSON as a `"stack"` field of the same object. The capture runs on the
//!   thread that logs: 70 µs in a release build on the development VM once
//!   the binary's symbols are loaded, but ~140 ms for the first one, which
//!   [`init`] therefore takes at start rather than leaving it to a shard's
//!   first error. At most one stack per second per terminal is written.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate, TimeFrequency};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::{
    self as tsfmt, FormatEvent, FormatFields, JsonFields, Writer,
};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFileConfig, LogFormat, Rotation, Terminal};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log file (or its directory) cannot be created or written.
    #[error("log.file.path: cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A subscriber is already installed in this process.
    #[error("logging is already set up in this process")]
    AlreadySet,
}

/// Keeps the terminals' writer threads alive; dropping it flushes them.
#[must_use = "logs are lost unless the guard lives until exit"]
pub struct LogGuard {
    _workers: Vec<WorkerGuard>,
}

/// Installs the subscriber for `cfg` (validated) as the global one.
pub fn init(cfg: &LogConfig) -> Result<LogGuard, LoggingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let stack = cfg.stack_level();
    let mut layers = Vec::new();
    let mut workers = Vec::new();
    if cfg.has(Terminal::Console) {
        let (writer, guard) = background("ringgate-log-console", io::stderr());
        let ansi = io::stderr().is_terminal();
        layers.push(layer(writer, cfg.format, ansi, stack));
        workers.push(guard);
    }
    if cfg.has(Terminal::File) {
        let (writer, guard) = background("ringgate-log-file", open_file(&cfg.file)?);
        layers.push(layer(writer, cfg.file.format, false, stack));
        workers.push(guard);
    }
    if stack.is_some() {
        // Loads the binary's symbols now, at start, rather than on a shard
        // at its first error.
        let _ = std::backtrace::Backtrace::force_capture().to_string();
    }
    // The admin port's PUT /api/log-level swaps the filter through this handle.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    crate::admin::set_log_reload(reload, &cfg.level);
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .map_err(|_| LoggingError::AlreadySet)?;
    Ok(LogGuard { _workers: workers })
}

/// A lossy non-blocking writer over `w` on a thread named `name`.
fn background<W: Write + Send + 'static>(name: &str, w: W) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(true)
        .thread_name(name)
        .finish(w)
}

/// One terminal's formatting layer.
fn layer<S, W>(
    writer: W,
    format: LogFormat,
    ansi: bool,
    stack: Option<Level>,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => base
            .event_format(WithStack::new(tsfmt::format(), stack, false))
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => base
            .fmt_fields(JsonFields::new())
            .event_format(WithStack::new(tsfmt::format().json(), stack, true))
            .with_ansi(false)
            .boxed(),
    }
}

/// Opens the rotating file of `[log.file]`, creating its directory. The
/// file is opened once by hand first: file-rotate panics on a directory it
/// cannot create and silently drops writes to a file it cannot open.
pub fn open_file(cfg: &LogFileConfig) -> Result<SizeCap, LoggingError> {
    let path = &cfg.path;
    let err = |source| LoggingError::File {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let len = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|f| f.metadata())
        .map_err(err)?
        .len();
    let limit = match cfg.rotation {
        Rotation::None => ContentLimit::None,
        Rotation::Hour => ContentLimit::Time(TimeFrequency::Hourly),
        Rotation::Day => ContentLimit::Time(TimeFrequency::Daily),
    };
    let age = if cfg.max_age.is_zero() {
        FileLimit::Unlimited
    } else {
        FileLimit::Age(chrono::Duration::from_std(cfg.max_age).unwrap_or(chrono::Duration::MAX))
    };
    let compression = if cfg.compress {
        Compression::OnRotate(0)
    } else {
        Compression::None
    };
    let file = FileRotate::new(
        path,
        AppendTimestamp::default(age),
        limit,
        compression,
        #[cfg(unix)]
        None,
    );
    Ok(SizeCap {
        file,
        max_size: cfg.max_size,
        written: len,
    })
}

/// file-rotate's writer plus a size limit: before a write, a file that has
/// reached `max_size` is rotated, so every file holds whole lines (the
/// non-blocking writer hands over one line per write).
pub struct SizeCap {
    file: FileRotate<AppendTimestamp>,
    /// 0 = no size limit.
    max_size: u64,
    /// Bytes in the current file.
    written: u64,
}

impl Write for SizeCap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.max_size > 0 && self.written >= self.max_size {
            self.file.rotate()?;
            self.written = 0;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An event formatter that appends a backtrace to events at `at` or more
/// severe, at most once per second.
pub struct WithStack<F> {
    inner: F,
    at: Option<Level>,
    json: bool,
    /// Milliseconds after `epoch` of the last stack written, plus one (0: never).
    last: AtomicU64,
    epoch: Instant,
}

/// Shortest time between two stacks on one terminal.
const STACK_EVERY: Duration = Duration::from_secs(1);

impl<F> WithStack<F> {
    /// Wraps `inner`; `json` says that it writes one JSON object per line.
    pub fn new(inner: F, at: Option<Level>, json: bool) -> Self {
        WithStack {
            inner,
            at,
            json,
            last: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether this event gets a stack (and, if so, takes this second's turn).
    fn wants(&self, level: &Level) -> bool {
        // tracing orders levels by verbosity: ERROR < WARN < ... < TRACE.
        match self.at {
            Some(at) if *level <= at => {}
            _ => return false,
        }
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= STACK_EVERY.as_millis() as u64;
        due && self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl<S, N, F> FormatEvent<S, N> for WithStack<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if !self.wants(event.metadata().level()) {
            return self.inner.format_event(ctx, writer, event);
        }
        let stack = std::backtrace::Backtrace::force_capture().to_string();
        if self.json {
            let mut line = String::new();
            self.inner
                .format_event(ctx, Writer::new(&mut line), event)?;
            writer.write_str(&with_json_field(&line, "stack", &stack))
        } else {
            self.inner.format_event(ctx, writer.by_ref(), event)?;
            for l in stack.lines() {
                writeln!(writer, "    {l}")?;
            }
            Ok(())
        }
    }
}

/// Adds `"key": value` (a JSON string) to the one-line JSON object `line`.
fn with_json_field(line: &str, key: &str, value: &str) -> String {
    let body = line.trim_end();
    let quoted = serde_json::to_string(value).unwrap_or_default();
    match body.strip_suffix('}') {
        Some(head) if head.trim_end().ends_with('{') => format!("{head}\"{key}\":{quoted}}}\n"),
        Some(head) => format!("{head},\"{key}\":{quoted}}}\n"),
        None => format!("{body}\n"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buf {
        type Writer = Buf;
        fn make_writer(&'w self) -> Buf {
            self.clone()
        }
    }

    /// Logs an info, two errors and a warning through one terminal.
    fn logged(format: LogFormat, at: Option<Level>) -> String {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(layer(buf.clone(), format, false, at));
        tracing::subscriber::with_default(sub, || {
            tracing::info!(n = 1, "fine");
            tracing::error!(n = 2, "broken");
            tracing::error!(n = 3, "broken again");
            tracing::warn!(n = 4, "odd");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_errors_get_one_stack_per_second() {
        let out = logged(LogFormat::Text, Some(Level::ERROR));
        assert!(out.contains("logging::tests"), "{out}");
        let (first, rest) = out.split_once("broken again").unwrap();
        assert!(
            first.contains("broken") && first.contains("\n    "),
            "{first}"
        );
        assert!(
            !rest.contains("\n    "),
            "no second stack within a second: {rest}"
        );
        assert!(!out.contains('\x1b'), "no colour without a terminal");
    }

    #[test]
    fn json_stacks_stay_inside_the_object() {
        let out = logged(LogFormat::Json, Some(Level::WARN));
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].get("stack").is_none(), "info has no stack");
        assert!(lines[1]["stack"].as_str().unwrap().contains("logging"));
        assert!(lines[2].get("stack").is_none(), "rate-limited");
        assert_eq!(lines[1]["fields"]["message"], "broken");
    }

    #[test]
    fn stack_level_off_adds_nothing() {
        let out = logged(LogFormat::Text, None);
        assert_eq!(out.lines().count(), 4, "{out}");
    }

    #[test]
    fn json_fields_are_spliced() {
        assert_eq!(
            with_json_field("{\"a\":1}\n", "s", "x\ny"),
            "{\"a\":1,\"s\":\"x\\ny\"}\n"
        );
        assert_eq!(with_json_field("{}\n", "s", "x"), "{\"s\":\"x\"}\n");
        assert_eq!(with_json_field("not json\n", "s", "x"), "not json\n");
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringgate-logs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn size_rotation_keeps_whole_lines() {
        let d = tmp("size");
        let cfg = LogFileConfig {
            path: d.join("sub/gate.log"),
            max_size: 1024,
            ..LogFileConfig::default()
        };
        let mut w = open_file(&cfg).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..50 {
            w.write_all(line.as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let got = files(&d.join("sub"));
        assert!(got.len() >= 4, "5000 bytes in 1 KiB files: {got:?}");
        for (name, len) in &got {
            assert!(name.starts_with("gate.log"), "{name}");
            assert!(*len <= 1024 + 100 && len % 100 == 0, "{name}: {len} bytes");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compressed_rotations_are_gzip() {
        let d = tmp("gz");
        let cfg = LogFileConfig {
            path: d.join("gate.log"),
            max_size: 1024,
            compress: true,
            ..LogFileConfig::default()
        };
        let mut w = open_file(&cfg).unwrap();
        for _ in 0..30 {
            w.write_all(&[b'y'; 100]).unwrap();
        }
        let got = files(&d);
        let gz: Vec<_> = got.iter().filter(|(n, _)| n.ends_with(".gz")).collect();
        assert!(gz.len() >= 2, "{got:?}");
        let bytes = std::fs::read(d.join(&gz[0].0)).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unwritable_path_is_named() {
        let cfg = LogFileConfig {
            path: "/proc/version/gate.log".into(),
            ..LogFileConfig::default()
        };
        let e = open_file(&cfg).err().expect("refused").to_string();
        assert!(
            e.contains("log.file.path") && e.contains("/proc/version/gate.log"),
            "{e}"
        );
    }
}
