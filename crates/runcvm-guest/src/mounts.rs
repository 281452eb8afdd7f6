//! The filesystems a container expects to find, mounted in the guest.

use anyhow::Context;
use nix::mount::{MsFlags, mount};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

struct Mount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
    /// Mode of the mount point if init has to create it.
    dir_mode: u32,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// In order: each target lives on a filesystem mounted before it.
const CONTAINER_MOUNTS: &[Mount] = &[
    Mount {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o555,
    },
    Mount {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o555,
    },
    Mount {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5",
        dir_mode: 0o755,
    },
    Mount {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        dir_mode: 0o1777,
    },
    Mount {
        target: "/dev/mqueue",
        fstype: "mqueue",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o755,
    },
    Mount {
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=0755",
        dir_mode: 0o755,
    },
    Mount {
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        dir_mode: 0o1777,
    },
];

/// The folders init mounts that the container's root owns: in a pod with a
/// user namespace of its own they go to the pod's root.
pub const POD_WRITABLE: &[&str] = &["/run", "/dev/shm", "/dev/mqueue"];

/// The links runc creates in a container's `/dev`.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("/proc/kcore", "/dev/core"),
];

/// `/dev` as devtmpfs: the console and the control port live there.
pub fn mount_dev() -> anyhow::Result<()> {
    mount_one(&Mount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: "mode=0755",
        dir_mode: 0o755,
    })
}

pub fn mount_container_filesystems() -> anyhow::Result<()> {
    for m in CONTAINER_MOUNTS {
        mount_one(m)?;
    }
    // The cgroup v2 hierarchy, where init keeps the workload's cgroup; a
    // kernel without it runs the workload without one.
    let cgroups = Mount {
        target: crate::container::CGROUP_ROOT,
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o555,
    };
    if let Err(e) = mount_one(&cgroups) {
        runcvm_log::debug!("{e:#}");
    }
    for (target, link) in DEV_LINKS {
        if Path::new(link).symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, link).with_context(|| format!("cannot link {link} to {target}"))?;
        }
    }
    // A ptmx that follows the container's own devpts instance.
    let _ = std::fs::remove_file("/dev/ptmx");
    std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx").context("cannot link /dev/ptmx to pts/ptmx")?;
    Ok(())
}

fn mount_one(m: &Mount) -> anyhow::Result<()> {
    if !Path::new(m.target).is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(m.dir_mode)
            .create(m.target)
            .with_context(|| format!("cannot create the mount point {}", m.target))?;
    }
    let data = (!m.data.is_empty()).then_some(m.data);
    mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, data)
        .with_context(|| format!("cannot mount {} on {}", m.fstype, m.target))?;
    runcvm_log::debug!("mounted {} on {}", m.fstype, m.target);
    Ok(())
}

/// `/.runcvm` as a tmpfs of its own, where init writes what
/// `CreateContainer` brings (the entrypoint, the plan): the boot disk under
/// it is the same for every VM and read-only. Init keeps running from the
/// boot disk's `/.runcvm/init`, which the tmpfs hides from the workload.
/// The folders of containers on served roots are on a tmpfs of their own
/// below it, which stays writable when a container whose root is the
/// guest's seals `/.runcvm` ([`seal_guest_dir`]).
pub fn mount_guest_dir() -> anyhow::Result<()> {
    for target in [runcvm_spec::GUEST_DIR, crate::entry::CONTAINERS_DIR] {
        mount_one(&Mount {
            target,
            fstype: "tmpfs",
            flags: NOSUID_NODEV_NOEXEC,
            data: "mode=0711",
            dir_mode: 0o711,
        })?;
    }
    Ok(())
}

/// Makes `/.runcvm` read-only once init has written it: the workload (root
/// in the guest, if it wants) cannot change the entrypoint an exec or a
/// later look finds there without remounting it.
pub fn seal_guest_dir() -> anyhow::Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(None::<&str>, runcvm_spec::GUEST_DIR, None::<&str>, flags, None::<&str>)
        .with_context(|| format!("cannot make {} read-only", runcvm_spec::GUEST_DIR))
}

/// Makes the root file system read-only for everything after it (the
/// workload, exec sessions): a read-only flag on the mount, as runc sets it
/// for `readonly` roots. The file systems mounted on top stay as they are.
pub fn make_root_read_only() -> anyhow::Result<()> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).context(
        "cannot make the root file system read-only, as the container asks (readOnlyRootFilesystem, \
             --read-only): run it without, and report this with the console lines (RUNCVM_LOG_LEVEL=DEBUG)",
    )?;
    runcvm_log::debug!("the root file system is read-only");
    Ok(())
}
