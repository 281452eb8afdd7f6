//! Applies a process's capabilities in the forked child, in runc's order:
//! the bounding set before the user changes (keeping the permitted set
//! across `setuid`), then effective, permitted and inheritable, then the
//! ambient set. Only raw system calls: these run between fork and exec.
//! What can be known before the fork (names the kernel does not know,
//! ambient capabilities it will refuse) is worked out by [`plan`], which
//! may allocate and log.

use runcvm_caps::{CapabilityMasks, ProcessCapabilities, capability_number, sys};
use std::sync::OnceLock;

/// Which part of applying the capabilities failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapStep {
    Bounding,
    Keep,
    Sets,
    Ambient,
}

impl CapStep {
    /// What the step does, in a failure message.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Bounding => "dropping from the bounding set",
            Self::Keep => "keeping them across the user change",
            Self::Sets => {
                "setting the effective, permitted and inheritable sets (effective must be within permitted, \
                 inheritable within the bounding set)"
            }
            Self::Ambient => "raising an ambient capability",
        }
    }
}

/// The masks for `wanted` on the running kernel, and the warnings to log:
/// names neither this build nor the kernel knows (runc skips those with a
/// warning too), and ambient capabilities the kernel would refuse (an ambient
/// capability must be permitted and inheritable).
pub fn plan(wanted: &ProcessCapabilities) -> (CapabilityMasks, Vec<String>) {
    let last = last_capability();
    let (mut masks, unknown) = wanted.masks(last);
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

/// The highest capability the running kernel knows, read once.
fn last_capability() -> u32 {
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            // Without /proc: the highest this build knows; a bounding drop
            // the kernel does not know ends early instead.
            .unwrap_or(40)
    })
}

/// Before the user changes: drops from the bounding set what the plan
/// leaves out, and keeps the permitted set across `setuid` so the sets can
/// be applied after it.
pub fn before_user_change(masks: &CapabilityMasks) -> Result<(), (CapStep, i32)> {
    let failed = |step| move |errno| (step, errno);
    sys::drop_from_bounding(masks.bounding).map_err(failed(CapStep::Bounding))?;
    sys::keep_across_user_change(true).map_err(failed(CapStep::Keep))
}

/// After the user changes: effective, permitted and inheritable as planned,
/// then the ambient set (the plan holds only what the kernel accepts).
pub fn after_user_change(masks: &CapabilityMasks) -> Result<(), (CapStep, i32)> {
    let failed = |step| move |errno| (step, errno);
    sys::keep_across_user_change(false).map_err(failed(CapStep::Keep))?;
    sys::set(masks).map_err(failed(CapStep::Sets))?;
    sys::clear_ambient().map_err(failed(CapStep::Ambient))?;
    sys::raise_ambient(masks.ambient).map_err(failed(CapStep::Ambient))
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
