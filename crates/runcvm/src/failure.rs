//! Why `runcvm run` or the Kubernetes launcher ended without the workload's
//! exit status, and the exit code each failure carries: the VM's own
//! ([`VmError::exit_code`]: a launcher stopped by a signal says which), or
//! [`RUNTIME_FAILURE`] for runcvm's. Each message is said once; the causes
//! follow it on the log line (`runcvm_log::error_chain`).

use crate::RUNTIME_FAILURE;
use crate::vm::VmError;
use std::path::PathBuf;

/// How a run ended without the workload's status.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// the VM failed or was interrupted (its own message, and exit code)
    #[error(transparent)]
    Vm(#[from] VmError),
    /// runcvm failed around the VM (its own message)
    #[error(transparent)]
    Run(#[from] RunError),
}

impl RunFailure {
    /// The exit code runcvm reports for it.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Vm(e) => e.exit_code(),
            Self::Run(_) => RUNTIME_FAILURE,
        }
    }
}

/// runcvm's own failures, before and around the VM: one per step.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// the acceleration asked for (its own message)
    #[error(transparent)]
    AccelChoice(#[from] runcvm_vmm::UnknownAccelChoice),
    /// the acceleration (its own message)
    #[error(transparent)]
    Accel(#[from] runcvm_host::accel::AccelError),
    /// a size asked for (its own message)
    #[error(transparent)]
    Size(#[from] runcvm_host::resources::BadSize),
    /// the memory left for the guest (its own message)
    #[error(transparent)]
    Memory(#[from] runcvm_host::resources::TooLittleMemory),
    /// the guest kernel (its own message)
    #[error(transparent)]
    Kernel(#[from] runcvm_vmm::KernelError),
    /// guest init or QEMU (its own message)
    #[error(transparent)]
    Locate(#[from] crate::locate::LocateError),
    /// the hypervisor (its own message)
    #[error(transparent)]
    Hypervisor(#[from] runcvm_host::hypervisor::HypervisorError),
    /// the run folder (its own message)
    #[error(transparent)]
    RunDir(#[from] runcvm_host::run_dir::RunDirError),
    /// the volumes (their own message)
    #[error(transparent)]
    Volumes(#[from] crate::volumes::VolumeError),
    /// the pod network (its own message)
    #[error(transparent)]
    PodNetwork(#[from] crate::pod_network::PodNetworkError),
    /// kubectl port-forward's way in (its own message)
    #[error(transparent)]
    PortForward(#[from] crate::port_forward::PortForwardError),
    /// volumes are served over NFS on 169.254.1.254 (troubleshooting.md, Volumes), which needs --network pod
    #[error("volumes are served over NFS on 169.254.1.254 (troubleshooting.md, Volumes), which needs --network pod")]
    VolumesNeedThePodNetwork,
    /// a container's root is served over NFS on 169.254.1.254, which needs the pod's network
    #[error(
        "a container's root is served over NFS on 169.254.1.254, which needs the pod's network: the container has none to take over"
    )]
    ServedRootNeedsThePodNetwork,
    /// cannot let the VMM's user pass through {path}
    #[error("cannot let the VMM's user pass through {}", path.display())]
    Passage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot build the root disk
    #[error("cannot build the root disk")]
    Disk(#[source] runcvm_host::guest_disk::GuestDiskError),
    /// cannot share {path} with the VMM's group
    #[error("cannot share {} with the VMM's group", path.display())]
    Share {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot create {path}
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot join the VMM's group (the launcher needs CAP_SETGID, and setgroups)
    #[error("cannot join the VMM's group (the launcher needs CAP_SETGID, and setgroups)")]
    JoinGroup(#[source] std::io::Error),
    /// cannot attach to {tap} for QEMU: {reason}
    #[error("cannot attach to {tap} for QEMU: {reason}")]
    AttachTap { tap: String, reason: String },
    /// cannot prepare {vmm}
    #[error("cannot prepare {vmm}")]
    PrepareVmm {
        vmm: &'static str,
        #[source]
        source: runcvm_vmm::vm::PrepareError,
    },
    /// cannot lock {path}: {reason} (another launcher of this container runs)
    #[error("cannot lock {}: {reason} (another launcher of this container runs)", path.display())]
    Lock { path: PathBuf, reason: std::io::Error },
    /// another runcvm container of this pod is running and owns the pod's network
    #[error(
        "another runcvm container of this pod is running and owns the pod's network: runcvm runs one VM container per pod (see docs/kubernetes.md); give the other container a pod of its own"
    )]
    PodNetworkClaimed,
    /// cannot claim the pod's network
    #[error("cannot claim the pod's network")]
    Claim(#[source] std::io::Error),
    /// cannot tell the install runcvm runs from: the launcher must be ROOT/bin/runcvm of an install
    #[error(
        "cannot tell the install runcvm runs from (its own path, /proc/self/exe, is unreadable or has no ROOT/bin above it): \
         the launcher must be ROOT/bin/runcvm of an install (runcvm install)"
    )]
    NoInstallRoot,
    /// the QEMU bundle under {0} is incomplete: reinstall runcvm (runcvm install)
    #[error("the QEMU bundle under {} is incomplete: reinstall runcvm (runcvm install)", .0.display())]
    QemuBundle(PathBuf),
    /// the runtime chose Firecracker at create
    #[error("the runtime chose Firecracker at create")]
    Firecracker(#[source] runcvm_vmm::firecracker::LaunchError),
}

/// Each step's error is a [`RunFailure`] too, for `?` where the VM's own
/// failures can come.
macro_rules! run_failure_from {
    ($($error:ty),+ $(,)?) => {
        $(impl From<$error> for RunFailure {
            fn from(error: $error) -> Self {
                Self::Run(RunError::from(error))
            }
        })+
    };
}

run_failure_from!(
    crate::volumes::VolumeError,
    crate::pod_network::PodNetworkError,
    crate::port_forward::PortForwardError,
);
