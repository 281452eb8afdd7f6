//! Whose VM a container runs in: its pod's one VM (`docs/pods.md`), or,
//! for a container no CRI sandbox holds (`ctr run`, nerdctl: a pod of one),
//! its own. Every containerd pod's sandbox boots the pod's VM, unless the
//! pod shares one of the node's namespaces (its containers are then
//! refused); a workload container is in it when the node's own copy of its
//! sandbox's launch file says the sandbox boots the pod's VM, never because
//! the container says so, and is refused when it does not.

use super::CreateError;
use super::namespaces::NodeNamespaces;
use crate::state::read_node_launch;
use runcvm_spec::ContainerLaunch;
use runcvm_spec::launch::{LaunchRole, NamespaceId};
use runcvm_spec::oci::{ContainerRole, OciConfig};
use std::path::{Path, PathBuf};

/// Whose VM a container runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodKind {
    /// A VM of its own, which lives as long as the container: a container
    /// with no CRI sandbox, a pod of one.
    OwnVm,
    /// The pod's sandbox, which boots the pod's VM.
    PodVm,
    /// A workload container of a pod whose sandbox boots the pod's VM.
    InPodVm {
        sandbox_id: String,
        /// The sandbox's launch file (the node's copy).
        sandbox: Box<ContainerLaunch>,
    },
}

/// What a `create` makes of a container: `None` for a sandbox that runs
/// under runc unchanged. A sandbox in one of the node's namespaces (a
/// hostNetwork, hostPID or hostIPC pod) is one: its containers are then
/// refused at their own create, with the reason, as they always were, and
/// the pod's VM never touches the node's namespaces. So is a sandbox whose
/// network namespace runc is to make (no path: containerd 1.7 with a user
/// namespace pins it only afterwards), whose containers are refused too.
/// Only containerd's sandbox (`io.kubernetes.cri.container-type`) is one:
/// the sandbox id its containers name is containerd's annotation.
pub fn kind_of(config: &OciConfig, state_root: &Path, node: &NodeNamespaces) -> Result<Option<PodKind>, CreateError> {
    let containerd_sandbox = config
        .annotations
        .get(runcvm_spec::oci::CRI_CONTAINER_TYPE)
        .is_some_and(|kind| kind == "sandbox");
    match config.role() {
        ContainerRole::Sandbox
            if containerd_sandbox
                && super::namespaces::check(config, node, super::namespaces::identify)
                    .is_ok_and(|pod| pod.network.is_some()) =>
        {
            Ok(Some(PodKind::PodVm))
        }
        ContainerRole::Sandbox => Ok(None),
        ContainerRole::Workload => match config.sandbox_id() {
            None => Ok(Some(PodKind::OwnVm)),
            Some(sandbox_id) => match in_pod_vm(sandbox_id, state_root)? {
                Some(kind) => Ok(Some(kind)),
                // Refused: said precisely for a pod in a node namespace.
                None => {
                    super::namespaces::check(config, node, super::namespaces::identify)?;
                    Err(CreateError::NoPodVm(sandbox_id.to_owned()))
                }
            },
        },
    }
}

fn in_pod_vm(sandbox_id: &str, state_root: &Path) -> Result<Option<PodKind>, CreateError> {
    if crate::check_id(sandbox_id).is_err() {
        return Ok(None);
    }
    let sandbox = match read_node_launch(state_root, sandbox_id) {
        Ok(sandbox) => sandbox,
        // A sandbox under runc unchanged has none.
        Err(e) if e.is_missing() => return Ok(None),
        Err(e) => {
            return Err(CreateError::Sandbox {
                id: sandbox_id.to_owned(),
                source: Box::new(e),
            });
        }
    };
    if sandbox.role != LaunchRole::PodVm {
        return Ok(None);
    }
    check_pod_folder(&crate::state::state_folder(state_root, sandbox_id).join(runcvm_spec::launch::POD_FOLDER))?;
    Ok(Some(PodKind::InPodVm {
        sandbox_id: sandbox_id.to_owned(),
        sandbox: Box::new(sandbox),
    }))
}

/// Whose PID namespace a container of a pod's VM joins, given the one its
/// config names (`joined`): its sandbox's (CRI's POD mode) gives `None`, the
/// pod's in the guest; a container's of a pod VM on this node (TARGET mode:
/// an ephemeral container's target, whose process on the node is its proxy)
/// gives that container's id, which the guest looks for among its own; only
/// containers of this pod (in its network namespace, `pod_network`) are
/// looked at. Any other is refused: the VM can share no namespace of the
/// node's.
pub fn pid_namespace_owner(
    joined: NamespaceId,
    path: &str,
    sandbox_id: &str,
    pod_network: Option<NamespaceId>,
    state_root: &Path,
    identify: impl Fn(&str) -> std::io::Result<NamespaceId>,
) -> Result<Option<String>, CreateError> {
    let owns = |id: &str| init_pid_namespace(state_root, id, &identify) == Some(joined);
    if owns(sandbox_id) {
        return Ok(None);
    }
    let containers = std::fs::read_dir(state_root.join("containers"))
        .into_iter()
        .flatten()
        .flatten();
    for entry in containers {
        let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let in_this_pods_vm = entry.file_type().is_ok_and(|kind| kind.is_dir())
            && read_node_launch(state_root, &id).is_ok_and(|launch| {
                matches!(launch.role, LaunchRole::InPodVm { .. }) && launch.network_namespace == pod_network
            });
        if in_this_pods_vm && owns(&id) {
            return Ok(Some(id));
        }
    }
    Err(CreateError::ForeignPidNamespace(path.to_owned()))
}

/// The PID namespace of container `id`'s process on the node, from the
/// state runc keeps of it (in the runc root its create recorded).
fn init_pid_namespace(
    state_root: &Path,
    id: &str,
    identify: impl Fn(&str) -> std::io::Result<NamespaceId>,
) -> Option<NamespaceId> {
    let state = crate::orphans::recorded_runc_root(state_root, id)?
        .join(id)
        .join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(state).ok()?).ok()?;
    let pid = state.get("init_process_pid")?.as_u64().filter(|pid| *pid > 0)?;
    identify(&format!("/proc/{pid}/ns/pid")).ok()
}

/// The pod's socket's folder, which each container's launcher gets bound
/// in: a folder of root's, never a link (the sandbox's launcher can write
/// its state folder, and runc would follow a link in a bind's source).
fn check_pod_folder(folder: &Path) -> Result<(), CreateError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(folder).map_err(|source| CreateError::PodFolder {
        path: folder.to_owned(),
        why: source.to_string(),
    })?;
    if !meta.file_type().is_dir() || meta.uid() != 0 {
        return Err(CreateError::PodFolder {
            path: folder.to_owned(),
            why: "not a folder of root's".to_owned(),
        });
    }
    Ok(())
}

/// A container in its pod's VM: the VM is the sandbox's, as its launch file
/// says (the container's launch file repeats it for `runcvm inspect` and
/// for the launcher's log name).
pub(super) fn the_pods_vm(sandbox: &ContainerLaunch) -> super::TheVm {
    super::TheVm {
        size: runcvm_host::resources::VmSize {
            cpus: sandbox.cpus,
            memory_mib: sandbox.memory_mib,
            origin: "the pod's VM".to_owned(),
        },
        accel: sandbox.accel,
        hypervisor: sandbox.hypervisor,
        kernel_args: sandbox.kernel_args.clone(),
        vmm_user: sandbox.vmm_user,
        boot_disk: PathBuf::from(&sandbox.boot_disk),
        shared_with: None,
        cpu_shares: None,
    }
}

/// What the pod's cgroup on the node holds the pod to, in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMemoryLimit {
    /// kubelet set a limit: every container of the pod has one, and the
    /// sandbox's `sandbox-memory` is their sum.
    Limited(u64),
    /// No limit: some container has none, and the sum leaves it out.
    Unlimited,
    /// The pod's cgroup could not be read.
    Unknown,
}

/// The memory limit of the sandbox's parent cgroup (the pod's, which
/// kubelet makes before the sandbox), under `cgroup_root`
/// (`/sys/fs/cgroup`), cgroup v2's `memory.max` or v1's
/// `memory/…/memory.limit_in_bytes`.
pub fn pod_memory_limit(config: &OciConfig, cgroup_root: &Path) -> PodMemoryLimit {
    let Some(parent) = config
        .linux
        .as_ref()
        .and_then(|l| l.cgroups_path.as_deref())
        .and_then(pod_cgroup)
    else {
        return PodMemoryLimit::Unknown;
    };
    let read = |file: PathBuf| std::fs::read_to_string(file).ok();
    let relative = parent.trim_start_matches('/');
    let value = read(cgroup_root.join(relative).join("memory.max"))
        .or_else(|| read(cgroup_root.join("memory").join(relative).join("memory.limit_in_bytes")));
    match value.as_deref().map(str::trim) {
        None => PodMemoryLimit::Unknown,
        Some("max") => PodMemoryLimit::Unlimited,
        // cgroup v1 writes "no limit" as the largest page-aligned number.
        Some(number) => match number.parse::<u64>() {
            Ok(bytes) if bytes < 1 << 62 => PodMemoryLimit::Limited(bytes),
            Ok(_) => PodMemoryLimit::Unlimited,
            Err(_) => PodMemoryLimit::Unknown,
        },
    }
}

/// The pod's cgroup, as a path under the cgroup root, from the sandbox's
/// `cgroupsPath`: its parent folder (cgroupfs), or its slice's (systemd:
/// `kubepods-burstable-pod1.slice:cri-containerd:ID` is under
/// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`).
fn pod_cgroup(cgroups_path: &str) -> Option<String> {
    if cgroups_path.starts_with('/') {
        let parent = Path::new(cgroups_path).parent()?;
        return (parent != Path::new("/")).then(|| parent.display().to_string());
    }
    let slice = cgroups_path.split(':').next()?.strip_suffix(".slice")?;
    if slice.is_empty() || slice == "-" {
        return None;
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in slice.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX_PID_NS: NamespaceId = NamespaceId { dev: 4, ino: 300 };
    const APP_PID_NS: NamespaceId = NamespaceId { dev: 4, ino: 301 };

    /// A node where runc knows the sandbox (pid 7) and a container "app" of
    /// its pod's VM (pid 8), with the state folders `create` leaves.
    fn node_with_a_pod() -> (tempfile::TempDir, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        let runc = tempfile::tempdir().unwrap();
        for (id, pid, role) in [
            ("sandbox", 7, LaunchRole::PodVm),
            ("app", 8, LaunchRole::InPodVm { name: "app".into() }),
        ] {
            std::fs::create_dir_all(crate::state::state_folder(state.path(), id)).unwrap();
            crate::orphans::record_runc_root(state.path(), id, runc.path()).unwrap();
            std::fs::create_dir_all(runc.path().join(id)).unwrap();
            std::fs::write(
                runc.path().join(id).join("state.json"),
                format!(r#"{{"id":"{id}","init_process_pid":{pid}}}"#),
            )
            .unwrap();
            let launch = crate::test_launch::launch(role);
            std::fs::write(crate::state::node_launch_file(state.path(), id), launch.to_json()).unwrap();
        }
        (state, runc)
    }

    fn identify(path: &str) -> std::io::Result<NamespaceId> {
        match path {
            "/proc/7/ns/pid" => Ok(SANDBOX_PID_NS),
            "/proc/8/ns/pid" => Ok(APP_PID_NS),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    #[test]
    fn a_joined_pid_namespace_is_the_pods_a_targets_or_refused() {
        let (state, _runc) = node_with_a_pod();
        let owner = |joined| pid_namespace_owner(joined, "/proc/N/ns/pid", "sandbox", None, state.path(), identify);
        assert_eq!(owner(SANDBOX_PID_NS).unwrap(), None, "POD mode: the pod's");
        assert_eq!(owner(APP_PID_NS).unwrap().as_deref(), Some("app"), "TARGET mode: app's");
        let another_pod = Some(NamespaceId { dev: 4, ino: 77 });
        let elsewhere = pid_namespace_owner(
            APP_PID_NS,
            "/proc/N/ns/pid",
            "sandbox",
            another_pod,
            state.path(),
            identify,
        );
        assert!(
            matches!(elsewhere, Err(CreateError::ForeignPidNamespace(_))),
            "a container of another pod is not a target: {elsewhere:?}"
        );
        let foreign = owner(NamespaceId { dev: 4, ino: 999 }).unwrap_err();
        assert!(matches!(foreign, CreateError::ForeignPidNamespace(_)), "{foreign}");
        assert!(foreign.to_string().contains("/proc/N/ns/pid"), "{foreign}");
    }

    #[test]
    fn the_pods_cgroup_is_found_from_the_sandboxs_path_either_driver() {
        assert_eq!(
            pod_cgroup("/kubepods/burstable/pod1/abc").as_deref(),
            Some("/kubepods/burstable/pod1")
        );
        assert_eq!(
            pod_cgroup("kubepods-burstable-pod1.slice:cri-containerd:abc").as_deref(),
            Some("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice")
        );
        assert_eq!(pod_cgroup("/abc"), None);
    }

    #[test]
    fn the_pods_memory_limit_is_read_from_its_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let config = |path: &str| {
            OciConfig::parse(
                serde_json::json!({"linux": {"cgroupsPath": path}})
                    .to_string()
                    .as_bytes(),
                "config.json",
            )
            .unwrap()
        };
        let limited = root.path().join("kubepods/pod1");
        std::fs::create_dir_all(&limited).unwrap();
        std::fs::write(limited.join("memory.max"), "402653184\n").unwrap();
        let unlimited = root.path().join("kubepods/pod2");
        std::fs::create_dir_all(&unlimited).unwrap();
        std::fs::write(unlimited.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            pod_memory_limit(&config("/kubepods/pod1/s1"), root.path()),
            PodMemoryLimit::Limited(402_653_184)
        );
        assert_eq!(
            pod_memory_limit(&config("/kubepods/pod2/s1"), root.path()),
            PodMemoryLimit::Unlimited
        );
        assert_eq!(
            pod_memory_limit(&config("/kubepods/pod3/s1"), root.path()),
            PodMemoryLimit::Unknown
        );
    }
}
