//! The system calls that change a process's capabilities. Each is one or a
//! few raw calls with integer arguments, safe in a forked child before exec;
//! failures are the errno (`i32`) the kernel gave.

use crate::CapabilityMasks;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The errno of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

/// `prctl` with every argument a full unsigned long: the kernel refuses
/// non-zero unused arguments, and a variadic literal would be an int.
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), i32> {
    const UNUSED: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    if unsafe { libc::prctl(option, arg2, arg3, UNUSED, UNUSED) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// A prctl sub-option (a small non-negative constant) as an argument.
fn option_argument(value: libc::c_int) -> libc::c_ulong {
    libc::c_ulong::try_from(value).unwrap_or_default()
}

/// Drops from the bounding set every capability not in `keep`, up to the
/// kernel's last one (the first number it does not know ends the loop).
/// Needs `CAP_SETPCAP` in the effective set: without it, `EPERM`.
pub fn drop_from_bounding(keep: u64) -> Result<(), i32> {
    for number in 0..64u8 {
        if keep & (1 << number) != 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(number), 0) {
            Ok(()) => {}
            Err(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keeps (or stops keeping) the permitted set across a change from uid 0.
pub fn keep_across_user_change(keep: bool) -> Result<(), i32> {
    prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0)
}

/// Sets the effective, permitted and inheritable sets (`capset`).
pub fn set(masks: &CapabilityMasks) -> Result<(), i32> {
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
    if unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

/// Clears the ambient set; a kernel without ambient capabilities has none
/// to clear.
pub fn clear_ambient() -> Result<(), i32> {
    match prctl(libc::PR_CAP_AMBIENT, option_argument(libc::PR_CAP_AMBIENT_CLEAR_ALL), 0) {
        Err(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Raises every capability of `mask` in the ambient set (each must be
/// permitted and inheritable already).
pub fn raise_ambient(mask: u64) -> Result<(), i32> {
    for number in (0..64u8).filter(|n| mask & (1 << n) != 0) {
        prctl(
            libc::PR_CAP_AMBIENT,
            option_argument(libc::PR_CAP_AMBIENT_RAISE),
            libc::c_ulong::from(number),
        )?;
    }
    Ok(())
}

/// Sets `no_new_privs`: nothing exec'd gains privileges from set-user-ID
/// bits or file capabilities.
pub fn set_no_new_privileges() -> Result<(), i32> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
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
