//! `launch.json`: what `runcvm-runtime create` hands the launcher in a
//! Kubernetes container, in the container's state folder (`/.runcvm` in the
//! container). The boot disk beside it is the node's one boot disk, bound
//! there read-only (guest init alone); the container's process and plan
//! reach the guest in `Start`, and its root file system is bound into the state folder
//! (`root`), from where the launcher serves it to the guest.

use crate::Entrypoint;
use serde::{Deserialize, Serialize};

/// The format version written by this build.
pub const LAUNCH_VERSION: u32 = 3;
/// The state folder's path inside the container.
pub const CONTAINER_STATE_DIR: &str = "/.runcvm";
/// The launch file's name in the state folder.
pub const LAUNCH_FILE: &str = "launch.json";
/// The boot disk's name in the state folder: on the node an empty mount
/// point, in the container the node's boot disk bound read-only.
pub const DISK_FILE: &str = "disk.ext4";
/// The folder of the state folder where the container's root file system
/// is bound (by itself, without the mounts on it), in the container's view
/// only: on the node it stays an empty folder.
pub const ROOT_FOLDER: &str = "root";
/// [`ROOT_FOLDER`] as the launcher sees it: what it serves as the guest's
/// container root.
pub const CONTAINER_ROOT_DIR: &str = "/.runcvm/root";
/// Where the install root is mounted in every runcvm container.
pub const CONTAINER_INSTALL_ROOT: &str = crate::layout::DEFAULT_ROOT;

/// The node's own copy of a container's launch file, beside its state
/// folder and out of the container's reach (the container can write its
/// `/.runcvm`): what the runtime and `runcvm inspect` read back.
pub fn node_launch_file(state_root: &std::path::Path, id: &str) -> std::path::PathBuf {
    state_root.join("containers").join(format!("{id}.launch.json"))
}

/// A container's launch, as the runtime decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerLaunch {
    pub version: u32,
    /// The container's original process, which the guest gets in `Start`
    /// and writes to `/.runcvm/entrypoint`; exec sessions take its user and
    /// cwd.
    pub process: Entrypoint,
    /// How the guest makes the container's world (hostname, sysctls,
    /// limits, masked paths, the pod's user namespace...), sent in `Start`.
    pub plan: crate::LaunchPlan,
    pub cpus: u32,
    pub memory_mib: u32,
    /// `tcg` or `kvm`, decided on the node by the runtime.
    pub accel: LaunchAccel,
    /// The VMM, decided on the node by the runtime from the node's
    /// settings (never from the pod).
    #[serde(default)]
    pub hypervisor: LaunchHypervisor,
    /// Words the node's settings append to the guest's kernel command line
    /// (never the pod's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Who the VMM runs as, from the node's settings.
    #[serde(default)]
    pub vmm_user: VmmUser,
    /// The container's mounts the guest gets, at the same paths.
    pub volumes: Vec<LaunchVolume>,
    /// The pod's network namespace, as the runtime checked on the node that
    /// it is not the node's: the launcher takes over `eth0` only there.
    /// `None` when runc made a new namespace for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_namespace: Option<NamespaceId>,
    /// The file kubelet reads the container's termination message from
    /// (`terminationMessagePath`, from kubelet's annotation when containerd
    /// passes it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// The container's root file system on the node (the bundle's rootfs,
    /// the snapshotter's mount), for inspection: the launcher serves it from
    /// [`CONTAINER_ROOT_DIR`], where the runtime binds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// The node's boot disk the container's VM boots (bound read-only at
    /// [`DISK_FILE`] in the state folder), for inspection on the node.
    pub boot_disk: String,
    /// What the launcher is to its pod: the VM of this container alone (as
    /// before pod VMs, and the default), the pod's VM (a sandbox), or a
    /// container in the pod's VM.
    #[serde(default, skip_serializing_if = "LaunchRole::is_own_vm")]
    pub role: LaunchRole,
}

/// Where a container's VM is (`docs/pods.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum LaunchRole {
    /// The container's own VM, which it starts and ends.
    #[default]
    OwnVm,
    /// The pod's sandbox: its launcher boots the pod's VM with no container
    /// in it, serves the pod's socket in [`POD_FOLDER`], and powers the VM
    /// off when the sandbox stops. `process` and `plan` are the pause
    /// container's: the plan gives the pod's hostname, sysctls and user
    /// namespace; the process is never run.
    PodVm,
    /// A container in its pod's VM: its launcher is the container's proxy,
    /// which serves its root and volumes, has the pod's launcher create it
    /// in the VM under `name`, relays its stdio and signals, and exits with
    /// its status.
    InPodVm {
        /// The container's name in the VM: its CRI id.
        name: String,
    },
}

impl LaunchRole {
    pub fn is_own_vm(&self) -> bool {
        *self == Self::OwnVm
    }
}

/// The folder of a pod VM's state folder that holds the pod's socket: the
/// one thing of the sandbox's that its containers get, bound read-only at
/// [`CONTAINER_POD_DIR`].
pub const POD_FOLDER: &str = "pod";
/// [`POD_FOLDER`] as a container of the pod sees it.
pub const CONTAINER_POD_DIR: &str = "/.runcvm/pod";

/// A namespace as the kernel tells it apart: the device and inode of its
/// nsfs file (`/proc/PID/ns/net`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceId {
    pub dev: u64,
    pub ino: u64,
}

/// The unprivileged user and group the VMM runs as, never root: what a
/// guest that broke out of its VMM would be on the node. Not a user of the
/// node (Debian reserves 65000-65533 and allocates none there; kubelet maps
/// pods' user namespaces from 65536 up); the node's settings may name
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmmUser {
    pub uid: u32,
    pub gid: u32,
}

impl VmmUser {
    pub const DEFAULT: Self = Self { uid: 65520, gid: 65520 };
}

impl Default for VmmUser {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The acceleration a container's guest runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchAccel {
    Kvm,
    Tcg,
}

impl LaunchAccel {
    /// As the launch file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// The VMM a container's guest runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchHypervisor {
    #[default]
    Qemu,
    Firecracker,
}

/// One mount of the container that the guest gets too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchVolume {
    /// Where the container (and the guest) sees it.
    pub path: String,
    pub read_only: bool,
    /// A folder is shared over NFS; a single file is copied in at boot.
    pub kind: VolumeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    Folder,
    File,
}

/// Why a launch file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// launch file is not valid JSON of the expected shape
    #[error("launch file is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
    /// launch file has another format version
    #[error(
        "launch file has format version {found}, this build reads version {LAUNCH_VERSION}: the runtime and the launcher must come from one install"
    )]
    UnsupportedVersion { found: u32 },
}

impl ContainerLaunch {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a launch always serializes");
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, LaunchError> {
        let launch: Self = serde_json::from_slice(bytes).map_err(LaunchError::Malformed)?;
        if launch.version != LAUNCH_VERSION {
            return Err(LaunchError::UnsupportedVersion { found: launch.version });
        }
        Ok(launch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let launch = ContainerLaunch {
            version: LAUNCH_VERSION,
            process: Entrypoint::new(vec!["sh".into()], vec![]),
            plan: crate::LaunchPlan {
                hostname: Some("pod".into()),
                ..crate::LaunchPlan::default()
            },
            cpus: 1,
            memory_mib: 256,
            accel: LaunchAccel::Tcg,
            hypervisor: LaunchHypervisor::Firecracker,
            kernel_args: vec!["loglevel=8".into()],
            vmm_user: VmmUser { uid: 70000, gid: 70001 },
            volumes: vec![LaunchVolume {
                path: "/data".into(),
                read_only: true,
                kind: VolumeKind::Folder,
            }],
            network_namespace: Some(NamespaceId {
                dev: 4,
                ino: 4_026_532_000,
            }),
            termination_message_path: Some("/dev/termination-log".into()),
            rootfs: Some("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/rootfs".into()),
            boot_disk: "/var/lib/runcvm/boot/boot-v1-1-2-3.4-g65520.ext4".into(),
            role: LaunchRole::OwnVm,
        };
        assert_eq!(ContainerLaunch::from_json(&launch.to_json()).unwrap(), launch);
        let mut other = serde_json::to_value(&launch).unwrap();
        other["version"] = 99.into();
        assert!(matches!(
            ContainerLaunch::from_json(other.to_string().as_bytes()),
            Err(LaunchError::UnsupportedVersion { found: 99 })
        ));
        // A container's own VM is the default, left out of the file.
        assert!(!String::from_utf8(launch.to_json()).unwrap().contains("role"));
        for role in [LaunchRole::PodVm, LaunchRole::InPodVm { name: "c1".into() }] {
            let in_pod = ContainerLaunch { role, ..launch.clone() };
            assert_eq!(ContainerLaunch::from_json(&in_pod.to_json()).unwrap(), in_pod);
        }
        let json = String::from_utf8(
            ContainerLaunch {
                role: LaunchRole::InPodVm { name: "c1".into() },
                ..launch
            }
            .to_json(),
        )
        .unwrap();
        assert!(json.contains(r#""kind": "in-pod-vm""#), "{json}");
    }
}
