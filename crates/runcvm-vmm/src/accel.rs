//! `RUNCVM_ACCEL=auto|kvm|tcg` and what it resolves to.

use std::fmt;
use std::str::FromStr;

/// The environment variable that picks the acceleration.
pub const ACCEL_ENV: &str = "RUNCVM_ACCEL";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// KVM if it can boot the guest, else TCG with one WARN line.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// What the VM runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl From<runcvm_spec::launch::LaunchAccel> for Accel {
    fn from(accel: runcvm_spec::launch::LaunchAccel) -> Self {
        match accel {
            runcvm_spec::launch::LaunchAccel::Kvm => Self::Kvm,
            runcvm_spec::launch::LaunchAccel::Tcg => Self::Tcg,
        }
    }
}

impl From<Accel> for runcvm_spec::launch::LaunchAccel {
    fn from(accel: Accel) -> Self {
        match accel {
            Accel::Kvm => Self::Kvm,
            Accel::Tcg => Self::Tcg,
        }
    }
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RUNCVM_ACCEL={0:?} is not an acceleration: use auto, kvm or tcg
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ACCEL_ENV}={0:?} is not an acceleration: use auto, kvm or tcg")]
pub struct UnknownAccelChoice(pub String);

impl FromStr for AccelChoice {
    type Err = UnknownAccelChoice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            _ => Err(UnknownAccelChoice(s.to_owned())),
        }
    }
}

impl AccelChoice {
    /// The choice a binary's `RUNCVM_ACCEL` value makes (unset: `auto`).
    pub fn from_setting(value: Option<&str>) -> Result<Self, UnknownAccelChoice> {
        value.map_or(Ok(Self::Auto), str::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices_and_names_accepted_values() {
        assert_eq!("".parse(), Ok(AccelChoice::Auto));
        assert_eq!("AUTO".parse(), Ok(AccelChoice::Auto));
        assert_eq!("kvm".parse(), Ok(AccelChoice::Kvm));
        assert_eq!("tcg".parse(), Ok(AccelChoice::Tcg));
        assert_eq!(
            "hvf".parse::<AccelChoice>().unwrap_err().to_string(),
            "RUNCVM_ACCEL=\"hvf\" is not an acceleration: use auto, kvm or tcg"
        );
    }
}
