//! The host side of Firecracker's hybrid vsock: the guest's `AF_VSOCK`
//! sockets appear on the host as Unix sockets.
//!
//! - Guest-initiated: the guest connects to CID [`HOST_CID`] (2), port P, and
//!   Firecracker connects to the Unix socket `<uds_path>_P`, which the host
//!   must have bound and be listening on beforehand
//!   ([`listen_guest_initiated`]).
//! - Host-initiated: the host connects to `uds_path` (Firecracker's own
//!   listener), writes `CONNECT P\n` and reads `OK <host port>\n`; from then
//!   on the Unix stream is the guest connection to port P
//!   ([`connect_host_initiated`]). Firecracker closes the stream instead if
//!   nothing listens on P in the guest.
//!
//! runcvm's control channel is guest-initiated on [`CONTROL_PORT`]: the
//! launcher listens before Firecracker starts, as it does for QEMU's
//! control socket, so the guest's first connection cannot find nobody there.

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The guest's context id (the lowest a guest may have: 0 and 1 are
/// reserved, 2 is the host).
pub const GUEST_CID: u32 = 3;
/// The host's context id, which the guest connects to.
pub const HOST_CID: u32 = 2;
/// The vsock port of runcvm's control channel (guest → host). The first port
/// above the privileged range: nothing needs privilege for it, and nothing
/// else of ours uses vsock.
pub const CONTROL_PORT: u32 = runcvm_spec::CONTROL_VSOCK_PORT;
/// `OK 4294967295\n` is 14 bytes; anything much longer is not Firecracker.
const MAX_ANSWER: usize = 32;

/// Why a vsock connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// cannot connect to Firecracker's vsock socket {path}
    #[error("cannot connect to Firecracker's vsock socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot ask Firecracker's vsock socket {path} for guest port {port}
    #[error("cannot ask Firecracker's vsock socket {path} for guest port {port}")]
    Handshake {
        path: PathBuf,
        port: u32,
        #[source]
        source: std::io::Error,
    },
    /// Firecracker closed the connection to guest port {port} ({path}): nothing listens on that port in the guest
    #[error(
        "Firecracker closed the connection to guest port {port} ({path}): nothing listens on that port in the guest"
    )]
    Closed { path: PathBuf, port: u32 },
    /// Firecracker answered {answer:?} to `CONNECT {port}` on {path}, not `OK <port>`
    #[error("Firecracker answered {answer:?} to `CONNECT {port}` on {path}, not `OK <port>`")]
    BadAnswer { path: PathBuf, port: u32, answer: String },
    /// no answer to `CONNECT {port}` on {path} within {timeout:?}
    #[error("no answer to `CONNECT {port}` on {path} within {timeout:?}")]
    Timeout {
        path: PathBuf,
        port: u32,
        timeout: Duration,
    },
    /// cannot listen on {path} for the guest's connections to port {port}
    #[error("cannot listen on {path} for the guest's connections to port {port}")]
    Listen {
        path: PathBuf,
        port: u32,
        #[source]
        source: std::io::Error,
    },
}

/// `<uds_path>_<port>`: where Firecracker forwards the guest's connections to
/// `port`.
pub fn guest_initiated_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut path = uds_path.as_os_str().to_owned();
    path.push(format!("_{port}"));
    PathBuf::from(path)
}

/// Listens at `<uds_path>_<port>` for the guest's connections to `port`,
/// replacing a socket left there by an earlier run (never another kind of
/// file).
pub fn listen_guest_initiated(uds_path: &Path, port: u32) -> Result<UnixListener, VsockError> {
    let path = guest_initiated_path(uds_path, port);
    let listen_error = |source| VsockError::Listen {
        path: path.clone(),
        port,
        source,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path).map_err(listen_error)?,
        _ => {}
    }
    UnixListener::bind(&path).map_err(listen_error)
}

/// Connects to guest port `port` through Firecracker's socket `uds_path`:
/// `CONNECT <port>\n`, answered `OK <host port>\n`. The stream returned has
/// no timeouts set and carries nothing of the handshake.
pub fn connect_host_initiated(uds_path: &Path, port: u32, timeout: Duration) -> Result<UnixStream, VsockError> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(uds_path).map_err(|source| VsockError::Connect {
        path: uds_path.to_owned(),
        source,
    })?;
    let handshake_error = |source: std::io::Error| {
        if matches!(
            source.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            VsockError::Timeout {
                path: uds_path.to_owned(),
                port,
                timeout,
            }
        } else {
            VsockError::Handshake {
                path: uds_path.to_owned(),
                port,
                source,
            }
        }
    };
    stream
        .set_write_timeout(Some(remaining(deadline).max(Duration::from_millis(1))))
        .map_err(handshake_error)?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(handshake_error)?;
    // One byte at a time: whatever follows the answer's newline is the
    // guest's, and must stay in the stream.
    let mut answer = Vec::new();
    loop {
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(handshake_error(std::io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(handshake_error)?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) if answer.is_empty() => {
                return Err(VsockError::Closed {
                    path: uds_path.to_owned(),
                    port,
                });
            }
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                answer.push(byte[0]);
                if answer.len() > MAX_ANSWER {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(handshake_error(e)),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let host_port = text.strip_prefix("OK ").and_then(|p| p.parse::<u32>().ok());
    if host_port.is_none() {
        return Err(VsockError::BadAnswer {
            path: uds_path.to_owned(),
            port,
            answer: text,
        });
    }
    stream.set_read_timeout(None).map_err(handshake_error)?;
    stream.set_write_timeout(None).map_err(handshake_error)?;
    Ok(stream)
}

/// What is left until `deadline`, at least a millisecond while any is left
/// (a zero timeout means "none" to the socket calls).
fn remaining(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        left
    } else {
        left.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_initiated_sockets_are_the_uds_path_with_the_port() {
        assert_eq!(
            guest_initiated_path(Path::new("/var/lib/runcvm/r1/vsock.sock"), CONTROL_PORT),
            Path::new("/var/lib/runcvm/r1/vsock.sock_1024")
        );
        assert_eq!(guest_initiated_path(Path::new("v.sock"), 52), Path::new("v.sock_52"));
    }
}
