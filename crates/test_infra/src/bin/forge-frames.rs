//! `forge-frames KIND [ARGS]`: runs in a T2 guest, as its root, and sends
//! on `eth0` what a hostile pod would to its neighbours, one message per
//! call, then prints `sent KIND`. The test captures at a neighbour and
//! checks that only what a host may send got there.
//!
//! Kinds (IPv6 to `ff02::1` on `eth0`, hop limit 255, as neighbour
//! discovery requires):
//!
//! - `echo6 PAYLOAD [SOURCE]`: an Echo Request carrying `PAYLOAD`, from
//!   `SOURCE` if given (an address the guest holds);
//! - `ra`: a Router Advertisement (a default router for 1800 s);
//! - `redirect TARGET DESTINATION`: a Redirect;
//! - `na TARGET`: an unsolicited Neighbor Advertisement (override) for
//!   `TARGET`;
//! - `dhcp6-server`: a UDP datagram from port 547 to port 546;
//! - `dhcp4-server`: a UDP broadcast from port 67 to port 68;
//! - `redirect4 DESTINATION GATEWAY`: an ICMP Redirect to `DESTINATION`.

use std::io::{Error, Result};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const DEVICE: &str = "eth0";
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["echo6", payload] => icmpv6(128, &echo_body(payload.as_bytes()), None),
        ["echo6", payload, source] => icmpv6(128, &echo_body(payload.as_bytes()), Some(address(source))),
        ["ra"] => icmpv6(134, &[64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0], None),
        ["redirect", target, destination] => {
            let mut body = vec![0; 4];
            body.extend(address(target).octets());
            body.extend(address(destination).octets());
            icmpv6(137, &body, None)
        }
        ["na", target] => {
            let mut body = vec![0x20, 0, 0, 0];
            body.extend(address(target).octets());
            icmpv6(136, &body, None)
        }
        ["dhcp6-server"] => dhcp6_server(),
        ["dhcp4-server"] => dhcp4_server(),
        ["redirect4", destination, gateway] => redirect4(destination, gateway),
        _ => {
            eprintln!("usage: forge-frames echo6|ra|redirect|na|dhcp6-server|dhcp4-server|redirect4 ...");
            std::process::exit(2);
        }
    };
    match result {
        Ok(()) => println!("sent {}", words[0]),
        Err(e) => {
            eprintln!("forge-frames {}: {e}", words[0]);
            std::process::exit(1);
        }
    }
}

fn address(text: &str) -> Ipv6Addr {
    text.parse().unwrap_or_else(|_| {
        eprintln!("forge-frames: {text:?} is not an IPv6 address");
        std::process::exit(2)
    })
}

fn echo_body(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0x12, 0x34, 0, 1];
    body.extend(payload);
    body
}

fn check(result: libc::c_int) -> Result<libc::c_int> {
    if result < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn eth0_index() -> Result<u32> {
    let name = std::ffi::CString::new(DEVICE).map_err(Error::other)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// Sends `message` on the raw socket `fd` to the address `to` (a
/// `sockaddr_in` or `sockaddr_in6`).
fn send_to<T>(fd: &OwnedFd, message: &[u8], to: &T) -> Result<()> {
    // SAFETY: `message` and `to` are live for the call, of the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            std::ptr::from_ref(to).cast(),
            sockaddr_len::<T>(),
        )
    };
    if sent < 0 { Err(Error::last_os_error()) } else { Ok(()) }
}

fn set_int(fd: &impl AsRawFd, level: libc::c_int, option: libc::c_int, value: libc::c_int) -> Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(Error::other)?;
    // SAFETY: the option value is a live c_int of the length given.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, option, (&raw const value).cast(), len) })?;
    Ok(())
}

fn sockaddr6(ip: Ipv6Addr, port: u16, scope: u32) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::sa_family_t::try_from(libc::AF_INET6).unwrap_or_default(),
        sin6_port: port.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: ip.octets() },
        sin6_scope_id: scope,
    }
}

fn sockaddr_len<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or_default()
}

/// An ICMPv6 message of `kind` to all nodes on eth0; the kernel fills in the
/// checksum (RFC 3542, 3.1).
fn icmpv6(kind: u8, body: &[u8], source: Option<Ipv6Addr>) -> Result<()> {
    // SAFETY: socket() has no memory preconditions; the result is checked.
    let fd = check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6) })?;
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = eth0_index()?;
    set_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255)?;
    set_int(
        &fd,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        i32::try_from(index).map_err(Error::other)?,
    )?;
    if let Some(source) = source {
        let local = sockaddr6(source, 0, index);
        // SAFETY: `local` is a sockaddr_in6 of the length given.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const local).cast(),
                sockaddr_len::<libc::sockaddr_in6>(),
            )
        })?;
    }
    let mut message = vec![kind, 0, 0, 0];
    message.extend(body);
    let to = sockaddr6(ALL_NODES, 0, index);
    send_to(&fd, &message, &to)
}

fn dhcp6_server() -> Result<()> {
    let index = eth0_index()?;
    let socket = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 547, 0, 0))?;
    set_int(
        &socket,
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        i32::try_from(index).map_err(Error::other)?,
    )?;
    // An ADVERTISE (type 2), transaction 0.
    socket.send_to(&[2, 0, 0, 0], SocketAddrV6::new(ALL_NODES, 546, 0, index))?;
    Ok(())
}

fn dhcp4_server() -> Result<()> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67))?;
    socket.set_broadcast(true)?;
    // A BOOTREPLY (op 2), the rest of the header empty.
    let mut reply = vec![2, 1, 6, 0];
    reply.resize(240, 0);
    socket.send_to(&reply, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68))?;
    Ok(())
}

/// An ICMP Redirect (host, code 1) telling `destination` to use `gateway`;
/// the kernel does not checksum ICMP over raw sockets, so it is done here.
fn redirect4(destination: &str, gateway: &str) -> Result<()> {
    let parse = |text: &str| -> Result<Ipv4Addr> { text.parse().map_err(Error::other) };
    let (destination, gateway) = (parse(destination)?, parse(gateway)?);
    let mut message = vec![5, 1, 0, 0];
    message.extend(gateway.octets());
    // The "original datagram": an IPv4 header to 1.1.1.1 and 8 bytes.
    message.extend([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 88, 0, 6, 1, 1, 1, 1]);
    message.extend([0; 8]);
    let sum = checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: socket() has no memory preconditions; the result is checked.
    let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) })?;
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(destination.octets()),
        },
        sin_zero: [0; 8],
    };
    send_to(&fd, &message, &to)
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}
