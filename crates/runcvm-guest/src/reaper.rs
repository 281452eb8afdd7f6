//! PID 1's duty: init's main thread reaps every child for the VM's life and
//! hands each status to whoever waits for that process (a container's
//! thread, an exec session's). Orphans that were reparented to init are
//! reaped and forgotten.
//!
//! A process is registered between its fork and the registry's unlock
//! ([`Waiters::lock_for_fork`]): the reaper, which takes the lock to hand a
//! status on, cannot lose the status of a child that ends at once. Nothing
//! slow happens under the lock (no lookup on a container's root, no wait
//! for the child's `execve`), so one container's hung root holds up no
//! other start and no status.

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use runcvm_proto::ExitStatus;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long the reaper waits when init has no child: one may be started
/// at any moment, and it is found at the next look.
const IDLE: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Registry {
    pids: HashMap<i32, Sender<ExitStatus>>,
    /// The VM is powering off: nothing more is started.
    closed: bool,
}

/// The processes someone waits for, by pid.
#[derive(Debug, Default)]
pub struct Waiters {
    registry: Mutex<Registry>,
}

/// The registry, locked for one fork: the child is registered with
/// [`ForkSlot::register`], and the lock goes with it.
#[derive(Debug)]
pub struct ForkSlot<'a>(MutexGuard<'a, Registry>);

impl ForkSlot<'_> {
    /// Registers the forked child; its status comes on the channel.
    pub fn register(mut self, pid: Pid) -> Receiver<ExitStatus> {
        let (sender, receiver) = mpsc::channel();
        self.0.pids.insert(pid.as_raw(), sender);
        receiver
    }
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the registry for a fork; `None` once the VM is powering off.
    pub fn lock_for_fork(&self) -> Option<ForkSlot<'_>> {
        let registry = self.lock();
        (!registry.closed).then_some(ForkSlot(registry))
    }

    /// Runs `f` while no fork is in progress: what it changes is seen by
    /// every fork after it.
    pub fn between_starts<T>(&self, f: impl FnOnce() -> T) -> T {
        let _registry = self.lock();
        f()
    }

    /// Refuses every fork from now on (a fork in progress finishes first,
    /// and its child is killed with the rest).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    fn reaped(&self, pid: Pid, status: ExitStatus) {
        if let Some(sender) = self.lock().pids.remove(&pid.as_raw()) {
            let _ = sender.send(status);
        }
    }
}

/// How a reaped child ended, if it ended (rather than stopped).
fn ended(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, ExitStatus::Signal(signal as i32))),
        _ => None,
    }
}

/// Reaps for ever.
pub fn serve(waiters: &Waiters) -> ! {
    loop {
        match waitpid(None, None) {
            Ok(status) => {
                if let Some((pid, status)) = ended(status) {
                    waiters.reaped(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => std::thread::sleep(IDLE),
        }
    }
}

/// Reaps until no child is left.
pub fn reap_all(waiters: &Waiters) {
    loop {
        match waitpid(None, None) {
            Ok(status) => {
                if let Some((pid, status)) = ended(status) {
                    waiters.reaped(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_childs_status_reaches_its_waiter_and_a_closed_registry_refuses_forks() {
        let waiters = Waiters::default();
        let exit = waiters.lock_for_fork().unwrap().register(Pid::from_raw(4242));
        waiters.reaped(Pid::from_raw(4243), ExitStatus::Code(1));
        waiters.reaped(Pid::from_raw(4242), ExitStatus::Signal(9));
        assert_eq!(exit.try_recv(), Ok(ExitStatus::Signal(9)));
        waiters.close();
        assert!(waiters.lock_for_fork().is_none());
    }
}
