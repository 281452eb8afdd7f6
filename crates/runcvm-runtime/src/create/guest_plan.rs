//! What the guest is told about the container (`/.runcvm/plan.json`), read
//! from its OCI config on the node: hostname, read-only root, the pod's
//! sysctls, its own PID namespace or the pod's, masked and read-only paths,
//! a read-only `/sys`, the seccomp profile and the memory limit the guest
//! holds the workload to. A profile the guest could not honour is refused
//! here, before anything is made.

use super::CreateError;
use super::namespaces::PodNamespaces;
use runcvm_spec::oci::{CRI_SANDBOX_ID, ContainerRole, OciConfig};
use runcvm_spec::{LaunchPlan, UserNamespace};
use std::collections::BTreeMap;
use std::path::Path;

/// The pod's user namespace (`hostUsers: false`), if the container has one:
/// a `user` namespace entry or mappings, which must then both be there.
pub fn user_namespace(config: &OciConfig) -> Result<Option<UserNamespace>, CreateError> {
    let Some(linux) = &config.linux else { return Ok(None) };
    let wanted = !linux.uid_mappings.is_empty()
        || !linux.gid_mappings.is_empty()
        || linux.namespaces.iter().any(|ns| ns.kind == "user");
    if !wanted {
        return Ok(None);
    }
    if linux.uid_mappings.is_empty() {
        return Err(CreateError::UserNamespaceMappings("uid"));
    }
    if linux.gid_mappings.is_empty() {
        return Err(CreateError::UserNamespaceMappings("gid"));
    }
    // As runc: the namespace's root is the pod's root, which must exist.
    let maps_root =
        |mappings: &[runcvm_spec::oci::OciIdMapping]| mappings.iter().any(|m| m.container_id == 0 && m.size > 0);
    if !maps_root(&linux.uid_mappings) {
        return Err(CreateError::UserNamespaceWithoutRoot("uid"));
    }
    if !maps_root(&linux.gid_mappings) {
        return Err(CreateError::UserNamespaceWithoutRoot("gid"));
    }
    Ok(Some(UserNamespace {
        uid_mappings: linux.uid_mappings.iter().copied().map(Into::into).collect(),
        gid_mappings: linux.gid_mappings.iter().copied().map(Into::into).collect(),
    }))
}

/// The plan for `config`, the container in `bundle`; `warn` reports what
/// is left out (to containerd's log: the runtime's stderr is the pod's).
pub fn plan(
    config: &OciConfig,
    bundle: &Path,
    pod: PodNamespaces,
    user_namespace: Option<UserNamespace>,
    warn: &dyn Fn(&str),
) -> Result<LaunchPlan, CreateError> {
    let linux = config.linux.clone().unwrap_or_default();
    if let Some(profile) = &linux.seccomp {
        runcvm_seccomp::compile(profile).map_err(CreateError::Seccomp)?;
    }
    // The pod's sysctls, then the container's own over them.
    let mut sysctls = sandbox_sysctls(config, bundle).unwrap_or_else(|why| {
        warn(&format!("{why}: the pod's sysctls are not applied in the VM"));
        BTreeMap::new()
    });
    sysctls.extend(linux.sysctl);
    Ok(LaunchPlan {
        hostname: hostname(config),
        read_only_root: config.root.as_ref().is_some_and(|root| root.readonly),
        sysctls,
        own_pid_namespace: pod.own_pid,
        masked_paths: linux.masked_paths,
        readonly_paths: linux.readonly_paths,
        sys_read_only: config.sys_read_only(),
        seccomp: linux.seccomp,
        memory_limit_bytes: config.memory_limit(),
        cpu_limit: config.cpu_quota(),
        cpu_weight: config.cpu_weight(),
        memory_oom_group: config.memory_oom_group(),
        quiet_kernel: true,
        user_namespace,
        ..LaunchPlan::default()
    })
}

/// Containers of a pod share the sandbox's UTS namespace, so CRI leaves
/// `hostname` unset and gives the pod's name in `HOSTNAME` instead.
pub fn hostname(config: &OciConfig) -> Option<String> {
    config.hostname.clone().or_else(|| {
        let env = config.process.as_ref().map_or(&[][..], |p| p.env.as_slice());
        super::env_value(env, "HOSTNAME").map(str::to_owned)
    })
}

/// The pod's sysctls. containerd writes them into the pause container's
/// spec only (the containers join its namespaces, where runc set them); a
/// VM has its own kernel, which must get them too. The sandbox's bundle is
/// the container bundle's sibling, named by the sandbox id.
fn sandbox_sysctls(config: &OciConfig, bundle: &Path) -> Result<BTreeMap<String, String>, String> {
    if config.role() == ContainerRole::Sandbox {
        // The sandbox's own (a pod VM's): its sysctls are the container's,
        // added by the caller.
        return Ok(BTreeMap::new());
    }
    let Some(sandbox) = config.annotations.get(CRI_SANDBOX_ID) else {
        return Ok(BTreeMap::new());
    };
    let path = match bundle.parent() {
        Some(parent) if !sandbox.contains('/') && sandbox != ".." => parent.join(sandbox).join("config.json"),
        _ => return Err(format!("the sandbox id {sandbox:?} names no bundle")),
    };
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read the pod sandbox's config {}: {e}", path.display()))?;
    let sandbox = OciConfig::parse(&bytes, &path.display().to_string()).map_err(|e| e.to_string())?;
    if sandbox.role() != ContainerRole::Sandbox {
        return Err(format!("{} is not the pod sandbox's config", path.display()));
    }
    Ok(sandbox.linux.map(|linux| linux.sysctl).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespaces(own_pid: bool) -> PodNamespaces {
        PodNamespaces {
            network: None,
            own_pid,
            pid: None,
        }
    }

    #[test]
    fn the_plan_carries_the_containers_view_and_the_pods_sysctls() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandbox-1");
        std::fs::create_dir(&sandbox).unwrap();
        std::fs::write(
            sandbox.join("config.json"),
            json!({
                "annotations": {"io.kubernetes.cri.container-type": "sandbox"},
                "linux": {"sysctl": {"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100"}}
            })
            .to_string(),
        )
        .unwrap();
        let bundle = dir.path().join("ctr-1");
        let config: OciConfig = serde_json::from_value(json!({
            "root": {"path": "rootfs", "readonly": true},
            "process": {"args": ["app"], "env": ["HOSTNAME=pod-a"]},
            "mounts": [{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]}],
            "annotations": {"io.kubernetes.cri.sandbox-id": "sandbox-1"},
            "linux": {
                "sysctl": {"fs.mqueue.msg_max": "50"},
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"],
                "resources": {"memory": {"limit": 15728640}, "cpu": {"quota": 150000, "period": 100000, "shares": 1536}},
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
            }
        }))
        .unwrap();
        let plan = plan(&config, &bundle, namespaces(true), None, &|w| panic!("{w}")).unwrap();
        assert_eq!(plan.hostname.as_deref(), Some("pod-a"));
        assert!(plan.read_only_root && plan.own_pid_namespace && plan.sys_read_only);
        assert_eq!(plan.sysctls["kernel.shm_rmid_forced"], "1");
        assert_eq!(plan.sysctls["fs.mqueue.msg_max"], "50", "the container's own wins");
        assert_eq!(plan.masked_paths, ["/proc/kcore"]);
        assert_eq!(plan.readonly_paths, ["/proc/sys"]);
        assert_eq!(plan.memory_limit_bytes, Some(15 << 20));
        // 1.5 CPUs in the guest's cgroup, as runc's cpu.max; shares as
        // runc converts them to a weight.
        let cpu = plan.cpu_limit.unwrap();
        assert_eq!(cpu.cpu_max_line(), "150000 100000");
        assert_eq!(plan.cpu_weight, Some(59));
        assert!(plan.seccomp.is_some());
    }

    #[test]
    fn a_profile_the_guest_cannot_honour_is_refused() {
        let config: OciConfig = serde_json::from_value(json!({
            "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}}
        }))
        .unwrap();
        let error = runcvm_log::error_chain(
            &plan(&config, Path::new("/nonexistent/b"), namespaces(false), None, &|_| {}).unwrap_err(),
        );
        assert!(
            error.contains("cannot be applied in the VM") && error.contains("SCMP_ACT_NOTIFY"),
            "{error}"
        );
    }
}
