//! The pod's pause process: PID 1 of the PID namespace a pod's containers
//! share in CRI's POD mode (`shareProcessNamespace: true`), what the pause
//! container is on a node. Guest init starts it by running its own program
//! again under the name [`ARGV0`] (`container::start_pod_pause`); it gives
//! up root and every capability, then reaps the orphans reparented to it
//! for the namespace's life.
//!
//! As PID 1 of its namespace it gets no signal from inside it that it has
//! no handler for, so no container can end it (and with it every process
//! of the pod's namespace); the pause container on a node ends on
//! `SIGTERM`, which only the runtime sends it.

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Gid, Uid};

/// The name init runs its program under to be the pod's pause process (as
/// `ps` shows it to the pod's containers).
pub const ARGV0: &str = "/pause";

/// The user and group the pause process runs as: the pause image's.
const NOBODY: u32 = 65535;

/// Is this process the pod's pause process, by the name it was run under?
pub fn is_pause() -> bool {
    std::env::args_os().next().is_some_and(|name| name == ARGV0)
}

extern "C" fn on_child(_: libc::c_int) {}

/// Gives up root, then reaps for ever; exits 1 if root cannot be given up.
pub fn run() -> ! {
    let dropped = nix::unistd::setgroups(&[])
        .and_then(|()| nix::unistd::setgid(Gid::from_raw(NOBODY)))
        .and_then(|()| nix::unistd::setuid(Uid::from_raw(NOBODY)));
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes no pointer.
    let no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if dropped.is_err() || no_new_privs != 0 {
        std::process::exit(1);
    }
    // SIGCHLD is blocked but for the wait in sigsuspend, whose handler
    // (doing nothing) is what wakes it: no orphan's end is missed between
    // a look and the wait.
    let mut child = SigSet::empty();
    child.add(Signal::SIGCHLD);
    let _ = child.thread_block();
    let action = SigAction::new(SigHandler::Handler(on_child), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGCHLD, &action) };
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        let _ = SigSet::empty().suspend();
    }
}
