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
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid};
use runcvm_proto::ExitStatus;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{Receiver, TryRecvError};

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
    /// Its status, from the reaper, once it has ended.
    exit: Receiver<ExitStatus>,
}

impl PodPause {
    /// How the pause process ended, if it has: its namespace then takes no
    /// new process.
    pub fn ended(&self) -> Option<String> {
        match self.exit.try_recv() {
            Err(TryRecvError::Empty) => None,
            Ok(status) => Some(format!("{status:?}")),
            Err(TryRecvError::Disconnected) => Some("its status is unknown".to_owned()),
        }
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
/// that namespace and, once it ends, its status.
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
    let mut namespace = None;
    let forked = crate::container::fork_switching_pid_namespace(None, &back, || {
        // SAFETY: init has threads, so the child keeps to async-signal-safe
        // system calls on what was prepared before the fork, then exec or
        // _exit.
        let forked = unsafe { nix::unistd::fork() };
        if let Ok(ForkResult::Parent { .. }) = forked {
            // The new namespace, while this thread's children still go to
            // it: not by the child's pid, which could be another's by then.
            namespace = Some(crate::container::open_namespace(std::path::Path::new(
                "/proc/thread-self/ns/pid_for_children",
            )));
        }
        forked
    });
    match forked.context("cannot start the pod's pause process")? {
        ForkResult::Child => {
            become_pause(&plan);
            // SAFETY: _exit is always safe; it skips the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            let exit = slot.register(child);
            runcvm_log::debug!("the pod's pause process is pid {child}");
            let namespace = namespace.context("the pod's PID namespace was not held")??;
            Ok(PodPause { namespace, exit })
        }
    }
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
