//! The guest's end of `kubectl port-forward`: containerd dials
//! `localhost:PORT` in the pod's network namespace, the launcher accepts
//! there and asks for a connection to the same port on the guest's own
//! loopback, where the workload listens as it would in a runc container
//! (on 127.0.0.1, ::1 or any address). Bytes travel as data frames of the
//! connection's session.
//!
//! The connect happens on the connection's own thread, so a listener that
//! does not accept (a full backlog) holds up nobody but its connection;
//! what the host sends meanwhile waits with the connection. Each direction
//! ends on its own: the workload closing its side is `Disconnected`, and
//! the host may still send until it closes its side (`CloseStdin`).
//!
//! Both directions keep to the session's windows (`flow`): the workload's
//! bytes go out as the launcher grants credit, and the launcher's go to the
//! workload through an outbox whose thread grants credit back as it writes.

use crate::outbound::{SharedWriter, send_on};
use runcvm_proto::flow::{Outbox, WindowBytes, Windows};
use runcvm_proto::{GuestMessage, MAX_DATA, Stream};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

/// What the launcher sends to the workload's side of a connection.
#[derive(Debug)]
enum ToWorkload {
    Bytes(Vec<u8>),
    /// The launcher's side is done sending.
    Shutdown,
}

impl WindowBytes for ToWorkload {
    fn window_bytes(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::Shutdown => 0,
        }
    }
}

/// One connection, as far as it has come.
#[derive(Debug)]
enum Connection {
    /// Connecting: the host's bytes so far, and whether it is done sending.
    Connecting { queued: Vec<Vec<u8>>, host_done: bool },
    /// Connected; `guest_done` once the workload closed its side.
    Open {
        stream: TcpStream,
        outbox: Outbox<ToWorkload>,
        guest_done: bool,
    },
}

/// The open connections, by session.
#[derive(Debug, Clone)]
pub struct Connections {
    writer: SharedWriter,
    windows: Arc<Windows>,
    open: Arc<Mutex<HashMap<u32, Connection>>>,
}

impl Connections {
    pub fn new(writer: SharedWriter, windows: Arc<Windows>) -> Self {
        Self {
            writer,
            windows,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Connects to `port` on the loopback, the family asked for first (the
    /// launcher accepted on it), then the other, as containerd tries IPv4
    /// and then IPv6; then pumps what the workload sends back.
    pub fn connect(&self, session: u32, port: u16, ipv6: bool) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(
                session,
                Connection::Connecting {
                    queued: Vec::new(),
                    host_done: false,
                },
            );
        }
        let connections = self.clone();
        std::thread::spawn(move || connections.run(session, port, ipv6));
    }

    fn run(&self, session: u32, port: u16, ipv6: bool) {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let order = if ipv6 { [v6, v4] } else { [v4, v6] };
        let connected = TcpStream::connect(order[0]).or_else(|first| TcpStream::connect(order[1]).map_err(|_| first));
        let (stream, reader) = match connected.and_then(|s| s.try_clone().map(|r| (s, r))) {
            Ok(pair) => pair,
            Err(e) => {
                runcvm_log::debug!("port-forward session {session}: nothing answers on port {port}: {e}");
                self.forget(session);
                self.disconnected(
                    session,
                    Some(format!("connection to port {port} in the guest failed: {e}")),
                );
                return;
            }
        };
        // Hand over what came while connecting, then let sends go through
        // the connection's outbox.
        let Ok(mut open) = self.open.lock() else { return };
        let Some(Connection::Connecting { queued, host_done }) = open.remove(&session) else {
            // Aborted meanwhile.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let Ok(outbox) = self.outbox(session, &stream) else {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        let handed = queued
            .into_iter()
            .map(ToWorkload::Bytes)
            .chain(host_done.then_some(ToWorkload::Shutdown))
            .try_for_each(|item| outbox.push(item));
        if handed.is_err() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        open.insert(
            session,
            Connection::Open {
                stream,
                outbox,
                guest_done: false,
            },
        );
        drop(open);
        runcvm_log::debug!("port-forward session {session}: connected to port {port}");
        self.pump(session, reader);
    }

    /// The outbox that writes the launcher's bytes to `stream` and grants
    /// credit for them.
    fn outbox(&self, session: u32, stream: &TcpStream) -> std::io::Result<Outbox<ToWorkload>> {
        let mut stream = stream.try_clone()?;
        let writer = self.writer.clone();
        Ok(Outbox::new(
            &format!("forward-{session}"),
            move |item| match item {
                ToWorkload::Bytes(bytes) => stream.write_all(&bytes),
                ToWorkload::Shutdown => stream.shutdown(Shutdown::Write),
            },
            move |bytes| {
                let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
                let _ = send_on(&writer, &GuestMessage::Credit { session, bytes });
            },
        ))
    }

    /// Copies the guest side's bytes to the launcher, within the session's
    /// window, until it closes.
    fn pump(&self, session: u32, mut reader: TcpStream) {
        let window = self.windows.get(session);
        let mut buf = vec![0u8; MAX_DATA];
        let error = 'pump: loop {
            match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    let mut sent = 0;
                    while sent < n {
                        let Some(allowed) = window.take(n - sent) else {
                            break 'pump Some("the launcher's side went away".to_owned());
                        };
                        let Ok(mut port) = self.writer.lock() else { return };
                        if runcvm_proto::write_data(&mut *port, session, Stream::Stdout, &buf[sent..sent + allowed])
                            .is_err()
                        {
                            return;
                        }
                        sent += allowed;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        let finished = {
            let Ok(mut open) = self.open.lock() else { return };
            match open.get_mut(&session) {
                // The host may still send: the connection stays until it
                // closes its side too, unless the connection failed.
                Some(Connection::Open { guest_done, .. }) if error.is_none() => {
                    *guest_done = true;
                    false
                }
                _ => true,
            }
        };
        if finished {
            self.forget(session);
        }
        self.disconnected(session, error);
    }

    fn disconnected(&self, session: u32, error: Option<String>) {
        let _ = send_on(&self.writer, &GuestMessage::Disconnected { session, error });
    }

    fn forget(&self, session: u32) {
        self.windows.close(session);
        if let Ok(mut open) = self.open.lock() {
            open.remove(&session);
        }
    }

    /// Queues the host's bytes for the guest side; gives them back if
    /// `session` is no connection.
    pub fn send(&self, session: u32, bytes: Vec<u8>) -> Result<(), Vec<u8>> {
        let Ok(mut open) = self.open.lock() else {
            return Err(bytes);
        };
        match open.get_mut(&session) {
            None => Err(bytes),
            Some(Connection::Connecting { queued, .. }) => {
                queued.push(bytes);
                Ok(())
            }
            Some(Connection::Open { stream, outbox, .. }) => {
                if let Err(e) = outbox.push(ToWorkload::Bytes(bytes)) {
                    runcvm_log::warn!("port-forward session {session}: {e}; the connection is closed");
                    let _ = stream.shutdown(Shutdown::Both);
                }
                Ok(())
            }
        }
    }

    /// The host's side is done sending; false if `session` is no
    /// connection. A connection whose guest side is done too is forgotten.
    pub fn close_write(&self, session: u32) -> bool {
        let Ok(mut open) = self.open.lock() else { return false };
        match open.get_mut(&session) {
            None => false,
            Some(Connection::Connecting { host_done, .. }) => {
                *host_done = true;
                true
            }
            Some(Connection::Open { outbox, guest_done, .. }) => {
                // After what is queued.
                let _ = outbox.push(ToWorkload::Shutdown);
                if *guest_done {
                    open.remove(&session);
                }
                true
            }
        }
    }

    /// Drops a connection whose host side went away; false if `session` is
    /// no connection.
    pub fn abort(&self, session: u32) -> bool {
        self.windows.close(session);
        let Ok(mut open) = self.open.lock() else { return false };
        match open.remove(&session) {
            None => false,
            Some(Connection::Open { stream, .. }) => {
                let _ = stream.shutdown(Shutdown::Both);
                true
            }
            Some(Connection::Connecting { .. }) => true,
        }
    }

    /// Closes every connection: the workload has ended.
    pub fn close_all(&self) {
        if let Ok(mut open) = self.open.lock() {
            for (_, connection) in open.drain() {
                if let Connection::Open { stream, .. } = connection {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
}
