//! Acting as the NFS caller: the serving thread takes the caller's fsuid,
//! fsgid and supplementary groups for the duration of one request, so the
//! host kernel checks permissions and owns new files exactly as it would for
//! that user, and chown by a non-root caller fails as it should.
//!
//! These are per-thread on Linux; `setgroups` goes through the raw system
//! call because glibc's wrapper changes every thread of the process.

use crate::rpc::Caller;

thread_local! {
    /// The caller this thread acts for (uid, gid), while it does.
    static CALLER: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
    /// The process's umask, when this thread could not get one of its own.
    static SHARED_UMASK: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Readies the calling thread to serve requests: its own file-system
/// context (`unshare(CLONE_FS)`) with umask 0, so a new file or folder gets
/// exactly the mode the caller asked for, and a folder keeps the
/// set-group-ID bit it inherits from its parent (an fsGroup volume), as
/// under knfsd; no chmod after creation is needed, which would clear it.
/// The rest of the launcher keeps its own umask.
///
/// A seccomp profile may refuse `unshare` (the runtime's default profile
/// does, to a container without `CAP_SYS_ADMIN`, and a pod's launcher runs
/// under the pod's profile): the thread then shares the process's umask,
/// and [`restore_mode`] gives a new object back the bits it took.
pub fn prepare_serving_thread() {
    // SAFETY: unshare(CLONE_FS) gives only this thread a private copy of
    // its cwd, root and umask; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_FS) } == 0 {
        // SAFETY: umask only changes the (now thread-private) file mode mask.
        unsafe { libc::umask(0) };
        return;
    }
    let reason = std::io::Error::last_os_error();
    let mask = process_umask();
    runcvm_log::debug!("nfs: no umask of this thread's own ({reason}): new modes are restored past umask {mask:03o}");
    SHARED_UMASK.with(|m| m.set(Some(mask)));
}

/// The process's umask, read without changing it (`umask(2)` cannot read
/// without writing, which would race the other threads); 022 if unknown.
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Gives `name` in `dir`, just made with `requested`, the permission bits
/// the shared umask took from it (nothing to do on a thread with its own
/// umask 0). The set-group-ID bit a folder inherited stays. The object
/// exists whatever happens here, so a failure is logged, not returned.
pub fn restore_mode(dir: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr, requested: u32) {
    use nix::sys::stat::{FchmodatFlags, Mode, fchmodat, fstatat};
    let Some(mask) = SHARED_UMASK.with(std::cell::Cell::get) else {
        return;
    };
    if requested & mask & 0o777 == 0 {
        return;
    }
    let restored = fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).and_then(|now| {
        let inherited = now.st_mode & libc::S_ISGID;
        let mode = Mode::from_bits_truncate((requested & 0o7777) | inherited);
        fchmodat(dir, name, mode, FchmodatFlags::NoFollowSymlink)
    });
    if let Err(e) = restored {
        runcvm_log::debug!(
            "nfs: cannot give {} the mode {requested:o} past the umask: {e}",
            name.to_string_lossy()
        );
    }
}

/// Restores root's credentials when dropped.
#[derive(Debug)]
pub struct AsCaller(());

/// Takes on the caller's credentials; `None` if the kernel refused them
/// (say an id unmapped in a user namespace), so nothing runs as root by
/// mistake.
pub fn become_caller(caller: &Caller) -> Option<AsCaller> {
    let guard = AsCaller(());
    if !set_groups(&caller.groups) {
        return None;
    }
    set_fs_ids(caller.uid, caller.gid);
    if current_fs_ids() != (caller.uid, caller.gid) {
        return None;
    }
    CALLER.with(|c| c.set(Some((caller.uid, caller.gid))));
    Some(guard)
}

/// The uid this thread acts for.
pub fn caller_uid() -> Option<u32> {
    CALLER.with(|c| c.get().map(|(uid, _)| uid))
}

/// Runs `f` with root's file credentials, then acts for the caller again:
/// for the owner's override of permission bits, as knfsd does.
pub fn as_root<T>(f: impl FnOnce() -> T) -> T {
    let caller = CALLER.with(std::cell::Cell::get);
    set_fs_ids(0, 0);
    let result = f();
    if let Some((uid, gid)) = caller {
        set_fs_ids(uid, gid);
    }
    result
}

fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: setfsgid/setfsuid only change this thread's credentials.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
}

/// The thread's fsuid and fsgid: an invalid id changes nothing and returns
/// the current one.
fn current_fs_ids() -> (u32, u32) {
    // SAFETY: as above; u32::MAX is never a valid id, so nothing changes.
    unsafe {
        (
            u32::try_from(libc::setfsuid(u32::MAX)).unwrap_or(u32::MAX),
            u32::try_from(libc::setfsgid(u32::MAX)).unwrap_or(u32::MAX),
        )
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        set_fs_ids(0, 0);
        set_groups(&[]);
        CALLER.with(|c| c.set(None));
    }
}

fn set_groups(groups: &[u32]) -> bool {
    // SAFETY: the raw system call reads `len` gids from a live slice and,
    // unlike glibc's wrapper, changes only the calling thread.
    unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    fn mode_of(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_shared_umask_takes_nothing_from_new_objects_and_inherited_setgid_stays() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("shared");
        std::fs::create_dir(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o2775)).unwrap();
        // What the process's umask 022 made of 0775 and 0666: the folder
        // inherited set-group-ID from its parent.
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(parent.join("made"))
            .unwrap();
        std::fs::write(parent.join("f"), b"").unwrap();
        std::fs::set_permissions(parent.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let folder = std::fs::File::open(&parent).unwrap();
        // A thread of its own umask restores nothing.
        restore_mode(folder.as_fd(), std::ffi::OsStr::new("f"), 0o666);
        assert_eq!(mode_of(&parent.join("f")), 0o644);
        SHARED_UMASK.with(|m| m.set(Some(0o022)));
        restore_mode(folder.as_fd(), std::ffi::OsStr::new("made"), 0o775);
        restore_mode(folder.as_fd(), std::ffi::OsStr::new("f"), 0o666);
        SHARED_UMASK.with(|m| m.set(None));
        assert_eq!(mode_of(&parent.join("made")), 0o2775);
        assert_eq!(mode_of(&parent.join("f")), 0o666);
    }

    #[test]
    fn the_process_umask_is_read_without_changing_it() {
        // SAFETY: umask only sets the mask; this test's thread reads it back.
        let before = unsafe { libc::umask(0o027) };
        let read = process_umask();
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        assert_eq!(read, 0o027);
    }
}
