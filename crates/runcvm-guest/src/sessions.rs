//! Sessions: the stdio of the pod's containers (a container's session is
//! its id) and of exec sessions, more processes in a running container
//! (`runcvm exec`, and `kubectl exec` through the runtime), each with its
//! own stdin, stdout and stderr as data frames of its session. An exec's
//! exit status goes out in `ExecExit` once all its output has been sent.
//! Execs join their container's namespaces and cgroup and run under its
//! seccomp profile.
//!
//! Init's main thread owns `waitpid` and hands each exit to its waiter
//! (`reaper`), whose registry is locked across the fork, so even a process
//! that ends at once is found there.
//!
//! Each session is held to its windows (`flow`): its output goes out as
//! the launcher grants credit, and its input is queued in an outbox whose
//! own thread writes it to the process, granting credit back as it does;
//! so the thread reading the control channel never waits on a process.

use crate::container::{Confinement, Container};
use crate::forward::Connections;
use crate::outbound::{SharedWriter, send_on};
use crate::output;
use crate::reaper::Waiters;
use crate::spawn::{self, StartFailure, Started};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use runcvm_proto::flow::{Outbox, Windows};
use runcvm_proto::{ExitStatus, GuestMessage, Stream, TerminalSize};
use runcvm_spec::Entrypoint;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where an exec's process runs.
#[derive(Debug)]
pub enum ExecTarget {
    /// In a running container: its namespaces, cgroup and seccomp profile.
    Container(Arc<Container>),
    /// In the guest's own world: a container that sleeps without an
    /// entrypoint, whose root is the guest's.
    Guest,
}

/// A session's input on its way to its process.
enum Stdin {
    /// The process is being started (a container's, which is made on a
    /// thread of its own while the launcher already sends its input): the
    /// input waits here, within the session's window.
    Waiting {
        queued: Vec<Vec<u8>>,
        closed: bool,
    },
    Open(Outbox<Vec<u8>>),
}

impl std::fmt::Debug for Stdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Waiting { queued, closed } => write!(f, "Waiting({} chunks, closed: {closed})", queued.len()),
            Self::Open(_) => f.write_str("Open"),
        }
    }
}

/// Every session of the guest, and its port-forward connections.
#[derive(Debug)]
pub struct Sessions {
    writer: SharedWriter,
    /// Who waits for which process (the reaper hands statuses there).
    waiters: Arc<Waiters>,
    /// Each session's process, for signals.
    pids: Mutex<HashMap<u32, Pid>>,
    /// Sessions killed before their process started (locked inside
    /// `pids`).
    doomed: Mutex<std::collections::HashSet<u32>>,
    /// The sessions' stdin: what the launcher sent, on its way to the pipe.
    stdins: Mutex<HashMap<u32, Stdin>>,
    /// What each session may still send to the launcher.
    windows: Arc<Windows>,
    /// Terminal master sides, for window sizes.
    terminals: Mutex<HashMap<u32, OwnedFd>>,
    /// Set once the VM is powering off: no new session may start then, or
    /// it could escape the final kill.
    closed: AtomicBool,
    connections: Connections,
}

impl Sessions {
    pub fn new(writer: SharedWriter, waiters: Arc<Waiters>) -> Arc<Self> {
        let windows = Arc::new(Windows::default());
        Arc::new(Self {
            connections: Connections::new(writer.clone(), Arc::clone(&windows)),
            writer,
            waiters,
            pids: Mutex::new(HashMap::new()),
            doomed: Mutex::default(),
            stdins: Mutex::new(HashMap::new()),
            windows,
            terminals: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// `session`'s window: what it may still send to the launcher.
    pub fn window(&self, session: u32) -> Arc<runcvm_proto::flow::Window> {
        self.windows.get(session)
    }

    /// Who waits for which process.
    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    /// Refuses new sessions from now on; a start in progress finishes (and
    /// is killed with the rest) first.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiters.close();
        self.connections.close_all();
    }

    /// Ends `session` at once with `line` on its stderr and `code`.
    pub fn refuse(&self, session: u32, code: i32, line: &str) {
        self.forget(session);
        if let Ok(mut port) = self.writer.lock() {
            let _ = runcvm_proto::write_data(&mut *port, session, Stream::Stderr, line.as_bytes());
        }
        let _ = send_on(
            &self.writer,
            &GuestMessage::ExecExit {
                session,
                status: ExitStatus::Code(code),
            },
        );
    }

    /// Starts `process` for `session` in `target`; failures come back as
    /// the session's stderr and exit code (127 for a missing program, as
    /// runc).
    pub fn start(
        self: &Arc<Self>,
        session: u32,
        target: &ExecTarget,
        process: &Entrypoint,
        size: Option<TerminalSize>,
    ) {
        let started = spawn(target, process, size, &self.waiters);
        if let (Ok((started, _)), Ok(mut pids)) = (&started, self.pids.lock()) {
            pids.insert(session, started.pid);
            // Its client went away while it was being started.
            if self.doomed.lock().is_ok_and(|mut doomed| doomed.remove(&session)) {
                kill_group(started.pid);
            }
        }
        let (started, exit) = match started {
            Ok(started) => started,
            Err(StartFailure { code, message }) => {
                self.refuse(
                    session,
                    code,
                    &format!("runcvm exec: unable to start process: {message}\n"),
                );
                return;
            }
        };
        runcvm_log::debug!("exec session {session}: pid {} runs {}", started.pid, process.args[0]);
        let pumps = self.attach(session, started);
        let sessions = Arc::clone(self);
        std::thread::spawn(move || {
            for pump in pumps {
                let _ = pump.join();
            }
            let status = exit.recv().unwrap_or(ExitStatus::Code(255));
            sessions.forget(session);
            let _ = send_on(&sessions.writer, &GuestMessage::ExecExit { session, status });
        });
    }

    /// Wires a started process to `session`: its stdin and terminal are
    /// kept for the launcher's frames, and its output is pumped out. Returns
    /// the pumps, which end when all output is sent.
    pub fn attach(&self, session: u32, started: Started) -> Vec<JoinHandle<()>> {
        if let Some(stdin) = started.stdin {
            let outbox = stdin_outbox(session, File::from(stdin), self.writer.clone());
            if let Ok(mut stdins) = self.stdins.lock() {
                let (queued, closed) = match stdins.remove(&session) {
                    Some(Stdin::Waiting { queued, closed }) => (queued, closed),
                    _ => (Vec::new(), false),
                };
                for bytes in queued {
                    if let Err(e) = outbox.push(bytes) {
                        runcvm_log::warn!("session {session}: {e}; its input is dropped");
                    }
                }
                // Dropped when closed: what is queued is written, then the
                // pipe closes.
                if !closed {
                    stdins.insert(session, Stdin::Open(outbox));
                }
            }
        }
        if let (Some(terminal), Ok(mut terminals)) = (started.terminal, self.terminals.lock()) {
            terminals.insert(session, terminal);
        }
        let window = self.windows.get(session);
        let mut pumps = vec![output::pump(
            started.stdout,
            session,
            Stream::Stdout,
            self.writer.clone(),
            Arc::clone(&window),
        )];
        if let Some(stderr) = started.stderr {
            pumps.push(output::pump(
                stderr,
                session,
                Stream::Stderr,
                self.writer.clone(),
                window,
            ));
        }
        pumps
    }

    /// Credit from the launcher for `session`'s output.
    pub fn credit(&self, session: u32, bytes: u32) {
        self.windows.grant(session, bytes);
    }

    /// Drops what is kept of `session` once its process has ended and all
    /// its output is sent.
    pub fn forget(&self, session: u32) {
        self.windows.close(session);
        if let Ok(mut stdins) = self.stdins.lock() {
            stdins.remove(&session);
        }
        if let Ok(mut terminals) = self.terminals.lock() {
            terminals.remove(&session);
        }
        if let Ok(mut pids) = self.pids.lock() {
            pids.remove(&session);
            if let Ok(mut doomed) = self.doomed.lock() {
                doomed.remove(&session);
            }
        }
    }

    /// Sets the window size of a session's terminal; the kernel then
    /// signals the terminal's foreground processes (SIGWINCH) itself.
    pub fn resize(&self, session: u32, rows: u16, cols: u16) {
        let Ok(terminals) = self.terminals.lock() else {
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

    /// Feeds a session's stdin, or a connection's outgoing bytes: queued,
    /// never waited for.
    pub fn stdin(&self, session: u32, bytes: Vec<u8>) {
        let bytes = match self.connections.send(session, bytes) {
            Ok(()) => return,
            Err(bytes) => bytes,
        };
        let Ok(mut stdins) = self.stdins.lock() else { return };
        match stdins.get_mut(&session) {
            Some(Stdin::Open(outbox)) => {
                if let Err(e) = outbox.push(bytes) {
                    runcvm_log::warn!("session {session}: {e}; its input is dropped");
                }
            }
            Some(Stdin::Waiting { queued, closed: false }) => queued.push(bytes),
            Some(Stdin::Waiting { closed: true, .. }) | None => {}
        }
    }

    /// Keeps `session`'s input until its process is attached: a container
    /// that reads stdin, while it is being made.
    pub fn hold_stdin(&self, session: u32) {
        if let Ok(mut stdins) = self.stdins.lock() {
            stdins.insert(
                session,
                Stdin::Waiting {
                    queued: Vec::new(),
                    closed: false,
                },
            );
        }
    }

    /// No more input for `session`: what is queued still reaches the
    /// process, then its stdin closes.
    pub fn close_stdin(&self, session: u32) {
        if self.connections.close_write(session) {
            return;
        }
        if let Ok(mut stdins) = self.stdins.lock() {
            match stdins.get_mut(&session) {
                Some(Stdin::Waiting { closed, .. }) => *closed = true,
                _ => {
                    stdins.remove(&session);
                }
            }
        }
    }

    /// Sends `signal` to a session's process, as containerd signals an
    /// exec's process.
    pub fn signal(&self, session: u32, signal: Signal) {
        if let Some(pid) = self.pids.lock().ok().and_then(|pids| pids.get(&session).copied()) {
            runcvm_log::debug!("exec session {session}: {signal} to pid {pid}");
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// Ends a session whose client went away: SIGKILL to its process group
    /// (the process leads one of its own), or closes its connection.
    pub fn kill(&self, session: u32) {
        if self.connections.abort(session) {
            return;
        }
        // Its output has nowhere to go any more.
        self.windows.close(session);
        let Ok(pids) = self.pids.lock() else { return };
        match pids.get(&session).copied() {
            Some(pid) => {
                drop(pids);
                runcvm_log::debug!("exec session {session}: its client went away; killing process group {pid}");
                kill_group(pid);
                // As under runc, where the exec's process is gone once its
                // client is (an ExecSync past its timeout): what the launcher
                // sends next (another exec, looking for it) finds it reaped.
                wait_until_reaped(pid);
            }
            // Not started yet (its container is being made): it is killed
            // as soon as it is. Only a session that still takes input is
            // one being started.
            None => {
                let starting = self.stdins.lock().is_ok_and(|stdins| stdins.contains_key(&session));
                if let (true, Ok(mut doomed)) = (starting, self.doomed.lock()) {
                    doomed.insert(session);
                }
            }
        }
    }

    /// Connects `session` to a port on the guest's loopback.
    pub fn connect(&self, session: u32, port: u16, ipv6: bool) {
        if self.closed.load(Ordering::SeqCst) {
            let _ = send_on(
                &self.writer,
                &GuestMessage::Disconnected {
                    session,
                    error: Some("the VM is stopping".into()),
                },
            );
            return;
        }
        self.connections.connect(session, port, ipv6);
    }
}

/// An exec's process, in its container's namespaces and under its seccomp
/// profile.
fn spawn(
    target: &ExecTarget,
    process: &Entrypoint,
    size: Option<TerminalSize>,
    waiters: &Waiters,
) -> Result<(Started, Receiver<ExitStatus>), StartFailure> {
    let (joined, seccomp) = match target {
        ExecTarget::Container(container) => (
            Some(container.joined().ok_or_else(|| StartFailure {
                code: spawn::RUNNER_FAILED,
                message: "the container's process has ended".into(),
            })?),
            container.seccomp.as_ref(),
        ),
        ExecTarget::Guest => (None, None),
    };
    let confinement = match &joined {
        Some(joined) => Confinement::Join(joined),
        None => Confinement::Guest,
    };
    spawn::start(
        &spawn::Spawn {
            process,
            with_stdin: true,
            terminal_size: size,
            capabilities: crate::entry::capability_masks(process, |warning| {
                runcvm_log::write_as(
                    Some(crate::outbound::RUNNER),
                    runcvm_log::LogLevel::Warn,
                    format_args!("{warning}"),
                );
            }),
            confinement,
            seccomp,
            create_cwd: true,
        },
        waiters,
    )
}

/// Waits, briefly, until init has reaped `pid` (its `/proc` entry is gone).
fn wait_until_reaped(pid: Pid) {
    let entry = format!("/proc/{pid}");
    for _ in 0..REAP_POLLS {
        if !std::path::Path::new(&entry).exists() {
            return;
        }
        std::thread::sleep(REAP_POLL);
    }
}

/// How long, in all, a killed exec's end is waited for.
const REAP_POLLS: u32 = 250;
const REAP_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// SIGKILL to an exec's process group (it leads one) and to it.
fn kill_group(pid: Pid) {
    let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
}

/// The outbox of a session's stdin: its thread writes to the pipe (a
/// process that does not read holds up only this thread) and grants the
/// launcher credit for what it wrote. Dropping the outbox closes the pipe
/// once what is queued is written.
fn stdin_outbox(session: u32, mut pipe: File, writer: SharedWriter) -> Outbox<Vec<u8>> {
    Outbox::new(
        &format!("stdin-{session}"),
        move |bytes: Vec<u8>| pipe.write_all(&bytes),
        move |bytes| {
            let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
            let _ = send_on(&writer, &GuestMessage::Credit { session, bytes });
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sessions() -> (Arc<Sessions>, tempfile::NamedTempFile) {
        let port = tempfile::NamedTempFile::new().unwrap();
        let writer = Arc::new(Mutex::new(port.reopen().unwrap()));
        (Sessions::new(writer, Arc::default()), port)
    }

    /// A process whose stdin is a pipe: what `attach` writes reaches
    /// `from_stdin`.
    fn started() -> (Started, File) {
        let (stdin_read, stdin_write) = nix::unistd::pipe().unwrap();
        let (_, stdout_write) = nix::unistd::pipe().unwrap();
        let started = Started {
            pid: Pid::from_raw(1),
            stdout: stdout_write,
            stderr: None,
            stdin: Some(stdin_write),
            terminal: None,
        };
        (started, File::from(stdin_read))
    }

    #[test]
    fn a_containers_input_before_its_process_is_held_then_passed_on_and_closed() {
        let (sessions, _port) = sessions();
        sessions.hold_stdin(3);
        sessions.stdin(3, b"first ".to_vec());
        sessions.stdin(3, b"second".to_vec());
        sessions.close_stdin(3);
        sessions.stdin(3, b" after the close".to_vec());
        let (started, mut from_stdin) = started();
        let _pumps = sessions.attach(3, started);
        let mut got = String::new();
        from_stdin.read_to_string(&mut got).unwrap();
        assert_eq!(got, "first second", "all held input, in order, then EOF");
    }

    #[test]
    fn input_for_a_session_nobody_holds_is_dropped_and_a_held_one_stays_open() {
        let (sessions, _port) = sessions();
        sessions.stdin(4, b"lost".to_vec());
        sessions.hold_stdin(5);
        sessions.stdin(5, b"kept".to_vec());
        let (started, mut from_stdin) = started();
        let _pumps = sessions.attach(5, started);
        let mut got = [0u8; 4];
        from_stdin.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"kept");
        sessions.stdin(5, b" more".to_vec());
        let mut more = [0u8; 5];
        from_stdin.read_exact(&mut more).unwrap();
        assert_eq!(&more, b" more", "open after the held input");
        sessions.close_stdin(5);
        let mut rest = Vec::new();
        from_stdin.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}
