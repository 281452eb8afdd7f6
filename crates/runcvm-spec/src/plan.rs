//! `/.runcvm/plan.json`: what the guest needs besides the entrypoint.
//!
//! Later issues add the network and volumes here; every addition is a new
//! optional field or a version bump, never a silent change of meaning.

use runcvm_seccomp::SeccompProfile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Kernel parameters set before the workload starts: the pod's sysctls
    /// (`kernel.shm_rmid_forced`, `net.ipv4.ip_unprivileged_port_start`…),
    /// by their dotted names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// The workload is PID 1 of a PID namespace of its own (CRI's CONTAINER
    /// mode, what kubelet asks for unless the pod shares its processes);
    /// otherwise it shares the pod's (POD mode, `shareProcessNamespace`),
    /// where PID 1 is the pod's pause process, as a pod's containers share
    /// the pause container's on a node, or `pid_namespace_of`'s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own_pid_namespace: bool,
    /// The container (by its name on the node, the CRI id) whose PID
    /// namespace this one joins: an ephemeral container's target
    /// (`kubectl debug --target`, CRI's TARGET mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace_of: Option<String>,
    /// Paths hidden from the workload and its execs (`maskedPaths`): a file
    /// becomes `/dev/null`, a folder an empty read-only tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    /// Paths the workload and its execs see read-only (`readonlyPaths`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
    /// `/sys` and `/sys/fs/cgroup` are read-only to the workload, as runc
    /// mounts them for a container that is not privileged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sys_read_only: bool,
    /// The container's seccomp profile, for the workload and every exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompProfile>,
    /// The container's memory limit in bytes, held in the guest by the
    /// workload's cgroup (its `memory.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// The container's CPU limit, held in the guest by the workload's
    /// cgroup (its `cpu.max`), as runc sets it on a node: within its pod's
    /// VM a container gets no more CPU time than under runc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<CpuLimit>,
    /// The container's CPU weight against its pod's other containers (its
    /// cgroup's `cpu.weight`), from its CPU shares as runc converts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    /// An OOM kill in the container ends all its processes (its cgroup's
    /// `memory.oom.group`, from the container's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_oom_group: bool,
    /// Below DEBUG the console carries the kernel's errors, not its
    /// warnings: a pod's log is the workload's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_kernel: bool,
    /// The pod's user namespace (`hostUsers: false`): the workload and its
    /// execs run in one with these mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<UserNamespace>,
}

/// A CPU bandwidth limit: `quota_us` of CPU time per `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuLimit {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuLimit {
    /// The line of a cgroup's `cpu.max`.
    pub fn cpu_max_line(&self) -> String {
        format!("{} {}", self.quota_us, self.period_us)
    }
}

/// A user namespace's mappings, as the pod's OCI spec gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserNamespace {
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
}

/// One range of a mapping: `size` ids from `container_id` inside the
/// namespace are as many from `host_id` outside it (the guest kernel's ids,
/// as the node's would be under runc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

impl IdMapping {
    /// The outside id of `inside`, if this range maps it.
    pub fn to_host(&self, inside: u32) -> Option<u32> {
        let offset = inside.checked_sub(self.container_id).filter(|o| *o < self.size)?;
        self.host_id.checked_add(offset)
    }

    /// The inside id of `outside`, if this range maps it.
    pub fn to_container(&self, outside: u32) -> Option<u32> {
        let offset = outside.checked_sub(self.host_id).filter(|o| *o < self.size)?;
        self.container_id.checked_add(offset)
    }

    /// The line of `/proc/PID/uid_map` (and `gid_map`) for this range.
    pub fn map_line(&self) -> String {
        format!("{} {} {}", self.container_id, self.host_id, self.size)
    }
}

impl UserNamespace {
    /// The outside ids of the inside root, as `/proc/PID/uid_map` maps them.
    pub fn root_outside(&self) -> Option<(u32, u32)> {
        let map = |ranges: &[IdMapping]| ranges.iter().find_map(|r| r.to_host(0));
        Some((map(&self.uid_mappings)?, map(&self.gid_mappings)?))
    }
}

/// What a pod's VM is set up with once, before any of its containers: what
/// a pod's containers share (the pause container's, under runc). It comes
/// from the plan of the container whose VM it is (the sandbox's, in a pod);
/// those fields of the other containers' plans are not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodPlan {
    /// The pod's hostname (its UTS namespace is the guest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The pod's sysctls, set once the network is up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Below DEBUG the console carries the kernel's errors alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet_kernel: bool,
    /// The pod's user namespace (`hostUsers: false`), which every container
    /// of the pod and its execs run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<UserNamespace>,
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
            sysctls: BTreeMap::new(),
            own_pid_namespace: false,
            pid_namespace_of: None,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            sys_read_only: false,
            seccomp: None,
            memory_limit_bytes: None,
            cpu_limit: None,
            cpu_weight: None,
            memory_oom_group: false,
            quiet_kernel: false,
            user_namespace: None,
        }
    }
}

impl LaunchPlan {
    /// The pod-level part of this plan: what the VM is set up with before
    /// any container.
    pub fn pod_plan(&self) -> PodPlan {
        PodPlan {
            hostname: self.hostname.clone(),
            sysctls: self.sysctls.clone(),
            quiet_kernel: self.quiet_kernel,
            user_namespace: self.user_namespace.clone(),
        }
    }

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
    fn mappings_translate_both_ways_and_only_inside_their_range() {
        let range = IdMapping {
            container_id: 0,
            host_id: 65536,
            size: 65536,
        };
        assert_eq!(range.to_host(0), Some(65536));
        assert_eq!(range.to_host(1000), Some(66536));
        assert_eq!(range.to_host(65536), None);
        assert_eq!(range.to_container(65536 + 7), Some(7));
        assert_eq!(range.to_container(0), None);
        assert_eq!(range.map_line(), "0 65536 65536");
    }

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let plan = LaunchPlan {
            hostname: Some("pod-a".into()),
            read_only_root: true,
            sysctls: [("kernel.shm_rmid_forced".to_owned(), "1".to_owned())].into(),
            own_pid_namespace: true,
            pid_namespace_of: Some("app".into()),
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
            sys_read_only: true,
            seccomp: Some(SeccompProfile {
                default_action: runcvm_seccomp::Action::Allow,
                default_errno_ret: None,
                architectures: Vec::new(),
                flags: Vec::new(),
                listener_path: None,
                syscalls: Vec::new(),
            }),
            memory_limit_bytes: Some(15 << 20),
            cpu_limit: Some(CpuLimit {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            cpu_weight: Some(39),
            memory_oom_group: true,
            quiet_kernel: true,
            user_namespace: Some(UserNamespace {
                uid_mappings: vec![IdMapping {
                    container_id: 0,
                    host_id: 65536,
                    size: 65536,
                }],
                gid_mappings: vec![IdMapping {
                    container_id: 0,
                    host_id: 65536,
                    size: 65536,
                }],
            }),
            version: PLAN_VERSION,
        };
        assert_eq!(LaunchPlan::from_json(&plan.to_json()).unwrap(), plan);
        assert!(LaunchPlan::from_json(br#"{"version":1,"extra":1}"#).is_err());
        assert!(matches!(
            LaunchPlan::from_json(br#"{"version":9}"#),
            Err(PlanError::UnsupportedVersion { found: 9 })
        ));
    }
}
