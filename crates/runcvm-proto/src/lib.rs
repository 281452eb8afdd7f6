//! The control channel between the launcher (host) and guest init.
//!
//! The transport is a byte stream: a virtio-serial port on QEMU, hybrid vsock
//! on Firecracker. On it, every frame is
//!
//! ```text
//! length: u32, big-endian, counting what follows
//! kind:   u8   (1 = a JSON message; 2 = output data: session u32, stream u8, bytes)
//! body:   length - 1 bytes
//! ```
//!
//! The guest opens with `Ready { version }`; a host that does not speak that
//! version stops the VM with a clear error rather than guessing. The host
//! answers `Start` (the pod), then creates containers (`CreateContainer`),
//! each of which ends with `ContainerExit`; the VM ends at `PowerOff`.

pub mod flow;

use runcvm_spec::{ByteString, Entrypoint, GuestNetwork, GuestRoot, GuestVolume, LaunchPlan, PodPlan};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 13;
/// Frames larger than this are refused: a corrupt length must not make the
/// reader allocate gigabytes.
pub const MAX_FRAME_LEN: u32 = 1 << 20;
const KIND_MESSAGE: u8 = 1;
const KIND_DATA: u8 = 2;

/// Messages from guest init to the launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestMessage {
    /// Init is running and has mounted what it needs; the boot watchdog stops.
    Ready { version: u32 },
    /// A container's process ended, and what it left running was killed;
    /// all its output was sent before.
    ContainerExit {
        /// The id `CreateContainer` gave it.
        container: u32,
        status: ExitStatus,
        /// The guest's OOM killer ended a process of the container (its
        /// cgroup counted an OOM kill).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oom_killed: bool,
        /// The writable single-file volumes (`CreateContainer.files`
        /// marked `writable`) as the container left them: the termination message
        /// among them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<GuestFile>,
    },
    /// An exec session's process ended; all its output was sent before.
    ExecExit { session: u32, status: ExitStatus },
    /// A connection of [`HostMessage::Connect`] ended: the guest side closed
    /// (its data all sent before), or could not connect (`error`).
    Disconnected {
        session: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The guest passed on `bytes` of `session`'s input: the launcher may
    /// send that many more (`flow`).
    Credit { session: u32, bytes: u32 },
}

/// Messages from the launcher to guest init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostMessage {
    /// The answer to `Ready`: what the pod's VM is set up with once, before
    /// any container. Nothing of it is on the boot disk, which is the same
    /// for every VM: the pod reaches the guest after boot, as the network
    /// does (known only once the launcher has taken over the pod's `eth0`).
    Start {
        pod: PodPlan,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<GuestNetwork>,
    },
    /// Creates and starts a container in the pod's VM. Its stdio is the
    /// session numbered `container` (container ids and exec sessions share
    /// one space, which the launcher allocates); it ends with
    /// [`GuestMessage::ContainerExit`], and the VM stays up until
    /// [`HostMessage::PowerOff`].
    CreateContainer {
        container: u32,
        /// The container's name on the node (`runcvm attach --name`, a
        /// Kubernetes container's id): execs name it so, and the guest's
        /// log lines say it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// How the guest makes the container's world (boxed: it is most of
        /// the message). Its pod-level fields are `Start`'s.
        plan: Box<LaunchPlan>,
        /// The container's process, which guest init writes to the
        /// container's `/.runcvm/entrypoint` for the `[VM-START]` runner.
        /// Absent: the container sleeps (`No entrypoint found, sleeping`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entrypoint: Option<Entrypoint>,
        /// Files the guest puts in the container before its process starts:
        /// its `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<GuestFile>,
        /// The container's root, served: mounted first, the volumes and
        /// files on it. Absent: the guest's root disk is the container's
        /// root (one container only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<GuestRoot>,
        /// Volumes to mount over NFS before the process starts.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        volumes: Vec<GuestVolume>,
        /// The process reads stdin from the launcher (data frames of the
        /// container's session); otherwise from /dev/null.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stdin: bool,
        /// The process terminal's size from the start (it has one when its
        /// entrypoint says `terminal`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal_size: Option<TerminalSize>,
    },
    /// Ends the VM: every process is killed, the guest reboots.
    PowerOff,
    /// A signal for a session's process: a container's (its session is its
    /// id; a signal the launcher received), or an exec's (its client
    /// received it).
    Signal {
        signal: i32,
        #[serde(default, skip_serializing_if = "is_workload")]
        session: u32,
    },
    /// Ends a session whose client went away (an `ExecSync` that timed out,
    /// say): SIGKILL to an exec's process group, or to a container's
    /// process.
    KillSession { session: u32 },
    /// Connects `session` to `port` on the guest's loopback (`kubectl
    /// port-forward`): 127.0.0.1 first, or ::1 first with `ipv6`, then the
    /// other. Data frames of the session carry the bytes (`Stdin` to the
    /// guest, `Stdout` back), `CloseStdin` ends the host's side, and
    /// `Disconnected` the guest's.
    Connect {
        session: u32,
        port: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ipv6: bool,
    },
    /// Run another process in the guest (`runcvm exec`); its output comes
    /// back as data frames of `session`, then `ExecExit`.
    Exec {
        session: u32,
        /// The container the process joins.
        #[serde(default, skip_serializing_if = "is_workload")]
        container: u32,
        /// A client names the container so (`runcvm exec --container`):
        /// the launcher finds its id and sends `container` alone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container_name: Option<String>,
        process: Entrypoint,
        /// The terminal's size from the start, when `process.terminal`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal_size: Option<TerminalSize>,
    },
    /// No more stdin for `session` (data frames with `Stream::Stdin` carry it).
    CloseStdin { session: u32 },
    /// The launcher passed on `bytes` of `session`'s output: the guest may
    /// send that many more (`flow`).
    Credit { session: u32, bytes: u32 },
    /// The terminal of `session` changed size.
    Resize { session: u32, rows: u16, cols: u16 },
    /// From a client of a pod's VM to its launcher only, never to the
    /// guest: the pod's console and the pod launcher's lines, from the
    /// first, go to this client's stderr too (a container at DEBUG, whose
    /// log then holds them as a VM of its own would).
    FollowConsole,
}

/// A terminal's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A file's full path in the guest and its exact content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFile {
    pub path: String,
    pub content: ByteString,
    /// The guest sends the file back in `ContainerExit`, as the container
    /// left it: a
    /// writable single-file volume, such as the termination message file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
    /// Its mode on the node, which the guest's copy takes (kubelet makes
    /// the termination message file 0666, so a non-root workload can write
    /// it); absent: 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

fn is_workload(session: &u32) -> bool {
    *session == WORKLOAD_SESSION
}

/// How the workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The status a container runtime reports: the code, or 128 + the signal,
    /// as runc and shells do.
    pub fn container_code(self) -> i32 {
        match self {
            Self::Code(code) => code & 0xff,
            Self::Signal(signal) => 128 + signal,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// the control channel failed
    #[error("the control channel failed")]
    Io(#[from] io::Error),
    /// the control channel ended in the middle of a frame
    #[error("the control channel ended in the middle of a frame")]
    Truncated,
    /// a control frame of {0} bytes is over the limit
    #[error("a control frame of {0} bytes is over the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(u32),
    /// a control frame has unknown kind {0}
    #[error("a control frame has unknown kind {0}: host and guest runcvm builds differ")]
    UnknownKind(u8),
    /// a control message is not valid JSON of the expected shape
    #[error("a control message is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
}

/// Which output of a process a data frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Host to guest: input for a session.
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
}

/// The session of the first container's process (its id): the container a
/// launcher of one container creates; exec sessions get others.
pub const WORKLOAD_SESSION: u32 = 0;
/// The most data one frame carries.
pub const MAX_DATA: usize = 64 * 1024;

/// One frame: a message, or bytes of a session's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<M> {
    Message(M),
    Data {
        session: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
}

fn write_frame(mut out: impl Write, kind: u8, parts: &[&[u8]]) -> io::Result<()> {
    let body_len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(body_len + 1)
        .ok()
        .filter(|len| *len <= MAX_FRAME_LEN)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "control frame too large"))?;
    let mut frame = Vec::with_capacity(body_len + 5);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(kind);
    for part in parts {
        frame.extend_from_slice(part);
    }
    // One write keeps a frame whole on a port shared by several writers.
    out.write_all(&frame)?;
    out.flush()
}

/// Writes one message as a single frame.
pub fn write_message<M: Serialize>(out: impl Write, message: &M) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    write_frame(out, KIND_MESSAGE, &[&body])
}

/// Writes output of `session` (at most [`MAX_DATA`] bytes) as one frame:
/// `session: u32 BE, stream: u8, bytes`.
pub fn write_data(out: impl Write, session: u32, stream: Stream, bytes: &[u8]) -> io::Result<()> {
    write_frame(out, KIND_DATA, &[&session.to_be_bytes(), &[stream as u8], bytes])
}

/// Reads one message; data frames are an error here (use [`read_frame`]).
pub fn read_message<M: DeserializeOwned>(input: impl Read) -> Result<Option<M>, ProtoError> {
    match read_frame(input)? {
        None => Ok(None),
        Some(Frame::Message(message)) => Ok(Some(message)),
        Some(Frame::Data { .. }) => Err(ProtoError::UnknownKind(KIND_DATA)),
    }
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
pub fn read_frame<M: DeserializeOwned>(mut input: impl Read) -> Result<Option<Frame<M>>, ProtoError> {
    let mut header = [0u8; 4];
    match read_exact_or_eof(&mut input, &mut header)? {
        Filled::Eof => return Ok(None),
        Filled::Partial => return Err(ProtoError::Truncated),
        Filled::Full => {}
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME_LEN {
        return Err(ProtoError::TooLarge(len));
    }
    if len == 0 {
        return Err(ProtoError::Truncated);
    }
    let mut frame = vec![0u8; len as usize];
    if !matches!(read_exact_or_eof(&mut input, &mut frame)?, Filled::Full) {
        return Err(ProtoError::Truncated);
    }
    match frame[0] {
        KIND_MESSAGE => serde_json::from_slice(&frame[1..])
            .map(|m| Some(Frame::Message(m)))
            .map_err(ProtoError::Malformed),
        KIND_DATA if frame.len() >= 6 => {
            let session = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]);
            let stream = match frame[5] {
                0 => Stream::Stdin,
                1 => Stream::Stdout,
                2 => Stream::Stderr,
                _ => return Err(ProtoError::UnknownKind(KIND_DATA)),
            };
            frame.drain(..6);
            Ok(Some(Frame::Data {
                session,
                stream,
                bytes: frame,
            }))
        }
        other => Err(ProtoError::UnknownKind(other)),
    }
}

enum Filled {
    Full,
    Partial,
    Eof,
}

fn read_exact_or_eof(input: &mut impl Read, buf: &mut [u8]) -> io::Result<Filled> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(Filled::Eof),
            Ok(0) => return Ok(Filled::Partial),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Filled::Full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_frames() {
        let sent = [
            GuestMessage::Ready {
                version: PROTOCOL_VERSION,
            },
            GuestMessage::ContainerExit {
                container: 0,
                status: ExitStatus::Code(42),
                oom_killed: false,
                files: vec![],
            },
            GuestMessage::ContainerExit {
                container: 3,
                status: ExitStatus::Signal(9),
                oom_killed: true,
                files: vec![GuestFile {
                    path: "/dev/termination-log".into(),
                    content: "done\n".into(),
                    writable: true,
                    mode: None,
                }],
            },
            GuestMessage::Disconnected {
                session: 3,
                error: Some("connection refused".into()),
            },
            GuestMessage::Credit {
                session: 4,
                bytes: 65536,
            },
        ];
        let mut wire = Vec::new();
        for message in &sent {
            write_message(&mut wire, message).unwrap();
        }
        let mut reader = wire.as_slice();
        for message in &sent {
            let got: GuestMessage = read_message(&mut reader).unwrap().unwrap();
            assert_eq!(&got, message);
        }
        assert!(read_message::<GuestMessage>(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_workload_signal_keeps_its_old_shape_and_sessions_are_named() {
        let workload = HostMessage::Signal {
            signal: 15,
            session: WORKLOAD_SESSION,
        };
        assert_eq!(
            serde_json::to_string(&workload).unwrap(),
            r#"{"type":"signal","signal":15}"#
        );
        let exec: HostMessage = serde_json::from_str(r#"{"type":"signal","signal":2,"session":4}"#).unwrap();
        assert_eq!(exec, HostMessage::Signal { signal: 2, session: 4 });
        let connect: HostMessage = serde_json::from_str(r#"{"type":"connect","session":5,"port":80}"#).unwrap();
        assert_eq!(
            connect,
            HostMessage::Connect {
                session: 5,
                port: 80,
                ipv6: false
            }
        );
    }

    #[test]
    fn wire_format_is_length_kind_json() {
        let mut wire = Vec::new();
        write_message(&mut wire, &GuestMessage::Ready { version: 1 }).unwrap();
        let body = br#"{"type":"ready","version":1}"#;
        assert_eq!(&wire[..4], &u32::try_from(body.len() + 1).unwrap().to_be_bytes());
        assert_eq!(wire[4], 1);
        assert_eq!(&wire[5..], body);
    }

    #[test]
    fn truncated_oversized_and_unknown_frames_are_errors() {
        let mut wire = Vec::new();
        write_message(&mut wire, &GuestMessage::Ready { version: 1 }).unwrap();
        let cut = &wire[..wire.len() - 1];
        assert!(matches!(read_message::<GuestMessage>(cut), Err(ProtoError::Truncated)));
        assert!(matches!(
            read_message::<GuestMessage>(&wire[..2]),
            Err(ProtoError::Truncated)
        ));
        let huge = (MAX_FRAME_LEN + 1).to_be_bytes();
        assert!(matches!(
            read_message::<GuestMessage>(&huge[..]),
            Err(ProtoError::TooLarge(_))
        ));
        let unknown = [0, 0, 0, 2, 7, b'x'];
        assert!(matches!(
            read_message::<GuestMessage>(&unknown[..]),
            Err(ProtoError::UnknownKind(7))
        ));
    }

    #[test]
    fn start_carries_the_pod_and_create_container_the_container() {
        let start = HostMessage::Start {
            pod: PodPlan {
                hostname: Some("web-0".into()),
                ..PodPlan::default()
            },
            network: Some(GuestNetwork {
                mac: "0a:58:0a:58:00:05".parse().unwrap(),
                mtu: 1450,
                addresses: vec!["10.88.0.5/24".parse().unwrap()],
                without_prefix_route: vec![],
                routes: vec![],
            }),
        };
        let create = HostMessage::CreateContainer {
            container: 2,
            name: Some("sidecar".into()),
            plan: Box::new(LaunchPlan {
                read_only_root: true,
                ..LaunchPlan::default()
            }),
            entrypoint: Some(Entrypoint::new(vec!["/bin/app".into()], vec!["A=1".into()])),
            files: vec![GuestFile {
                path: "/etc/hosts".into(),
                content: "127.0.0.1 localhost\n".into(),
                writable: false,
                mode: Some(0o644),
            }],
            root: Some(GuestRoot { port: 2050 }),
            volumes: vec![GuestVolume {
                path: "/data".into(),
                read_only: true,
                port: 2049,
                optional: false,
            }],
            stdin: true,
            terminal_size: Some(TerminalSize { rows: 24, cols: 80 }),
        };
        let mut wire = Vec::new();
        for message in [&start, &create, &HostMessage::PowerOff, &HostMessage::FollowConsole] {
            write_message(&mut wire, message).unwrap();
        }
        let mut reader = wire.as_slice();
        for message in [start, create, HostMessage::PowerOff, HostMessage::FollowConsole] {
            assert_eq!(read_message::<HostMessage>(&mut reader).unwrap(), Some(message));
        }
        let mut bare = Vec::new();
        write_message(
            &mut bare,
            &HostMessage::Start {
                pod: PodPlan::default(),
                network: None,
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&bare[5..]), r#"{"type":"start","pod":{}}"#);
    }

    #[test]
    fn an_exec_names_its_container_and_the_first_is_the_default() {
        let exec = |container| HostMessage::Exec {
            session: 4,
            container,
            container_name: None,
            process: Entrypoint::new(vec!["sh".into()], vec![]),
            terminal_size: None,
        };
        let first = serde_json::to_string(&exec(0)).unwrap();
        assert!(!first.contains("container"), "{first}");
        let named = serde_json::to_string(&exec(2)).unwrap();
        assert!(named.contains(r#""container":2"#), "{named}");
        assert_eq!(serde_json::from_str::<HostMessage>(&named).unwrap(), exec(2));
    }

    #[test]
    fn data_frames_carry_session_stream_and_bytes_between_messages() {
        let mut wire = Vec::new();
        write_data(&mut wire, WORKLOAD_SESSION, Stream::Stderr, b"oops\n").unwrap();
        write_message(&mut wire, &GuestMessage::Ready { version: 1 }).unwrap();
        write_data(&mut wire, 7, Stream::Stdout, &[0, 255]).unwrap();
        let mut reader = wire.as_slice();
        assert_eq!(
            read_frame::<GuestMessage>(&mut reader).unwrap(),
            Some(Frame::Data {
                session: 0,
                stream: Stream::Stderr,
                bytes: b"oops\n".to_vec()
            })
        );
        assert_eq!(
            read_frame(&mut reader).unwrap(),
            Some(Frame::Message(GuestMessage::Ready { version: 1 }))
        );
        assert_eq!(
            read_frame::<GuestMessage>(&mut reader).unwrap(),
            Some(Frame::Data {
                session: 7,
                stream: Stream::Stdout,
                bytes: vec![0, 255]
            })
        );
        let bad_stream = [0, 0, 0, 7, 2, 0, 0, 0, 0, 9, b'x'];
        assert!(read_frame::<GuestMessage>(&bad_stream[..]).is_err());
    }

    #[test]
    fn container_codes_follow_runc() {
        assert_eq!(ExitStatus::Code(0).container_code(), 0);
        assert_eq!(ExitStatus::Code(42).container_code(), 42);
        assert_eq!(ExitStatus::Code(256 + 3).container_code(), 3);
        assert_eq!(ExitStatus::Signal(9).container_code(), 137);
        assert_eq!(ExitStatus::Signal(15).container_code(), 143);
    }
}
