//! What the VMM keeps of the launcher's privileges: nothing. QEMU and
//! Firecracker need no capability: the tap exists already (opening a
//! persistent tap needs none), `/dev/kvm` and `/dev/net/tun` are open to
//! all, and their files and sockets are root's, as they are. The VMM is the
//! part a guest attacks, so between fork and exec it gives up every
//! capability, for good: out of the bounding set (or root's exec would
//! regain them), ambient cleared, the other sets emptied, `no_new_privs` set.
//! Emptying the bounding set needs `CAP_SETPCAP`, which `runcvm-runtime`
//! adds to the launcher for this alone.

use std::io;

/// `CAP_SETPCAP` in `<linux/capability.h>`.
const CAP_SETPCAP: u32 = 8;
/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `PR_CAP_AMBIENT_CLEAR_ALL`.
const AMBIENT_CLEAR_ALL: libc::c_ulong = 4;

/// Whether this process may empty a child's bounding set (it has
/// `CAP_SETPCAP` in its effective set); when it may not, the VMM keeps the
/// launcher's capabilities and a WARN says so.
pub fn can_drop_all() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_SETPCAP) != 0)
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<()> {
    // Every argument a full unsigned long: the kernel refuses non-zero
    // unused ones, and a variadic literal would be an int.
    const UNUSED: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    if unsafe { libc::prctl(option, arg2, UNUSED, UNUSED, UNUSED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// In the child, between fork and exec (system calls only): gives up every
/// capability. The bounding set goes first, while `CAP_SETPCAP` is still
/// effective; without it the drop stops there and the rest still happens.
pub fn drop_all_in_child() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    for number in 0..64u8 {
        match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(number)) {
            Ok(()) => {}
            // EINVAL: past the kernel's last capability. EPERM: no
            // CAP_SETPCAP (the parent warned).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) => break,
            Err(e) => return Err(e),
        }
    }
    // EINVAL: a kernel without ambient capabilities has none to clear.
    if let Err(e) = prctl(libc::PR_CAP_AMBIENT, AMBIENT_CLEAR_ALL)
        && e.raw_os_error() != Some(libc::EINVAL)
    {
        return Err(e);
    }
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = [CapData::default(), CapData::default()];
    // SAFETY: capset reads one header and, for version 3, two data words
    // per set; both live on this stack frame for the whole call.
    if unsafe { libc::syscall(libc::SYS_capset, &raw const header, empty.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
