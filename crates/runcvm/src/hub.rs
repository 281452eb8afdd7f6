//! The launcher's side of every session on the control channel besides the
//! workload's: exec clients (`runcvm exec`, which `kubectl exec` and exec
//! probes run in the container) and port-forward connections. Each gets a
//! session number; its frames are relayed both ways, so many run at once
//! over the one channel.
//!
//! A session may arrive before the guest is up (an exec probe right after
//! the container started): it waits until the guest is ready, or until the
//! VM has failed to come up, which the supervisor bounds by the boot
//! timeout. A client that goes away before its process ended (an `ExecSync`
//! whose timeout passed: containerd kills the client) takes its process in
//! the guest with it.

use runcvm_proto::{ExitStatus, Frame, GuestMessage, HostMessage, Stream};
use runcvm_spec::Entrypoint;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The launcher's writing half of the control channel, shared with the
/// supervisor.
pub type GuestWriter = Arc<Mutex<UnixStream>>;

/// Sends one message to the guest under the writer's lock.
pub(crate) fn send_guest(guest: &GuestWriter, message: &HostMessage) -> std::io::Result<()> {
    let mut stream = guest
        .lock()
        .map_err(|_| std::io::Error::other("control channel writer poisoned"))?;
    runcvm_proto::write_message(&mut *stream, message)
}

/// Whether the guest can take sessions.
#[derive(Debug, Default)]
enum GuestState {
    /// Booting: sessions wait.
    #[default]
    Starting,
    Ready(GuestWriter),
    /// The VM ended, or never came up.
    Gone,
}

/// The launcher's side of every session.
#[derive(Debug, Default)]
pub struct SessionHub {
    guest: Mutex<GuestState>,
    guest_changed: Condvar,
    clients: Mutex<HashMap<u32, UnixStream>>,
    connections: Mutex<HashMap<u32, TcpStream>>,
    next_session: AtomicU32,
}

impl SessionHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            next_session: AtomicU32::new(1),
            ..Self::default()
        })
    }

    /// The guest runs its workload: waiting sessions go ahead.
    pub fn set_guest(&self, guest: GuestWriter) {
        self.set_state(GuestState::Ready(guest));
    }

    /// The VM is gone (or never came up): waiting sessions fail.
    pub fn set_gone(&self) {
        self.set_state(GuestState::Gone);
    }

    fn set_state(&self, state: GuestState) {
        if let Ok(mut slot) = self.guest.lock() {
            *slot = state;
            self.guest_changed.notify_all();
        }
    }

    /// Waits for the guest; `None` once the VM is gone.
    fn wait_for_guest(&self) -> Option<GuestWriter> {
        let mut state = self.guest.lock().ok()?;
        loop {
            match &*state {
                GuestState::Ready(guest) => return Some(Arc::clone(guest)),
                GuestState::Gone => return None,
                GuestState::Starting => state = self.guest_changed.wait(state).ok()?,
            }
        }
    }

    /// Accepts exec clients on `listener` from a thread of its own.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || hub.exec_client(stream));
            }
        });
    }

    fn exec_client(&self, stream: UnixStream) {
        let Ok(mut reader) = stream.try_clone().map(BufReader::new) else {
            return;
        };
        let (process, terminal_size) = match runcvm_proto::read_frame::<HostMessage>(&mut reader) {
            Ok(Some(Frame::Message(HostMessage::Exec {
                process, terminal_size, ..
            }))) => (process, terminal_size),
            _ => return,
        };
        let Some(guest) = self.wait_for_guest() else {
            refuse(
                stream,
                b"runcvm exec: the VM is not running: it ended, or never came up\n",
            );
            return;
        };
        let session = self.next_session.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut clients) = self.clients.lock() {
            clients.insert(session, stream);
        }
        log_exec(session, &process);
        let started = send_guest(
            &guest,
            &HostMessage::Exec {
                session,
                process,
                terminal_size,
            },
        );
        if started.is_err() {
            self.exited(session, ExitStatus::Code(125));
            return;
        }
        self.relay_client(session, &mut reader, &guest);
    }

    /// The client's frames to the guest, until it is done.
    fn relay_client(&self, session: u32, reader: &mut BufReader<UnixStream>, guest: &GuestWriter) {
        loop {
            let message = match runcvm_proto::read_frame::<HostMessage>(&mut *reader) {
                Ok(Some(Frame::Data {
                    stream: Stream::Stdin,
                    bytes,
                    ..
                })) => {
                    let Ok(mut port) = guest.lock() else { return };
                    if runcvm_proto::write_data(&mut *port, session, Stream::Stdin, &bytes).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Some(Frame::Message(message))) => message,
                Ok(Some(Frame::Data { .. })) => continue,
                Ok(None) | Err(_) => {
                    // Gone before its process ended: the process goes too,
                    // as under runc when containerd kills an exec.
                    if self.clients.lock().is_ok_and(|c| c.contains_key(&session)) {
                        runcvm_log::debug!("exec session {session}: its client went away");
                        let _ = send_guest(guest, &HostMessage::KillSession { session });
                    }
                    return;
                }
            };
            let forwarded = match message {
                HostMessage::CloseStdin { .. } => HostMessage::CloseStdin { session },
                HostMessage::Resize { rows, cols, .. } => HostMessage::Resize { session, rows, cols },
                HostMessage::Signal { signal, .. } => HostMessage::Signal { signal, session },
                _ => continue,
            };
            let _ = send_guest(guest, &forwarded);
        }
    }

    /// A port-forward connection accepted in the pod's namespace, for
    /// `port` on the guest's loopback.
    pub fn forward(self: &Arc<Self>, stream: TcpStream, port: u16, ipv6: bool) {
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            let Some(guest) = hub.wait_for_guest() else {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            };
            let Ok(mut reader) = stream.try_clone() else { return };
            let session = hub.next_session.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut connections) = hub.connections.lock() {
                connections.insert(session, stream);
            }
            runcvm_log::debug!("port-forward session {session}: port {port}");
            if send_guest(&guest, &HostMessage::Connect { session, port, ipv6 }).is_err() {
                hub.disconnected(session, Some("the control channel is closed".into()));
                return;
            }
            let mut buf = vec![0u8; runcvm_proto::MAX_DATA];
            loop {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) => {
                        let _ = send_guest(&guest, &HostMessage::CloseStdin { session });
                        return;
                    }
                    Ok(n) => {
                        let Ok(mut port) = guest.lock() else { return };
                        if runcvm_proto::write_data(&mut *port, session, Stream::Stdin, &buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        let _ = send_guest(&guest, &HostMessage::KillSession { session });
                        return;
                    }
                }
            }
        });
    }

    /// Output of `session` from the guest, to its client or connection.
    pub fn output(&self, session: u32, stream: Stream, bytes: &[u8]) {
        let connection = self
            .connections
            .lock()
            .ok()
            .and_then(|c| c.get(&session).and_then(|s| s.try_clone().ok()));
        if let Some(mut connection) = connection {
            if connection.write_all(bytes).is_err() {
                let _ = connection.shutdown(Shutdown::Both);
            }
            return;
        }
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

    /// The guest's side of a connection ended: so does the pod's side.
    pub fn disconnected(&self, session: u32, error: Option<String>) {
        if let Some(error) = &error {
            runcvm_log::debug!("port-forward session {session}: {error}");
        }
        let connection = self.connections.lock().ok().and_then(|mut c| c.remove(&session));
        let Some(connection) = connection else { return };
        if error.is_some() {
            // Nothing listens there in the guest: reset, so the client
            // (containerd's port-forward) sees the connection refused
            // rather than a clean end.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = nix::sys::socket::setsockopt(&connection, nix::sys::socket::sockopt::Linger, &linger);
            // Wakes the thread reading the client, whose descriptor is the
            // last; its close sends the reset.
            let _ = connection.shutdown(Shutdown::Read);
        } else {
            // What the workload sent has been written.
            let _ = connection.shutdown(Shutdown::Write);
        }
    }
}

/// Tells a client its exec cannot run.
fn refuse(mut stream: UnixStream, line: &[u8]) {
    let _ = runcvm_proto::write_data(&mut stream, 0, Stream::Stderr, line);
    let _ = runcvm_proto::write_message(
        &mut stream,
        &GuestMessage::ExecExit {
            session: 0,
            status: ExitStatus::Code(125),
        },
    );
    let _ = stream.flush();
}

fn log_exec(session: u32, process: &Entrypoint) {
    runcvm_log::debug!(
        "exec session {session}: {}",
        process
            .args
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}
