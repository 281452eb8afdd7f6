//! PID 1's duty: every child is reaped here, the workload's status is
//! returned, and every other child's status goes to a handler (an exec
//! session's process is waited for by its session).

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use runcvm_proto::ExitStatus;

/// How a reaped child ended, if it ended (rather than stopped).
fn ended(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Code(code))),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, ExitStatus::Signal(signal as i32))),
        _ => None,
    }
}

/// Reaps every child until `workload` ends; returns how it ended, or
/// `None` if it could no longer be waited for.
pub fn wait_for(workload: Pid, mut other: impl FnMut(Pid, ExitStatus)) -> Option<ExitStatus> {
    loop {
        match waitpid(None, None) {
            Ok(status) => match ended(status) {
                Some((pid, status)) if pid == workload => return Some(status),
                Some((pid, status)) => other(pid, status),
                None => {}
            },
            Err(Errno::EINTR) => {}
            Err(e) => {
                runcvm_log::error!("lost track of the workload: {e}");
                return None;
            }
        }
    }
}

/// Reaps until no child is left.
pub fn reap_all(mut other: impl FnMut(Pid, ExitStatus)) {
    loop {
        match waitpid(None, None) {
            Ok(status) => {
                if let Some((pid, status)) = ended(status) {
                    other(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
