//! A netlink socket that sends one request (or one nf_tables batch) at a
//! time and collects its replies.

use crate::message::{self, Message, MessageBuilder, NLM_F_ACK, NLM_F_DUMP, NLMSG_DONE, NLMSG_ERROR};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub const NETLINK_ROUTE: i32 = 0;
pub const NETLINK_NETFILTER: i32 = 12;
/// `AF_NETLINK` as the `sa_family_t` a socket address holds.
const AF_NETLINK: libc::sa_family_t = 16;

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).expect("a socket option fits socklen_t")
}

/// How long a reply may take before the request fails (the kernel answers
/// at once; this only guards against a lost reply hanging the launcher).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a netlink request failed; the message says which operation.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// cannot open a netlink socket
    #[error("cannot open a netlink socket")]
    Open(#[source] io::Error),
    /// the operation failed
    #[error("cannot {op}")]
    Request {
        op: String,
        #[source]
        source: io::Error,
    },
    /// the kernel's reply did not parse
    #[error("cannot {op}: the kernel's reply is malformed")]
    Malformed { op: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if that is what failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NetlinkSocket {
    /// Opens a socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_NETFILTER`)
    /// in the calling thread's network namespace.
    pub fn open(protocol: i32) -> Result<Self, NetlinkError> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            return Err(NetlinkError::Open(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is the kernel-assigned
        // port with no multicast groups.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = AF_NETLINK;
        let size = socklen::<libc::sockaddr_nl>();
        // SAFETY: bind reads `size` bytes of the valid sockaddr_nl above.
        if unsafe { libc::bind(fd.as_raw_fd(), (&raw const address).cast(), size) } < 0 {
            return Err(NetlinkError::Open(io::Error::last_os_error()));
        }
        let timeout = libc::timeval {
            tv_sec: libc::time_t::try_from(REPLY_TIMEOUT.as_secs()).unwrap_or(5),
            tv_usec: 0,
        };
        // SAFETY: setsockopt reads the valid timeval above.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                socklen::<libc::timeval>(),
            );
        }
        Ok(Self { fd, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request that the kernel acknowledges (a change).
    pub fn change(&mut self, op: &str, request: MessageBuilder) -> Result<(), NetlinkError> {
        let seq = self.next_seq();
        self.send(op, &request.build(seq))?;
        self.collect(op, &[seq], false).map(|_| ())
    }

    /// Sends a dump request and returns every message of the dump.
    pub fn dump(&mut self, op: &str, request: MessageBuilder) -> Result<Vec<Message>, NetlinkError> {
        let seq = self.next_seq();
        self.send(op, &request.build(seq))?;
        self.collect(op, &[seq], true)
    }

    /// Sends a request expecting one reply message (a `get`).
    pub fn get(&mut self, op: &str, request: MessageBuilder) -> Result<Vec<Message>, NetlinkError> {
        let seq = self.next_seq();
        self.send(op, &request.build(seq))?;
        self.collect(op, &[seq], false)
    }

    /// Sends several messages as one datagram (an nf_tables batch). `build`
    /// gets a sequence number per message and says whether that message
    /// asks for an acknowledgement; every one asked for is awaited.
    pub fn batch(&mut self, op: &str, messages: Vec<(MessageBuilder, bool)>) -> Result<(), NetlinkError> {
        let mut datagram = Vec::new();
        let mut acked = Vec::new();
        for (message, wants_ack) in messages {
            let seq = self.next_seq();
            if wants_ack {
                acked.push(seq);
            }
            datagram.extend(message.build(seq));
        }
        self.send(op, &datagram)?;
        self.collect(op, &acked, false).map(|_| ())
    }

    fn send(&self, op: &str, bytes: &[u8]) -> Result<(), NetlinkError> {
        // SAFETY: send reads `bytes.len()` bytes of a live slice.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(NetlinkError::Request {
                op: op.to_owned(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Reads replies until each of `seqs` is answered: by an ack (error 0)
    /// or an error, or, for a dump, by `NLMSG_DONE`.
    fn collect(&self, op: &str, seqs: &[u32], dump: bool) -> Result<Vec<Message>, NetlinkError> {
        let mut pending: Vec<u32> = seqs.to_vec();
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            // SAFETY: recv writes at most `buf.len()` bytes into the buffer.
            let got = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if got < 0 {
                let source = io::Error::last_os_error();
                if source.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Request {
                    op: op.to_owned(),
                    source,
                });
            }
            let len = usize::try_from(got).unwrap_or(0);
            let messages =
                message::parse_messages(&buf[..len]).ok_or_else(|| NetlinkError::Malformed { op: op.to_owned() })?;
            for reply in messages {
                if !pending.contains(&reply.seq) {
                    continue;
                }
                match reply.kind {
                    NLMSG_ERROR => {
                        let code = reply
                            .payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
                            .ok_or_else(|| NetlinkError::Malformed { op: op.to_owned() })?;
                        if code != 0 {
                            return Err(NetlinkError::Request {
                                op: op.to_owned(),
                                source: io::Error::from_raw_os_error(-code),
                            });
                        }
                        pending.retain(|s| *s != reply.seq);
                    }
                    NLMSG_DONE => pending.retain(|s| *s != reply.seq),
                    _ => {
                        if !dump {
                            pending.retain(|s| *s != reply.seq);
                        }
                        replies.push(reply);
                    }
                }
            }
        }
        Ok(replies)
    }
}

/// Flags for a request that changes something and wants an ack.
pub const CHANGE: u16 = message::NLM_F_REQUEST | NLM_F_ACK;
/// Flags for a dump request.
pub const DUMP: u16 = message::NLM_F_REQUEST | NLM_F_DUMP;
