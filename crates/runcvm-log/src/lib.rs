//! `RUNCVM_LOG_LEVEL` and the one log-line format every runcvm component
//! (runtime, launcher, guest init) writes.
//!
//! A line is `COMPONENT MESSAGE` at INFO and `COMPONENT LEVEL: MESSAGE`
//! otherwise, so the guide's literal lines (`[VM-START] No entrypoint found,
//! sleeping`) appear exactly. At DEBUG every line starts with the seconds since
//! the component started, `[   0.123456]`, like the kernel's own timestamps.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable every component reads its level from.
pub const LOG_LEVEL_ENV: &str = "RUNCVM_LOG_LEVEL";

/// How much a component says, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
}

impl LogLevel {
    /// The accepted spellings, as shown in errors.
    pub const ACCEPTED: &'static str = "ERROR, WARN, INFO or DEBUG";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warn => "WARN",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
        }
    }

    /// Reads `RUNCVM_LOG_LEVEL`; unset or empty means INFO.
    pub fn from_env() -> Result<Self, UnknownLogLevel> {
        match std::env::var_os(LOG_LEVEL_ENV) {
            None => Ok(Self::default()),
            Some(value) if value.is_empty() => Ok(Self::default()),
            Some(value) => value.to_string_lossy().parse(),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RUNCVM_LOG_LEVEL={0:?} is not a log level: use ERROR, WARN, INFO or DEBUG
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{LOG_LEVEL_ENV}={0:?} is not a log level: use {accepted}", accepted = LogLevel::ACCEPTED)]
pub struct UnknownLogLevel(pub String);

impl FromStr for LogLevel {
    type Err = UnknownLogLevel;

    /// Case-insensitive, so `debug` in a pod spec works as well as `DEBUG`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ERROR" => Ok(Self::Error),
            "WARN" | "WARNING" => Ok(Self::Warn),
            "INFO" => Ok(Self::Info),
            "DEBUG" => Ok(Self::Debug),
            _ => Err(UnknownLogLevel(s.to_owned())),
        }
    }
}

/// Formats one line (without the trailing newline).
pub fn format_line(
    component: &str,
    level: LogLevel,
    elapsed_secs: Option<f64>,
    message: &fmt::Arguments<'_>,
) -> String {
    let mut line = String::new();
    if let Some(secs) = elapsed_secs {
        line.push_str(&format!("[{secs:>11.6}] "));
    }
    line.push_str(component);
    if level == LogLevel::Info {
        line.push(' ');
    } else {
        line.push_str(&format!(" {level}: "));
    }
    line.push_str(&message.to_string());
    line
}

/// What DEBUG timestamps count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    /// The component's start (host processes).
    ProcessStart,
    /// The machine's boot, like the kernel's own timestamps (guest init).
    Boot,
}

#[derive(Debug)]
struct Logger {
    component: &'static str,
    level: LogLevel,
    start: Instant,
    epoch: Epoch,
}

impl Logger {
    fn elapsed_secs(&self) -> f64 {
        match self.epoch {
            Epoch::ProcessStart => self.start.elapsed().as_secs_f64(),
            Epoch::Boot => since_boot().as_secs_f64(),
        }
    }
}

/// CLOCK_BOOTTIME: the clock the kernel's console timestamps follow.
fn since_boot() -> std::time::Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the valid timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } == 0;
    if !ok {
        return std::time::Duration::ZERO;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

static LOGGER: OnceLock<Logger> = OnceLock::new();
/// Where every line also goes, at every level, as DEBUG would write it.
static TEE: OnceLock<fn(&str)> = OnceLock::new();

/// Sends every line, whatever the level in force, also to `tee`, written as
/// at DEBUG (a pod VM's launcher keeps them for the containers that ask).
/// The first call wins.
pub fn set_tee(tee: fn(&str)) {
    let _ = TEE.set(tee);
}

/// Sets the process-wide component name and level. The first call wins;
/// before it, lines go out as `runcvm` at INFO.
pub fn init(component: &'static str, level: LogLevel) {
    init_with_epoch(component, level, Epoch::ProcessStart);
}

/// As [`init`], with DEBUG timestamps counted from `epoch`.
pub fn init_with_epoch(component: &'static str, level: LogLevel, epoch: Epoch) {
    let _ = LOGGER.set(Logger {
        component,
        level,
        start: Instant::now(),
        epoch,
    });
}

/// The level in force.
pub fn level() -> LogLevel {
    LOGGER.get().map_or(LogLevel::Info, |logger| logger.level)
}

/// Whether lines at `level` are written.
pub fn enabled(level: LogLevel) -> bool {
    level <= self::level()
}

/// Writes one line to stderr as the process's component.
pub fn write(level: LogLevel, message: fmt::Arguments<'_>) {
    write_as(None, level, message);
}

/// Writes one line to stderr alone, never to the tee: a line about one
/// party that the tee's followers must not get (an exec's argv, which may
/// carry a credential, is not for another container's log).
pub fn write_untee(level: LogLevel, message: fmt::Arguments<'_>) {
    write_line(None, level, message, false);
}

/// Writes one line under another component name (the guest's `[VM-START]`).
pub fn write_as(component: Option<&str>, level: LogLevel, message: fmt::Arguments<'_>) {
    write_line(component, level, message, true);
}

fn write_line(component: Option<&str>, level: LogLevel, message: fmt::Arguments<'_>, teed: bool) {
    let logger = LOGGER.get();
    let name = component.unwrap_or(logger.map_or("runcvm", |l| l.component));
    if let (true, Some(tee)) = (teed, TEE.get()) {
        let elapsed = logger.map_or(0.0, Logger::elapsed_secs);
        let mut line = format_line(name, level, Some(elapsed), &message);
        line.push('\n');
        tee(&line);
    }
    if !enabled(level) {
        return;
    }
    // One write per line keeps lines whole when threads log at once.
    let _ = std::io::stderr()
        .lock()
        .write_all(as_written(name, level, message).as_bytes());
}

/// A line as stderr gets it: the timestamp at DEBUG, and its newline.
fn as_written(name: &str, level: LogLevel, message: fmt::Arguments<'_>) -> String {
    let elapsed = (self::level() == LogLevel::Debug).then(|| LOGGER.get().map_or(0.0, Logger::elapsed_secs));
    let mut line = format_line(name, level, elapsed, &message);
    line.push('\n');
    line
}

/// One line as this process writes it at `level` (its component, and the
/// timestamp at DEBUG), with its newline: for a line that goes elsewhere
/// too (guest init's lines about a container, to that container's log).
pub fn line(level: LogLevel, message: fmt::Arguments<'_>) -> String {
    line_as(None, level, message)
}

/// The same under another component name (the guest's `[VM-START]`).
pub fn line_as(component: Option<&str>, level: LogLevel, message: fmt::Arguments<'_>) -> String {
    let name = component.unwrap_or(LOGGER.get().map_or("runcvm", |l| l.component));
    as_written(name, level, message)
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::write($crate::LogLevel::Error, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::write($crate::LogLevel::Warn, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::write($crate::LogLevel::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::write($crate::LogLevel::Debug, format_args!($($arg)*)) };
}

/// An error and its sources, `: `-separated, each said once (a source whose
/// text its error already includes is not repeated): the one way every
/// component writes an error on a log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_level_in_any_case() {
        assert_eq!("ERROR".parse(), Ok(LogLevel::Error));
        assert_eq!("warn".parse(), Ok(LogLevel::Warn));
        assert_eq!(" Info ".parse(), Ok(LogLevel::Info));
        assert_eq!("debug".parse(), Ok(LogLevel::Debug));
    }

    #[test]
    fn unknown_level_names_the_accepted_values() {
        let err = "verbose".parse::<LogLevel>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "RUNCVM_LOG_LEVEL=\"verbose\" is not a log level: use ERROR, WARN, INFO or DEBUG"
        );
    }

    #[test]
    fn levels_order_from_quiet_to_verbose() {
        assert!(LogLevel::Error < LogLevel::Warn);
        assert!(LogLevel::Warn < LogLevel::Info);
        assert!(LogLevel::Info < LogLevel::Debug);
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }

    #[test]
    fn info_lines_carry_no_level_so_guide_lines_are_literal() {
        let line = format_line(
            "[VM-START]",
            LogLevel::Info,
            None,
            &format_args!("No entrypoint found, sleeping"),
        );
        assert_eq!(line, "[VM-START] No entrypoint found, sleeping");
    }

    #[test]
    fn other_levels_and_debug_timestamps() {
        let line = format_line("runcvm", LogLevel::Warn, None, &format_args!("x"));
        assert_eq!(line, "runcvm WARN: x");
        let line = format_line("runcvm", LogLevel::Debug, Some(1.5), &format_args!("y"));
        assert_eq!(line, "[   1.500000] runcvm DEBUG: y");
    }
}
