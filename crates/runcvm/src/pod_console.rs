//! A pod VM's console for its containers' logs. The pod's launcher runs in
//! the sandbox, whose output goes nowhere; a container at DEBUG asks for
//! what a VM of its own would have put in its log at DEBUG: the guest's
//! console from the kernel's first line, and the pod launcher's own lines
//! (the network take-over's among them). Both are kept here, the latest
//! [`BACKLOG_BYTES`] of them, and passed on to each container that follows.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};

/// How much of the pod's console is kept for a container that comes later.
pub const BACKLOG_BYTES: usize = 256 << 10;

#[derive(Default)]
struct Console {
    backlog: VecDeque<u8>,
    followers: Vec<Sender<Vec<u8>>>,
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    backlog: VecDeque::new(),
    followers: Vec::new(),
});

/// Keeps `bytes` and passes them to every follower still there.
pub fn record(bytes: &[u8]) {
    let mut console = CONSOLE.lock().unwrap_or_else(PoisonError::into_inner);
    console.backlog.extend(bytes);
    let excess = console.backlog.len().saturating_sub(BACKLOG_BYTES);
    console.backlog.drain(..excess);
    console
        .followers
        .retain(|follower| follower.send(bytes.to_vec()).is_ok());
}

/// A log line of the pod's launcher (`runcvm_log::set_tee`).
pub fn record_line(line: &str) {
    record(line.as_bytes());
}

/// What was kept so far, and what comes from now on.
pub fn follow() -> (Vec<u8>, Receiver<Vec<u8>>) {
    let (sender, receiver) = channel();
    let mut console = CONSOLE.lock().unwrap_or_else(PoisonError::into_inner);
    console.followers.push(sender);
    (console.backlog.iter().copied().collect(), receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_gets_what_was_kept_then_what_comes() {
        record(b"Linux version 6.1\n");
        let (backlog, later) = follow();
        assert!(backlog.ends_with(b"Linux version 6.1\n"));
        record_line("MAC swap: eth0\n");
        assert_eq!(later.recv().unwrap(), b"MAC swap: eth0\n");
        // The backlog stays bounded.
        record(&vec![b'x'; BACKLOG_BYTES + 10]);
        assert_eq!(follow().0.len(), BACKLOG_BYTES);
    }
}
