//! `/.runcvm/plan.json`: what the guest needs besides the entrypoint.
//!
//! Later issues add the network and volumes here; every addition is a new
//! optional field or a version bump, never a silent change of meaning.

use serde::{Deserialize, Serialize};

/// The format version written by this build.
pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchPlan {
    pub version: u32,
    /// The container's hostname, set in the guest before the workload starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The root file system is read-only for the workload
    /// (`readOnlyRootFilesystem`, `docker run --read-only`): init makes it so
    /// once it has written its own files there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root: bool,
}

/// Why a plan file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// launch plan is not valid JSON of the expected shape
    #[error("launch plan is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
    /// launch plan has format version {found}, this build reads version {PLAN_VERSION}
    #[error(
        "launch plan has format version {found}, this build reads version {PLAN_VERSION}: use the same runcvm build for host and guest"
    )]
    UnsupportedVersion { found: u32 },
}

impl Default for LaunchPlan {
    fn default() -> Self {
        Self {
            version: PLAN_VERSION,
            hostname: None,
            read_only_root: false,
        }
    }
}

impl LaunchPlan {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("plan always serializes");
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, PlanError> {
        let plan: Self = serde_json::from_slice(bytes).map_err(PlanError::Malformed)?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::UnsupportedVersion { found: plan.version });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let plan = LaunchPlan {
            hostname: Some("pod-a".into()),
            read_only_root: true,
            ..LaunchPlan::default()
        };
        assert_eq!(LaunchPlan::from_json(&plan.to_json()).unwrap(), plan);
        assert!(LaunchPlan::from_json(br#"{"version":1,"extra":1}"#).is_err());
        assert!(matches!(
            LaunchPlan::from_json(br#"{"version":9}"#),
            Err(PlanError::UnsupportedVersion { found: 9 })
        ));
    }
}
