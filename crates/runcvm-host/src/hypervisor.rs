//! Which VMM runs the guest: `auto`, `firecracker` or `qemu`, asked for by
//! `RUNCVM_HYPERVISOR` for `runcvm run`, and by the node's settings
//! (`runcvm install --hypervisor`) for a pod, whose env cannot choose.
//! `auto` takes Firecracker when its binary is installed and KVM boots
//! guests on this host (Firecracker has no emulation), else QEMU, and says
//! why in one line.

use runcvm_vmm::Accel;
use runcvm_vmm::firecracker::{FirecrackerBinary, LaunchError};
use std::path::Path;
use std::str::FromStr;

pub const HYPERVISOR_ENV: &str = "RUNCVM_HYPERVISOR";

/// What `RUNCVM_HYPERVISOR` or the node's settings ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorChoice {
    Auto,
    Firecracker,
    Qemu,
}

impl FromStr for HypervisorChoice {
    type Err = HypervisorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "firecracker" => Ok(Self::Firecracker),
            "qemu" => Ok(Self::Qemu),
            _ => Err(HypervisorError::Unknown(s.to_owned())),
        }
    }
}

impl HypervisorChoice {
    /// The choice a binary's `RUNCVM_HYPERVISOR` value makes (unset: `auto`).
    pub fn from_setting(value: Option<&str>) -> Result<Self, HypervisorError> {
        value.map_or(Ok(Self::Auto), str::parse)
    }
}

/// What `runcvm run` was asked for: its `RUNCVM_HYPERVISOR` and
/// `RUNCVM_FIRECRACKER` values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub hypervisor: Option<&'a str>,
    pub firecracker: Option<&'a Path>,
}

impl From<crate::settings::HypervisorSetting> for HypervisorChoice {
    fn from(setting: crate::settings::HypervisorSetting) -> Self {
        use crate::settings::HypervisorSetting;
        match setting {
            HypervisorSetting::Auto => Self::Auto,
            HypervisorSetting::Firecracker => Self::Firecracker,
            HypervisorSetting::Qemu => Self::Qemu,
        }
    }
}

/// The VMM that runs the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hypervisor {
    Qemu,
    Firecracker(FirecrackerBinary),
}

impl Hypervisor {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Qemu => "qemu",
            Self::Firecracker(_) => "firecracker",
        }
    }
}

/// The VMM asked for cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// RUNCVM_HYPERVISOR is not a VMM
    #[error("{HYPERVISOR_ENV}={0:?} is not a hypervisor: use auto, firecracker or qemu")]
    Unknown(String),
    /// Firecracker asked for and not installed
    #[error("{by} asks for Firecracker, which cannot be used: {source}; or ask for qemu")]
    NoFirecracker {
        by: String,
        #[source]
        source: LaunchError,
    },
    /// Firecracker asked for without KVM
    #[error(
        "{by} asks for Firecracker, which needs KVM that boots guests, and this host runs the VM under TCG; or ask for qemu"
    )]
    NoKvm { by: String },
}

/// The decision, and for `auto` ending on QEMU, why (for one INFO line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub hypervisor: Hypervisor,
    pub why_not_firecracker: Option<String>,
}

/// Decides from what is asked (by `by`, named in errors), whether
/// Firecracker is installed, and the acceleration already resolved (`Kvm`
/// only where KVM boots guests).
pub fn decide(
    choice: HypervisorChoice,
    by: &str,
    firecracker: Result<FirecrackerBinary, LaunchError>,
    accel: Accel,
) -> Result<Decision, HypervisorError> {
    let qemu = |why: Option<String>| Decision {
        hypervisor: Hypervisor::Qemu,
        why_not_firecracker: why,
    };
    match (choice, firecracker, accel) {
        (HypervisorChoice::Qemu, _, _) => Ok(qemu(None)),
        (HypervisorChoice::Firecracker, Err(source), _) => Err(HypervisorError::NoFirecracker {
            by: by.to_owned(),
            source,
        }),
        (HypervisorChoice::Firecracker, Ok(_), Accel::Tcg) => Err(HypervisorError::NoKvm { by: by.to_owned() }),
        (HypervisorChoice::Auto, Err(e), _) => Ok(qemu(Some(e.to_string()))),
        (HypervisorChoice::Auto, Ok(_), Accel::Tcg) => Ok(qemu(Some(
            "Firecracker needs KVM that boots guests, and this host runs the VM under TCG".to_owned(),
        ))),
        (_, Ok(binary), Accel::Kvm) => Ok(Decision {
            hypervisor: Hypervisor::Firecracker(binary),
            why_not_firecracker: None,
        }),
    }
}

/// [`decide`] for `runcvm run`: `RUNCVM_HYPERVISOR`, Firecracker from
/// `RUNCVM_FIRECRACKER` or `install_root/bin/firecracker`. Logs at INFO why
/// `auto` ends on QEMU.
pub fn resolve(asked: Asked<'_>, install_root: Option<&Path>, accel: Accel) -> Result<Hypervisor, HypervisorError> {
    let decision = decide_here(asked, install_root, accel)?;
    if let Some(why) = &decision.why_not_firecracker {
        runcvm_log::info!("{why}; running the VM on QEMU");
    }
    runcvm_log::debug!("hypervisor {}", decision.hypervisor.name());
    Ok(decision.hypervisor)
}

/// [`resolve`] without the log line.
pub fn decide_here(asked: Asked<'_>, install_root: Option<&Path>, accel: Accel) -> Result<Decision, HypervisorError> {
    let choice = HypervisorChoice::from_setting(asked.hypervisor)?;
    let by = format!("{HYPERVISOR_ENV}={}", asked.hypervisor.unwrap_or_default().trim());
    decide(choice, &by, locate_firecracker(asked.firecracker, install_root), accel)
}

/// The node's install, where `runcvm run` from a build folder looks too.
const NODE_INSTALL: &str = runcvm_spec::layout::DEFAULT_ROOT;

/// `chosen` (`RUNCVM_FIRECRACKER`), else `bin/firecracker` of the install
/// runcvm runs from, else of `/opt/runcvm`.
pub fn locate_firecracker(
    chosen: Option<&Path>,
    install_root: Option<&Path>,
) -> Result<FirecrackerBinary, LaunchError> {
    let node = Path::new(NODE_INSTALL);
    let own = install_root.unwrap_or(node);
    match FirecrackerBinary::locate(chosen, own) {
        Err(LaunchError::Missing { .. }) if own != node && chosen.is_none() => FirecrackerBinary::locate(None, node),
        found => found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY: &str = "RUNCVM_HYPERVISOR=firecracker";

    /// An executable file where a Firecracker binary would be; the folder
    /// goes when the returned guard does.
    fn installed() -> (tempfile::TempDir, Result<FirecrackerBinary, LaunchError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("firecracker");
        std::fs::write(&path, b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let binary = FirecrackerBinary::at(&path);
        (dir, binary)
    }

    fn missing() -> Result<FirecrackerBinary, LaunchError> {
        FirecrackerBinary::at(Path::new("/nonexistent/firecracker"))
    }

    #[test]
    fn auto_takes_firecracker_only_with_its_binary_and_kvm() {
        let decision = decide(HypervisorChoice::Auto, BY, installed().1, Accel::Kvm).unwrap();
        assert!(matches!(decision.hypervisor, Hypervisor::Firecracker(_)));
        assert_eq!(decision.why_not_firecracker, None);

        let decision = decide(HypervisorChoice::Auto, BY, missing(), Accel::Kvm).unwrap();
        assert_eq!(decision.hypervisor, Hypervisor::Qemu);
        let why = decision.why_not_firecracker.unwrap();
        assert!(why.starts_with("Firecracker not found at "), "{why}");
        assert!(why.contains("/nonexistent/firecracker"), "{why}");

        let decision = decide(HypervisorChoice::Auto, BY, installed().1, Accel::Tcg).unwrap();
        assert_eq!(decision.hypervisor, Hypervisor::Qemu);
        assert!(decision.why_not_firecracker.unwrap().contains("TCG"));
    }

    #[test]
    fn an_explicit_choice_is_honoured_or_refused_clearly() {
        let decision = decide(HypervisorChoice::Qemu, BY, installed().1, Accel::Kvm).unwrap();
        assert_eq!(
            (decision.hypervisor, decision.why_not_firecracker),
            (Hypervisor::Qemu, None)
        );
        let err = decide(HypervisorChoice::Firecracker, BY, missing(), Accel::Kvm).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("RUNCVM_HYPERVISOR=firecracker asks for Firecracker, which cannot be used: "),
            "{err}"
        );
        assert!(err.to_string().ends_with("; or ask for qemu"), "{err}");
        let err = decide(HypervisorChoice::Firecracker, BY, installed().1, Accel::Tcg).unwrap_err();
        assert!(matches!(err, HypervisorError::NoKvm { .. }));
    }

    #[test]
    fn choices_parse_and_bad_ones_are_named() {
        assert_eq!("".parse::<HypervisorChoice>().unwrap(), HypervisorChoice::Auto);
        assert_eq!(
            "Firecracker".parse::<HypervisorChoice>().unwrap(),
            HypervisorChoice::Firecracker
        );
        assert_eq!("qemu".parse::<HypervisorChoice>().unwrap(), HypervisorChoice::Qemu);
        assert_eq!(
            "cloud-hypervisor".parse::<HypervisorChoice>().unwrap_err().to_string(),
            "RUNCVM_HYPERVISOR=\"cloud-hypervisor\" is not a hypervisor: use auto, firecracker or qemu"
        );
    }
}
