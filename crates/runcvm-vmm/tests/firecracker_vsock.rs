//! The host side of Firecracker's hybrid vsock against a fake Firecracker:
//! host-initiated connections (`CONNECT <port>\n` → `OK <port>\n`) and the
//! listener for guest-initiated ones (`<uds_path>_<port>`).

#![allow(clippy::unwrap_used)]

use runcvm_vmm::firecracker::vsock::guest_initiated_path;
use runcvm_vmm::firecracker::{CONTROL_PORT, VsockError, connect_host_initiated, listen_guest_initiated};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A fake Firecracker listening on `uds_path`: reads the `CONNECT` line of
/// one connection, checks it, then runs `then` on the stream.
fn fake_firecracker(
    expect: &'static str,
    then: impl FnOnce(UnixStream) + Send + 'static,
) -> (tempfile::TempDir, PathBuf, JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(&uds).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        assert_eq!(line, expect);
        then(stream);
    });
    (dir, uds, server)
}

#[test]
fn host_initiated_connection_hands_over_the_stream_after_ok() {
    let (_dir, uds, server) = fake_firecracker("CONNECT 1025\n", |mut stream| {
        // The answer and the guest's first bytes in one write: the client
        // must not swallow what follows the newline.
        stream.write_all(b"OK 1073741824\nhello from the guest").unwrap();
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"ping");
    });
    let mut stream = connect_host_initiated(&uds, 1025, Duration::from_secs(5)).unwrap();
    let mut greeting = [0u8; 20];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"hello from the guest");
    stream.write_all(b"ping").unwrap();
    assert_eq!(
        stream.read_timeout().unwrap(),
        None,
        "the handshake's timeout is cleared"
    );
    server.join().unwrap();
}

#[test]
fn an_answer_other_than_ok_is_an_error() {
    let (_dir, uds, server) = fake_firecracker("CONNECT 1025\n", |mut stream| {
        stream.write_all(b"ERR no such port\n").unwrap();
    });
    let error = connect_host_initiated(&uds, 1025, Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&error, VsockError::BadAnswer { answer, .. } if answer == "ERR no such port"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "Firecracker answered \"ERR no such port\" to `CONNECT 1025` on {}, not `OK <port>`",
            uds.display()
        )
    );
    server.join().unwrap();

    let (_dir, uds, server) = fake_firecracker("CONNECT 7\n", |mut stream| {
        stream.write_all(&[b'x'; 100]).unwrap();
    });
    let error = connect_host_initiated(&uds, 7, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(error, VsockError::BadAnswer { .. }), "{error:?}");
    server.join().unwrap();
}

#[test]
fn a_closed_connection_means_nothing_listens_in_the_guest() {
    let (_dir, uds, server) = fake_firecracker("CONNECT 1025\n", drop);
    let error = connect_host_initiated(&uds, 1025, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(error, VsockError::Closed { port: 1025, .. }), "{error:?}");
    assert!(
        error.to_string().ends_with("nothing listens on that port in the guest"),
        "{error}"
    );
    server.join().unwrap();
}

#[test]
fn silence_times_out() {
    let (_dir, uds, server) = fake_firecracker("CONNECT 1025\n", |stream| {
        std::thread::sleep(Duration::from_secs(3));
        drop(stream);
    });
    let started = Instant::now();
    let error = connect_host_initiated(&uds, 1025, Duration::from_millis(150)).unwrap_err();
    assert!(matches!(error, VsockError::Timeout { .. }), "{error:?}");
    // Well before the server gives up: the timeout ended the wait.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn no_socket_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let error = connect_host_initiated(&uds, 1025, Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot connect to Firecracker's vsock socket {}", uds.display())
    );
}

#[test]
fn guest_initiated_connections_arrive_on_the_port_socket() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let path = guest_initiated_path(&uds, CONTROL_PORT);
    assert_eq!(path, dir.path().join("vsock.sock_1024"));
    // A socket left by an earlier run is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let listener = listen_guest_initiated(&uds, CONTROL_PORT).unwrap();
    // What Firecracker does when the guest connects to CID 2, port 1024.
    let mut firecracker = UnixStream::connect(&path).unwrap();
    firecracker.write_all(b"ready").unwrap();
    let (mut launcher, _) = listener.accept().unwrap();
    let mut got = [0u8; 5];
    launcher.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ready");
}

#[test]
fn a_file_in_the_way_of_the_listener_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let path = guest_initiated_path(&uds, CONTROL_PORT);
    std::fs::write(&path, b"not a socket").unwrap();
    let error = listen_guest_initiated(&uds, CONTROL_PORT).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot listen on {} for the guest's connections to port 1024",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}
