//! The container's root, served over NFS by its launcher: mounted in a
//! mount namespace of the container's own, with the guest's `/dev`,
//! `/proc`, `/sys` and its own `/.runcvm` bound in, and pivoted to, as runc
//! pivots into a container's rootfs. Guest init stays on the boot
//! disk, outside it (one root per container is what a pod VM needs); the
//! workload's child enters the namespace (`container.rs`). The volumes and
//! the pod's files are mounted there too, on the container's paths, so an
//! image's symlink resolves in the container's root. The pod's files
//! (`/etc/hosts`, single-file volumes, the termination message file) are
//! bound from the container's folder on init's tmpfs (`/.runcvm/files`, in
//! its view) rather than written into the root, as runc
//! binds them: a secret never reaches the container's writable layer on the
//! node's disk.

use crate::outbound::ContainerNotes;
use anyhow::Context;
use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;
use runcvm_proto::GuestFile;
use runcvm_spec::GuestRoot;
use runcvm_spec::net::HOST_IDENTITY_IP;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Where the served root is mounted, in the container's mount namespace,
/// before the pivot.
const MOUNT_POINT: &str = runcvm_spec::SERVED_ROOT_MOUNT_POINT;
/// Where the container's files are bound from, in its view.
const FILES: &str = crate::entry::FILES_DIR;
/// The file systems init mounted on the boot disk, bound into the
/// container's root with what is mounted under them (`/dev/pts`,
/// `/dev/shm`, `/sys/fs/cgroup`, ...), and the mode of a mount point init
/// makes. Not `/run` or `/tmp`: those are the image's folders, in the
/// container's writable layer, as under runc (the guest's tmpfs mounts
/// would be shared by every container of the pod).
const BOUND: [(&str, u32); 3] = [("/dev", 0o755), ("/proc", 0o555), ("/sys", 0o555)];
/// Seconds the guest trusts cached attributes of its root. Nothing but the
/// guest writes a container's root (its image layers never change, its
/// writable layer is its own), so the cache may be long and open() need
/// not ask the server (`nocto`): a start that opens thousands of files
/// (an interpreter's modules) does one round trip less per file.
const ATTRIBUTE_CACHE_SECS: u32 = 600;

/// The mount(2) data for the root.
pub fn options(root: &GuestRoot) -> String {
    let port = root.port;
    format!(
        "vers=3,proto=tcp,nolock,nocto,port={port},mountport={port},mountproto=tcp,addr={HOST_IDENTITY_IP},\
         mountaddr={HOST_IDENTITY_IP},actimeo={ATTRIBUTE_CACHE_SECS}"
    )
}

/// Makes the mount namespace over the served root, with `guest_dir` (the
/// container's folder on init's tmpfs) as its `/.runcvm`, runs `setup` in it
/// (on the container's root: the volumes, the pod's files, the working
/// folder) and returns the namespace, held open. A root that cannot be
/// mounted ends the start with the guide's volume line.
pub fn make(
    root: &GuestRoot,
    guest_dir: &Path,
    notes: &ContainerNotes,
    setup: impl FnOnce() -> anyhow::Result<()> + Send,
) -> anyhow::Result<OwnedFd> {
    // Init's other threads stay on the boot disk.
    crate::container::on_thread_of_its_own(|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).context("cannot make the container's mount namespace")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("cannot make the container's mounts private")?;
        pivot_into_served_root(root, guest_dir, notes)?;
        setup()?;
        // Once the files are bound from it (a bind of a read-only mount
        // would be read-only too): the entrypoint and plan are init's.
        crate::container::remount_read_only(&std::ffi::CString::new(runcvm_spec::GUEST_DIR)?)
            .with_context(|| format!("cannot make the container's {} read-only", runcvm_spec::GUEST_DIR))?;
        crate::container::open_namespace(Path::new("/proc/thread-self/ns/mnt"))
    })
}

/// Mounts the served root, binds the guest's own file systems and the
/// container's `/.runcvm` into it and makes it the calling thread's root (in
/// its own mount namespace).
fn pivot_into_served_root(root: &GuestRoot, guest_dir: &Path, notes: &ContainerNotes) -> anyhow::Result<()> {
    // The node's boot disk has it (read-only); `runcvm run`'s root disk,
    // the first container's root, gets it when a second container comes.
    make_dir(MOUNT_POINT, 0o755)?;
    // Set-user-ID programs of the image work as under runc; device nodes of
    // the image do not (the container's /dev is the guest's).
    let mounted = crate::volumes::mount_export("/", MOUNT_POINT, MsFlags::MS_NODEV, &options(root), root.port);
    if let Err(cause) = mounted {
        notes.note(
            runcvm_log::LogLevel::Error,
            format_args!("✗ Failed to mount / via NFS: {cause}"),
        );
        anyhow::bail!("the container's root is not available, so the workload is not started");
    }
    runcvm_log::debug!("mounted the container's root over NFS");
    let new_root = Path::new(MOUNT_POINT);
    for (guest_fs, mode) in BOUND {
        let target = new_root.join(guest_fs.trim_start_matches('/'));
        refuse_link(&target, guest_fs)?;
        make_dir(&target, mode)?;
        mount(
            Some(guest_fs),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("cannot bind {guest_fs} into the container's root"))?;
    }
    // Where the guide says the entrypoint is.
    let own_dir = new_root.join(runcvm_spec::GUEST_DIR.trim_start_matches('/'));
    refuse_link(&own_dir, runcvm_spec::GUEST_DIR)?;
    make_dir(&own_dir, 0o711)?;
    mount(Some(guest_dir), &own_dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("cannot bind {} into the container's root", runcvm_spec::GUEST_DIR))?;
    std::env::set_current_dir(new_root).context("cannot enter the container's root")?;
    // The old root is stacked under the new one and detached: nothing of
    // the boot disk stays in the container's view.
    nix::unistd::pivot_root(".", ".").context("cannot pivot into the container's root")?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).context("cannot detach the boot disk")?;
    std::env::set_current_dir("/").context("cannot enter the container's root")?;
    runcvm_log::debug!("the container's root is its mount namespace's");
    Ok(())
}

/// Where the copy of the container's file `index` is, in init's view
/// (`guest_dir` is the container's folder): what the container wrote to it,
/// read back when it ends.
pub fn file_copy(guest_dir: &Path, index: usize) -> String {
    let copy = guest_dir.join(crate::entry::FILES_NAME).join(index.to_string());
    copy.display().to_string()
}

/// Puts `file` at its path as a bind mount of a copy on init's tmpfs; `index`
/// names the copy.
pub fn bind_file(file: &GuestFile, index: usize, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    // Through the container's own `/.runcvm`, still writable here.
    let copy = format!("{FILES}/{index}");
    crate::system::write_file(&copy, file.content.as_bytes(), file.mode, owner)?;
    let target = Path::new(&file.path);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    match target.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            // As runc's mount point for it: the file, not where a link of
            // the image points.
            std::fs::remove_file(target).with_context(|| format!("cannot replace the symlink {}", file.path))?;
            make_mount_point(target)?;
        }
        Ok(meta) if meta.is_dir() => anyhow::bail!("cannot put the file {} where the image has a folder", file.path),
        Ok(_) => {}
        Err(_) => make_mount_point(target)?,
    }
    mount(
        Some(copy.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("cannot bind {}", file.path))?;
    runcvm_log::debug!("bound {} ({} bytes)", file.path, file.content.as_bytes().len());
    Ok(())
}

/// Refuses an image's symlink where init mounts one of the guest's own file
/// systems: before the switch it would resolve on the boot disk, not in the
/// container's root.
fn refuse_link(path: &Path, name: &str) -> anyhow::Result<()> {
    if is_link(path) {
        anyhow::bail!(
            "the image has a symlink at {name}, where the guest mounts its own {name}: replace it with a folder in the image"
        );
    }
    Ok(())
}

fn is_link(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
}

fn make_mount_point(path: &Path) -> anyhow::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
        .with_context(|| format!("cannot create the mount point {}", path.display()))
}

fn make_dir(path: impl AsRef<Path>, mode: u32) -> anyhow::Result<()> {
    let path = path.as_ref();
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_mounted_from_the_host_identity_with_a_long_attribute_cache() {
        assert_eq!(
            options(&GuestRoot { port: 20050 }),
            "vers=3,proto=tcp,nolock,nocto,port=20050,mountport=20050,mountproto=tcp,addr=169.254.1.254,\
             mountaddr=169.254.1.254,actimeo=600"
        );
    }
}
