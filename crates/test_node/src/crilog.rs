//! The CRI container log format containerd writes: one record a line,
//! `TIMESTAMP STREAM TAG CONTENT`, where STREAM is `stdout` or `stderr` and
//! TAG is `F` (a full line) or `P` (a partial one, continued by the next
//! record of the same stream). Partial records are joined into whole lines;
//! output that ended without a newline is a last `P` record with no `F`
//! after it, returned as a line marked `partial`.

use anyhow::{Result, bail};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One whole line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    /// The record's timestamp (RFC 3339 with nanoseconds), of its last part.
    pub timestamp: String,
    pub line: String,
    /// The output ended without a newline after this line.
    pub partial: bool,
}

/// Parses a CRI log file's contents into whole lines.
pub fn parse(text: &str) -> Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    // Per stream: the partial content so far and its last timestamp.
    let mut partial: [Option<(String, String)>; 2] = Default::default();
    for (number, record) in text.lines().enumerate() {
        let mut fields = record.splitn(4, ' ');
        let (Some(timestamp), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
            bail!("CRI log line {}: too few fields: {record:?}", number + 1);
        };
        let content = fields.next().unwrap_or("");
        let stream = match stream {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            other => bail!("CRI log line {}: unknown stream {other:?}", number + 1),
        };
        let pending = &mut partial[usize::from(stream == Stream::Stderr)];
        let mut line = pending.take().map(|(text, _)| text).unwrap_or_default();
        line.push_str(content);
        match tag {
            "P" => *pending = Some((line, timestamp.to_owned())),
            "F" => lines.push(LogLine {
                stream,
                timestamp: timestamp.to_owned(),
                line,
                partial: false,
            }),
            other => bail!("CRI log line {}: unknown tag {other:?}", number + 1),
        }
    }
    for (index, pending) in partial.into_iter().enumerate() {
        if let Some((line, timestamp)) = pending {
            let stream = if index == 0 { Stream::Stdout } else { Stream::Stderr };
            lines.push(LogLine {
                stream,
                timestamp,
                line,
                partial: true,
            });
        }
    }
    Ok(lines)
}

/// Reads and parses a CRI log file; a missing file has no lines yet.
pub fn read(path: &Path) -> Result<Vec<LogLine>> {
    match std::fs::read(path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// `(stream, line)` pairs, as tests compare them.
pub fn pairs(lines: &[LogLine]) -> Vec<(Stream, String)> {
    lines.iter().map(|l| (l.stream, l.line.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_records_become_lines_per_stream() {
        let text = "2024-01-01T00:00:00.000000001Z stdout F hello world\n\
                    2024-01-01T00:00:00.000000002Z stderr P par\n\
                    2024-01-01T00:00:00.000000003Z stdout F \n\
                    2024-01-01T00:00:00.000000004Z stderr F tial  two spaces\n\
                    2024-01-01T00:00:00.000000005Z stdout P no newline\n";
        let lines = parse(text).expect("parse");
        assert_eq!(
            pairs(&lines),
            vec![
                (Stream::Stdout, "hello world".to_owned()),
                (Stream::Stdout, String::new()),
                (Stream::Stderr, "partial  two spaces".to_owned()),
                (Stream::Stdout, "no newline".to_owned()),
            ]
        );
        assert_eq!(lines[2].timestamp, "2024-01-01T00:00:00.000000004Z");
        assert!(!lines[2].partial);
        assert!(lines[3].partial);
    }

    #[test]
    fn malformed_records_are_named() {
        let err = parse("2024 stdin F x\n").expect_err("bad stream");
        assert!(err.to_string().contains("unknown stream \"stdin\""), "{err}");
        assert!(parse("2024 stdout\n").is_err());
        assert!(parse("2024 stdout X y\n").is_err());
    }
}
