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
}

/// Readies the calling thread to serve requests: its own file-system
/// context (`unshare(CLONE_FS)`) with umask 0, so a new file or folder gets
/// exactly the mode the caller asked for, and a folder keeps the
/// set-group-ID bit it inherits from its parent (an fsGroup volume), as
/// under knfsd; no chmod after creation is needed, which would clear it.
/// The rest of the launcher keeps its own umask.
pub fn prepare_serving_thread() -> std::io::Result<()> {
    // SAFETY: unshare(CLONE_FS) gives only this thread a private copy of
    // its cwd, root and umask; no memory is involved.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: umask only changes the (now thread-private) file mode mask.
    unsafe { libc::umask(0) };
    Ok(())
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
