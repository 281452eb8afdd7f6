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
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The VMM's folder in the run folder.
pub const VMM_DIR: &str = "vmm";

/// The VMM user for a launcher (or runtime) of effective uid `euid`: none
/// unless root, which alone can become another user or share with one.
pub fn for_euid(euid: u32, user: VmmUser) -> Option<VmmUser> {
    (euid == 0).then_some(user)
}

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

/// Shares the run folder `run` and its root disk with the VMM user's group
/// (see the module docs); returns `RUN/vmm`.
pub fn share_run_folder(run: &Path, disk: &Path, user: VmmUser) -> io::Result<PathBuf> {
    let gid = Some(user.gid);
    std::os::unix::fs::chown(run, None, gid)?;
    std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o710))?;
    let vmm = run.join(VMM_DIR);
    match std::fs::DirBuilder::new().mode(0o770).create(&vmm) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::os::unix::fs::chown(&vmm, None, gid)?;
    std::fs::set_permissions(&vmm, std::fs::Permissions::from_mode(0o2770))?;
    if disk.exists() {
        std::os::unix::fs::chown(disk, None, gid)?;
        std::fs::set_permissions(disk, std::fs::Permissions::from_mode(0o660))?;
    }
    Ok(vmm)
}

/// Lets anyone pass through `dirs` (never list them): the folders above a
/// `runcvm run` folder, so the VMM's user reaches what is shared with it
/// there.
pub fn open_for_passage(dirs: &[&Path]) -> io::Result<()> {
    for dir in dirs {
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
    }
    Ok(())
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
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_kvm_group_is_given_only_where_the_group_alone_may_use_the_device() {
        assert_eq!(kvm_group(0o20666, 104), None);
        assert_eq!(kvm_group(0o20660, 104), Some(104));
        assert_eq!(kvm_group(0o20600, 0), None);
    }

    #[test]
    fn only_root_has_a_vmm_user_to_give() {
        let user = VmmUser { uid: 70000, gid: 70001 };
        assert_eq!(for_euid(0, user), Some(user));
        assert_eq!(for_euid(1000, user), None);
    }

    #[test]
    fn the_run_folder_is_shared_by_group_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let disk = run.join("disk.ext4");
        std::fs::write(&disk, b"").unwrap();
        std::fs::write(run.join("launch.json"), b"{}").unwrap();
        std::fs::set_permissions(run.join("launch.json"), std::fs::Permissions::from_mode(0o600)).unwrap();
        // The caller's own group: chown to it needs no privilege.
        let gid = std::fs::metadata(&run).unwrap().gid();
        let vmm = share_run_folder(&run, &disk, VmmUser { uid: 70000, gid }).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&run), 0o710);
        assert_eq!(mode(&vmm), 0o2770);
        assert_eq!(mode(&disk), 0o660);
        assert_eq!(mode(&run.join("launch.json")), 0o600, "the rest stays private");
        // Again (a restart of the same container's folder): no error.
        share_run_folder(&run, &disk, VmmUser { uid: 70000, gid }).unwrap();
    }
}
