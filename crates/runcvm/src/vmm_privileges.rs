//! What the VMM keeps of the launcher's privileges: nothing. QEMU and
//! Firecracker need no capability: the tap exists already (opening a
//! persistent tap needs none), `/dev/kvm` and `/dev/net/tun` are open to
//! all, and their files and sockets are root's, as they are. The VMM is the
//! part a guest attacks, so between fork and exec it gives up every
//! capability, for good: out of the bounding set (or root's exec would
//! regain them), ambient cleared, the other sets emptied, `no_new_privs` set.
//! Emptying the bounding set needs `CAP_SETPCAP`, which `runcvm-runtime`
//! adds to the launcher for this alone.

use runcvm_spec::CapabilityMasks;
use runcvm_spec::caps::sys;
use std::io;

/// `CAP_SETPCAP` in `<linux/capability.h>`.
const CAP_SETPCAP: u32 = 8;

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

/// In the child, between fork and exec (system calls only): gives up every
/// capability. The bounding set goes first, while `CAP_SETPCAP` is still
/// effective; without it the drop is skipped (the parent warned) and the
/// rest still happens.
pub fn drop_all_in_child() -> io::Result<()> {
    let failed = io::Error::from_raw_os_error;
    sys::set_no_new_privileges().map_err(failed)?;
    sys::drop_from_bounding(0).map_err(failed)?;
    sys::clear_ambient().map_err(failed)?;
    sys::set(&CapabilityMasks::default()).map_err(failed)
}
