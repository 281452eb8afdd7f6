//! Applies a process's capabilities in the forked child, in runc's order:
//! the bounding set before the user changes (keeping the permitted set
//! across `setuid`), then effective, permitted and inheritable, then the
//! ambient set. Only raw system calls: these run between fork and exec.

use nix::errno::Errno;
use runcvm_spec::CapabilityMasks;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The highest capability the running kernel knows; without
/// `/proc/sys/kernel/cap_last_cap`, the highest this build knows.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(40)
}

fn prctl(option: libc::c_int, arg: libc::c_ulong, arg2: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    let result = unsafe { libc::prctl(option, arg, arg2, 0, 0) };
    if result < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// A prctl sub-option (a small non-negative constant) as an argument.
fn option_argument(value: libc::c_int) -> libc::c_ulong {
    libc::c_ulong::try_from(value).unwrap_or_default()
}

/// Before the user changes: drops from the bounding set what `masks` leaves
/// out, and keeps the permitted set across `setuid` so the sets can be
/// applied after it.
pub fn before_user_change(masks: &CapabilityMasks, last: u32) -> Result<(), Errno> {
    for number in 0..=last.min(63) {
        if masks.bounding & (1 << number) == 0 {
            prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(number), 0)?;
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1, 0)
}

/// After the user changes: effective, permitted and inheritable as given,
/// then the ambient set. An ambient capability the kernel refuses (one not
/// both permitted and inheritable) is left out, as runc leaves it out.
pub fn after_user_change(masks: &CapabilityMasks, last: u32) -> Result<(), Errno> {
    prctl(libc::PR_SET_KEEPCAPS, 0, 0)?;
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |mask: u64, high: bool| {
        let shifted = if high { mask >> 32 } else { mask };
        u32::try_from(shifted & 0xffff_ffff).unwrap_or(0)
    };
    let data = [false, true].map(|high| CapData {
        effective: word(masks.effective, high),
        permitted: word(masks.permitted, high),
        inheritable: word(masks.inheritable, high),
    });
    // SAFETY: capset reads one header and, for version 3, two data words
    // per set; both live on this stack frame for the whole call.
    let result = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    if result < 0 {
        return Err(Errno::last());
    }
    prctl(libc::PR_CAP_AMBIENT, option_argument(libc::PR_CAP_AMBIENT_CLEAR_ALL), 0)?;
    for number in 0..=last.min(63) {
        if masks.ambient & (1 << number) != 0 {
            let _ = prctl(
                libc::PR_CAP_AMBIENT,
                option_argument(libc::PR_CAP_AMBIENT_RAISE),
                libc::c_ulong::from(number),
            );
        }
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
