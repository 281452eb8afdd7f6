//! Applies a process's capabilities in the forked child, in runc's order:
//! the bounding set before the user changes (keeping the permitted set
//! across `setuid`), then effective, permitted and inheritable, then the
//! ambient set. Only raw system calls: these run between fork and exec.
//! What can be known before the fork (names the kernel does not know,
//! ambient capabilities it will refuse) is worked out by [`plan`], which
//! may allocate and log.

use nix::errno::Errno;
use runcvm_spec::caps::capability_number;
use runcvm_spec::{CapabilityMasks, ProcessCapabilities};

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Which call of the sequence failed, for the start failure's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapStep {
    /// `PR_CAPBSET_DROP`.
    Bounding,
    /// `PR_SET_KEEPCAPS`.
    KeepCaps,
    /// `capset`.
    Sets,
    /// `PR_CAP_AMBIENT_RAISE`.
    Ambient,
}

/// What the child applies: the masks and the kernel's last capability.
#[derive(Debug, Clone, Copy)]
pub struct CapPlan {
    pub masks: CapabilityMasks,
    pub last: u32,
}

/// The masks for `wanted` on the running kernel, and the warnings to log:
/// names neither this build nor the kernel knows (runc skips those with a
/// warning too), and ambient capabilities the kernel would refuse (an ambient
/// capability must be permitted and inheritable).
pub fn plan(wanted: &ProcessCapabilities) -> (CapPlan, Vec<String>) {
    let last = last_capability();
    let (mut masks, mut unknown) = wanted.masks();
    let all_of_this_kernel = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
    for set in [
        &wanted.bounding,
        &wanted.effective,
        &wanted.permitted,
        &wanted.inheritable,
        &wanted.ambient,
    ] {
        for name in set {
            if capability_number(name).is_some_and(|n| n > last) && !unknown.contains(name) {
                unknown.push(name.clone());
            }
        }
    }
    for mask in [
        &mut masks.bounding,
        &mut masks.effective,
        &mut masks.permitted,
        &mut masks.inheritable,
        &mut masks.ambient,
    ] {
        *mask &= all_of_this_kernel;
    }
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        warnings.push(format!(
            "skipping capabilities this guest kernel does not know: {}",
            unknown.join(", ")
        ));
    }
    let refused = masks.ambient & !(masks.permitted & masks.inheritable);
    if refused != 0 {
        let names: Vec<String> = wanted
            .ambient
            .iter()
            .filter(|name| capability_number(name).is_some_and(|n| n <= last && refused & (1 << n) != 0))
            .cloned()
            .collect();
        warnings.push(format!(
            "skipping ambient capabilities that are not both permitted and inheritable: {}",
            names.join(", ")
        ));
        masks.ambient &= !refused;
    }
    (CapPlan { masks, last }, warnings)
}

/// The highest capability the running kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        // Without /proc: the highest this build knows; a drop the kernel
        // does not know ends the loop below instead.
        .unwrap_or(40)
}

/// Why a call of the sequence fails, most often.
impl CapStep {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Bounding => "dropping from the bounding set",
            Self::KeepCaps => "keeping capabilities across the user change",
            Self::Sets => {
                "setting the effective, permitted and inheritable sets (effective must be within permitted, \
                 inheritable within the bounding set)"
            }
            Self::Ambient => "raising an ambient capability",
        }
    }
}

/// `prctl` with every argument a full `unsigned long`: the kernel refuses
/// non-zero unused arguments, and a variadic `0` is only an `int`.
fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    const UNUSED: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    let result = unsafe { libc::prctl(option, arg2, arg3, UNUSED, UNUSED) };
    if result < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// A prctl sub-option (a small non-negative constant) as an argument.
fn option_argument(value: libc::c_int) -> libc::c_ulong {
    libc::c_ulong::try_from(value).unwrap_or_default()
}

/// Before the user changes: drops from the bounding set what the plan
/// leaves out, and keeps the permitted set across `setuid` so the sets can
/// be applied after it.
pub fn before_user_change(plan: &CapPlan) -> Result<(), (CapStep, Errno)> {
    for number in 0..=plan.last.min(63) {
        if plan.masks.bounding & (1 << number) == 0 {
            match prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(number), 0) {
                Ok(()) => {}
                // Past the kernel's last capability: nothing more to drop.
                Err(Errno::EINVAL) => break,
                Err(e) => return Err((CapStep::Bounding, e)),
            }
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(|e| (CapStep::KeepCaps, e))
}

/// After the user changes: effective, permitted and inheritable as planned,
/// then the ambient set (the plan holds only what the kernel accepts).
pub fn after_user_change(plan: &CapPlan) -> Result<(), (CapStep, Errno)> {
    prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(|e| (CapStep::KeepCaps, e))?;
    let masks = &plan.masks;
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
        return Err((CapStep::Sets, Errno::last()));
    }
    // Clearing fails only on a kernel without ambient capabilities, which
    // then has none to clear.
    let _ = prctl(libc::PR_CAP_AMBIENT, option_argument(libc::PR_CAP_AMBIENT_CLEAR_ALL), 0);
    for number in 0..=plan.last.min(63) {
        if masks.ambient & (1 << number) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                option_argument(libc::PR_CAP_AMBIENT_RAISE),
                libc::c_ulong::from(number),
            )
            .map_err(|e| (CapStep::Ambient, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_what_it_skips() {
        let wanted = ProcessCapabilities {
            bounding: vec!["CAP_KILL".into(), "CAP_FUTURE".into()],
            permitted: vec!["CAP_KILL".into(), "CAP_CHOWN".into()],
            inheritable: vec!["CAP_KILL".into()],
            ambient: vec!["CAP_KILL".into(), "CAP_CHOWN".into()],
            ..Default::default()
        };
        let (plan, warnings) = plan(&wanted);
        assert_eq!(plan.masks.bounding, 1 << 5);
        assert_eq!(plan.masks.ambient, 1 << 5, "CAP_CHOWN is not inheritable");
        assert_eq!(
            warnings,
            [
                "skipping capabilities this guest kernel does not know: CAP_FUTURE",
                "skipping ambient capabilities that are not both permitted and inheritable: CAP_CHOWN",
            ]
        );
    }
}
