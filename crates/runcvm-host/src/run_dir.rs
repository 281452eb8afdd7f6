//! The per-VM folder on the node's disk (not the /run tmpfs: disks can be
//! large) holding the root disk and the control socket. It is removed when
//! the run ends, whatever the outcome.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The lock a launcher holds on its container's folder for as long as it
/// lives: `runcvm-runtime` collects the folders of containers gone without
/// a `delete`, never one whose launcher is alive (`orphans.rs` there).
pub const LAUNCHER_LOCK: &str = "launcher.lock";

/// Overrides [`DEFAULT_STATE_DIR`].
pub const STATE_DIR_ENV: &str = "RUNCVM_STATE_DIR";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/runcvm";
/// The exec socket's name in a run folder.
pub const EXEC_SOCKET: &str = "exec.sock";

/// The run folder could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create a run folder in {state_dir}: make it writable, or set {STATE_DIR_ENV} to a writable folder")]
pub struct RunDirError {
    state_dir: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A run folder, removed on drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// Held (flock) for the run's life: a run folder whose lock can be
    /// taken belongs to a launcher that is gone.
    _lock: Option<std::fs::File>,
    /// Made by this process, so removed with it; an adopted folder belongs
    /// to whoever made it and loses only its sockets.
    owned: bool,
}

/// The lock file in a run folder.
const LOCK: &str = "lock";

/// Takes the lock on `file` if nobody holds it.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; it takes no pointers.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl RunDir {
    /// The state folder in force: `chosen` (a binary's `RUNCVM_STATE_DIR`),
    /// else the default.
    pub fn state_dir(chosen: Option<&Path>) -> PathBuf {
        chosen.map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), Path::to_owned)
    }

    /// Removes the run folders of launchers that are gone: one killed with
    /// SIGKILL cleans up nothing. Folders are named `<pid>-<nanos>`; one whose
    /// lock nobody holds is stale.
    pub fn sweep_stale(state_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(state_dir.join("runs")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((pid, nanos)) = name.split_once('-') else {
                continue;
            };
            let named_by_us =
                pid.parse::<u32>().is_ok() && nanos.len() == 9 && nanos.bytes().all(|b| b.is_ascii_digit());
            if !named_by_us {
                continue;
            }
            // A live launcher holds its folder's lock, in whatever PID
            // namespace it runs; a folder without a lock file (being made)
            // is left alone unless its pid is gone from ours too.
            let stale = match std::fs::File::open(entry.path().join(LOCK)) {
                Ok(lock) => try_lock(&lock),
                Err(_) => !Path::new("/proc").join(pid).exists(),
            };
            if !stale {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => runcvm_log::debug!("removed the stale run folder {}", entry.path().display()),
                Err(e) => runcvm_log::warn!("cannot remove the stale run folder {}: {e}", entry.path().display()),
            }
        }
    }

    /// Creates `STATE/runs/<pid>-<nanos>`, private to root.
    pub fn create(state_dir: &Path) -> Result<Self, RunDirError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = state_dir
            .join("runs")
            .join(format!("{}-{nanos:09}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|source| RunDirError {
                state_dir: state_dir.to_owned(),
                source,
            })?;
        let lock = std::fs::File::create(path.join(LOCK)).ok().filter(try_lock);
        Ok(Self {
            path,
            _lock: lock,
            owned: true,
        })
    }

    /// Uses a folder made by someone else (a Kubernetes container's state
    /// folder, made by `runcvm-runtime create` and removed at `delete`).
    pub fn adopt(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            _lock: None,
            owned: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn disk(&self) -> PathBuf {
        self.path.join("disk.ext4")
    }

    /// What the VMM opens or makes, shared with its group
    /// (`vmm_privileges`).
    pub fn vmm_dir(&self) -> PathBuf {
        self.path.join(crate::vmm_share::VMM_DIR)
    }

    pub fn control_socket(&self) -> PathBuf {
        self.vmm_dir().join(runcvm_vmm::vm::CONTROL_SOCKET)
    }

    /// Where `runcvm exec` reaches the VM.
    pub fn exec_socket(&self) -> PathBuf {
        self.path.join(EXEC_SOCKET)
    }

    /// Folder for the files written into the guest's `/.runcvm`.
    pub fn guest_files(&self) -> PathBuf {
        self.path.join("guest")
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.owned {
            // QEMU's control socket, Firecracker's vsock sockets, the exec
            // socket: a later launch in this folder binds them afresh.
            let firecracker = ["vsock.sock", "vsock.sock_1024", "firecracker.sock"].map(|name| self.path.join(name));
            for socket in [self.control_socket(), self.exec_socket()]
                .into_iter()
                .chain(firecracker)
            {
                let _ = std::fs::remove_file(socket);
            }
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            runcvm_log::warn!("cannot remove the run folder {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let dir = RunDir::create(state.path()).unwrap();
        let path = dir.path().to_owned();
        assert!(path.starts_with(state.path().join("runs")));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(dir.disk(), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn stale_folders_of_dead_launchers_are_swept_and_live_ones_kept() {
        let state = tempfile::tempdir().unwrap();
        let runs = state.path().join("runs");
        let dead = runs.join("999999999-000000001");
        let unlocked = runs.join(format!("{}-000000003", std::process::id()));
        let foreign = runs.join("notes");
        for dir in [&dead, &unlocked, &foreign] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(unlocked.join(LOCK), b"").unwrap();
        let live = RunDir::create(state.path()).unwrap();
        RunDir::sweep_stale(state.path());
        assert!(!dead.exists(), "no lock file and a dead pid");
        assert!(!unlocked.exists(), "a lock nobody holds, whatever the pid");
        assert!(live.path().exists(), "a held lock keeps the folder");
        assert!(foreign.exists(), "not named by runcvm");
    }

    #[test]
    fn unwritable_state_dir_says_what_to_do() {
        let err = RunDir::create(Path::new("/proc/runcvm-state")).unwrap_err();
        assert!(err.to_string().contains("set RUNCVM_STATE_DIR"), "{err}");
    }
}
