//! Firecracker's API: a small synchronous HTTP/1.1 client over its Unix
//! socket, the bodies of the calls runcvm makes, and the wait for the socket
//! to appear after Firecracker starts.
//!
//! Each call opens its own connection, writes one request and reads one
//! answer, all within the client's timeout (connecting included). The
//! answer's body is delimited by `Content-Length` (or chunked encoding);
//! with neither it is empty: Firecracker's server leaves the header out of
//! empty answers (`204`) and keeps the connection open, so reading to the
//! end would only wait for the timeout. An answer outside 2xx becomes
//! [`ApiError::Fault`] with Firecracker's `fault_message`.
//!
//! Request bodies refuse unknown keys, like Firecracker; answers are read
//! leniently, because later versions add fields.

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How long a call may take unless the client is given another timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of Firecracker's last log lines an error shows.
pub const LOG_TAIL_LINES: usize = 20;
/// Bounds on what is read from the socket.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;
/// How often the wait for the socket looks again.
const POLL: Duration = Duration::from_millis(10);

/// An HTTP method of Firecracker's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `InstanceInfo`, the answer to `GET /` (the fields runcvm reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// `--id`, `anonymous-instance` by default.
    pub id: String,
    pub state: InstanceState,
    /// Firecracker's version, e.g. `1.16.1`.
    pub vmm_version: String,
    /// `Firecracker`.
    pub app_name: String,
}

/// `InstanceInfo.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceState {
    #[serde(rename = "Not started")]
    NotStarted,
    Running,
    Paused,
}

/// `InstanceActionInfo`, the body of `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceActionInfo {
    pub action_type: ActionType,
}

/// `InstanceActionInfo.action_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    /// Write the metrics file now.
    FlushMetrics,
    /// Boot; not needed with `--config-file`, which boots at once.
    InstanceStart,
    /// Press Ctrl+Alt+Del on the guest's i8042 keyboard (x86_64). Needs the
    /// guest kernel's i8042 and AT keyboard drivers; the kernel then signals
    /// init (SIGINT).
    SendCtrlAltDel,
}

/// `Error`, the body of every answer outside 2xx.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultBody {
    #[serde(default)]
    pub fault_message: Option<String>,
    /// What Firecracker's HTTP layer says instead, for requests it could not
    /// parse (`{ "error": "..." }`).
    #[serde(default)]
    pub error: Option<String>,
}

/// `FirecrackerVersion`, the answer to `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirecrackerVersion {
    pub firecracker_version: String,
}

/// One answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why an API call, or the wait for the API, failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Firecracker's API socket {socket} does not exist
    #[error("Firecracker's API socket {socket} does not exist")]
    NoSocket { socket: PathBuf },
    /// Firecracker's API socket {socket} refuses connections: Firecracker is not running
    #[error("Firecracker's API socket {socket} refuses connections: Firecracker is not running")]
    Refused { socket: PathBuf },
    /// cannot connect to Firecracker's API socket {socket}
    #[error("cannot connect to Firecracker's API socket {socket}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Firecracker did not answer {method} {path} within {timeout:?}
    #[error("Firecracker did not answer {method} {path} within {timeout:?}")]
    Timeout {
        method: Method,
        path: String,
        timeout: Duration,
    },
    /// cannot talk to Firecracker ({method} {path})
    #[error("cannot talk to Firecracker ({method} {path})")]
    Io {
        method: Method,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Firecracker's answer to {method} {path} is not HTTP: {reason}
    #[error("Firecracker's answer to {method} {path} is not HTTP: {reason}")]
    Malformed {
        method: Method,
        path: String,
        reason: String,
    },
    /// Firecracker refused {method} {path} ({status}): {fault_message}
    #[error("Firecracker refused {method} {path} ({status}): {fault_message}")]
    Fault {
        method: Method,
        path: String,
        status: u16,
        fault_message: String,
    },
    /// Firecracker's answer to {method} {path} is not the JSON expected
    #[error("Firecracker's answer to {method} {path} is not the JSON expected")]
    UnexpectedBody {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// Firecracker's API socket {socket} did not appear within {timeout:?}{log}
    #[error("Firecracker's API socket {socket} did not appear within {timeout:?}{log}")]
    SocketNeverAppeared {
        socket: PathBuf,
        timeout: Duration,
        /// The tail of Firecracker's log, ready to append.
        log: LogTail,
    },
    /// Firecracker exited ({status}) before its API socket {socket} appeared{log}
    #[error("Firecracker exited ({status}) before its API socket {socket} appeared{log}")]
    Exited {
        socket: PathBuf,
        status: ExitStatus,
        log: LogTail,
    },
}

/// The last lines of Firecracker's log, shown after an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTail {
    pub path: Option<PathBuf>,
    /// The last lines, or why there are none.
    pub lines: Result<Vec<String>, String>,
}

impl LogTail {
    /// The last `count` non-blank lines of the log at `path`.
    pub fn read(path: Option<&Path>, count: usize) -> Self {
        let lines = match path {
            None => Ok(Vec::new()),
            Some(path) => std::fs::read(path).map_err(|e| e.to_string()).map(|bytes| {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                lines[lines.len().saturating_sub(count)..]
                    .iter()
                    .map(|l| (*l).to_owned())
                    .collect()
            }),
        };
        Self {
            path: path.map(Path::to_owned),
            lines,
        }
    }
}

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(path) = &self.path else {
            return Ok(());
        };
        match &self.lines {
            Err(e) => write!(f, "; its log {} cannot be read ({e})", path.display()),
            Ok(lines) if lines.is_empty() => write!(f, "; its log {} is empty", path.display()),
            Ok(lines) => {
                write!(f, "; the last lines of its log {}:", path.display())?;
                lines.iter().try_for_each(|line| write!(f, "\n    {line}"))
            }
        }
    }
}

/// A client of one Firecracker's API socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the socket given to `--api-sock`, with [`DEFAULT_TIMEOUT`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /`: who and in what state the instance is.
    pub fn get_instance_info(&self) -> Result<InstanceInfo, ApiError> {
        self.get_json("/")
    }

    /// `GET /version`.
    pub fn get_version(&self) -> Result<FirecrackerVersion, ApiError> {
        self.get_json("/version")
    }

    /// `PUT /actions`.
    pub fn put_actions(&self, action: InstanceActionInfo) -> Result<(), ApiError> {
        let body = serde_json::to_vec(&action).unwrap_or_else(|e| unreachable!("an action always serializes: {e}"));
        self.call(Method::Put, "/actions", Some(&body)).map(drop)
    }

    /// `PUT /actions` `{"action_type":"SendCtrlAltDel"}`.
    pub fn send_ctrl_alt_del(&self) -> Result<(), ApiError> {
        self.put_actions(InstanceActionInfo {
            action_type: ActionType::SendCtrlAltDel,
        })
    }

    /// One call whose answer must be 2xx; any other becomes
    /// [`ApiError::Fault`].
    pub fn call(&self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Response, ApiError> {
        let response = self.request(method, path, body)?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        Err(ApiError::Fault {
            method,
            path: path.to_owned(),
            status: response.status,
            fault_message: fault_message(&response.body),
        })
    }

    /// One request and its answer, whatever its status.
    pub fn request(&self, method: Method, path: &str, body: Option<&[u8]>) -> Result<Response, ApiError> {
        let deadline = Instant::now() + self.timeout;
        let timeout = || ApiError::Timeout {
            method,
            path: path.to_owned(),
            timeout: self.timeout,
        };
        let stream = match connect(&self.socket, deadline) {
            Ok(stream) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(timeout()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::NoSocket {
                    socket: self.socket.clone(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ApiError::Refused {
                    socket: self.socket.clone(),
                });
            }
            Err(source) => {
                return Err(ApiError::Connect {
                    socket: self.socket.clone(),
                    source,
                });
            }
        };
        let mut wire = Wire {
            stream,
            buf: Vec::new(),
            pos: 0,
            deadline,
        };
        let result = wire
            .write(&encode_request(method, path, body))
            .and_then(|()| wire.response());
        result.map_err(|e| match e {
            WireError::Timeout => timeout(),
            WireError::Io(source) => ApiError::Io {
                method,
                path: path.to_owned(),
                source,
            },
            WireError::Malformed(reason) => ApiError::Malformed {
                method,
                path: path.to_owned(),
                reason,
            },
        })
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, ApiError> {
        let response = self.call(Method::Get, path, None)?;
        serde_json::from_slice(&response.body).map_err(|source| ApiError::UnexpectedBody {
            method: Method::Get,
            path: path.to_owned(),
            source,
        })
    }
}

/// Waits until Firecracker's API socket accepts connections. Fails after
/// `timeout`, or as soon as `firecracker` (if given) has exited, with the
/// tail of Firecracker's log (`log`) in the message.
pub fn wait_for_socket(
    socket: &Path,
    timeout: Duration,
    log: Option<&Path>,
    mut firecracker: Option<&mut Child>,
) -> Result<(), ApiError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(child) = firecracker.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ApiError::Exited {
                    socket: socket.to_owned(),
                    status,
                    log: LogTail::read(log, LOG_TAIL_LINES),
                });
            }
        }
        // Connecting, not just seeing the file: it exists from bind(), a
        // moment before Firecracker listens on it.
        if connect(socket, Instant::now()).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ApiError::SocketNeverAppeared {
                socket: socket.to_owned(),
                timeout,
                log: LogTail::read(log, LOG_TAIL_LINES),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Connects to a Unix socket, retrying while its backlog is full until
/// `deadline` (`WouldBlock` after it). A Unix connect never waits otherwise:
/// it succeeds or fails at once.
fn connect(socket: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    let address = UnixAddr::new(socket)?;
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    loop {
        match nix::sys::socket::connect(fd.as_raw_fd(), &address) {
            Ok(()) => break,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn encode_request(method: Method, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Firecracker's reason in an error answer's body.
fn fault_message(body: &[u8]) -> String {
    let parsed: Option<FaultBody> = serde_json::from_slice(body).ok();
    parsed
        .and_then(|fault| fault.fault_message.or(fault.error))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                "no reason given".to_owned()
            } else {
                text
            }
        })
}

enum WireError {
    Timeout,
    Io(std::io::Error),
    Malformed(String),
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Self::Timeout,
            _ => Self::Io(e),
        }
    }
}

/// One connection: what was read and not yet parsed, and the call's deadline.
struct Wire {
    stream: UnixStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
}

impl Wire {
    fn left(&self) -> Result<Duration, WireError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(WireError::Timeout)
        } else {
            Ok(left)
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads more; `false` at the end of the stream.
    fn fill(&mut self) -> Result<bool, WireError> {
        let mut chunk = [0u8; 4096];
        loop {
            self.stream.set_read_timeout(Some(self.left()?))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next line, without its CRLF (or LF).
    fn line(&mut self, what: &str) -> Result<String, WireError> {
        loop {
            if let Some(end) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[self.pos..self.pos + end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let text = String::from_utf8_lossy(line).into_owned();
                self.pos += end + 1;
                return Ok(text);
            }
            if self.buf.len() - self.pos > MAX_HEAD {
                return Err(WireError::Malformed(format!("{what} is longer than {MAX_HEAD} bytes")));
            }
            if !self.fill()? {
                return Err(WireError::Malformed(if self.buf.is_empty() {
                    "the connection closed without an answer".to_owned()
                } else {
                    format!("the connection closed in the {what}")
                }));
            }
        }
    }

    fn bytes(&mut self, count: usize) -> Result<Vec<u8>, WireError> {
        while self.buf.len() - self.pos < count {
            if !self.fill()? {
                return Err(WireError::Malformed(format!(
                    "the connection closed {} bytes into a body of {count}",
                    self.buf.len() - self.pos
                )));
            }
        }
        let bytes = self.buf[self.pos..self.pos + count].to_vec();
        self.pos += count;
        Ok(bytes)
    }

    fn response(&mut self) -> Result<Response, WireError> {
        let status_line = self.line("status line")?;
        let status = parse_status_line(&status_line).map_err(WireError::Malformed)?;
        let mut content_length = None;
        let mut chunked = false;
        let mut head = status_line.len();
        loop {
            let line = self.line("headers")?;
            if line.is_empty() {
                break;
            }
            head += line.len();
            if head > MAX_HEAD {
                return Err(WireError::Malformed(format!(
                    "the headers are longer than {MAX_HEAD} bytes"
                )));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| WireError::Malformed(format!("{line:?} is not a header")))?;
            let value = value.trim();
            if name.trim().eq_ignore_ascii_case("content-length") {
                let length = value
                    .parse::<usize>()
                    .map_err(|_| WireError::Malformed(format!("Content-Length {value:?} is not a number")))?;
                content_length = Some(length);
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked");
            }
        }
        let body = if status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else if chunked {
            self.chunked_body()?
        } else {
            match content_length {
                Some(length) if length > MAX_BODY => {
                    return Err(WireError::Malformed(format!("a body of {length} bytes is too large")));
                }
                Some(length) => self.bytes(length)?,
                None => Vec::new(),
            }
        };
        Ok(Response { status, body })
    }

    fn chunked_body(&mut self) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::new();
        loop {
            let line = self.line("chunk size")?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| WireError::Malformed(format!("chunk size {size_text:?} is not hexadecimal")))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !self.line("trailers")?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err(WireError::Malformed(format!(
                    "a body over {MAX_BODY} bytes is too large"
                )));
            }
            body.extend(self.bytes(size)?);
            if !self.line("chunk")?.is_empty() {
                return Err(WireError::Malformed("a chunk does not end with CRLF".to_owned()));
            }
        }
    }
}

/// `HTTP/1.1 204 ` (Firecracker sends no reason phrase) or `HTTP/1.1 200 OK`.
fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut words = line.split_whitespace();
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("the status line is {line:?}"));
    }
    words
        .next()
        .filter(|code| code.len() == 3)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..600).contains(code))
        .ok_or_else(|| format!("the status line is {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_with_and_without_reason() {
        assert_eq!(parse_status_line("HTTP/1.1 204 "), Ok(204));
        assert_eq!(parse_status_line("HTTP/1.1 400 Bad Request"), Ok(400));
        assert!(parse_status_line("SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line("HTTP/1.1 2000").is_err());
    }

    #[test]
    fn requests_carry_a_length_only_with_a_body() {
        let get = String::from_utf8(encode_request(Method::Get, "/", None)).unwrap();
        assert_eq!(
            get,
            "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n"
        );
        let put = String::from_utf8(encode_request(Method::Put, "/actions", Some(b"{}"))).unwrap();
        assert!(
            put.ends_with("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            "{put}"
        );
    }

    #[test]
    fn fault_messages_come_from_the_body() {
        assert_eq!(fault_message(br#"{"fault_message":"bad action"}"#), "bad action");
        assert_eq!(
            fault_message(br#"{ "error": "Too many open connections" }"#),
            "Too many open connections"
        );
        assert_eq!(fault_message(b"oops\n"), "oops");
        assert_eq!(fault_message(b""), "no reason given");
    }

    #[test]
    fn actions_serialize_as_the_api_names_them() {
        let body = serde_json::to_string(&InstanceActionInfo {
            action_type: ActionType::SendCtrlAltDel,
        })
        .unwrap();
        assert_eq!(body, r#"{"action_type":"SendCtrlAltDel"}"#);
        let info: InstanceInfo = serde_json::from_str(
            r#"{"id":"anonymous-instance","state":"Not started","vmm_version":"1.16.1","app_name":"Firecracker","extra":1}"#,
        )
        .unwrap();
        assert_eq!(info.state, InstanceState::NotStarted);
    }
}
