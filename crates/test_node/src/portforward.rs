//! Port-forward through the URL containerd's streaming server returns for a
//! CRI `PortForward` (`http://127.0.0.1:PORT/portforward/TOKEN`), as
//! `kubectl port-forward` reaches it through the API server: a WebSocket
//! with the subprotocol `v4.channel.k8s.io`. Each forwarded port has two
//! channels, data (`2i`) and error (`2i + 1`); every binary message starts
//! with its channel. The server's first message on each channel is the
//! port, two bytes little-endian; after that the data channel carries the
//! connection's bytes both ways, and the error channel a text when the
//! runtime could not reach the port in the pod.
//!
//! containerd 1.6 and 2.x alike forward the ports of the CRI request (a
//! `?port=` query is not read), open one TCP connection to `localhost:PORT`
//! in the pod's network namespace per session, and close the WebSocket once
//! that connection has ended. So a session here is one exchange: send the
//! request, read until the pod's side closes. The streaming server listens
//! inside the node's network namespace: open the TCP socket with
//! [`crate::stream::connect_in`].

use crate::stream::{ReadFailure, read_failure};
use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The subprotocol asked for (the same as for exec).
pub const PROTOCOL: &str = crate::stream::PROTOCOL;

const DATA: u8 = 0;
const ERROR: u8 = 1;

/// What one forwarded connection gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The bytes the pod's side sent, the port prefix taken off.
    pub data: Vec<u8>,
    /// What the server said on the error channel (empty when nothing).
    pub error: String,
}

impl Forwarded {
    pub fn data_text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// Splits the server's messages of one port's two channels, taking off
/// each channel's leading port (checked against the port asked for).
#[derive(Debug)]
struct Demux {
    port: u16,
    /// Per channel (data, error): the port bytes still to come.
    prefix: [Vec<u8>; 2],
    out: Forwarded,
}

impl Demux {
    fn new(port: u16) -> Self {
        Self {
            port,
            prefix: [Vec::new(), Vec::new()],
            out: Forwarded::default(),
        }
    }

    /// Takes one binary message from the server.
    fn take(&mut self, message: &[u8]) -> Result<()> {
        let Some((&channel, mut rest)) = message.split_first() else {
            return Ok(());
        };
        let index = match channel {
            DATA => 0,
            ERROR => 1,
            other => bail!("a message on channel {other}: one port has channels 0 and 1"),
        };
        let prefix = &mut self.prefix[index];
        if prefix.len() < 2 {
            let wanted = (2 - prefix.len()).min(rest.len());
            prefix.extend_from_slice(&rest[..wanted]);
            rest = &rest[wanted..];
            if prefix.len() == 2 {
                let port = u16::from_le_bytes([prefix[0], prefix[1]]);
                if port != self.port {
                    bail!("channel {channel} is for port {port}, not {}", self.port);
                }
            }
        }
        match channel {
            DATA => self.out.data.extend_from_slice(rest),
            _ => self.out.error.push_str(&String::from_utf8_lossy(rest)),
        }
        Ok(())
    }
}

/// Forwards one connection to `port` through the session behind `url` over
/// `stream`: sends `request` to the pod's side and returns what it sent
/// back until it closed, waiting at most `timeout`. What the server says on
/// the error channel is returned, not raised.
pub fn forward(stream: TcpStream, url: &str, port: u16, request: &[u8], timeout: Duration) -> Result<Forwarded> {
    let deadline = Instant::now() + timeout;
    let mut socket = crate::stream::open_session(stream, url)?;
    if !request.is_empty() {
        let mut message = vec![DATA];
        message.extend_from_slice(request);
        socket.send(Message::Binary(message.into()))?;
    }
    let mut demux = Demux::new(port);
    loop {
        match socket.read() {
            Ok(Message::Binary(data)) => demux.take(&data)?,
            Ok(_) => {}
            Err(e) => match read_failure(&e) {
                ReadFailure::Over => break,
                ReadFailure::Waiting if Instant::now() >= deadline => {
                    bail!(
                        "port-forward session still open after {timeout:?}; so far: {:?}",
                        demux.out
                    );
                }
                ReadFailure::Waiting => {}
                ReadFailure::Failed => return Err(e).context("reading the port-forward session"),
            },
        }
    }
    Ok(demux.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channels_port_prefix_is_taken_off_even_split() {
        let mut demux = Demux::new(8080);
        // 8080 = 0x1f90: little-endian 0x90 0x1f.
        demux.take(&[DATA, 0x90]).expect("half a prefix");
        demux.take(&[DATA, 0x1f, b'h', b'i']).expect("the rest and data");
        demux.take(&[ERROR, 0x90, 0x1f]).expect("the error channel's prefix");
        demux.take(&[DATA, b'!']).expect("more data");
        demux.take(&[]).expect("an empty message");
        assert_eq!(demux.out.data_text(), "hi!");
        assert_eq!(demux.out.error, "");
        demux.take(&[ERROR, b'n', b'o']).expect("an error text");
        assert_eq!(demux.out.error, "no");
    }

    #[test]
    fn a_prefix_for_another_port_or_a_third_channel_is_refused() {
        let err = Demux::new(8080).take(&[DATA, 0x91, 0x1f]).expect_err("wrong port");
        assert!(err.to_string().contains("port 8081, not 8080"), "{err}");
        assert!(Demux::new(8080).take(&[2, 0, 0]).is_err());
    }

    #[test]
    fn a_session_sends_the_request_and_reads_the_reply_until_the_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/portforward/token", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let mut socket =
                tungstenite::accept_hdr(tcp, crate::stream::tests::agree_to_the_protocol).expect("handshake");
            for channel in [DATA, ERROR] {
                let prefix = [channel, 0x90, 0x1f];
                socket.send(Message::Binary(prefix.to_vec().into())).expect("prefix");
            }
            let request = loop {
                if let Message::Binary(data) = socket.read().expect("the request") {
                    break data;
                }
            };
            assert_eq!(&request[..], b"\x00GET / HTTP/1.0\r\n\r\n");
            for part in [&b"\x00HTTP/1.0 200 OK\r\n\r\n"[..], b"\x00hello"] {
                socket.send(Message::Binary(part.to_vec().into())).expect("reply");
            }
            socket.close(None).expect("close");
            // Answer the client's closing handshake.
            while socket.read().is_ok() {}
        });
        let tcp = TcpStream::connect(url.trim_start_matches("http://").split('/').next().expect("host")).expect("tcp");
        let out = forward(tcp, &url, 8080, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(10)).expect("session");
        assert_eq!(out.data_text(), "HTTP/1.0 200 OK\r\n\r\nhello");
        assert_eq!(out.error, "");
        server.join().expect("server");
    }
}
