//! Acting as the NFS caller: the serving thread takes the caller's fsuid,
//! fsgid and supplementary groups for the duration of one request, so the
//! host kernel checks permissions and owns new files exactly as it would for
//! that user, and chown by a non-root caller fails as it should.
//!
//! These are per-thread on Linux; `setgroups` goes through the raw system
//! call because glibc's wrapper changes every thread of the process.

use crate::rpc::Caller;

/// Restores root's credentials when dropped.
#[derive(Debug)]
pub struct AsCaller(());

pub fn become_caller(caller: &Caller) -> AsCaller {
    set_groups(&caller.groups);
    // SAFETY: setfsgid/setfsuid only change this thread's credentials.
    unsafe {
        libc::setfsgid(caller.gid);
        libc::setfsuid(caller.uid);
    }
    AsCaller(())
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        // SAFETY: as above; back to root for the next request.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
        set_groups(&[]);
    }
}

fn set_groups(groups: &[u32]) {
    // SAFETY: the raw system call reads `len` gids from a live slice and,
    // unlike glibc's wrapper, changes only the calling thread.
    unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr());
    }
}
