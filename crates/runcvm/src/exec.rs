//! `runcvm exec`: more processes in a running VM.
//!
//! The launcher listens on `exec.sock` in its run folder. A client sends
//! `Exec` with the process, then stdin as data frames and `CloseStdin`; it
//! gets stdout and stderr as data frames and `ExecExit`. The launcher gives
//! each client a session on the control channel and relays both ways, so
//! many execs run at once over the one channel.

use runcvm_proto::{ExitStatus, Frame, GuestMessage, HostMessage, Stream};
use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// The launcher's writing half of the control channel, shared with the
/// supervisor.
pub type GuestWriter = Arc<Mutex<UnixStream>>;

/// The launcher's side of every exec session.
#[derive(Debug, Default)]
pub struct ExecHub {
    /// Set once the guest runs its workload; execs before that are refused.
    guest: Mutex<Option<GuestWriter>>,
    clients: Mutex<HashMap<u32, UnixStream>>,
    next_session: AtomicU32,
}

/// Sends one message to the guest under the writer's lock.
pub(crate) fn send_guest(guest: &GuestWriter, message: &HostMessage) -> std::io::Result<()> {
    let mut stream = guest
        .lock()
        .map_err(|_| std::io::Error::other("control channel writer poisoned"))?;
    runcvm_proto::write_message(&mut *stream, message)
}

impl ExecHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            next_session: AtomicU32::new(1),
            ..Self::default()
        })
    }

    /// The guest is ready for exec sessions.
    pub fn set_guest(&self, guest: GuestWriter) {
        if let Ok(mut slot) = self.guest.lock() {
            *slot = Some(guest);
        }
    }

    /// Accepts clients on `listener` from a thread of its own.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || hub.client(stream));
            }
        });
    }

    fn client(&self, stream: UnixStream) {
        let Ok(mut reader) = stream.try_clone().map(BufReader::new) else {
            return;
        };
        let (process, terminal_size) = match runcvm_proto::read_frame::<HostMessage>(&mut reader) {
            Ok(Some(Frame::Message(HostMessage::Exec {
                process, terminal_size, ..
            }))) => (process, terminal_size),
            _ => return,
        };
        let guest = self.guest.lock().ok().and_then(|g| g.clone());
        let Some(guest) = guest else {
            let mut stream = stream;
            let _ = runcvm_proto::write_data(
                &mut stream,
                0,
                Stream::Stderr,
                b"runcvm exec: the VM is not running its workload yet\n",
            );
            let _ = runcvm_proto::write_message(
                &mut stream,
                &GuestMessage::ExecExit {
                    session: 0,
                    status: ExitStatus::Code(125),
                },
            );
            return;
        };
        let session = self.next_session.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(session, stream);
        }
        runcvm_log::debug!(
            "exec session {session}: {}",
            process
                .args
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
        if send_guest(
            &guest,
            &HostMessage::Exec {
                session,
                process,
                terminal_size,
            },
        )
        .is_err()
        {
            self.exited(session, ExitStatus::Code(125));
            return;
        }
        loop {
            match runcvm_proto::read_frame::<HostMessage>(&mut reader) {
                Ok(Some(Frame::Data {
                    stream: Stream::Stdin,
                    bytes,
                    ..
                })) => {
                    let Ok(mut port) = guest.lock() else { return };
                    if runcvm_proto::write_data(&mut *port, session, Stream::Stdin, &bytes).is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Message(HostMessage::CloseStdin { .. }))) => {
                    let _ = send_guest(&guest, &HostMessage::CloseStdin { session });
                }
                Ok(Some(Frame::Message(HostMessage::Resize { rows, cols, .. }))) => {
                    let _ = send_guest(&guest, &HostMessage::Resize { session, rows, cols });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    let _ = send_guest(&guest, &HostMessage::CloseStdin { session });
                    return;
                }
            }
        }
    }

    /// Output of `session` from the guest, to its client.
    pub fn output(&self, session: u32, stream: Stream, bytes: &[u8]) {
        let client = self
            .clients
            .lock()
            .ok()
            .and_then(|c| c.get(&session).and_then(|s| s.try_clone().ok()));
        if let Some(mut client) = client {
            let _ = runcvm_proto::write_data(&mut client, 0, stream, bytes);
        }
    }

    /// The end of `session`: its status to the client, which is then done.
    pub fn exited(&self, session: u32, status: ExitStatus) {
        let client = self.clients.lock().ok().and_then(|mut c| c.remove(&session));
        if let Some(mut client) = client {
            let _ = runcvm_proto::write_message(&mut client, &GuestMessage::ExecExit { session: 0, status });
        }
    }
}

/// Finds a run's exec socket: `TARGET` is the pid of its `runcvm run`, its
/// run folder, or the socket itself.
pub fn locate_socket(target: &str, state_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = std::path::Path::new(target);
    if path.is_dir() {
        return Ok(path.join(crate::run_dir::EXEC_SOCKET));
    }
    if path.exists() {
        return Ok(path.to_owned());
    }
    let pid: u32 = target
        .parse()
        .map_err(|_| anyhow::anyhow!("{target:?} is neither the pid of a `runcvm run` nor its run folder"))?;
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
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no VM of `runcvm run` pid {pid} under {}: is it running, with the same RUNCVM_STATE_DIR?",
                runs.display()
            )
        })
}

/// Sends our terminal's new size on every SIGWINCH.
fn follow_window_size(mut stream: UnixStream) {
    let mut set = nix::sys::signal::SigSet::empty();
    set.add(nix::sys::signal::Signal::SIGWINCH);
    let _ = set.thread_block();
    std::thread::spawn(move || {
        while set.wait().is_ok() {
            if let Some((rows, cols)) = crate::terminal::stdin_size() {
                if runcvm_proto::write_message(&mut stream, &HostMessage::Resize { session: 0, rows, cols }).is_err() {
                    return;
                }
            }
        }
    });
}

/// Runs `process` in the VM behind `socket`, relaying this process's stdin
/// (if `interactive`), stdout and stderr; returns the exit code.
pub fn run_client(
    socket: &std::path::Path,
    process: runcvm_spec::Entrypoint,
    interactive: bool,
) -> anyhow::Result<i32> {
    use anyhow::Context;
    use std::io::{Read, Write};
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("cannot reach the VM at {}", socket.display()))?;
    let terminal = process.terminal;
    let terminal_size = terminal.then(crate::terminal::current_size);
    runcvm_proto::write_message(
        &mut stream,
        &HostMessage::Exec {
            session: 0,
            process,
            terminal_size,
        },
    )?;
    let _raw = (terminal && interactive)
        .then(crate::terminal::RawMode::on_stdin)
        .flatten();
    if terminal {
        follow_window_size(stream.try_clone()?);
    }
    let mut input = stream.try_clone()?;
    std::thread::spawn(move || {
        if interactive {
            let mut buf = vec![0u8; runcvm_proto::MAX_DATA];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || runcvm_proto::write_data(&mut input, 0, Stream::Stdin, &buf[..n]).is_err() {
                    break;
                }
            }
        }
        let _ = runcvm_proto::write_message(&mut input, &HostMessage::CloseStdin { session: 0 });
    });
    let mut reader = BufReader::new(stream);
    loop {
        match runcvm_proto::read_frame::<GuestMessage>(&mut reader).context("the exec session broke off")? {
            Some(Frame::Data {
                stream: Stream::Stdout,
                bytes,
                ..
            }) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Some(Frame::Data { bytes, .. }) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&bytes)?;
                err.flush()?;
            }
            Some(Frame::Message(GuestMessage::ExecExit { status, .. })) => return Ok(status.container_code()),
            Some(Frame::Message(_)) => {}
            None => anyhow::bail!("the VM ended before the exec session did"),
        }
    }
}
