//! Exec sessions: more processes in the running container (`runcvm exec`,
//! and `kubectl exec` through the runtime), each with its own stdin, stdout
//! and stderr as data frames of its session, and its exit status in
//! `ExecExit` once all its output has been sent. They join the workload's
//! namespaces and cgroup and run under its seccomp profile.
//!
//! Init's main thread owns `waitpid` and hands each session's exit to it
//! through [`Sessions::reaped`]; the registry is locked across the fork, so
//! even a process that ends at once is found there.
//!
//! Each session is held to its windows (`flow`): its output goes out as
//! the launcher grants credit, and its input is queued in an outbox whose
//! own thread writes it to the process, granting credit back as it does;
//! so the thread reading the control channel never waits on a process.

use crate::container::{Confinement, Container};
use crate::forward::Connections;
use crate::outbound::{SharedWriter, send_on};
use crate::output;
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
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Every session of the guest, and its port-forward connections.
#[derive(Debug)]
pub struct Sessions {
    writer: SharedWriter,
    /// The container execs join; `None` in a guest without a workload.
    container: Option<Arc<Container>>,
    /// Running exec processes: pid to the session's exit channel.
    exits: Mutex<HashMap<i32, Sender<ExitStatus>>>,
    /// Each session's process, for signals.
    pids: Mutex<HashMap<u32, Pid>>,
    /// The sessions' stdin: what the launcher sent, on its way to the pipe.
    stdins: Mutex<HashMap<u32, Outbox<Vec<u8>>>>,
    /// What each session may still send to the launcher.
    windows: Arc<Windows>,
    /// Terminal master sides, for window sizes.
    terminals: Mutex<HashMap<u32, OwnedFd>>,
    /// Set once the workload has ended: no new session may start then, or
    /// it could escape the final kill and keep the VM up.
    closed: AtomicBool,
    connections: Connections,
}

impl Sessions {
    pub fn new(writer: SharedWriter, container: Option<Arc<Container>>) -> Arc<Self> {
        let windows = Arc::new(Windows::default());
        Arc::new(Self {
            connections: Connections::new(writer.clone(), Arc::clone(&windows)),
            writer,
            container,
            exits: Mutex::new(HashMap::new()),
            pids: Mutex::new(HashMap::new()),
            stdins: Mutex::new(HashMap::new()),
            windows,
            terminals: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Refuses new sessions from now on. The registry lock is taken so a
    /// start in progress finishes (and is killed with the rest) first.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(self.exits.lock());
        self.connections.close_all();
    }

    fn refuse(&self, session: u32, code: i32, line: &str) {
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

    /// Starts `process` for `session`; failures come back as the session's
    /// stderr and exit code (127 for a missing program, as runc).
    pub fn start(self: &Arc<Self>, session: u32, process: &Entrypoint, size: Option<TerminalSize>) {
        let (exit_sender, exit_receiver) = mpsc::channel();
        let started = {
            let Ok(mut exits) = self.exits.lock() else { return };
            if self.closed.load(Ordering::SeqCst) {
                drop(exits);
                self.refuse(
                    session,
                    spawn::RUNNER_FAILED,
                    "runcvm exec: the container's process has ended; the VM is stopping\n",
                );
                return;
            }
            let started = self.spawn(process, size);
            if let Ok(started) = &started {
                exits.insert(started.pid.as_raw(), exit_sender);
                if let Ok(mut pids) = self.pids.lock() {
                    pids.insert(session, started.pid);
                }
            }
            started
        };
        let started = match started {
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
            let status = exit_receiver.recv().unwrap_or(ExitStatus::Code(255));
            sessions.forget(session);
            let _ = send_on(&sessions.writer, &GuestMessage::ExecExit { session, status });
        });
    }

    /// An exec's process, in the workload's namespaces and under its
    /// seccomp profile.
    fn spawn(&self, process: &Entrypoint, size: Option<TerminalSize>) -> Result<Started, StartFailure> {
        let joined = match &self.container {
            Some(container) => Some(container.joined().ok_or_else(|| StartFailure {
                code: spawn::RUNNER_FAILED,
                message: "the container's namespaces are gone: its process has ended".into(),
            })?),
            None => None,
        };
        let confinement = match &joined {
            Some(joined) => Confinement::Join(joined),
            None => Confinement::Guest,
        };
        spawn::start(&spawn::Spawn {
            process,
            with_stdin: true,
            terminal_size: size,
            capabilities: crate::entry::capability_masks(process),
            confinement,
            seccomp: self.container.as_ref().and_then(|c| c.seccomp.as_ref()),
            create_cwd: true,
        })
    }

    /// Wires a started process to `session`: its stdin and terminal are
    /// kept for the launcher's frames, and its output is pumped out. Returns
    /// the pumps, which end when all output is sent.
    pub fn attach(&self, session: u32, started: Started) -> Vec<JoinHandle<()>> {
        if let Some(stdin) = started.stdin {
            let outbox = stdin_outbox(session, File::from(stdin), self.writer.clone());
            if let Ok(mut stdins) = self.stdins.lock() {
                stdins.insert(session, outbox);
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

    fn forget(&self, session: u32) {
        self.windows.close(session);
        if let Ok(mut stdins) = self.stdins.lock() {
            stdins.remove(&session);
        }
        if let Ok(mut terminals) = self.terminals.lock() {
            terminals.remove(&session);
        }
        if let Ok(mut pids) = self.pids.lock() {
            pids.remove(&session);
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
        let Ok(stdins) = self.stdins.lock() else { return };
        if let Some(outbox) = stdins.get(&session)
            && let Err(e) = outbox.push(bytes)
        {
            runcvm_log::warn!("session {session}: {e}; its input is dropped");
        }
    }

    /// No more input for `session`: what is queued still reaches the
    /// process, then its stdin closes.
    pub fn close_stdin(&self, session: u32) {
        if self.connections.close_write(session) {
            return;
        }
        if let Ok(mut stdins) = self.stdins.lock() {
            stdins.remove(&session);
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
        if let Some(pid) = self.pids.lock().ok().and_then(|pids| pids.get(&session).copied()) {
            runcvm_log::debug!("exec session {session}: its client went away; killing process group {pid}");
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }

    /// Connects `session` to a port on the guest's loopback.
    pub fn connect(&self, session: u32, port: u16, ipv6: bool) {
        if self.closed.load(Ordering::SeqCst) {
            let _ = send_on(
                &self.writer,
                &GuestMessage::Disconnected {
                    session,
                    error: Some("the container's process has ended".into()),
                },
            );
            return;
        }
        self.connections.connect(session, port, ipv6);
    }

    /// Hands a reaped child's status to its session; other children are
    /// orphans of the container.
    pub fn reaped(&self, pid: Pid, status: ExitStatus) {
        let sender = self.exits.lock().ok().and_then(|mut exits| exits.remove(&pid.as_raw()));
        if let Some(sender) = sender {
            let _ = sender.send(status);
        }
    }
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
