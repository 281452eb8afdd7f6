//! Container folders whose container is gone without a `delete`: when
//! containerd or the node dies first (a crash, a reboot that wipes `/run`),
//! `STATE/containers/<id>` (with a root disk as large as the image) stays
//! on persistent disk for ever. Each `create` collects them first.
//!
//! A folder is an orphan only when all of these hold:
//!
//! - runc does not know the container: `<runc root>/<id>` is gone, the runc
//!   root being the one recorded at create (`<id>.runc-root`, since a node
//!   has one per containerd namespace). A folder without the record (made
//!   by an earlier build) is never collected;
//! - no launcher holds it: the launcher keeps an exclusive `flock` on
//!   `launcher.lock` in its folder for as long as it lives (the lock belongs
//!   to the file, so it is seen across the container's mount namespace);
//! - it is older than [`GRACE`]: a create in progress elsewhere has made
//!   its folder before runc knows its container.
//!
//! Nothing else of a crashed pod stays on the node because of runcvm: its
//! tap and bridge live in the pod's network namespace, which goes with its
//! processes, and runcvm makes no mounts on the node.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old an orphan must be.
pub const GRACE: Duration = Duration::from_secs(600);
/// The launcher's lock file in a container's folder.
pub use runcvm_host::run_dir::LAUNCHER_LOCK;
/// The record of the runc root beside a container's folder.
const RUNC_ROOT_SUFFIX: &str = ".runc-root";

/// The record of `id`'s runc root, beside its folder.
pub fn runc_root_record(state_root: &Path, id: &str) -> PathBuf {
    state_root.join("containers").join(format!("{id}{RUNC_ROOT_SUFFIX}"))
}

/// Records at create which runc root knows `id`.
pub fn record_runc_root(state_root: &Path, id: &str, runc_root: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(runc_root_record(state_root, id), runc_root.as_os_str().as_bytes())
}

/// Why a folder was kept or collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not an orphan.
    Kept,
    /// An orphan, removed.
    Collected,
    /// An orphan whose removal failed.
    Failed(String),
}

/// Collects the orphans among `STATE/containers/*` (see the module docs),
/// as of `now`; returns each folder looked at with what became of it.
pub fn collect(state_root: &Path, now: SystemTime) -> Vec<(String, Verdict)> {
    let containers = state_root.join("containers");
    let Ok(entries) = std::fs::read_dir(&containers) else {
        return Vec::new();
    };
    let mut verdicts = Vec::new();
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if !kind.is_dir() {
            continue;
        }
        let id = entry.file_name().to_string_lossy().into_owned();
        let verdict = if is_orphan(state_root, &id, &entry.path(), now) {
            match crate::state::remove_state(state_root, &id) {
                Ok(()) => Verdict::Collected,
                Err(e) => Verdict::Failed(e.to_string()),
            }
        } else {
            Verdict::Kept
        };
        verdicts.push((id, verdict));
    }
    verdicts
}

/// The runc root `id`'s create recorded, if it did.
pub fn recorded_runc_root(state_root: &Path, id: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let runc_root = std::fs::read(runc_root_record(state_root, id)).ok()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(runc_root)))
}

fn is_orphan(state_root: &Path, id: &str, folder: &Path, now: SystemTime) -> bool {
    let Some(runc_root) = recorded_runc_root(state_root, id) else {
        return false;
    };
    if runc_root.join(id).exists() {
        return false;
    }
    let old_enough = std::fs::metadata(folder)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| now.duration_since(modified).ok())
        .is_some_and(|age| age >= GRACE);
    old_enough && !held_by_a_launcher(folder)
}

/// Whether a launcher holds the folder's lock (see [`hold`]).
fn held_by_a_launcher(folder: &Path) -> bool {
    let Ok(file) = std::fs::File::open(folder.join(LAUNCHER_LOCK)) else {
        return false;
    };
    // SAFETY: flock on a descriptor this function owns.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    // The lock, if taken, goes with `file`.
    !taken
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State {
        dir: tempfile::TempDir,
        runc: tempfile::TempDir,
    }

    impl State {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                runc: tempfile::tempdir().unwrap(),
            }
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        /// A container's folder as create leaves it, runc knowing it or not.
        fn container(&self, id: &str, runc_knows: bool) -> PathBuf {
            let folder = crate::state::state_folder(self.root(), id);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("disk.ext4"), b"disk").unwrap();
            std::fs::write(crate::state::node_launch_file(self.root(), id), b"{}").unwrap();
            record_runc_root(self.root(), id, self.runc.path()).unwrap();
            if runc_knows {
                std::fs::create_dir_all(self.runc.path().join(id)).unwrap();
            }
            folder
        }
    }

    fn later() -> SystemTime {
        SystemTime::now() + GRACE + Duration::from_secs(1)
    }

    fn verdict_of(verdicts: &[(String, Verdict)], id: &str) -> Verdict {
        verdicts.iter().find(|(i, _)| i == id).unwrap().1.clone()
    }

    #[test]
    fn a_folder_runc_forgot_is_collected_with_its_files() {
        let state = State::new();
        let folder = state.container("gone", false);
        let verdicts = collect(state.root(), later());
        assert_eq!(verdict_of(&verdicts, "gone"), Verdict::Collected);
        assert!(!folder.exists());
        assert!(!crate::state::node_launch_file(state.root(), "gone").exists());
        assert!(!runc_root_record(state.root(), "gone").exists());
    }

    #[test]
    fn a_container_runc_knows_a_held_lock_a_young_folder_or_no_record_keep_it() {
        let state = State::new();
        state.container("known", true);
        let held = state.container("held", false);
        let lock = std::fs::File::create(held.join(LAUNCHER_LOCK)).unwrap();
        // SAFETY: flock on a descriptor the test owns.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        state.container("young", false);
        let unrecorded = state.container("unrecorded", false);
        std::fs::remove_file(runc_root_record(state.root(), "unrecorded")).unwrap();

        // As of now, the young one is too young.
        let now = collect(state.root(), SystemTime::now());
        assert_eq!(verdict_of(&now, "young"), Verdict::Kept);
        let verdicts = collect(state.root(), later());
        assert_eq!(verdict_of(&verdicts, "known"), Verdict::Kept);
        assert_eq!(verdict_of(&verdicts, "held"), Verdict::Kept);
        assert_eq!(verdict_of(&verdicts, "unrecorded"), Verdict::Kept);
        assert!(held.exists() && unrecorded.exists());
        assert_eq!(verdict_of(&verdicts, "young"), Verdict::Collected);
        // Once its launcher is gone, the held one goes too.
        drop(lock);
        assert_eq!(verdict_of(&collect(state.root(), later()), "held"), Verdict::Collected);
    }
}
