//! Telling containerd why the runtime failed: lines in the `--log` file in
//! the form its shim reads back (`{"level","msg","time"}` with
//! `--log-format json`, logrus text otherwise), so the message reaches the
//! CreateContainer error and the pod's events. stderr gets the line too.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends one error line to `log` (if given) and writes it to stderr.
pub fn error(log: Option<&Path>, json: bool, message: &str) {
    runcvm_log::error!("{message}");
    append(log, json, "error", message);
}

/// Appends one warning line to `log`, and nowhere else: at `create` the
/// runtime's stderr is the container's, and a node's condition does not
/// belong in every pod's log. Without a log file it goes to stderr.
/// containerd's shim reads the file only when a command fails, so after a
/// successful create the line stays in the bundle's `log.json`.
pub fn warning(log: Option<&Path>, json: bool, message: &str) {
    if log.is_none() {
        runcvm_log::warn!("{message}");
    }
    append(log, json, "warning", message);
}

/// A warning for the pod's owner, about what the pod asked for: on stderr,
/// which at `create` is the container's (its `kubectl logs`), and in `log`.
pub fn pod_warning(log: Option<&Path>, json: bool, message: &str) {
    runcvm_log::warn!("{message}");
    append(log, json, "warning", message);
}

/// Appends one info line to `log`, and nowhere else (see [`warning`]).
pub fn info(log: Option<&Path>, json: bool, message: &str) {
    append(log, json, "info", message);
}

fn append(log: Option<&Path>, json: bool, level: &str, message: &str) {
    let Some(log) = log else {
        return;
    };
    let line = format_line(json, level, message, &rfc3339(SystemTime::now()));
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = appended {
        runcvm_log::warn!("cannot write to the runtime log {}: {e}", log.display());
    }
}

fn format_line(json: bool, level: &str, message: &str, time: &str) -> String {
    if json {
        let record = serde_json::json!({"level": level, "msg": message, "time": time});
        format!("{record}\n")
    } else {
        format!("time={time:?} level={level} msg={message:?}\n")
    }
}

/// `2026-11-29T12:34:56Z` (UTC, whole seconds).
fn rfc3339(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// civil-from-days algorithm, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_955_696)),
            "2026-11-29T12:34:56Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn json_lines_are_what_the_shim_reads() {
        let line = format_line(true, "error", "no \"kvm\"", "T");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"level": "error", "msg": "no \"kvm\"", "time": "T"})
        );
        assert!(line.ends_with('\n'));
        assert_eq!(
            format_line(false, "error", "x y", "T"),
            "time=\"T\" level=error msg=\"x y\"\n"
        );
    }

    #[test]
    fn errors_are_appended_to_the_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(&log, "{\"level\":\"info\"}\n").unwrap();
        error(Some(&log), true, "first");
        error(Some(&log), true, "second");
        let text = std::fs::read_to_string(&log).unwrap();
        let messages: Vec<String> = text
            .lines()
            .skip(1)
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["msg"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }
}
