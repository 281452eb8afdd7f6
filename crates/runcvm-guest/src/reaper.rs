//! PID 1's duty: init's main thread reaps every child for the VM's life and
//! hands each status to whoever waits for that process (a container's
//! thread, an exec session's). Orphans that were reparented to init are
//! reaped and forgotten.

use crate::spawn::Started;
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

/// The processes someone waits for, by pid.
#[derive(Debug, Default)]
pub struct Waiters {
    pids: Mutex<HashMap<i32, Sender<ExitStatus>>>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Sender<ExitStatus>>> {
        self.pids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a process with the registry locked, so that even one that
    /// ends at once is found here; returns it with the end of the channel
    /// its status comes on.
    pub fn start<E>(&self, start: impl FnOnce() -> Result<Started, E>) -> Result<(Started, Receiver<ExitStatus>), E> {
        let mut pids = self.lock();
        let started = start()?;
        let (sender, receiver) = mpsc::channel();
        pids.insert(started.pid.as_raw(), sender);
        Ok((started, receiver))
    }

    /// Runs `f` while no process is being started: what it changes is seen
    /// by every start after it, and none is half done.
    pub fn between_starts<T>(&self, f: impl FnOnce() -> T) -> T {
        let _pids = self.lock();
        f()
    }

    fn reaped(&self, pid: Pid, status: ExitStatus) {
        if let Some(sender) = self.lock().remove(&pid.as_raw()) {
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
