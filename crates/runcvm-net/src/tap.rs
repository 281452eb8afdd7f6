//! The VM's tap, created through `/dev/net/tun` (netlink cannot make taps)
//! and made persistent so the VMM can open it by name.

use std::os::fd::AsRawFd;

const TUN_DEVICE: &str = "/dev/net/tun";
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 202, int)`, `_IOW('T', 203, int)`, `_IOW('T', 204, int)`
/// and `_IOW('T', 206, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;

/// Attaches to the persistent tap `name` and returns the descriptor, for a
/// VMM to inherit.
pub fn attach(name: &str) -> Result<std::os::fd::OwnedFd, String> {
    let tun = open_tun()?;
    set_iff(&tun, name)?;
    Ok(tun.into())
}

fn open_tun() -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{TUN_DEVICE} is missing")
            } else {
                format!("cannot open {TUN_DEVICE}: {e}")
            }
        })
}

/// `TUNSETIFF` as a tap with virtio-net headers, as QEMU and Firecracker
/// attach.
fn set_iff(tun: &std::fs::File, name: &str) -> Result<(), String> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(format!("{name:?} is longer than an interface name may be"));
    }
    for (dst, src) in request.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    request.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    // SAFETY: TUNSETIFF reads the valid ifreq above.
    if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, &raw mut request) } < 0 {
        return Err(format!("TUNSETIFF: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes taps; faked in unit tests.
pub trait TapCreator {
    /// Creates (or re-attaches to) a persistent tap; an error is the reason.
    fn create_persistent(&self, name: &str) -> Result<(), String>;
}

/// The real one. With an owner, the tap belongs to that user and group,
/// whose processes attach to it without `CAP_NET_ADMIN` (the VMM's user).
#[derive(Debug, Default, Clone, Copy)]
pub struct DevNetTun {
    pub owner: Option<(u32, u32)>,
}

impl TapCreator for DevNetTun {
    fn create_persistent(&self, name: &str) -> Result<(), String> {
        let tun = open_tun()?;
        set_iff(&tun, name)?;
        if let Some((uid, gid)) = self.owner {
            // SAFETY: TUNSETOWNER and TUNSETGROUP take the id by value.
            if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETOWNER, libc::c_ulong::from(uid)) } < 0 {
                return Err(format!("TUNSETOWNER: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: as above.
            if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETGROUP, libc::c_ulong::from(gid)) } < 0 {
                return Err(format!("TUNSETGROUP: {}", std::io::Error::last_os_error()));
            }
        }
        // SAFETY: TUNSETPERSIST takes an int by value.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_int) } < 0 {
            return Err(format!("TUNSETPERSIST: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}
