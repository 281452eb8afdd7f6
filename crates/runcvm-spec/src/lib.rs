//! What the host hands the guest: the files under `/.runcvm/` in the root disk
//! and the names both sides agree on. Everything here is plain data with
//! versioned serde types; nothing touches the system.

pub mod bytes;
pub mod entrypoint;
pub mod launch;
pub mod layout;
pub mod net;
pub mod oci;
pub mod plan;

pub use bytes::ByteString;
pub use entrypoint::{Entrypoint, EntrypointError};
pub use launch::{ContainerLaunch, LaunchVolume, VmmUser, VolumeKind};
pub use net::{GuestNetwork, GuestRoot, GuestRoute, GuestVolume, IpPrefix, MacAddr};
pub use plan::{CpuLimit, IdMapping, LaunchPlan, PlanError, PodPlan, UserNamespace};
/// A process's capabilities, as the entrypoint carries them.
pub use runcvm_caps::{CapabilityMasks, ProcessCapabilities};

/// The folder in the root disk that holds runcvm's files (reserved: a rootfs
/// that already has it is refused).
pub const GUEST_DIR: &str = "/.runcvm";
/// Where guest init mounts a container's served root before it pivots the
/// container's mount namespace into it: a folder of the node's boot disk,
/// which the host makes and the guest cannot (the disk is read-only).
pub const SERVED_ROOT_MOUNT_POINT: &str = "/.runcvm-root";
/// The guest init, PID 1 in the VM.
pub const INIT_PATH: &str = "/.runcvm/init";
/// The original process of the container (argv, env, cwd, user), exact bytes.
pub const ENTRYPOINT_PATH: &str = "/.runcvm/entrypoint";
/// The launch plan: everything else the guest needs to know.
pub const PLAN_PATH: &str = "/.runcvm/plan.json";
/// Name of the virtio-serial port that carries the control channel on QEMU;
/// the guest finds it under `/sys/class/virtio-ports/*/name`.
pub const CONTROL_PORT_NAME: &str = "runcvm.ctl";
/// The vsock port of the control channel on Firecracker: guest init connects
/// to the host (CID 2) on it, and the launcher accepts on the hybrid vsock's
/// `<uds_path>_1024`. The first port above the privileged range.
pub const CONTROL_VSOCK_PORT: u32 = 1024;
/// The line guest init writes on the console before anything of its own.
/// The launcher hides the console up to and including this line at INFO, so a
/// successful run shows no kernel boot lines.
pub const CONSOLE_HANDOVER_LINE: &str = "runcvm-init: console handed to the workload";
/// What guest init writes on the console once the workload has ended and
/// before the kernel's shutdown lines. An OSC escape sequence, so a terminal
/// shows nothing even where it is not filtered; it needs no newline, so what
/// came before stays byte-exact. The launcher hides what follows it at INFO.
pub const CONSOLE_HANDBACK: &str = "\x1b]runcvm;console-returned\x07";
