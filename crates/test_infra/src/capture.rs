//! What a namespace's interfaces receive, frame by frame, and what each
//! frame is: for tests that check what reached a pod's neighbour.

use std::io::{Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A packet socket reading every frame of a namespace on a thread, until
/// [`Capture::stop`].
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    reader: JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    /// Starts capturing in `ns` (the socket belongs to the namespace it
    /// was made in, wherever it is read).
    pub fn start(ns: &crate::Netns) -> Self {
        let socket = ns
            .enter(packet_socket)
            .unwrap_or_else(|e| panic!("a packet socket in {}: {e}", ns.name()));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let reader = std::thread::spawn(move || {
            let mut frames = Vec::new();
            let mut buffer = vec![0u8; 65536];
            while !stopped.load(Ordering::Relaxed) {
                // SAFETY: an all-zero sockaddr_ll is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut from_len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(0);
                // SAFETY: `buffer` and `from` are live and as long as given.
                let got = unsafe {
                    libc::recvfrom(
                        socket.as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                        0,
                        (&raw mut from).cast(),
                        &raw mut from_len,
                    )
                };
                // What the namespace itself sends shows too: not received.
                if let Ok(len) = usize::try_from(got)
                    && from.sll_pkttype != libc::PACKET_OUTGOING
                {
                    frames.push(buffer[..len].to_vec());
                }
            }
            frames
        });
        Self { stop, reader }
    }

    /// Stops and returns every frame received (not those the namespace
    /// sent).
    pub fn stop(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.reader.join().expect("the capture thread")
    }
}

/// `AF_PACKET` for every protocol, with a 100 ms receive timeout so the
/// reader sees its stop flag.
fn packet_socket() -> Result<OwnedFd> {
    let all = i32::from(u16::try_from(libc::ETH_P_ALL).map_err(Error::other)?.to_be());
    // SAFETY: socket() has no memory preconditions; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, all) };
    if fd < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>()).map_err(Error::other)?;
    // SAFETY: `timeout` is a live timeval of the length given.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            len,
        )
    };
    if set < 0 {
        return Err(Error::last_os_error());
    }
    Ok(fd)
}

/// What a frame carries, as far as the tests look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Icmpv6 {
        source: Ipv6Addr,
        kind: u8,
        /// The target of neighbour discovery (types 135 and 136).
        target: Option<Ipv6Addr>,
        /// The message past its first four bytes.
        body: Vec<u8>,
    },
    Udp6 {
        source_port: u16,
    },
    Icmpv4 {
        source: Ipv4Addr,
        kind: u8,
    },
    Udp4 {
        source_port: u16,
    },
    Other,
}

/// Reads a frame (without IPv6 extension headers, as the tests send none).
pub fn seen(frame: &[u8]) -> Seen {
    let Some(ether_type) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Seen::Other;
    };
    let ip = &frame[14..];
    match ether_type {
        0x86dd if ip.len() >= 48 => {
            let source = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap_or_default());
            let l4 = &ip[40..];
            match ip[6] {
                58 => {
                    let target = (matches!(l4[0], 135 | 136) && l4.len() >= 24)
                        .then(|| Ipv6Addr::from(<[u8; 16]>::try_from(&l4[8..24]).unwrap_or_default()));
                    Seen::Icmpv6 {
                        source,
                        kind: l4[0],
                        target,
                        body: l4[4..].to_vec(),
                    }
                }
                17 => Seen::Udp6 {
                    source_port: u16::from_be_bytes([l4[0], l4[1]]),
                },
                _ => Seen::Other,
            }
        }
        0x0800 if ip.len() >= 24 => {
            let l4 = &ip[usize::from(ip[0] & 0x0f) * 4..];
            let source = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            match (ip[9], l4) {
                (1, [kind, ..]) => Seen::Icmpv4 { source, kind: *kind },
                (17, [a, b, ..]) => Seen::Udp4 {
                    source_port: u16::from_be_bytes([*a, *b]),
                },
                _ => Seen::Other,
            }
        }
        _ => Seen::Other,
    }
}
