//! What of the guest console reaches the launcher's stderr (the workload's
//! own output travels apart, over the control channel).
//!
//! The console has three phases, told apart by two markers that guest init
//! writes: the kernel's boot lines, up to the handover line; init's own lines
//! (and anything the workload writes to `/dev/ttyS0` itself); and, after the
//! handback sequence, the kernel's shutdown lines. At INFO only the middle
//! phase is shown, byte-exact, so no kernel boot lines appear. At DEBUG
//! everything is shown. Either way the last lines are kept, so an error can
//! show them.

use runcvm_spec::{CONSOLE_HANDBACK, CONSOLE_HANDOVER_LINE};
use std::collections::VecDeque;

/// How many console lines an error shows.
pub const TAIL_LINES: usize = 20;
/// A console line is kept to this many bytes, then cut: the guest's root
/// may write to the console without ever ending a line, and what the
/// launcher holds of the console stays bounded.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Boot,
    Workload,
    Shutdown,
}

#[derive(Debug)]
pub struct ConsoleFilter {
    show_all: bool,
    phase: Phase,
    /// Bytes of the current line (for the tail and the handover line).
    line: Vec<u8>,
    /// Workload bytes held back because they may begin the handback.
    held: Vec<u8>,
    tail: VecDeque<String>,
}

impl ConsoleFilter {
    pub fn new(show_all: bool) -> Self {
        Self {
            show_all,
            phase: Phase::Boot,
            line: Vec::new(),
            held: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Takes a chunk of console output and returns the bytes to print.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut shown = Vec::new();
        for &byte in chunk {
            match self.phase {
                Phase::Boot => self.boot_byte(byte, &mut shown),
                Phase::Workload => self.workload_byte(byte, &mut shown),
                Phase::Shutdown => {
                    if self.show_all {
                        shown.push(byte);
                    }
                    self.track(byte);
                }
            }
        }
        shown
    }

    /// Whether guest init has taken the console.
    pub fn handed_over(&self) -> bool {
        self.phase != Phase::Boot
    }

    /// The last console lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        let partial = String::from_utf8_lossy(&self.line).trim_end().to_owned();
        if !partial.trim().is_empty() {
            lines.push(partial);
        }
        lines
    }

    fn boot_byte(&mut self, byte: u8, shown: &mut Vec<u8>) {
        if self.show_all {
            shown.push(byte);
        }
        if byte == b'\n' {
            let line = trim_line_end(&self.line);
            if line == CONSOLE_HANDOVER_LINE.as_bytes() {
                self.line.clear();
                self.phase = Phase::Workload;
                return;
            }
        }
        self.track(byte);
    }

    /// Matches the handback sequence as bytes stream by; it begins with ESC
    /// and holds no other, so a mismatch can only restart at that byte.
    fn workload_byte(&mut self, byte: u8, shown: &mut Vec<u8>) {
        let marker = CONSOLE_HANDBACK.as_bytes();
        if marker[self.held.len()] == byte {
            self.held.push(byte);
            if self.held.len() == marker.len() {
                self.held.clear();
                self.phase = Phase::Shutdown;
                if self.show_all {
                    shown.push(b'\n');
                }
            }
            return;
        }
        for held in std::mem::take(&mut self.held) {
            shown.push(held);
            self.track(held);
        }
        if byte == marker[0] {
            self.held.push(byte);
            return;
        }
        shown.push(byte);
        self.track(byte);
    }

    fn track(&mut self, byte: u8) {
        if byte != b'\n' {
            if self.line.len() >= MAX_LINE {
                self.end_line();
            }
            self.line.push(byte);
            return;
        }
        self.end_line();
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(trim_line_end(&self.line)).into_owned();
        self.line.clear();
        if text.trim().is_empty() {
            return;
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(text);
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &[u8] = b"[    0.1] Linux version 6.1\n[    0.2] virtio_blk\n";
    const SHUTDOWN: &[u8] = b"[    1.1] reboot: Restarting system\n";

    fn handover() -> Vec<u8> {
        format!("\n{CONSOLE_HANDOVER_LINE}\n").into_bytes()
    }

    fn feed_all(filter: &mut ConsoleFilter, chunks: &[&[u8]]) -> Vec<u8> {
        chunks.iter().flat_map(|c| filter.feed(c)).collect()
    }

    #[test]
    fn a_line_without_end_is_held_in_pieces_of_bounded_size() {
        let mut filter = ConsoleFilter::new(false);
        feed_all(&mut filter, &[BOOT, &handover()]);
        let endless = vec![b'x'; 10 * MAX_LINE + 7];
        let shown = filter.feed(&endless);
        assert_eq!(shown, endless, "still shown byte-exact");
        assert!(filter.line.len() <= MAX_LINE);
        let cut: Vec<String> = filter.tail().into_iter().filter(|l| l.starts_with('x')).collect();
        assert_eq!(cut.len(), 11, "ten cut lines and the partial one");
        assert!(cut.iter().all(|l| l.len() <= MAX_LINE));
    }

    #[test]
    fn info_shows_only_the_workload_byte_exact() {
        let mut filter = ConsoleFilter::new(false);
        let out = feed_all(
            &mut filter,
            &[
                BOOT,
                &handover(),
                b"hello\r\nno newline",
                CONSOLE_HANDBACK.as_bytes(),
                SHUTDOWN,
            ],
        );
        assert_eq!(out, b"hello\r\nno newline");
        assert!(filter.handed_over());
    }

    #[test]
    fn partial_workload_lines_are_shown_at_once() {
        let mut filter = ConsoleFilter::new(false);
        filter.feed(&handover());
        assert_eq!(filter.feed(b"prompt> "), b"prompt> ");
    }

    #[test]
    fn debug_shows_everything() {
        let mut filter = ConsoleFilter::new(true);
        let out = feed_all(
            &mut filter,
            &[BOOT, &handover(), b"out\n", CONSOLE_HANDBACK.as_bytes(), SHUTDOWN],
        );
        let mut expected = BOOT.to_vec();
        expected.extend(handover());
        expected.extend(b"out\n\n");
        expected.extend(SHUTDOWN);
        assert_eq!(out, expected);
    }

    #[test]
    fn markers_split_across_chunks_are_found() {
        let mut filter = ConsoleFilter::new(false);
        let marker = handover();
        let (a, b) = marker.split_at(10);
        assert!(feed_all(&mut filter, &[a, b]).is_empty());
        let handback = CONSOLE_HANDBACK.as_bytes();
        let (c, d) = handback.split_at(5);
        assert_eq!(feed_all(&mut filter, &[b"x", c, d, SHUTDOWN]), b"x");
    }

    #[test]
    fn escape_sequences_that_are_not_the_handback_pass_through() {
        let mut filter = ConsoleFilter::new(false);
        filter.feed(&handover());
        let colour = b"\x1b[31mred\x1b[0m \x1b]runcvm;other\x07\x1b\x1b]r";
        let mut out = filter.feed(colour);
        out.extend(filter.feed(b"!"));
        assert_eq!(out, b"\x1b[31mred\x1b[0m \x1b]runcvm;other\x07\x1b\x1b]r!");
    }

    #[test]
    fn tail_keeps_the_last_lines_even_when_hidden() {
        let mut filter = ConsoleFilter::new(false);
        for i in 0..30 {
            filter.feed(format!("line {i}\n").as_bytes());
        }
        filter.feed(b"tsc: Unable to calibrate");
        let tail = filter.tail();
        assert_eq!(tail.len(), TAIL_LINES + 1);
        assert_eq!(tail[0], "line 10");
        assert_eq!(tail.last().unwrap(), "tsc: Unable to calibrate");
    }

    #[test]
    fn a_workload_printing_the_handover_line_is_just_output() {
        let mut filter = ConsoleFilter::new(false);
        filter.feed(&handover());
        assert_eq!(filter.feed(&handover()), handover());
    }
}
