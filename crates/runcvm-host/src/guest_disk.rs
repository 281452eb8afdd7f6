//! The guest's root disk for one run: the rootfs plus `/.runcvm` (guest init,
//! entrypoint, launch plan).

use crate::run_dir::RunDir;
use runcvm_rootfs::{BuiltDisk, DiskSpec, GuestFile};
use runcvm_spec::{ENTRYPOINT_PATH, Entrypoint, GUEST_DIR, INIT_PATH, LaunchPlan, PLAN_PATH};
use std::os::unix::fs::OpenOptionsExt;
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
/// Free space on a boot disk, whose tree is `/.runcvm` alone: guest init
/// makes only a mount point or two there.
pub const BOOT_DISK_HEADROOM_MIB: u64 = 8;

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
