//! Whose VM a container runs in: its own, or its pod's one VM
//! (`docs/pods.md`). Every pod's sandbox boots the pod's VM, unless the pod
//! opts out with an annotation (`runcvm.io/pod-vm: "false"`) or shares one
//! of the node's namespaces; a workload container is in it when the node's
//! own copy of its sandbox's launch file says the sandbox boots the pod's
//! VM, never because the container says so.

use super::namespaces::NodeNamespaces;
use crate::state::read_node_launch;
use runcvm_spec::ContainerLaunch;
use runcvm_spec::launch::LaunchRole;
use runcvm_spec::oci::{ContainerRole, OciConfig};
use std::path::{Path, PathBuf};

/// Whose VM a container runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodKind {
    /// A VM of its own, which lives as long as the container.
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
/// the pod's VM never touches the node's namespaces.
pub fn kind_of(config: &OciConfig, state_root: &Path, node: &NodeNamespaces) -> Option<PodKind> {
    match config.role() {
        ContainerRole::Sandbox
            if config.wants_pod_vm() && super::namespaces::check(config, node, super::namespaces::identify).is_ok() =>
        {
            Some(PodKind::PodVm)
        }
        ContainerRole::Sandbox => None,
        ContainerRole::Workload => Some(in_pod_vm(config, state_root).unwrap_or(PodKind::OwnVm)),
    }
}

fn in_pod_vm(config: &OciConfig, state_root: &Path) -> Option<PodKind> {
    let sandbox_id = config.sandbox_id()?;
    if crate::check_id(sandbox_id).is_err() {
        return None;
    }
    let sandbox = read_node_launch(state_root, sandbox_id).ok()?;
    (sandbox.role == LaunchRole::PodVm).then(|| PodKind::InPodVm {
        sandbox_id: sandbox_id.to_owned(),
        sandbox: Box::new(sandbox),
    })
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
