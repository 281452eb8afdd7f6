//! Exec sessions: more processes in the running guest (`runcvm exec`, and
//! `kubectl exec` through the runtime), each with its own stdin, stdout and
//! stderr as data frames of its session, and its exit status in `ExecExit`
//! once all its output has been sent.
//!
//! Init's reaper owns `waitpid`: it hands each session's exit to the
//! session through the registry, which is locked across the fork so even a
//! process that ends at once is found there.

use crate::control::{SharedWriter, send_on};
use crate::entry::{self, StartFailure, Started};
use crate::output;
use nix::unistd::Pid;
use runcvm_proto::{ExitStatus, GuestMessage, Stream};
use runcvm_spec::Entrypoint;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

#[derive(Debug)]
struct Sessions {
    writer: SharedWriter,
    /// Running exec processes: pid to the session's exit channel.
    exits: Mutex<HashMap<i32, Sender<ExitStatus>>>,
    /// Write ends of the sessions' stdin.
    stdins: Mutex<HashMap<u32, File>>,
    /// Terminal master sides, for window sizes.
    terminals: Mutex<HashMap<u32, OwnedFd>>,
}

static SESSIONS: OnceLock<Sessions> = OnceLock::new();
/// Set once the workload has ended: no new session may start then, or it
/// could escape the final kill and keep the VM up.
static CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Refuses new sessions from now on. The registry lock is taken so a start
/// in progress finishes (and is killed with the rest) first.
pub fn close() {
    CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(sessions) = SESSIONS.get() {
        drop(sessions.exits.lock());
    }
}

pub fn init(writer: SharedWriter) {
    let _ = SESSIONS.set(Sessions {
        writer,
        exits: Mutex::new(HashMap::new()),
        stdins: Mutex::new(HashMap::new()),
        terminals: Mutex::new(HashMap::new()),
    });
}

/// Starts `process` for `session`; failures come back as the session's
/// stderr and exit code (127 for a missing program, as runc).
pub fn start(session: u32, process: &Entrypoint, size: Option<runcvm_proto::TerminalSize>) {
    let Some(sessions) = SESSIONS.get() else { return };
    let (exit_sender, exit_receiver) = mpsc::channel();
    let started = {
        let Ok(mut exits) = sessions.exits.lock() else { return };
        if CLOSED.load(std::sync::atomic::Ordering::SeqCst) {
            drop(exits);
            let line = b"runcvm exec: the container's process has ended; the VM is stopping\n";
            if let Ok(mut port) = sessions.writer.lock() {
                let _ = runcvm_proto::write_data(&mut *port, session, Stream::Stderr, line);
            }
            let _ = send_on(
                &sessions.writer,
                &GuestMessage::ExecExit {
                    session,
                    status: ExitStatus::Code(125),
                },
            );
            return;
        }
        let started = entry::start(process, true, size);
        if let Ok(started) = &started {
            exits.insert(started.pid.as_raw(), exit_sender);
        }
        started
    };
    let started = match started {
        Ok(started) => started,
        Err(StartFailure { code, message }) => {
            let line = format!("runcvm exec: unable to start process: {message}\n");
            if let Ok(mut port) = sessions.writer.lock() {
                let _ = runcvm_proto::write_data(&mut *port, session, Stream::Stderr, line.as_bytes());
            }
            let _ = send_on(
                &sessions.writer,
                &GuestMessage::ExecExit {
                    session,
                    status: ExitStatus::Code(code),
                },
            );
            return;
        }
    };
    runcvm_log::debug!("exec session {session}: pid {} runs {}", started.pid, process.args[0]);
    let pumps = attach(session, started);
    std::thread::spawn(move || {
        for pump in pumps {
            let _ = pump.join();
        }
        let status = exit_receiver.recv().unwrap_or(ExitStatus::Code(255));
        forget(session);
        let _ = send_on(&sessions.writer, &GuestMessage::ExecExit { session, status });
    });
}

/// Wires a started process to `session`: its stdin and terminal are kept
/// for the launcher's frames, and its output is pumped out. Returns the
/// pumps, which end when all output is sent.
pub fn attach(session: u32, started: Started) -> Vec<JoinHandle<()>> {
    let Some(sessions) = SESSIONS.get() else {
        return Vec::new();
    };
    if let (Some(stdin), Ok(mut stdins)) = (started.stdin, sessions.stdins.lock()) {
        stdins.insert(session, File::from(stdin));
    }
    if let (Some(terminal), Ok(mut terminals)) = (started.terminal, sessions.terminals.lock()) {
        terminals.insert(session, terminal);
    }
    let mut pumps = vec![output::pump(
        started.stdout,
        session,
        Stream::Stdout,
        sessions.writer.clone(),
    )];
    if let Some(stderr) = started.stderr {
        pumps.push(output::pump(stderr, session, Stream::Stderr, sessions.writer.clone()));
    }
    pumps
}

fn forget(session: u32) {
    if let Some(sessions) = SESSIONS.get() {
        if let Ok(mut stdins) = sessions.stdins.lock() {
            stdins.remove(&session);
        }
        if let Ok(mut terminals) = sessions.terminals.lock() {
            terminals.remove(&session);
        }
    }
}

/// Sets the window size of a session's terminal; the kernel then signals
/// the terminal's foreground processes (SIGWINCH) itself.
pub fn resize(session: u32, rows: u16, cols: u16) {
    let Some(sessions) = SESSIONS.get() else { return };
    let Ok(terminals) = sessions.terminals.lock() else {
        return;
    };
    if let Some(terminal) = terminals.get(&session) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a valid winsize from a live terminal fd.
        unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(terminal),
                libc::TIOCSWINSZ,
                &raw const size,
            );
        }
    }
}

/// Feeds a session's stdin.
pub fn stdin(session: u32, bytes: &[u8]) {
    let Some(sessions) = SESSIONS.get() else { return };
    // Cloned out of the lock: a full pipe must not block other sessions'
    // bookkeeping.
    let file = sessions
        .stdins
        .lock()
        .ok()
        .and_then(|s| s.get(&session).and_then(|f| f.try_clone().ok()));
    if let Some(mut file) = file {
        let _ = file.write_all(bytes);
    }
}

pub fn close_stdin(session: u32) {
    if let Some(sessions) = SESSIONS.get() {
        if let Ok(mut stdins) = sessions.stdins.lock() {
            stdins.remove(&session);
        }
    }
}

/// Called by the reaper for every child that is not the workload.
pub fn reaped(pid: Pid, status: ExitStatus) {
    let Some(sessions) = SESSIONS.get() else { return };
    let sender = sessions
        .exits
        .lock()
        .ok()
        .and_then(|mut exits| exits.remove(&pid.as_raw()));
    if let Some(sender) = sender {
        let _ = sender.send(status);
    }
}
