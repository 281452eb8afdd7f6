//! The launcher's side of every session on the control channel besides the
//! workload's: exec clients (`runcvm exec`, which `kubectl exec` and exec
//! probes run in the container), attach clients (`runcvm attach`: one more
//! container in the VM, whose id is its session) and port-forward
//! connections. Each gets a session number; its frames are relayed both
//! ways, so many run at once over the one channel.
//!
//! A session may arrive before the guest is up (an exec probe right after
//! the container started): it waits until the guest is ready, or until the
//! VM has failed to come up, which the supervisor bounds by the boot
//! timeout. A client that goes away before its process ended (an `ExecSync`
//! whose timeout passed: containerd kills the client) takes its process in
//! the guest with it.
//!
//! Each session keeps to its windows (`runcvm_proto::flow`), the workload's
//! own (session 0) too: what the guest sends for it is queued in the
//! session's outbox, whose thread passes it to the consumer (the exec
//! client, the port-forward connection, the launcher's stdout and stderr)
//! and grants the guest credit for it; what the launcher sends waits for
//! the guest's credit. So the thread that reads the control channel never
//! waits on a consumer, and an exec client that stops reading holds up its
//! own process alone.

use runcvm_proto::flow::{Outbox, Window, WindowBytes, Windows};
use runcvm_proto::{ExitStatus, Frame, GuestMessage, HostMessage, Stream, WORKLOAD_SESSION};
use runcvm_spec::Entrypoint;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long an exec naming a container waits for it to be attached (see
/// `SessionHub::name_wait`): at most what the pod's VM may take to boot.
const NAME_WAIT: Duration = Duration::from_secs(60);
/// How often a client waiting for a container's name is looked at: one
/// that left (a probe past its timeout) has its exec never run.
const CLIENT_LOOK: Duration = Duration::from_millis(200);

/// What goes to a session's consumer, in order.
#[derive(Debug)]
enum Delivery {
    Data(Stream, Vec<u8>),
    /// The pod's console for a client that follows it: to its stderr,
    /// outside every window (the guest did not send it as the session's).
    Console(Vec<u8>),
    /// An exec's or an attached container's end (the message its client
    /// gets), after all its output.
    Exit(GuestMessage),
    /// The guest's side of a connection is done, after all its bytes.
    Close,
}

impl WindowBytes for Delivery {
    fn window_bytes(&self) -> usize {
        match self {
            Self::Data(_, bytes) => bytes.len(),
            Self::Console(_) | Self::Exit(_) | Self::Close => 0,
        }
    }

    /// The pod's console is worth no credit, but a client that does not
    /// keep up must not have it pile up in the launcher.
    fn queued_bytes(&self) -> usize {
        match self {
            Self::Data(_, bytes) | Self::Console(bytes) => bytes.len(),
            Self::Exit(_) | Self::Close => 0,
        }
    }
}

/// What became of console bytes for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// Its queue was full: left out.
    Full,
    /// Its session has ended.
    Ended,
}

/// What a client's session runs in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientKind {
    /// A process in a container (`Exec`).
    Exec,
    /// A container of its own (`CreateContainer`).
    Container,
}

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
    /// Exec sessions and attached containers whose process still runs.
    clients: Mutex<HashMap<u32, ClientKind>>,
    /// Attached containers by the name their client gave, for execs that
    /// name them.
    names: Mutex<HashMap<String, u32>>,
    names_changed: Condvar,
    /// How long an exec naming a container not attached yet waits for it:
    /// a Kubernetes exec (a probe) may come right after the container's
    /// start, before its launcher has attached it.
    name_wait: Duration,
    /// A pod VM's launcher: clients may follow the pod's console.
    pod_console: std::sync::atomic::AtomicBool,
    connections: Mutex<HashMap<u32, TcpStream>>,
    /// Each session's consumer, behind its queue.
    outboxes: Mutex<HashMap<u32, Outbox<Delivery>>>,
    /// What the launcher may still send to the guest, per session.
    windows: Windows,
    next_session: AtomicU32,
}

impl SessionHub {
    pub fn new() -> Arc<Self> {
        Self::with_name_wait(NAME_WAIT)
    }

    fn with_name_wait(name_wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            next_session: AtomicU32::new(1),
            name_wait,
            ..Self::default()
        })
    }

    /// The workload's output goes to the launcher's stdout and stderr from
    /// now on: before `Start` goes out, after which it may come at once.
    pub fn open_workload(&self, guest: &GuestWriter) {
        let workload = Outbox::new(
            "workload-output",
            |delivery| match delivery {
                Delivery::Data(Stream::Stdout, bytes) => write_through(&mut std::io::stdout().lock(), &bytes),
                Delivery::Data(_, bytes) => write_through(&mut std::io::stderr().lock(), &bytes),
                Delivery::Console(_) | Delivery::Exit(_) | Delivery::Close => Ok(()),
            },
            credit_to(guest, WORKLOAD_SESSION),
        );
        if let Ok(mut outboxes) = self.outboxes.lock() {
            outboxes.insert(WORKLOAD_SESSION, workload);
        }
    }

    /// The guest runs its workload: waiting sessions go ahead.
    pub fn set_guest(&self, guest: GuestWriter) {
        self.set_state(GuestState::Ready(guest));
    }

    /// The workload's output is all written out (it ended, or the VM did).
    pub fn finish_workload(&self) {
        let workload = self.outboxes.lock().ok().and_then(|mut o| o.remove(&WORKLOAD_SESSION));
        if let Some(workload) = workload {
            workload.finish();
        }
    }

    /// What the launcher may still send to the guest for `session`.
    pub fn window(&self, session: u32) -> Arc<Window> {
        self.windows.get(session)
    }

    /// Credit from the guest for `session`'s input.
    pub fn credit(&self, session: u32, bytes: u32) {
        self.windows.grant(session, bytes);
    }

    /// The VM is gone (or never came up): waiting sessions fail.
    pub fn set_gone(&self) {
        self.set_state(GuestState::Gone);
        // An exec waiting for a container's name waits no longer.
        let _names = self.names.lock();
        self.names_changed.notify_all();
    }

    fn guest_gone(&self) -> bool {
        self.guest.lock().is_ok_and(|state| matches!(*state, GuestState::Gone))
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

    /// Accepts exec and attach clients on `listener` from a thread of its
    /// own.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || hub.exec_client(stream));
            }
        });
    }

    fn exec_client(self: &Arc<Self>, stream: UnixStream) {
        let Ok(mut reader) = stream.try_clone().map(BufReader::new) else {
            return;
        };
        // The session number a client sends is ignored: the launcher gives
        // each its own (an attached container's is its id in the guest).
        let (kind, first) = match runcvm_proto::read_frame::<HostMessage>(&mut reader) {
            Ok(Some(Frame::Message(exec @ HostMessage::Exec { .. }))) => (ClientKind::Exec, exec),
            Ok(Some(Frame::Message(create @ HostMessage::CreateContainer { .. }))) => (ClientKind::Container, create),
            _ => return,
        };
        let Some(guest) = self.wait_for_guest() else {
            let line: &[u8] = match kind {
                ClientKind::Exec => b"runcvm exec: the VM is not running: it ended, or never came up\n",
                ClientKind::Container => b"runcvm attach: the VM is not running: it ended, or never came up\n",
            };
            refuse(stream, kind, line);
            return;
        };
        let session = self.next_session.fetch_add(1, Ordering::SeqCst);
        let sent = match self.open_session(session, kind, first, &stream, &guest) {
            Ok(sent) => sent,
            Err(line) => {
                refuse(stream, kind, line.as_bytes());
                return;
            }
        };
        if !sent {
            match kind {
                ClientKind::Exec => self.exited(session, ExitStatus::Code(125)),
                ClientKind::Container => self.container_exited(session, ExitStatus::Code(125), false, Vec::new()),
            }
            return;
        }
        self.relay_client(session, kind, &mut reader, &guest);
    }

    /// The client's frames to the guest, until it is done; its input within
    /// the session's window.
    fn relay_client(
        self: &Arc<Self>,
        session: u32,
        kind: ClientKind,
        reader: &mut BufReader<UnixStream>,
        guest: &GuestWriter,
    ) {
        let window = self.windows.get(session);
        loop {
            let message = match runcvm_proto::read_frame::<HostMessage>(&mut *reader) {
                Ok(Some(Frame::Data {
                    stream: Stream::Stdin,
                    bytes,
                    ..
                })) => {
                    if send_within(guest, &window, session, &bytes).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Some(Frame::Message(message))) => message,
                Ok(Some(Frame::Data { .. })) => continue,
                Ok(None) | Err(_) => {
                    // Gone before its process ended: the process goes too,
                    // as under runc when containerd kills an exec (or the
                    // shim a container's init).
                    if self.clients.lock().is_ok_and(|c| c.contains_key(&session)) {
                        let what = match kind {
                            ClientKind::Exec => "exec session",
                            ClientKind::Container => "container",
                        };
                        runcvm_log::debug!("{what} {session}: its client went away");
                        let _ = send_guest(guest, &HostMessage::KillSession { session });
                    }
                    return;
                }
            };
            let forwarded = match message {
                HostMessage::FollowConsole => {
                    self.follow_console(session);
                    continue;
                }
                HostMessage::CloseStdin { .. } => HostMessage::CloseStdin { session },
                HostMessage::Resize { rows, cols, .. } => HostMessage::Resize { session, rows, cols },
                HostMessage::Signal { signal, .. } => HostMessage::Signal { signal, session },
                _ => continue,
            };
            let _ = send_guest(guest, &forwarded);
        }
    }

    /// This launcher's is a pod's VM, whose console its clients may follow
    /// (`pod_console.rs`).
    pub fn serve_pod_console(&self) {
        self.pod_console.store(true, Ordering::SeqCst);
    }

    /// The pod's console, what was kept and what comes, goes to the
    /// client's stderr too, for as long as its session lasts (a pod VM's
    /// launcher only: any other keeps no console for its clients).
    fn follow_console(self: &Arc<Self>, session: u32) {
        if !self.pod_console.load(Ordering::SeqCst) {
            return;
        }
        let (backlog, later) = crate::pod_console::follow();
        if !backlog.is_empty() && self.push_console(session, backlog) == Pushed::Ended {
            return;
        }
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            let mut dropped = 0;
            for bytes in later {
                if dropped > 0 {
                    let note = format!(
                        "runcvm: {dropped} bytes of the pod's console were left out here: this log did not keep up (the pod's sandbox keeps the latest 2 MiB of it on the node, in pod.log and pod.log.1 of its state folder)\n"
                    );
                    if hub.push_console(session, note.into_bytes()) == Pushed::Queued {
                        dropped = 0;
                    }
                }
                let len = bytes.len();
                match hub.push_console(session, bytes) {
                    Pushed::Queued => {}
                    Pushed::Full => dropped += len,
                    Pushed::Ended => return,
                }
            }
        });
    }

    /// Queues console bytes for `session`.
    fn push_console(&self, session: u32, bytes: Vec<u8>) -> Pushed {
        let outboxes = self.outboxes.lock().ok();
        match outboxes.as_ref().and_then(|o| o.get(&session)) {
            None => Pushed::Ended,
            Some(outbox) if outbox.push(Delivery::Console(bytes)).is_ok() => Pushed::Queued,
            // Its client does not keep up: left out, not piled up.
            Some(_) => Pushed::Full,
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
            let Ok(mut writer) = stream.try_clone() else { return };
            let session = hub.next_session.fetch_add(1, Ordering::SeqCst);
            let outbox = Outbox::new(
                &format!("forward-{session}"),
                move |delivery| match delivery {
                    Delivery::Data(_, bytes) => writer.write_all(&bytes),
                    Delivery::Close => writer.shutdown(Shutdown::Write),
                    Delivery::Console(_) | Delivery::Exit(_) => Ok(()),
                },
                credit_to(&guest, session),
            );
            if let (Ok(mut connections), Ok(mut outboxes)) = (hub.connections.lock(), hub.outboxes.lock()) {
                connections.insert(session, stream);
                outboxes.insert(session, outbox);
            }
            runcvm_log::debug!("port-forward session {session}: port {port}");
            if send_guest(&guest, &HostMessage::Connect { session, port, ipv6 }).is_err() {
                hub.disconnected(session, Some("the control channel is closed".into()));
                return;
            }
            let window = hub.windows.get(session);
            let mut buf = vec![0u8; runcvm_proto::MAX_DATA];
            loop {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) => {
                        let _ = send_guest(&guest, &HostMessage::CloseStdin { session });
                        return;
                    }
                    Ok(n) => {
                        if send_within(&guest, &window, session, &buf[..n]).is_err() {
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

    /// Output of `session` from the guest, queued for its consumer: the
    /// workload's, an exec client's or a connection's. A guest that sends
    /// past the session's window loses the session (the workload: the
    /// output past it).
    pub fn output(&self, session: u32, stream: Stream, bytes: Vec<u8>) {
        let Ok(mut outboxes) = self.outboxes.lock() else { return };
        let Some(outbox) = outboxes.get(&session) else { return };
        let Err(overflow) = outbox.push(Delivery::Data(stream, bytes)) else {
            return;
        };
        runcvm_log::warn!("session {session}: {overflow}");
        if session != WORKLOAD_SESSION {
            outboxes.remove(&session);
            drop(outboxes);
            self.windows.close(session);
            if let GuestState::Ready(guest) = &*self.guest.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
                let _ = send_guest(guest, &HostMessage::KillSession { session });
            }
        }
    }

    /// The end of exec session `session`: its status to the client after
    /// its output, and the client is then done.
    pub fn exited(&self, session: u32, status: ExitStatus) {
        self.end_client(session, GuestMessage::ExecExit { session: 0, status });
    }

    /// Whether `container` is an attached client's (not the launcher's own).
    pub fn attached(&self, container: u32) -> bool {
        self.clients
            .lock()
            .is_ok_and(|c| c.get(&container) == Some(&ClientKind::Container))
    }

    /// The end of an attached container: its status, OOM kill and files to
    /// the client after its output.
    pub fn container_exited(
        &self,
        container: u32,
        status: ExitStatus,
        oom_killed: bool,
        files: Vec<runcvm_proto::GuestFile>,
    ) {
        self.end_client(
            container,
            GuestMessage::ContainerExit {
                container: 0,
                status,
                oom_killed,
                files,
            },
        );
    }

    /// Gives a client's first message its session and sends it to the
    /// guest, the client's outbox ready for what comes back; returns
    /// whether it went out, or the line that refuses the client. An exec
    /// that names its container gets the container's id; an attached
    /// container's name is taken. All under the names' lock, so an exec
    /// that names a container reaches the guest after its creation.
    fn open_session(
        &self,
        session: u32,
        kind: ClientKind,
        first: HostMessage,
        stream: &UnixStream,
        guest: &GuestWriter,
    ) -> Result<bool, String> {
        let Ok(mut client) = stream.try_clone() else {
            return Err("runcvm exec: cannot share the client's connection\n".into());
        };
        let mut names = self.names.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut forwarded = first;
        match &mut forwarded {
            HostMessage::Exec {
                session: numbered,
                container,
                container_name,
                process,
                ..
            } => {
                if let Some(name) = container_name.take() {
                    let deadline = std::time::Instant::now() + self.name_wait;
                    *container = loop {
                        if client_left(stream) {
                            return Err(format!(
                                "runcvm exec: the client left while its exec waited for a container named {name:?}\n"
                            ));
                        }
                        if let Some(id) = names.get(&name) {
                            break *id;
                        }
                        if self.guest_gone() {
                            return Err(format!(
                                "runcvm exec: the VM ended before a container named {name:?} ran in it\n"
                            ));
                        }
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return Err(format!(
                                "runcvm exec: no container named {name:?} runs in this VM (waited {} s for it)\n",
                                self.name_wait.as_secs()
                            ));
                        }
                        names = self
                            .names_changed
                            .wait_timeout(names, left.min(CLIENT_LOOK))
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    };
                }
                *numbered = session;
                log_exec(session, process);
            }
            HostMessage::CreateContainer {
                container, name, root, ..
            } => {
                if root.is_none() {
                    return Err("runcvm attach: an attached container needs a root of its own, served\n".into());
                }
                if let Some(name) = name {
                    if names.contains_key(name) {
                        return Err(format!(
                            "runcvm attach: a container named {name:?} already runs in this VM\n"
                        ));
                    }
                    names.insert(name.clone(), session);
                    self.names_changed.notify_all();
                }
                *container = session;
                runcvm_log::debug!("container {session}: attached");
            }
            _ => return Err("runcvm exec: a client's first message is an exec or a container\n".into()),
        }
        let outbox = Outbox::new(
            &format!("client-{session}"),
            move |delivery| match delivery {
                Delivery::Data(stream, bytes) => runcvm_proto::write_data(&mut client, 0, stream, &bytes),
                Delivery::Console(bytes) => runcvm_proto::write_data(&mut client, 0, Stream::Stderr, &bytes),
                Delivery::Exit(end) => runcvm_proto::write_message(&mut client, &end),
                Delivery::Close => Ok(()),
            },
            credit_to(guest, session),
        );
        if let (Ok(mut clients), Ok(mut outboxes)) = (self.clients.lock(), self.outboxes.lock()) {
            clients.insert(session, kind);
            outboxes.insert(session, outbox);
        }
        Ok(send_guest(guest, &forwarded).is_ok())
    }

    fn end_client(&self, session: u32, end: GuestMessage) {
        if let Ok(mut names) = self.names.lock() {
            names.retain(|_, container| *container != session);
        }
        self.windows.close(session);
        let known = self.clients.lock().ok().and_then(|mut c| c.remove(&session)).is_some();
        let outbox = self.outboxes.lock().ok().and_then(|mut o| o.remove(&session));
        if let (true, Some(outbox)) = (known, outbox) {
            // Dropped, not waited for: its thread writes what is queued,
            // then ends.
            let _ = outbox.push(Delivery::Exit(end));
        }
    }

    /// The guest's side of a connection ended: so does the pod's side.
    pub fn disconnected(&self, session: u32, error: Option<String>) {
        if let Some(error) = &error {
            runcvm_log::debug!("port-forward session {session}: {error}");
        }
        self.windows.close(session);
        let outbox = self.outboxes.lock().ok().and_then(|mut o| o.remove(&session));
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
        } else if let Some(outbox) = outbox {
            // After what the workload sent.
            let _ = outbox.push(Delivery::Close);
        }
    }
}

/// Grants the guest credit for what an outbox of `session` passed on.
fn credit_to(guest: &GuestWriter, session: u32) -> impl FnMut(usize) + Send + 'static {
    let guest = Arc::clone(guest);
    move |bytes| {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let _ = send_guest(&guest, &HostMessage::Credit { session, bytes });
    }
}

/// Sends `bytes` of `session`'s input to the guest as its window allows;
/// fails once the window closes (the session is over) or the channel does.
pub(crate) fn send_within(guest: &GuestWriter, window: &Window, session: u32, bytes: &[u8]) -> std::io::Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        let allowed = window
            .take(bytes.len() - sent)
            .ok_or_else(|| std::io::Error::other("the session is over"))?;
        let mut port = guest
            .lock()
            .map_err(|_| std::io::Error::other("control channel writer poisoned"))?;
        runcvm_proto::write_data(&mut *port, session, Stream::Stdin, &bytes[sent..sent + allowed])?;
        sent += allowed;
    }
    Ok(())
}

/// Whether a client's connection has ended (end of file, or an error):
/// what it may have sent since stays unread.
fn client_left(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match nix::sys::socket::recv(
        std::os::fd::AsRawFd::as_raw_fd(stream),
        &mut byte,
        nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) | Err(nix::errno::Errno::EAGAIN) => false,
        Err(_) => true,
    }
}

fn write_through(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Tells a client its exec or container cannot run.
fn refuse(mut stream: UnixStream, kind: ClientKind, line: &[u8]) {
    let status = ExitStatus::Code(125);
    let _ = runcvm_proto::write_data(&mut stream, 0, Stream::Stderr, line);
    let end = match kind {
        ClientKind::Exec => GuestMessage::ExecExit { session: 0, status },
        ClientKind::Container => GuestMessage::ContainerExit {
            container: 0,
            status,
            oom_killed: false,
            files: Vec::new(),
        },
    };
    let _ = runcvm_proto::write_message(&mut stream, &end);
    let _ = stream.flush();
}

fn log_exec(session: u32, process: &Entrypoint) {
    // Never to a pod VM's followers: another container's log.
    runcvm_log::write_untee(
        runcvm_log::LogLevel::Debug,
        format_args!(
            "exec session {session}: {}",
            process
                .args
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_spec::LaunchPlan;

    /// A hub whose guest is the far end of a socket pair.
    fn hub_with_guest() -> (Arc<SessionHub>, BufReader<UnixStream>) {
        hub_with_guest_waiting(Duration::from_millis(300))
    }

    /// The same, an exec waiting `name_wait` for the container it names.
    fn hub_with_guest_waiting(name_wait: Duration) -> (Arc<SessionHub>, BufReader<UnixStream>) {
        let (launcher, guest) = UnixStream::pair().unwrap();
        let hub = SessionHub::with_name_wait(name_wait);
        hub.set_guest(Arc::new(Mutex::new(launcher)));
        (hub, BufReader::new(guest))
    }

    fn create(container: u32) -> HostMessage {
        HostMessage::CreateContainer {
            container,
            name: None,
            plan: Box::new(LaunchPlan::default()),
            entrypoint: Some(Entrypoint::new(vec!["true".into()], vec![])),
            files: vec![],
            root: Some(runcvm_spec::GuestRoot { port: 2050 }),
            volumes: vec![],
            stdin: false,
            terminal_size: None,
        }
    }

    /// An attach client's container, named `name`.
    fn create_named(name: &str) -> HostMessage {
        let HostMessage::CreateContainer {
            plan, entrypoint, root, ..
        } = create(0)
        else {
            unreachable!()
        };
        HostMessage::CreateContainer {
            container: 0,
            name: Some(name.into()),
            plan,
            entrypoint,
            files: vec![],
            root,
            volumes: vec![],
            stdin: false,
            terminal_size: None,
        }
    }

    /// An exec into the container named `name`.
    fn exec_in(name: &str) -> HostMessage {
        HostMessage::Exec {
            session: 0,
            container: 0,
            container_name: Some(name.into()),
            process: Entrypoint::new(vec!["true".into()], vec![]),
            terminal_size: None,
        }
    }

    /// A client of the hub's, served on a thread of its own.
    fn connect(hub: &Arc<SessionHub>) -> (UnixStream, std::thread::JoinHandle<()>) {
        let (client, served) = UnixStream::pair().unwrap();
        let serving = Arc::clone(hub);
        (client, std::thread::spawn(move || serving.exec_client(served)))
    }

    #[test]
    fn an_attach_client_gets_a_container_of_its_own_and_its_end() {
        let (hub, mut guest) = hub_with_guest();
        let (mut client, served) = UnixStream::pair().unwrap();
        let serving = Arc::clone(&hub);
        std::thread::spawn(move || serving.exec_client(served));
        // The id the client sends is not the one the guest gets.
        runcvm_proto::write_message(&mut client, &create(7)).unwrap();
        let forwarded: HostMessage = runcvm_proto::read_message(&mut guest).unwrap().unwrap();
        let HostMessage::CreateContainer { container, .. } = forwarded else {
            panic!("{forwarded:?}");
        };
        assert_ne!(container, 7);
        assert_ne!(container, WORKLOAD_SESSION, "the launcher's own container keeps 0");
        assert!(hub.attached(container));
        hub.output(container, Stream::Stdout, b"from the container\n".to_vec());
        hub.container_exited(container, ExitStatus::Code(3), true, vec![]);
        assert!(!hub.attached(container), "ended: no longer attached");
        let mut from_launcher = BufReader::new(client.try_clone().unwrap());
        assert_eq!(
            runcvm_proto::read_frame::<GuestMessage>(&mut from_launcher).unwrap(),
            Some(Frame::Data {
                session: 0,
                stream: Stream::Stdout,
                bytes: b"from the container\n".to_vec()
            }),
            "its output first"
        );
        assert_eq!(
            runcvm_proto::read_frame::<GuestMessage>(&mut from_launcher).unwrap(),
            Some(Frame::Message(GuestMessage::ContainerExit {
                container: 0,
                status: ExitStatus::Code(3),
                oom_killed: true,
                files: vec![],
            })),
            "then its end"
        );
    }

    #[test]
    fn a_gone_attach_client_has_its_container_killed() {
        let (hub, mut guest) = hub_with_guest();
        let (mut client, served) = UnixStream::pair().unwrap();
        let serving = Arc::clone(&hub);
        std::thread::spawn(move || serving.exec_client(served));
        runcvm_proto::write_message(&mut client, &create(0)).unwrap();
        let Some(HostMessage::CreateContainer { container, .. }) = runcvm_proto::read_message(&mut guest).unwrap()
        else {
            panic!("no CreateContainer");
        };
        drop(client);
        let killed: Option<HostMessage> = runcvm_proto::read_message(&mut guest).unwrap();
        assert_eq!(killed, Some(HostMessage::KillSession { session: container }));
    }

    #[test]
    fn an_exec_naming_a_container_not_attached_yet_waits_for_it() {
        let (hub, mut guest) = hub_with_guest();
        let (mut exec_client, _) = connect(&hub);
        runcvm_proto::write_message(&mut exec_client, &exec_in("late")).unwrap();
        // The exec waits: nothing reaches the guest yet.
        guest
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let early = runcvm_proto::read_frame::<HostMessage>(&mut guest);
        assert!(early.is_err(), "the exec went ahead of its container: {early:?}");
        guest.get_ref().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (mut attach_client, _) = connect(&hub);
        runcvm_proto::write_message(&mut attach_client, &create_named("late")).unwrap();
        // The guest gets the container first, then the exec in it.
        let Some(Frame::Message(HostMessage::CreateContainer { container, .. })) =
            runcvm_proto::read_frame::<HostMessage>(&mut guest).unwrap()
        else {
            panic!("the container first");
        };
        let Some(Frame::Message(HostMessage::Exec { container: into, .. })) =
            runcvm_proto::read_frame::<HostMessage>(&mut guest).unwrap()
        else {
            panic!("then the exec");
        };
        assert_eq!(into, container, "the exec runs in the container it named");
    }

    #[test]
    fn an_exec_whose_client_left_while_it_waited_never_runs() {
        // Long enough that only the client's leaving can end the wait.
        let (hub, mut guest) = hub_with_guest_waiting(Duration::from_secs(30));
        let (mut exec_client, waiting) = connect(&hub);
        runcvm_proto::write_message(&mut exec_client, &exec_in("late")).unwrap();
        drop(exec_client);
        let began = std::time::Instant::now();
        waiting.join().unwrap();
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "the wait ended with the client"
        );
        // The container comes; only it reaches the guest.
        let (mut attach_client, _) = connect(&hub);
        runcvm_proto::write_message(&mut attach_client, &create_named("late")).unwrap();
        let Some(Frame::Message(HostMessage::CreateContainer { .. })) =
            runcvm_proto::read_frame::<HostMessage>(&mut guest).unwrap()
        else {
            panic!("the container");
        };
        guest
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let next = runcvm_proto::read_frame::<HostMessage>(&mut guest);
        assert!(next.is_err(), "nothing after the container: {next:?}");
    }

    #[test]
    fn a_container_without_a_root_of_its_own_and_an_unknown_name_are_refused() {
        let (hub, _guest) = hub_with_guest();
        let refused = |first: HostMessage| {
            let (mut client, served) = UnixStream::pair().unwrap();
            let serving = Arc::clone(&hub);
            std::thread::spawn(move || serving.exec_client(served));
            runcvm_proto::write_message(&mut client, &first).unwrap();
            let mut from_launcher = BufReader::new(client);
            let Some(Frame::Data { bytes, .. }) = runcvm_proto::read_frame::<GuestMessage>(&mut from_launcher).unwrap()
            else {
                panic!("no reason given");
            };
            let end = runcvm_proto::read_frame::<GuestMessage>(&mut from_launcher).unwrap();
            (String::from_utf8(bytes).unwrap(), end)
        };
        let HostMessage::CreateContainer { plan, entrypoint, .. } = create(0) else {
            unreachable!()
        };
        let (line, end) = refused(HostMessage::CreateContainer {
            container: 0,
            name: None,
            plan,
            entrypoint: entrypoint.clone(),
            files: vec![],
            root: None,
            volumes: vec![],
            stdin: false,
            terminal_size: None,
        });
        assert!(line.contains("needs a root of its own"), "{line}");
        assert!(matches!(
            end,
            Some(Frame::Message(GuestMessage::ContainerExit {
                status: ExitStatus::Code(125),
                ..
            }))
        ));
        let (line, end) = refused(HostMessage::Exec {
            session: 0,
            container: 0,
            container_name: Some("nosuch".into()),
            process: entrypoint.unwrap(),
            terminal_size: None,
        });
        assert!(
            line.contains(r#"no container named "nosuch" runs in this VM"#),
            "{line}"
        );
        assert!(matches!(
            end,
            Some(Frame::Message(GuestMessage::ExecExit {
                status: ExitStatus::Code(125),
                ..
            }))
        ));
    }
}
