//! Telling the node that the guest's OOM killer ended the workload.
//!
//! kubelet shows `OOMKilled` when containerd marks the container so, and
//! containerd does that only on the runc shim's OOM event, which the shim
//! raises when the container's cgroup on the node has an OOM kill (cgroup
//! v1: the `memory.oom_control` eventfd; v2: `oom_kill` in
//! `memory.events`). A guest's OOM kill happens in the guest's kernel, where
//! the shim cannot see it; the exit code (137) alone reads as `Error`.
//!
//! So the launcher mirrors it: once the relayed files are written back, and
//! while the VMM still holds the guest's memory, a child process marked to
//! go first (`oom_score_adj` 1000) fills what is left of the container's
//! cgroup until the node's kernel OOM-kills there. That is a real OOM kill
//! in the container's own cgroup, where the shim looks, and it costs the
//! node nothing beyond the pod's own limit: the cgroup bounds it, and the
//! container is ending. The kernel may pick another of the cgroup's
//! processes instead (QEMU, whose memory is larger, where the pod's
//! processes have an `oom_score_adj` near 1000 too), or all of them (cgroup
//! v2's `memory.oom.group`, which kubelet sets): the event is the same, and
//! the workload had already ended. Without a memory limit on the cgroup
//! there is nothing to fill, and the termination message says what
//! happened instead.

use std::path::Path;

/// What the termination message says when the workload left none.
pub const TERMINATION_NOTE: &str = "OOMKilled: the guest kernel's OOM killer ended the container's process (its memory limit, held in the VM, was reached)\n";
/// The child's allocations, each faulted in at once.
const CHUNK: usize = 8 << 20;
/// How far past the limit the child goes before it gives up (swap, or a
/// limit raised meanwhile): the cgroup then had no OOM to report.
const PAST_THE_LIMIT: u64 = 256 << 20;

/// Mirrors the guest's OOM kill in the container's cgroup (see the module
/// docs); `limit` is the cgroup's memory limit. Returns whether the node's
/// kernel OOM-killed the child.
pub fn mirror_in_cgroup(limit: u64) -> bool {
    // SAFETY: the child only calls async-signal-safe functions (open,
    // write, mmap, _exit) and allocates nothing.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => fill(limit.saturating_add(PAST_THE_LIMIT)),
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let killed = matches!(
                nix::sys::wait::waitpid(child, None),
                Ok(nix::sys::wait::WaitStatus::Signaled(
                    _,
                    nix::sys::signal::Signal::SIGKILL,
                    _
                ))
            );
            if killed {
                runcvm_log::debug!("the guest's OOM kill is mirrored by one in the container's cgroup");
            } else {
                runcvm_log::debug!("the container's cgroup did not OOM-kill the filler: no OOM event for the node");
            }
            killed
        }
        Err(e) => {
            runcvm_log::debug!("cannot start the cgroup filler: {e}");
            false
        }
    }
}

/// In the child: first to go, then memory until the kernel kills it.
fn fill(bound: u64) -> ! {
    let flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC;
    if let Ok(adj) = nix::fcntl::open(c"/proc/self/oom_score_adj", flags, nix::sys::stat::Mode::empty()) {
        let _ = nix::unistd::write(&adj, b"1000");
    }
    let mut filled: u64 = 0;
    while filled < bound {
        // SAFETY: a fresh private anonymous mapping; MAP_POPULATE faults
        // its pages in now, which charges them to the cgroup.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            break;
        }
        filled += CHUNK as u64;
    }
    // SAFETY: _exit ends the child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

/// Writes [`TERMINATION_NOTE`] to the termination message file when the
/// workload left it empty (what it wrote there wins).
pub fn note_in_termination_message(path: &Path) {
    let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
    if !empty {
        return;
    }
    if let Err(e) = std::fs::write(path, TERMINATION_NOTE) {
        runcvm_log::warn!("cannot write the OOM note to {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_goes_only_into_an_empty_termination_message() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        let written = dir.path().join("written");
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&written, b"the workload's words").unwrap();
        note_in_termination_message(&empty);
        note_in_termination_message(&written);
        note_in_termination_message(&dir.path().join("absent"));
        assert_eq!(std::fs::read_to_string(&empty).unwrap(), TERMINATION_NOTE);
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "the workload's words");
        assert!(!dir.path().join("absent").exists());
    }
}
