//! What of a container's state folder the VMM user may reach, set up on
//! the node before the VMM starts (by `runcvm-runtime` at create, by
//! `runcvm run` for its own): the VMM runs as the unprivileged VMM user
//! (`VmmUser`, the node's setting) and reaches only what is shared with
//! that user's group:
//!
//! - the run folder (a container's state folder) is `root:VMM_GID 0710`:
//!   the VMM may pass through it, not list it, and what is made in it
//!   stays root's;
//! - `RUN/vmm/` (`root:VMM_GID 02770`, so what is made there takes the
//!   group) holds what the VMM opens or makes: QEMU's control socket;
//!   Firecracker's configuration, API socket, log, metrics and vsock
//!   sockets;
//! - `runcvm run`'s root disk is `root:VMM_GID 0660`; a container's boot
//!   disk is the node's one, `root:VMM_GID 0440` from when it was built
//!   (`guest_disk::node_boot_disk`), which no VM may write.
//!
//! Volumes and the rest of the state folder are not shared: a file on a
//! volume that only root may write stays so for the VMM. How the VMM takes
//! that user's ids is the launcher's (`vmm_privileges.rs` in `runcvm`).

use runcvm_spec::VmmUser;
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

/// Shares the run folder `run` and, when given, its writable root disk with
/// the VMM user's group (see the module docs); returns `RUN/vmm`.
pub fn share_run_folder(run: &Path, disk: Option<&Path>, user: VmmUser) -> io::Result<PathBuf> {
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
    if let Some(disk) = disk.filter(|disk| disk.exists()) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
        let vmm = share_run_folder(&run, Some(&disk), VmmUser { uid: 70000, gid }).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&run), 0o710);
        assert_eq!(mode(&vmm), 0o2770);
        assert_eq!(mode(&disk), 0o660);
        assert_eq!(mode(&run.join("launch.json")), 0o600, "the rest stays private");
        // Again (a restart of the same container's folder): no error.
        share_run_folder(&run, Some(&disk), VmmUser { uid: 70000, gid }).unwrap();
    }
}
