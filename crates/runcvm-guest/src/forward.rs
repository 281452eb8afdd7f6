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

use crate::control::{SharedWriter, send_on};
use runcvm_proto::{GuestMessage, MAX_DATA, Stream};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

/// One connection, as far as it has come.
#[derive(Debug)]
enum Connection {
    /// Connecting: the host's bytes so far, and whether it is done sending.
    Connecting { queued: Vec<u8>, host_done: bool },
    /// Connected; `guest_done` once the workload closed its side.
    Open { stream: TcpStream, guest_done: bool },
}

/// The open connections, by session.
#[derive(Debug, Clone)]
pub struct Connections {
    writer: SharedWriter,
    open: Arc<Mutex<HashMap<u32, Connection>>>,
}

impl Connections {
    pub fn new(writer: SharedWriter) -> Self {
        Self {
            writer,
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
        let (mut stream, reader) = match connected.and_then(|s| s.try_clone().map(|r| (s, r))) {
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
        // Hand over what came while connecting, then let sends go direct.
        let Ok(mut open) = self.open.lock() else { return };
        let Some(Connection::Connecting { queued, host_done }) = open.remove(&session) else {
            // Aborted meanwhile.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        };
        if stream.write_all(&queued).is_err() || (host_done && stream.shutdown(Shutdown::Write).is_err()) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        open.insert(
            session,
            Connection::Open {
                stream,
                guest_done: false,
            },
        );
        drop(open);
        runcvm_log::debug!("port-forward session {session}: connected to port {port}");
        self.pump(session, reader);
    }

    /// Copies the guest side's bytes to the launcher until it closes.
    fn pump(&self, session: u32, mut reader: TcpStream) {
        let mut buf = vec![0u8; MAX_DATA];
        let error = loop {
            match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    let Ok(mut port) = self.writer.lock() else { return };
                    if runcvm_proto::write_data(&mut *port, session, Stream::Stdout, &buf[..n]).is_err() {
                        return;
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
        if let Ok(mut open) = self.open.lock() {
            open.remove(&session);
        }
    }

    /// Sends the host's bytes to the guest side; false if `session` is no
    /// connection.
    pub fn send(&self, session: u32, bytes: &[u8]) -> bool {
        let stream = {
            let Ok(mut open) = self.open.lock() else { return false };
            match open.get_mut(&session) {
                None => return false,
                Some(Connection::Connecting { queued, .. }) => {
                    queued.extend_from_slice(bytes);
                    return true;
                }
                Some(Connection::Open { stream, .. }) => stream.try_clone(),
            }
        };
        // Written out of the lock: a slow reader holds up this connection,
        // not the bookkeeping of the others.
        if let Ok(mut stream) = stream
            && stream.write_all(bytes).is_err()
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
        true
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
            Some(Connection::Open { stream, guest_done }) => {
                let _ = stream.shutdown(Shutdown::Write);
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
