//! The container's seccomp profile, applied in the guest as runc applies it
//! on a node: the OCI profile's types ([`SeccompProfile`]), its compilation
//! to a classic BPF program ([`compile`]) and the system call that installs
//! it ([`install`]), safe between fork and exec.
//!
//! Written here rather than taken from libseccomp: guest init is static and
//! small, and the profile must mean in the guest what it means to runc
//! (see [`compile`] for the rules).

mod compile;
mod profile;
mod table;

pub use compile::{Filter, Instruction, MAX_INSTRUCTIONS, compile};
pub use profile::{Action, ArgCondition, Operator, SeccompProfile, SyscallRule};

/// Why a profile cannot be applied in the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    /// SCMP_ACT_NOTIFY needs a seccomp agent
    #[error(
        "the seccomp profile hands calls to a seccomp agent (SCMP_ACT_NOTIFY), which runs on the node where a VM's guest cannot reach it: use a profile without SCMP_ACT_NOTIFY"
    )]
    Notify,
    /// an unknown filter flag
    #[error("the seccomp profile has the unknown flag {0:?}")]
    Flag(String),
    /// an argument index past the sixth
    #[error("a seccomp rule compares argument {0}, but system calls have six (0 to 5)")]
    ArgIndex(u32),
    /// more conditions than arguments
    #[error("a seccomp rule has {0} argument conditions; at most 6 are supported")]
    TooManyConditions(usize),
    /// the program is over the kernel's limit
    #[error("the seccomp profile compiles to {0} instructions, over the kernel's limit of {MAX_INSTRUCTIONS}")]
    TooLong(usize),
    /// a fault of the compiler
    #[error("internal error compiling the seccomp profile: {0}")]
    Internal(&'static str),
}

/// The x86_64 number of the system call `name`, if x86_64 has it.
pub fn syscall_number(name: &str) -> Option<u32> {
    table::SYSCALLS
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .map(|at| table::SYSCALLS[at].1)
}

/// `SECCOMP_SET_MODE_FILTER`.
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;

/// Installs `filter` on the calling thread, which must have `no_new_privs`
/// set or `CAP_SYS_ADMIN`. Returns the errno on failure. Allocates nothing,
/// so it is safe between fork and exec.
pub fn install(filter: &Filter) -> Result<(), i32> {
    let program = libc::sock_fprog {
        len: u16::try_from(filter.program.len()).map_err(|_| libc::EINVAL)?,
        // `Instruction` is `repr(C)` with `sock_filter`'s fields in order.
        filter: filter.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: seccomp(2) reads `program`, which points at `len` valid
    // instructions that outlive the call; nothing else is touched.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_uint::try_from(filter.flags).unwrap_or(0),
            &raw const program,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
    }
}

#[cfg(test)]
mod tests;
