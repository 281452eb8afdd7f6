//! The pod's pause process: PID 1 of the PID namespace a pod's containers
//! share in CRI's POD mode (`shareProcessNamespace: true`), what the pause
//! container is on a node. Guest init starts it ([`start`]) by running its
//! own program again under the name [`ARGV0`], so it holds nothing of
//! init's memory (no container's plan or env); before that program runs, it
//! gets a mount namespace of its own whose root is an empty tmpfs and
//! `/dev/null` for its stdio, so the pod's containers, which see it as their
//! PID 1, find nothing of init's through it (`/proc/1/mountinfo`,
//! `/proc/1/root`, `/proc/1/fd`). Then it gives up root and every
//! capability ([`run`]) and reaps the orphans reparented to it for the
//! namespace's life.
//!
//! As PID 1 of its namespace it gets no signal from inside it that it has
//! no handler for, so no container can end it (and with it every process
//! of the pod's namespace); the pause container on a node ends on
//! `SIGTERM`, which only the runtime sends it.

use anyhow::Context;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The name init runs its program under to be the pod's pause process (as
/// `ps` shows it to the pod's containers).
pub const ARGV0: &str = "/pause";

/// The user and group the pause process runs as: the pause image's.
const NOBODY: u32 = 65535;

/// Is this process the pod's pause process, by the name it was run under?
pub fn is_pause() -> bool {
    std::env::args_os().next().is_some_and(|name| name == ARGV0)
}

/// A running pause process and the PID namespace it holds.
#[derive(Debug)]
pub struct PodPause {
    pub namespace: OwnedFd,
    process: OwnedFd,
}

impl PodPause {
    /// Whether the pause process still runs: once it has ended, its
    /// namespace takes no new process.
    pub fn is_alive(&self) -> bool {
        // SAFETY: pidfd_send_signal with signal 0 only checks; the pidfd is
        // this struct's own.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.process.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        sent == 0
    }
}

/// What the child does between fork and exec, all prepared before the fork.
struct ChildPlan {
    program: OwnedFd,
    null: OwnedFd,
    argv: [*const libc::c_char; 2],
    envp: [*const libc::c_char; 1],
    tmpfs: CString,
    over: CString,
}

/// Starts the pod's pause process in a new PID namespace; returns it with
/// that namespace. Nobody waits for it: if it ended, the reaper would take
/// its status and forget it, and [`PodPause::is_alive`] would say so.
pub fn start(waiters: &crate::reaper::Waiters) -> anyhow::Result<PodPause> {
    let open = |path: &str, flags| {
        nix::fcntl::open(
            path,
            flags | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("cannot open {path}"))
    };
    let name = CString::new(ARGV0)?;
    let plan = ChildPlan {
        program: open("/proc/self/exe", nix::fcntl::OFlag::O_RDONLY)?,
        null: open("/dev/null", nix::fcntl::OFlag::O_RDWR)?,
        argv: [name.as_ptr(), std::ptr::null()],
        envp: [std::ptr::null()],
        tmpfs: CString::new("tmpfs")?,
        // Any folder of init's will do: the tmpfs over it, in the child's
        // own mount namespace, becomes the child's whole root.
        over: CString::new("/proc")?,
    };
    let back = crate::container::open_namespace(std::path::Path::new("/proc/self/ns/pid"))?;
    let slot = waiters.lock_for_fork().context("the VM is stopping")?;
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).context("cannot make the pod's PID namespace")?;
    // SAFETY: init has threads, so the child keeps to async-signal-safe
    // system calls on what was prepared before the fork, then exec or _exit.
    let forked = unsafe { nix::unistd::fork() };
    let child = match forked {
        Ok(ForkResult::Child) => {
            become_pause(&plan);
            // SAFETY: _exit is always safe; it skips the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            let _ = nix::sched::setns(&back, CloneFlags::CLONE_NEWPID);
            return Err(e).context("cannot fork the pod's pause process");
        }
    };
    drop(slot);
    // The namespace this thread's children go to is the new one until it
    // switches back: held from here, not by the child's pid, which could be
    // another's by the time it is opened.
    let namespace = crate::container::open_namespace(std::path::Path::new("/proc/thread-self/ns/pid_for_children"));
    if let Err(e) = nix::sched::setns(&back, CloneFlags::CLONE_NEWPID) {
        // This thread could start no thread of its own any more.
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        return Err(e).context("cannot return to init's PID namespace");
    }
    let namespace = namespace?;
    // SAFETY: pidfd_open takes a pid and flags; the result, if not -1, is a
    // new descriptor this function owns.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
    let process = i32::try_from(pidfd)
        .ok()
        .filter(|fd| *fd >= 0)
        // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .context("cannot hold the pod's pause process (pidfd_open)")?;
    runcvm_log::debug!("the pod's pause process is pid {child}");
    Ok(PodPause { namespace, process })
}

/// In the forked child: a mount namespace whose root is an empty tmpfs,
/// `/dev/null` for stdio, then init's program as [`ARGV0`]. Returns only if
/// a step failed.
fn become_pause(plan: &ChildPlan) {
    let empty = c"".as_ptr();
    // SAFETY: plain system calls on strings and descriptors prepared before
    // the fork; nothing allocates.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            || libc::mount(
                plan.tmpfs.as_ptr(),
                plan.over.as_ptr(),
                plan.tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            || libc::chdir(plan.over.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            return;
        }
        for fd in 0..3 {
            if libc::dup2(plan.null.as_raw_fd(), fd) < 0 {
                return;
            }
        }
        libc::syscall(
            libc::SYS_execveat,
            plan.program.as_raw_fd(),
            empty,
            plan.argv.as_ptr(),
            plan.envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
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
