//! What the VMM keeps of the launcher's privileges: nothing. QEMU and
//! Firecracker need no capability: the tap exists already (attaching to a
//! persistent tap without an owner needs none), `/dev/kvm` and
//! `/dev/net/tun` are open to all, and their files and sockets are root's,
//! as they are, in folders root owns. The VMM is the part a guest attacks,
//! so between fork and exec it gives up every capability for good:
//! `no_new_privs` first, which caps whatever it ever execs at the permitted
//! set it has then; ambient cleared; effective, permitted and inheritable
//! emptied. The bounding set is emptied too where the launcher may
//! (`CAP_SETPCAP`, as `runcvm run` as root has it); without it the bounding
//! set stays, unreachable behind an empty permitted set and `no_new_privs`.

use runcvm_spec::CapabilityMasks;
use runcvm_spec::caps::sys;
use std::io;

/// In the child, between fork and exec (system calls only): gives up every
/// capability.
pub fn drop_all_in_child() -> io::Result<()> {
    let failed = io::Error::from_raw_os_error;
    sys::set_no_new_privileges().map_err(failed)?;
    match sys::drop_from_bounding(0) {
        Ok(()) | Err(libc::EPERM) => {}
        Err(e) => return Err(failed(e)),
    }
    sys::clear_ambient().map_err(failed)?;
    sys::set(&CapabilityMasks::default()).map_err(failed)
}
