//! Streaming exec through the URL containerd's streaming server returns
//! (`http://127.0.0.1:PORT/exec/TOKEN`), spoken as kubectl's WebSocket
//! remotecommand protocol `v4.channel.k8s.io`: every binary message starts
//! with its channel (0 stdin, 1 stdout, 2 stderr, 3 the final
//! `metav1.Status` as JSON, 4 resize). The server listens inside the node's
//! network namespace, so the TCP socket is opened by a thread that joined it
//! (a socket stays in the namespace it was made in) and then used here.
//!
//! v4 has no way to close stdin alone (that came with `v5.channel.k8s.io`,
//! which containerd 1.6 does not offer): stdin bytes can be sent, and
//! closing stdin closes the whole session.

use anyhow::{Context, Result, anyhow, bail};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// The subprotocol asked for.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the session stays open after stdin is sent, before a close.
pub const CLOSE_SETTLE: Duration = Duration::from_secs(1);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;

/// What a streaming exec gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// From the status: 0 on `Success`, the `ExitCode` cause on failure;
    /// -1 when the session was closed after stdin and no status came.
    pub exit_code: i32,
    /// The status document as sent (channel 3).
    pub status: String,
}

impl StreamOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What to feed the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInput {
    /// Sent on stdin right after the handshake (the exec must have been
    /// asked for with stdin).
    pub stdin: Vec<u8>,
    /// Close the session [`CLOSE_SETTLE`] after the stdin bytes are sent
    /// (output meanwhile is kept): the process sees
    /// the end of its input, but v4 cannot close stdin alone, so whatever it
    /// writes after that, and its exit code, are lost (`exit_code` -1)
    /// unless the process ended before the server saw the close.
    pub close_after_stdin: bool,
}

/// Opens a TCP connection to `url`'s host from inside the network namespace
/// at `netns` (a file such as `/run/netns/NAME`).
pub fn connect_in(netns: &Path, url: &str) -> Result<TcpStream> {
    let address = host_port(url)?;
    let netns = netns.to_owned();
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<TcpStream> {
                join_netns(&netns)?;
                TcpStream::connect(&address).with_context(|| format!("connecting to {address}"))
            })
            .join()
            .map_err(|_| anyhow!("the connecting thread panicked"))?
    })
}

fn join_netns(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns on a valid namespace descriptor changes only this
    // thread's network namespace; the thread ends right after connecting.
    let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if joined != 0 {
        bail!("setns {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// `host:port` of an `http://host:port/…` URL.
fn host_port(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// streaming URL: {url}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if !authority.contains(':') {
        bail!("no port in the streaming URL {url}");
    }
    Ok(authority.to_owned())
}

/// Opens the WebSocket session behind `url` over `stream` (read timeouts of
/// 200 ms, so a caller can keep its deadline), in [`PROTOCOL`].
pub(crate) fn open_session(stream: TcpStream, url: &str) -> Result<WebSocket<TcpStream>> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let ws_url = format!("ws://{}", url.trim_start_matches("http://"));
    let mut request = ws_url.as_str().into_client_request().context("the WebSocket request")?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", PROTOCOL.parse()?);
    let (socket, response) =
        tungstenite::client::client(request, stream).map_err(|e| anyhow!("WebSocket handshake with {url}: {e}"))?;
    let agreed = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok());
    if agreed != Some(PROTOCOL) {
        bail!("the streaming server agreed to {agreed:?}, not {PROTOCOL}");
    }
    Ok(socket)
}

/// What a failed read says of a session.
pub(crate) enum ReadFailure {
    /// The session is over.
    Over,
    /// Nothing yet: the read timed out.
    Waiting,
    /// Anything else.
    Failed,
}

/// Sorts a read's error: the connection closed; the server's close came
/// with the end of the connection and the reply the client owes it could
/// not be written (broken pipe, reset); the server closed without the
/// closing handshake; or a frame came after a close frame (containerd's
/// server closes from one goroutine while another may still flush an
/// output channel, so its close can overtake a last frame): all end the
/// session, and what came before is kept.
pub(crate) fn read_failure(error: &tungstenite::Error) -> ReadFailure {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake | ProtocolError::ReceivedAfterClosing,
        ) => ReadFailure::Over,
        tungstenite::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => ReadFailure::Over,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ReadFailure::Waiting,
            _ => ReadFailure::Failed,
        },
        _ => ReadFailure::Failed,
    }
}

/// Runs the exec session behind `url` over `stream` and waits for its end,
/// at most `timeout`.
pub fn exec(stream: TcpStream, url: &str, input: &StreamInput, timeout: Duration) -> Result<StreamOutput> {
    let deadline = Instant::now() + timeout;
    let mut socket = open_session(stream, url)?;
    if !input.stdin.is_empty() {
        let mut message = vec![STDIN];
        message.extend_from_slice(&input.stdin);
        socket.send(Message::Binary(message.into()))?;
    }
    let mut output = StreamOutput {
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit_code: -1,
        status: String::new(),
    };
    // Closing at once loses the stdin bytes now and then: containerd may
    // close the exec's stdin FIFO before the process has opened it.
    let mut close_at = input.close_after_stdin.then(|| Instant::now() + CLOSE_SETTLE);
    loop {
        if close_at.is_some_and(|at| Instant::now() >= at) {
            close_at = None;
            let _ = socket.close(None);
        }
        match socket.read() {
            Ok(Message::Binary(data)) => match data.split_first() {
                Some((&STDOUT, rest)) => output.stdout.extend_from_slice(rest),
                Some((&STDERR, rest)) => output.stderr.extend_from_slice(rest),
                Some((&ERROR, rest)) => output.status.push_str(&String::from_utf8_lossy(rest)),
                _ => {}
            },
            Ok(_) => {}
            Err(e) => match read_failure(&e) {
                ReadFailure::Over => break,
                ReadFailure::Waiting if Instant::now() >= deadline => {
                    bail!("exec session still open after {timeout:?}; so far: {output:?}");
                }
                ReadFailure::Waiting => {}
                ReadFailure::Failed => return Err(e).context("reading the exec session"),
            },
        }
    }
    if !(input.close_after_stdin && output.status.is_empty()) {
        output.exit_code = exit_code(&output.status).with_context(|| format!("the session gave {output:?}"))?;
    }
    Ok(output)
}

/// The exit code in a remotecommand `metav1.Status`.
pub fn exit_code(status: &str) -> Result<i32> {
    if status.is_empty() {
        bail!("the exec session ended without a status");
    }
    let value: serde_json::Value = serde_json::from_str(status).with_context(|| format!("status {status:?}"))?;
    if value["status"] == "Success" {
        return Ok(0);
    }
    let causes = value["details"]["causes"].as_array();
    let code = causes
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .and_then(|m| m.parse().ok());
    code.with_context(|| format!("a failure status without an exit code: {status}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn statuses_give_exit_codes() {
        assert_eq!(exit_code(r#"{"metadata":{},"status":"Success"}"#).expect("ok"), 0);
        let failure = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(failure).expect("code"), 3);
        assert!(exit_code(r#"{"status":"Failure","message":"boom"}"#).is_err());
        assert!(exit_code("").is_err());
    }

    /// An unmasked server frame: FIN, `opcode`, a payload under 126 bytes.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0x80 | opcode, u8::try_from(payload.len()).expect("short payload")];
        frame.extend_from_slice(payload);
        frame
    }

    /// The server's side of the handshake: it agrees to [`PROTOCOL`]
    /// (port-forward's tests answer with it too).
    #[expect(clippy::result_large_err, reason = "the callback's type is tungstenite's")]
    pub(crate) fn agree_to_the_protocol(
        _: &tungstenite::handshake::server::Request,
        mut response: tungstenite::handshake::server::Response,
    ) -> Result<tungstenite::handshake::server::Response, tungstenite::handshake::server::ErrorResponse> {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", PROTOCOL.parse().expect("header"));
        Ok(response)
    }

    #[test]
    fn a_frame_after_the_servers_close_ends_the_session_keeping_what_came_before() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/exec/token", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let mut socket = tungstenite::accept_hdr(tcp, agree_to_the_protocol).expect("handshake");
            let raw = socket.get_mut();
            let mut status = vec![ERROR];
            status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
            for frame in [
                server_frame(0x2, b"\x01out"),
                server_frame(0x2, &status),
                server_frame(0x8, &[]),
                server_frame(0x2, b"\x01late"),
            ] {
                raw.write_all(&frame).expect("frame");
            }
            // Keep the connection open until the client has read it all.
            std::thread::sleep(Duration::from_millis(500));
        });
        let tcp = TcpStream::connect(host_port(&url).expect("address")).expect("connect");
        let output = exec(tcp, &url, &StreamInput::default(), Duration::from_secs(10)).expect("session");
        assert_eq!(
            (output.stdout_text().as_str(), output.exit_code),
            ("out", 0),
            "{output:?}"
        );
        server.join().expect("server");
    }

    #[test]
    fn the_address_comes_from_the_url() {
        assert_eq!(
            host_port("http://127.0.0.1:4321/exec/abc").expect("ok"),
            "127.0.0.1:4321"
        );
        assert!(host_port("https://127.0.0.1:1/exec/x").is_err());
        assert!(host_port("http://127.0.0.1/exec/x").is_err());
    }
}
