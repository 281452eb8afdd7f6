//! `runcvm exec`: more processes in a running VM; and the client side
//! `runcvm attach` shares with it.
//!
//! The launcher listens on `exec.sock` in its run folder. A client sends
//! `Exec` with the process (or `CreateContainer` with a container), then
//! stdin as data frames and `CloseStdin`; it gets stdout and stderr as data
//! frames and `ExecExit` (or `ContainerExit`). The launcher gives each
//! client a session on the control channel and relays both ways, so many
//! run at once over the one channel.

use runcvm_proto::{ExitStatus, Frame, GuestMessage, HostMessage, Stream};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a client waits for the launcher's socket: an exec right after
/// the container started (an exec probe) may come before the launcher has
/// its VMM running. The launcher then holds it until the guest is up,
/// bounded by the boot timeout.
const SOCKET_WAIT: Duration = Duration::from_secs(60);

/// The signals a client passes to its process in the guest, as containerd's
/// shim signals an exec's process under runc.
const PASSED_SIGNALS: [nix::sys::signal::Signal; 6] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
];

/// Why `runcvm exec` could not run its process in the VM, or lost it.
#[derive(Debug, thiserror::Error)]
pub enum ExecClientError {
    /// {target:?} is neither the pid of a `runcvm run` nor its run folder
    #[error("{target:?} is neither the pid of a `runcvm run` nor its run folder")]
    BadTarget { target: String },
    /// no VM of `runcvm run` pid {pid} under {runs}: is it running, with the
    /// same RUNCVM_STATE_DIR?
    #[error("no VM of `runcvm run` pid {pid} under {runs}: is it running, with the same RUNCVM_STATE_DIR?")]
    NoRun { pid: u32, runs: PathBuf },
    /// cannot reach the VM at {socket} (waited up to {waited_secs} s for it)
    #[error("cannot reach the VM at {socket} (waited up to {waited_secs} s for it)")]
    Connect {
        socket: PathBuf,
        waited_secs: u64,
        #[source]
        source: std::io::Error,
    },
    /// the connection to the launcher cannot be shared between the client's
    /// threads (the I/O error's own message)
    #[error(transparent)]
    Clone(std::io::Error),
    /// the process could not be sent to the launcher (the I/O error's own
    /// message)
    #[error(transparent)]
    Send(std::io::Error),
    /// the session broke off
    #[error("the {0} broke off")]
    SessionBroke(&'static str, #[source] runcvm_proto::ProtoError),
    /// the process's output could not be written here (the I/O error's own
    /// message)
    #[error(transparent)]
    Output(std::io::Error),
    /// the VM ended before the session did
    #[error("the VM ended before the {0} did")]
    VmEnded(&'static str),
}

/// Finds a run's exec socket: `TARGET` is the pid of its `runcvm run`, its
/// run folder, or the socket itself.
pub fn locate_socket(target: &str, state_dir: &Path) -> Result<PathBuf, ExecClientError> {
    let path = Path::new(target);
    if path.is_dir() {
        return Ok(path.join(crate::run_dir::EXEC_SOCKET));
    }
    if path.exists() {
        return Ok(path.to_owned());
    }
    let pid: u32 = target.parse().map_err(|_| ExecClientError::BadTarget {
        target: target.to_owned(),
    })?;
    let runs = state_dir.join("runs");
    let prefix = format!("{pid}-");
    std::fs::read_dir(&runs)
        .ok()
        .and_then(|entries| {
            entries
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path().join(crate::run_dir::EXEC_SOCKET))
        })
        .ok_or(ExecClientError::NoRun { pid, runs })
}

/// Sends our terminal's new size on every SIGWINCH.
fn follow_window_size(writer: ClientWriter) {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGWINCH);
    let _ = set.thread_block();
    std::thread::spawn(move || {
        while set.wait().is_ok() {
            if let Some((rows, cols)) = crate::terminal::stdin_size() {
                let resize = HostMessage::Resize { session: 0, rows, cols };
                if send_frame(&writer, |s| runcvm_proto::write_message(s, &resize)).is_err() {
                    return;
                }
            }
        }
    });
}

/// Waits for the launcher's socket to appear (see [`SOCKET_WAIT`]).
pub fn wait_for_socket(socket: &Path) -> Result<(), ExecClientError> {
    let deadline = Instant::now() + SOCKET_WAIT;
    while !socket.exists() {
        if Instant::now() >= deadline {
            return Err(ExecClientError::Connect {
                socket: socket.to_owned(),
                waited_secs: SOCKET_WAIT.as_secs(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Connects to the launcher's socket, waiting for it to appear (see
/// [`SOCKET_WAIT`]).
fn connect(socket: &Path) -> Result<UnixStream, ExecClientError> {
    let deadline = Instant::now() + SOCKET_WAIT;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(ExecClientError::Connect {
                    socket: socket.to_owned(),
                    waited_secs: SOCKET_WAIT.as_secs(),
                    source,
                });
            }
        }
    }
}

/// The client's writing half: stdin, signals and window sizes come from
/// three threads, and each frame must go out whole.
type ClientWriter = std::sync::Arc<std::sync::Mutex<UnixStream>>;

/// Writes one frame under the writer's lock.
fn send_frame(
    writer: &ClientWriter,
    write: impl FnOnce(&mut UnixStream) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut stream = writer
        .lock()
        .map_err(|_| std::io::Error::other("the exec client's writer is poisoned"))?;
    write(&mut stream)
}

/// Passes the signals this client receives to its process in the guest.
fn pass_signals(writer: ClientWriter) {
    let mut set = nix::sys::signal::SigSet::empty();
    for signal in PASSED_SIGNALS {
        set.add(signal);
    }
    // SIGWINCH too, which only a terminal's thread waits for: no thread may
    // take it with its default action (ignore) instead.
    let mut blocked = set;
    blocked.add(nix::sys::signal::Signal::SIGWINCH);
    let _ = blocked.thread_block();
    std::thread::spawn(move || {
        while let Ok(signal) = set.wait() {
            let message = HostMessage::Signal {
                signal: signal as i32,
                session: 0,
            };
            if send_frame(&writer, |s| runcvm_proto::write_message(s, &message)).is_err() {
                return;
            }
        }
    });
}

/// How a client's session ended, as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub status: ExitStatus,
    /// An attached container's: the guest's OOM killer ended a process of it.
    pub oom_killed: bool,
    /// An attached container's writable single files as it left them.
    pub files: Vec<runcvm_proto::GuestFile>,
}

/// Runs `process` in the VM behind `socket`, in the container named
/// `container` (an attached one) or the first, relaying this process's
/// stdin (if `interactive`), stdout and stderr, and its signals; returns the
/// exit code.
pub fn run_client(
    socket: &Path,
    container: Option<String>,
    process: runcvm_spec::Entrypoint,
    interactive: bool,
) -> Result<i32, ExecClientError> {
    let terminal_size = process.terminal.then(crate::terminal::current_size);
    let exec = HostMessage::Exec {
        session: 0,
        container: runcvm_proto::WORKLOAD_SESSION,
        container_name: container,
        process,
        terminal_size,
    };
    Ok(run_session(socket, exec, interactive, false)?.status.container_code())
}

/// Sends `first` (`Exec`, or `CreateContainer` with its `terminal_size`
/// set) to the launcher behind `socket`, then relays this process's stdin
/// (if `interactive`), stdout and stderr, its signals and its terminal's
/// size until the session ends; with `follow_console`, the pod's console
/// too (`HostMessage::FollowConsole`), to this process's stderr.
pub fn run_session(
    socket: &Path,
    first: HostMessage,
    interactive: bool,
    follow_console: bool,
) -> Result<SessionEnd, ExecClientError> {
    use std::io::{Read, Write};
    let (terminal, what) = match &first {
        HostMessage::Exec { process, .. } => (process.terminal, "exec session"),
        HostMessage::CreateContainer { entrypoint, .. } => {
            (entrypoint.as_ref().is_some_and(|e| e.terminal), "container")
        }
        _ => (false, "session"),
    };
    let stream = connect(socket)?;
    let writer: ClientWriter = std::sync::Arc::new(std::sync::Mutex::new(
        stream.try_clone().map_err(ExecClientError::Clone)?,
    ));
    send_frame(&writer, |s| runcvm_proto::write_message(s, &first)).map_err(ExecClientError::Send)?;
    if follow_console {
        send_frame(&writer, |s| runcvm_proto::write_message(s, &HostMessage::FollowConsole))
            .map_err(ExecClientError::Send)?;
    }
    pass_signals(std::sync::Arc::clone(&writer));
    let _raw = (terminal && interactive)
        .then(crate::terminal::RawMode::on_stdin)
        .flatten();
    if terminal {
        follow_window_size(std::sync::Arc::clone(&writer));
    }
    let input = std::sync::Arc::clone(&writer);
    std::thread::spawn(move || {
        if interactive {
            let mut buf = vec![0u8; runcvm_proto::MAX_DATA];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || send_frame(&input, |s| runcvm_proto::write_data(s, 0, Stream::Stdin, &buf[..n])).is_err() {
                    break;
                }
            }
        }
        let _ = send_frame(&input, |s| {
            runcvm_proto::write_message(s, &HostMessage::CloseStdin { session: 0 })
        });
    });
    let mut reader = BufReader::new(stream);
    loop {
        match runcvm_proto::read_frame::<GuestMessage>(&mut reader)
            .map_err(|e| ExecClientError::SessionBroke(what, e))?
        {
            Some(Frame::Data {
                stream: Stream::Stdout,
                bytes,
                ..
            }) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(ExecClientError::Output)?;
            }
            Some(Frame::Data { bytes, .. }) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&bytes)
                    .and_then(|()| err.flush())
                    .map_err(ExecClientError::Output)?;
            }
            Some(Frame::Message(GuestMessage::ExecExit { status, .. })) => {
                return Ok(SessionEnd {
                    status,
                    oom_killed: false,
                    files: Vec::new(),
                });
            }
            Some(Frame::Message(GuestMessage::ContainerExit {
                status,
                oom_killed,
                files,
                ..
            })) => {
                return Ok(SessionEnd {
                    status,
                    oom_killed,
                    files,
                });
            }
            Some(Frame::Message(_)) => {}
            None => return Err(ExecClientError::VmEnded(what)),
        }
    }
}
