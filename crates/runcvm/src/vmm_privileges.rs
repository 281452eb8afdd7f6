//! Who the VMM is and what it keeps: the part a guest attacks runs as the
//! unprivileged VMM user (`VmmUser`, the node's setting), in no
//! supplementary group, with no capability, and reaches only what is shared
//! with that user's group:
//!
//! - the run folder (a container's state folder) is `root:VMM_GID 0710`:
//!   the VMM may pass through it, not list it, and what is made in it
//!   stays root's;
//! - `RUN/vmm/` (`root:VMM_GID 02770`, so what is made there takes the
//!   group) holds what the VMM opens or makes: QEMU's control socket;
//!   Firecracker's configuration, API socket, log, metrics and vsock
//!   sockets;
//! - the root disk is `root:VMM_GID 0660`;
//! - the tap's owner is the VMM user (`TUNSETOWNER`), so it attaches
//!   without `CAP_NET_ADMIN`;
//! - the kernel and the QEMU bundle are readable by all, as installed.
//!
//! The launcher joins the group too, so it reaches what the VMM makes
//! there (Firecracker's sockets) without `CAP_DAC_OVERRIDE`, which a
//! restricted pod's launcher lacks, and works under a umask of 007, so the
//! sockets it binds in `RUN/vmm/` are the group's to connect to without a
//! `chmod` (which a pod's seccomp profile may deny the launcher: it runs
//! under the pod's). Volumes and the rest of the state folder are not
//! shared: a file on a volume that only root may write stays so for the
//! VMM. A Kubernetes container's folder is shared by `runcvm-runtime` at
//! create, on the node; `runcvm run` shares its own.
//!
//! Between fork and exec the VMM's process empties its bounding set where
//! the launcher may (`CAP_SETPCAP`, as `runcvm run` as root has it; the
//! change of ids would clear that capability), takes the VMM user's ids
//! (`setresgid`, `setresuid`, no supplementary groups), a umask that keeps
//! its files from others, the parent-death signal (after the ids: a change
//! of credentials clears it), then gives up every capability for good:
//! `no_new_privs`, which caps whatever it ever execs at the permitted set it
//! has then; ambient cleared; effective, permitted and inheritable emptied.
//! Without `CAP_SETPCAP` the bounding set stays, unreachable behind an
//! empty permitted set and `no_new_privs`.
//!
//! `runcvm run` by a user other than root has no ids to give: its VMM runs
//! as that user, who owns the run folder.

use runcvm_caps::sys;
use runcvm_spec::{CapabilityMasks, VmmUser};
use std::io;

pub use runcvm_host::vmm_share::{VMM_DIR, for_euid, open_for_passage, share_run_folder};

/// Makes the launcher a member of the VMM's group and sets its umask to
/// 007 (see the module docs).
pub fn prepare_launcher(user: VmmUser) -> io::Result<()> {
    join_group(user.gid)?;
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o007) };
    Ok(())
}

/// Adds `gid` to this process's supplementary groups (every thread's:
/// glibc passes it on), keeping the others.
fn join_group(gid: u32) -> io::Result<()> {
    let groups = nix::unistd::getgroups().map_err(io::Error::from)?;
    let gid = nix::unistd::Gid::from_raw(gid);
    if groups.contains(&gid) {
        return Ok(());
    }
    let mut joined = groups;
    joined.push(gid);
    nix::unistd::setgroups(&joined).map_err(io::Error::from)
}

/// The supplementary group the VMM needs for `/dev/kvm` (`mode`, owned by
/// `gid`): none where others may read and write it (a container's is 0666),
/// its group where only the group may (a node's `root:kvm 0660`).
pub fn kvm_group(mode: u32, gid: u32) -> Option<u32> {
    (mode & 0o006 != 0o006 && mode & 0o060 == 0o060).then_some(gid)
}

/// In the child, between fork and exec (system calls only): becomes
/// `user` if given, in `groups` alone, then gives up every capability; a
/// launcher that is gone by then (`parent` is no longer the parent) ends
/// the child.
pub fn become_vmm_in_child(user: Option<VmmUser>, groups: &[libc::gid_t], parent: libc::pid_t) -> io::Result<()> {
    let failed = io::Error::from_raw_os_error;
    // While `CAP_SETPCAP` may still be there: changing ids clears it.
    match sys::drop_from_bounding(0) {
        Ok(()) | Err(libc::EPERM) => {}
        Err(e) => return Err(failed(e)),
    }
    if let Some(user) = user {
        // Raw system calls: they change this thread's ids, and the child of
        // a fork has no other thread.
        // SAFETY: `groups` is a live slice of the length given.
        if unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain integer arguments; the result is checked.
        if unsafe { libc::syscall(libc::SYS_setresgid, user.gid, user.gid, user.gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain integer arguments; the result is checked.
        if unsafe { libc::syscall(libc::SYS_setresuid, user.uid, user.uid, user.uid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o007) };
    // A launcher killed with SIGKILL must not leave a VMM behind; set after
    // the ids, whose change clears it.
    // SAFETY: prctl with integer arguments; the result is checked.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(failed(libc::ESRCH));
    }
    sys::set_no_new_privileges().map_err(failed)?;
    sys::clear_ambient().map_err(failed)?;
    sys::set(&CapabilityMasks::default()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kvm_group_is_given_only_where_the_group_alone_may_use_the_device() {
        assert_eq!(kvm_group(0o20666, 104), None);
        assert_eq!(kvm_group(0o20660, 104), Some(104));
        assert_eq!(kvm_group(0o20600, 0), None);
    }
}
