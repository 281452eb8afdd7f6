//! The guest's end of `kubectl port-forward`: containerd dials
//! `localhost:PORT` in the pod's network namespace, the launcher accepts
//! there and asks for a connection to the same port on the guest's own
//! loopback, where the workload listens as it would in a runc container
//! (on 127.0.0.1, ::1 or any address). Bytes travel as data frames of the
//! connection's session.

use crate::control::{SharedWriter, send_on};
use runcvm_proto::{GuestMessage, MAX_DATA, Stream};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

/// The open connections, by session.
#[derive(Debug, Clone)]
pub struct Connections {
    writer: SharedWriter,
    open: Arc<Mutex<HashMap<u32, TcpStream>>>,
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
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let order = if ipv6 { [v6, v4] } else { [v4, v6] };
        let connected = TcpStream::connect(order[0]).or_else(|first| TcpStream::connect(order[1]).map_err(|_| first));
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                runcvm_log::debug!("port-forward session {session}: nothing answers on port {port}: {e}");
                self.disconnected(
                    session,
                    Some(format!("connection to port {port} in the guest failed: {e}")),
                );
                return;
            }
        };
        let reader = match stream.try_clone() {
            Ok(reader) => reader,
            Err(e) => {
                self.disconnected(session, Some(format!("cannot share the connection: {e}")));
                return;
            }
        };
        if let Ok(mut open) = self.open.lock() {
            open.insert(session, stream);
        }
        runcvm_log::debug!("port-forward session {session}: connected to port {port}");
        let connections = self.clone();
        std::thread::spawn(move || connections.pump(session, reader));
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
        if let Ok(mut open) = self.open.lock() {
            open.remove(&session);
        }
        self.disconnected(session, error);
    }

    fn disconnected(&self, session: u32, error: Option<String>) {
        let _ = send_on(&self.writer, &GuestMessage::Disconnected { session, error });
    }

    fn stream(&self, session: u32) -> Option<TcpStream> {
        self.open
            .lock()
            .ok()
            .and_then(|open| open.get(&session).and_then(|s| s.try_clone().ok()))
    }

    /// Sends the host's bytes to the guest side; false if `session` is no
    /// connection.
    pub fn send(&self, session: u32, bytes: &[u8]) -> bool {
        let Some(mut stream) = self.stream(session) else {
            return false;
        };
        if stream.write_all(bytes).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        true
    }

    /// The host's side is done sending; false if `session` is no connection.
    pub fn close_write(&self, session: u32) -> bool {
        let Some(stream) = self.stream(session) else {
            return false;
        };
        let _ = stream.shutdown(Shutdown::Write);
        true
    }

    /// Drops a connection whose host side went away; false if `session` is
    /// no connection.
    pub fn abort(&self, session: u32) -> bool {
        let Some(stream) = self.stream(session) else {
            return false;
        };
        let _ = stream.shutdown(Shutdown::Both);
        true
    }

    /// Closes every connection: the workload has ended.
    pub fn close_all(&self) {
        if let Ok(open) = self.open.lock() {
            for stream in open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}
