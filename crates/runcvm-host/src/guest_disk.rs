//! The guest's disk: `runcvm run`'s root disk (the rootfs plus `/.runcvm`:
//! guest init, entrypoint, launch plan), and the node's boot disk that
//! every Kubernetes container's VM boots read-only (guest init alone: the
//! container reaches the guest after boot).

use crate::run_dir::RunDir;
use runcvm_rootfs::{BuiltDisk, DiskSpec, GuestFile};
use runcvm_spec::{ENTRYPOINT_PATH, Entrypoint, GUEST_DIR, INIT_PATH, LaunchPlan, PLAN_PATH};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why the root disk could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuestDiskError {
    /// cannot create {path}
    #[error("cannot create {path}")]
    Staging {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot write {path}
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the disk image (its own message)
    #[error(transparent)]
    Image(#[from] runcvm_rootfs::DiskError),
}

/// Free space the workload gets on its root disk unless told otherwise.
pub const DEFAULT_HEADROOM_MIB: u64 = 512;
/// Free space on the node's boot disk: little, as no VM writes it (it is
/// attached read-only).
const BOOT_DISK_HEADROOM_MIB: u64 = 8;

/// What goes into `/.runcvm`.
#[derive(Debug, Clone)]
pub struct GuestFiles<'a> {
    pub init: &'a Path,
    pub entrypoint: Option<&'a Entrypoint>,
    pub plan: &'a LaunchPlan,
}

pub fn build(
    run_dir: &RunDir,
    rootfs: &Path,
    files: &GuestFiles<'_>,
    headroom_mib: u64,
) -> Result<BuiltDisk, GuestDiskError> {
    let staging = run_dir.guest_files();
    std::fs::create_dir(&staging).map_err(|source| GuestDiskError::Staging {
        path: staging.clone(),
        source,
    })?;
    let plan = staging.join(name_in_guest_dir(PLAN_PATH));
    write_private(&plan, &files.plan.to_json())?;
    let mut guest_files = vec![
        GuestFile {
            name: name_in_guest_dir(INIT_PATH).to_owned(),
            source: files.init.to_owned(),
            mode: 0o755,
        },
        GuestFile {
            name: name_in_guest_dir(PLAN_PATH).to_owned(),
            source: plan,
            mode: 0o600,
        },
    ];
    if let Some(process) = files.entrypoint {
        let entrypoint = staging.join(name_in_guest_dir(ENTRYPOINT_PATH));
        // The entrypoint carries the container's env, secrets included.
        write_private(&entrypoint, &process.to_json())?;
        guest_files.push(GuestFile {
            name: name_in_guest_dir(ENTRYPOINT_PATH).to_owned(),
            source: entrypoint,
            mode: 0o600,
        });
    }
    let disk = run_dir.disk();
    let built = runcvm_rootfs::build_disk(&DiskSpec {
        rootfs,
        guest_files: &guest_files,
        output: &disk,
        headroom_mib,
    })?;
    runcvm_log::debug!(
        "root disk {} built in {:.3} s ({} MiB, {} inodes)",
        disk.display(),
        built.build_secs,
        built.size.mib,
        built.size.inodes
    );
    Ok(built)
}

fn name_in_guest_dir(path: &'static str) -> &'static str {
    path.strip_prefix(GUEST_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .expect("guest paths live in GUEST_DIR")
}

/// Writes a new file only root can read: these carry the container's env,
/// secrets included.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), GuestDiskError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|source| GuestDiskError::Write {
            path: path.to_owned(),
            source,
        })
}

/// The node's boot disks, in the node's state folder.
pub const BOOT_DISKS_DIR: &str = "boot";
/// Bumped when what a boot disk holds changes, so a node builds it anew.
const BOOT_LAYOUT: u32 = 1;
/// The mount points guest init uses on a boot disk it cannot write: the
/// file systems it mounts, and where the served root is mounted before the
/// container's mount namespace pivots into it.
const BOOT_MOUNT_POINTS: [(&str, u32); 6] = [
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/run", 0o755),
    ("/tmp", 0o1777),
    (runcvm_spec::SERVED_ROOT_MOUNT_POINT, 0o700),
];

/// Why the node's boot disk could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BootDiskError {
    /// cannot read guest init {path}: reinstall runcvm (runcvm install)
    #[error("cannot read guest init {}: reinstall runcvm (runcvm install)", path.display())]
    Init {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot prepare {path}, in the node's state folder: make it writable to root, or set RUNCVM_STATE_DIR
    #[error(
        "cannot prepare {}, in the node's state folder: make it writable to root, or set RUNCVM_STATE_DIR",
        path.display()
    )]
    Prepare {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the boot disk (its own message)
    #[error(transparent)]
    Image(#[from] runcvm_rootfs::DiskError),
}

/// The node's boot disk for guest init `init`: guest init and the mount
/// points it needs, nothing of any container (which reaches the guest in
/// `Start`), so one disk serves every VM, attached read-only. Built once per
/// guest init and VMM group in `STATE/boot/`, on first use; `vmm_gid`: the
/// group the VMM runs in, which may read it. Containers get it bound
/// read-only, never linked: a link in a state folder, which the pod can
/// write, would let the pod's root write the disk every pod boots.
pub fn node_boot_disk(
    state_root: &Path,
    init: &Path,
    vmm_gid: Option<u32>,
) -> Result<std::path::PathBuf, BootDiskError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(init).map_err(|source| BootDiskError::Init {
        path: init.to_owned(),
        source,
    })?;
    // A new guest init (an install, an upgrade) has another inode or
    // mtime: a name of its own, so a disk is never used for another init.
    let name = format!(
        "boot-v{BOOT_LAYOUT}-{}-{}-{}.{}-g{}.ext4",
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec(),
        vmm_gid.map_or_else(|| "none".to_owned(), |gid| gid.to_string())
    );
    let dir = state_root.join(BOOT_DISKS_DIR);
    let disk = dir.join(&name);
    if disk.exists() {
        remove_other_boot_disks(&dir, &name);
        return Ok(disk);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(prepare(&dir))?;
    // Built aside and renamed into place: creates racing for the first
    // disk each build one, and the last rename wins (the same content).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let staging = dir.join(format!(".building-{}-{nanos}", std::process::id()));
    let built = build_boot_disk(&staging, init, vmm_gid)
        .and_then(|built| std::fs::rename(&built, &disk).map_err(prepare(&disk)));
    let _ = std::fs::remove_dir_all(&staging);
    built?;
    runcvm_log::debug!("built the node's boot disk {}", disk.display());
    remove_other_boot_disks(&dir, &name);
    Ok(disk)
}

/// Builds a boot disk in `staging` (made here); returns its path there.
fn build_boot_disk(staging: &Path, init: &Path, vmm_gid: Option<u32>) -> Result<std::path::PathBuf, BootDiskError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(prepare(staging))?;
    let tree = staging.join("tree");
    for (mount_point, mode) in BOOT_MOUNT_POINTS {
        let path = tree.join(mount_point.trim_start_matches('/'));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&path)
            .map_err(prepare(&path))?;
        // The mode as asked, whatever the umask took.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(prepare(&path))?;
    }
    let built = staging.join("disk.ext4");
    runcvm_rootfs::build_disk(&DiskSpec {
        rootfs: &tree,
        guest_files: &[GuestFile {
            name: name_in_guest_dir(INIT_PATH).to_owned(),
            source: init.to_owned(),
            mode: 0o755,
        }],
        output: &built,
        headroom_mib: BOOT_DISK_HEADROOM_MIB,
    })?;
    // Readable by the VMM's group, written by nobody: every VM shares it.
    if let Some(gid) = vmm_gid {
        std::os::unix::fs::chown(&built, None, Some(gid)).map_err(prepare(&built))?;
    }
    std::fs::set_permissions(&built, std::fs::Permissions::from_mode(0o440)).map_err(prepare(&built))?;
    Ok(built)
}

/// The error of a step of preparing `path`.
fn prepare(path: &Path) -> impl FnOnce(std::io::Error) -> BootDiskError {
    let path = path.to_owned();
    move |source| BootDiskError::Prepare { path, source }
}

/// Removes the boot disks of earlier guest inits that no running launcher
/// holds, at every create (a look at one folder, and at every process's
/// mounts only while an old disk is there): one in use keeps its name (so
/// `runcvm inspect` of its containers finds it where their launch files
/// say) until the first create after its last VM ended.
fn remove_other_boot_disks(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let others: Vec<(String, std::path::PathBuf)> = entries
        .flatten()
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.path()))
        .filter(|(name, _)| name.starts_with("boot-") && name.ends_with(".ext4") && name != keep)
        .collect();
    if others.is_empty() {
        return;
    }
    // One look at every process, whatever the number of old disks.
    let held: std::collections::HashSet<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("mountinfo")).ok())
        .flat_map(|mountinfo| boot_disks_bound(&mountinfo).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for (name, path) in others {
        if !held.contains(&name) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where the boot disk named `name` is held by a running launcher, bound at
/// `/.runcvm/disk.ext4` in its container: `/proc/PID/root/.runcvm/disk.ext4`
/// of the first process whose `mountinfo` has that bind (its root still
/// carries the file's name, with `//deleted` once the name is gone).
pub fn held_boot_disk(name: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let proc = entry.path();
        let mountinfo = std::fs::read_to_string(proc.join("mountinfo")).ok()?;
        mountinfo_binds_boot_disk(&mountinfo, name)
            .then(|| proc.join("root").join(BOUND_BOOT_DISK.trim_start_matches('/')))
            .filter(|held| held.is_file())
    })
}

/// Where a launcher's container has the node's boot disk.
const BOUND_BOOT_DISK: &str = "/.runcvm/disk.ext4";

/// Whether a `mountinfo` has the boot disk `name` bound at
/// [`BOUND_BOOT_DISK`].
fn mountinfo_binds_boot_disk(mountinfo: &str, name: &str) -> bool {
    boot_disks_bound(mountinfo).any(|bound| bound == name)
}

/// The names of the boot disks a `mountinfo` has bound at
/// [`BOUND_BOOT_DISK`] (a deleted one's name too).
fn boot_disks_bound(mountinfo: &str) -> impl Iterator<Item = &str> {
    mountinfo.lines().filter_map(|line| {
        let mut fields = line.split(' ');
        // Mount id, parent id, device, root, mount point, ...
        let root = fields.nth(3)?;
        (fields.next()? == BOUND_BOOT_DISK).then(|| {
            let root = root.trim_end_matches("//deleted");
            root.rsplit('/').next().unwrap_or(root)
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_launchers_bind_of_the_boot_disk_is_found_in_its_mountinfo_even_deleted() {
        let name = "boot-v1-1-2-3.4-g65520.ext4";
        let bound =
            format!("812 790 254:1 /var/lib/runcvm/boot/{name} /.runcvm/disk.ext4 ro,nosuid - ext4 /dev/vda1 rw\n");
        assert!(mountinfo_binds_boot_disk(&bound, name));
        let deleted = bound.replace(".ext4 /.runcvm", ".ext4//deleted /.runcvm");
        assert!(mountinfo_binds_boot_disk(&deleted, name));
        assert!(!mountinfo_binds_boot_disk(&bound, "boot-v1-9-9-9.9-g65520.ext4"));
        let elsewhere = bound.replace("/.runcvm/disk.ext4", "/mnt/disk.ext4");
        assert!(!mountinfo_binds_boot_disk(&elsewhere, name));
    }
    use runcvm_rootfs::{GuestEntry, find_tool};
    use std::os::unix::fs::MetadataExt;

    fn names(image: &Path, dir: &str) -> Vec<(String, u32)> {
        let debugfs = find_tool("debugfs").expect("debugfs (e2fsprogs) for this test");
        GuestEntry::list(&debugfs, image, dir)
            .unwrap()
            .into_iter()
            .filter(|e| e.name != "." && e.name != "..")
            .map(|e| (e.name, e.mode & 0o7777))
            .collect()
    }

    #[test]
    fn containers_share_one_boot_disk_built_once_per_guest_init() {
        let work = tempfile::tempdir().unwrap();
        let state = work.path().join("state");
        let init = work.path().join("runcvm-init");
        std::fs::write(&init, b"\x7fELF guest init").unwrap();
        let first = node_boot_disk(&state, &init, None).unwrap();
        let built = std::fs::metadata(&first).unwrap();
        let again = node_boot_disk(&state, &init, None).unwrap();
        assert_eq!(first, again);
        assert_eq!(std::fs::metadata(&again).unwrap().ino(), built.ino(), "built once");
        assert_eq!(built.mode() & 0o777, 0o440, "no VM may write it");
        // Guest init and the mount points it needs, nothing else.
        let mut root = names(&first, "/");
        root.sort();
        for (mount_point, mode) in BOOT_MOUNT_POINTS {
            let name = mount_point.trim_start_matches('/').to_owned();
            assert!(root.contains(&(name, mode)), "{mount_point} in {root:?}");
        }
        assert_eq!(names(&first, "/.runcvm"), [("init".to_owned(), 0o755)]);

        // Another guest init (an upgrade): a disk of its own; the old one
        // goes from the folder (a running container's mount still holds it).
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::remove_file(&init).unwrap();
        std::fs::write(&init, b"\x7fELF guest init, newer").unwrap();
        let newer = node_boot_disk(&state, &init, None).unwrap();
        assert_ne!(newer, first);
        assert!(!first.exists());
        let left: Vec<_> = std::fs::read_dir(state.join(BOOT_DISKS_DIR)).unwrap().collect();
        assert_eq!(left.len(), 1, "only the newer disk, no staging left");
    }

    #[test]
    fn a_missing_guest_init_is_named() {
        let work = tempfile::tempdir().unwrap();
        let err = node_boot_disk(work.path(), &work.path().join("nope"), None).unwrap_err();
        assert!(err.to_string().starts_with("cannot read guest init "), "{err}");
        assert!(!work.path().join(BOOT_DISKS_DIR).exists(), "nothing made");
    }
}
