//! Applies a process's capabilities in the forked child, in runc's order:
//! the bounding set before the user changes (keeping the permitted set
//! across `setuid`), then effective, permitted and inheritable, then the
//! ambient set. Only raw system calls: these run between fork and exec.
//! What can be known before the fork (names the kernel does not know,
//! ambient capabilities it will refuse) is worked out by [`plan`], which
//! may allocate and log.

use nix::errno::Errno;
use runcvm_spec::caps::{capability_number, sys};
use runcvm_spec::{CapabilityMasks, ProcessCapabilities};

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

/// The masks for `wanted` on the running kernel, and the warnings to log:
/// names neither this build nor the kernel knows (runc skips those with a
/// warning too), and ambient capabilities the kernel would refuse (an ambient
/// capability must be permitted and inheritable).
pub fn plan(wanted: &ProcessCapabilities) -> (CapabilityMasks, Vec<String>) {
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
    (masks, warnings)
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

/// Before the user changes: drops from the bounding set what the plan
/// leaves out, and keeps the permitted set across `setuid` so the sets can
/// be applied after it.
pub fn before_user_change(masks: &CapabilityMasks) -> Result<(), (CapStep, Errno)> {
    let errno = |step| move |e| (step, Errno::from_raw(e));
    match sys::drop_from_bounding(masks.bounding).map_err(errno(CapStep::Bounding))? {
        sys::BoundingDrop::Done => {}
        // Init is root with every capability; this cannot happen but is
        // no reason to go on with more than was asked.
        sys::BoundingDrop::NotPermitted => return Err((CapStep::Bounding, Errno::EPERM)),
    }
    sys::keep_across_user_change(true).map_err(errno(CapStep::KeepCaps))
}

/// After the user changes: effective, permitted and inheritable as planned,
/// then the ambient set (the plan holds only what the kernel accepts).
pub fn after_user_change(masks: &CapabilityMasks) -> Result<(), (CapStep, Errno)> {
    let errno = |step| move |e| (step, Errno::from_raw(e));
    sys::keep_across_user_change(false).map_err(errno(CapStep::KeepCaps))?;
    sys::set(masks).map_err(errno(CapStep::Sets))?;
    sys::clear_ambient().map_err(errno(CapStep::Ambient))?;
    sys::raise_ambient(masks.ambient).map_err(errno(CapStep::Ambient))
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
        let (masks, warnings) = plan(&wanted);
        assert_eq!(masks.bounding, 1 << 5);
        assert_eq!(masks.ambient, 1 << 5, "CAP_CHOWN is not inheritable");
        assert_eq!(
            warnings,
            [
                "skipping capabilities this guest kernel does not know: CAP_FUTURE",
                "skipping ambient capabilities that are not both permitted and inheritable: CAP_CHOWN",
            ]
        );
    }
}
