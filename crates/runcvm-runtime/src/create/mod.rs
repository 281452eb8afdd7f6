//! `create` of a workload container: everything the launcher will need is
//! prepared on the node — the launch file, the boot disk (guest init and
//! `/.runcvm`, built with the node's `mkfs.ext4`; nothing of the image, so
//! its cost does not grow with the image), the acceleration decided — in
//! the container's state folder; then `config.json` is rewritten so the
//! container's process is the launcher, with the container's root bound
//! into the state folder for the launcher to serve.
//!
//! In a pod with one VM (`docs/pods.md`: every pod unless it opts out),
//! the sandbox's `create`
//! makes the pod's VM launcher (no root, no volumes, the VM sized from the
//! pod's annotations), and each workload container's makes a launcher that
//! creates the container in that VM (no boot disk, no devices: the pod's
//! socket bound in instead).

mod guest_plan;
pub mod namespaces;
pub mod pod_vm;

pub use pod_vm::PodKind;

use crate::install::Install;
use crate::state::{node_launch_file, remove_state, state_folder};
use namespaces::{NamespaceError, NodeNamespaces};
use runcvm_host::guest_disk;
use runcvm_host::resources::{Limits, Overrides, vm_size};
use runcvm_host::run_dir::RunDir;
use runcvm_host::settings::{NodeSettings, SETTINGS_FILE};
use runcvm_spec::launch::{
    CONTAINER_INSTALL_ROOT, CONTAINER_POD_DIR, CONTAINER_ROOT_DIR, CONTAINER_STATE_DIR, DISK_FILE, LAUNCH_FILE,
    LAUNCH_VERSION, LaunchHypervisor, LaunchRole, POD_FOLDER, ROOT_FOLDER,
};
use runcvm_spec::oci::{
    AddedMount, CharDevice, LauncherRewrite, OciConfig, OciMount, REWRITTEN_ANNOTATION, rewrite_config,
};
use runcvm_spec::{ContainerLaunch, LaunchVolume, VolumeKind};
use runcvm_vmm::AccelChoice;
use runcvm_vmm::firecracker::FirecrackerBinary;
use runcvm_vmm::firecracker::launch::FIRECRACKER_IN_ROOT;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Mount destinations the guest gets another way: the pod's name files come
/// with the network take-over.
const GIVEN_BY_THE_NETWORK: [&str; 3] = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];
/// The smallest guest: a container with a lower memory limit gets a guest
/// of this size, and the guest holds the workload to the limit (its
/// cgroup's `memory.max`).
const MIN_GUEST_MIB: u64 = 64;
/// kubelet's annotation naming the termination message file, which
/// containerd passes into the spec when the handler lists it in
/// `container_annotations` (`runcvm install` does).
const TERMINATION_MESSAGE_PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// Devices the launcher opens: KVM (when the node has it) and the tap.
const KVM: &str = "/dev/kvm";
const TUN: &str = "/dev/net/tun";

/// Why a workload container cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// the bundle's config cannot be read
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the bundle's config is not usable
    #[error(transparent)]
    Oci(#[from] runcvm_spec::oci::OciError),
    /// no process in config.json
    #[error("{0}: `process` is missing: there is nothing to run in the VM")]
    NoProcess(PathBuf),
    /// the process is not runnable
    #[error("{path}: the container's process cannot run in a VM")]
    Process {
        path: PathBuf,
        #[source]
        source: runcvm_spec::EntrypointError,
    },
    /// the bundle was rewritten already
    #[error(
        "{0} was rewritten by runcvm already (annotation {REWRITTEN_ANNOTATION}): create each container from a fresh bundle"
    )]
    AlreadyRewritten(PathBuf),
    /// user namespace mappings that cannot be used
    #[error(
        "the container runs in a user namespace (hostUsers: false) without {0} mappings: runcvm runs the workload in a user namespace of its own in the guest and needs the pod's mappings for it"
    )]
    UserNamespaceMappings(&'static str),
    /// user namespace mappings without the pod's root
    #[error(
        "the pod's user namespace (hostUsers: false) maps no {0} to container id 0: the pod's root must be mapped, as runc requires"
    )]
    UserNamespaceWithoutRoot(&'static str),
    /// a seccomp profile the guest cannot apply
    #[error("the container's seccomp profile cannot be applied in the VM")]
    Seccomp(#[source] runcvm_seccomp::SeccompError),
    /// mounts that propagate back to the node
    #[error(
        "mount {0}: Bidirectional mount propagation (rshared) cannot work across a VM: mounts made in the guest stay in the guest's kernel and never reach the node; use HostToContainer or None, or another runtime class"
    )]
    SharedPropagation(String),
    /// the container joins one of the node's namespaces (its own message)
    #[error(transparent)]
    Namespaces(#[from] NamespaceError),
    /// host devices asked for
    #[error(
        "the container asks for host devices ({0}): a VM cannot use the node's devices; remove them (or privileged: true) or use another runtime class"
    )]
    HostDevices(String),
    /// a mount the guest cannot get
    #[error(
        "mount {destination}: {source_path} is a {kind}, which cannot be shared into a VM (only folders and regular files can); remove the mount or use another runtime class"
    )]
    UnshareableMount {
        destination: String,
        source_path: String,
        kind: &'static str,
    },
    /// a volume over runcvm's own mounts
    #[error("mount {destination}: {reserved} is runcvm's own in every runcvm container; mount the volume elsewhere")]
    ReservedMount {
        destination: String,
        reserved: &'static str,
    },
    /// a mount source is missing
    #[error("mount {destination}: cannot inspect its source {source_path}")]
    MountSource {
        destination: String,
        source_path: String,
        #[source]
        source: std::io::Error,
    },
    /// the memory limit is too small
    #[error(transparent)]
    Memory(#[from] runcvm_host::resources::TooLittleMemory),
    /// bad RUNCVM_ACCEL
    #[error(transparent)]
    AccelChoice(#[from] runcvm_vmm::accel::UnknownAccelChoice),
    /// the node's settings cannot be used
    #[error(transparent)]
    Settings(#[from] runcvm_host::settings::SettingsFileError),
    /// the node's hypervisor cannot be had
    #[error(transparent)]
    Hypervisor(#[from] runcvm_host::hypervisor::HypervisorError),
    /// KVM asked for and not usable
    #[error(transparent)]
    Accel(#[from] runcvm_host::accel::AccelError),
    /// state folder
    #[error("cannot create the container's state folder {path}: make {} writable, or set RUNCVM_STATE_DIR", path.parent().map_or_else(String::new, |p| p.display().to_string()))]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot give the container the node's boot disk
    #[error("cannot give the container the node's boot disk")]
    BootDisk {
        #[source]
        reason: runcvm_host::guest_disk::BootDiskError,
    },
    /// the launch file (its own message)
    #[error(transparent)]
    Launch {
        reason: runcvm_host::guest_disk::GuestDiskError,
    },
    /// a PID namespace the pod's VM cannot share
    #[error(
        "the container's PID namespace {0} is neither its pod's nor one of its pod's containers': a container in the pod's VM can share only those (shareProcessNamespace, an ephemeral container's target)"
    )]
    ForeignPidNamespace(String),
    /// the sandbox's launch file cannot be used
    #[error("the pod's sandbox {id} cannot be used for the container (delete the pod and create it again)")]
    Sandbox {
        id: String,
        #[source]
        source: Box<crate::state::NodeLaunchError>,
    },
    /// the pod's socket folder is not what the runtime made
    #[error(
        "{path}, the pod's socket's folder, is not usable ({why}): the pod's sandbox was tampered with; delete the pod"
    )]
    PodFolder { path: PathBuf, why: String },
    /// a pod VM without a network of its own
    #[error("the pod's sandbox has no network namespace of its own to give the pod's VM")]
    PodVmWithoutNetwork,
    /// a workload whose sandbox runs no pod VM
    #[error(
        "the pod's sandbox {0} runs no VM for the pod (runc made it unchanged: its network namespace was not the pod's own to give, or a runcvm build before pod VMs made it); runcvm runs every container of a pod in the sandbox's VM: delete the pod and create it again"
    )]
    NoPodVm(String),
    /// writing a file
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bundle's `config.json`, read.
#[derive(Debug)]
pub struct BundleConfig {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub config: OciConfig,
}

impl BundleConfig {
    pub fn read(bundle: &Path) -> Result<Self, CreateError> {
        let path = bundle.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| CreateError::Read {
            path: path.clone(),
            source,
        })?;
        let config = OciConfig::parse(&bytes, &path.display().to_string())?;
        Ok(Self { path, bytes, config })
    }

    pub fn role(&self) -> runcvm_spec::oci::ContainerRole {
        self.config.role()
    }
}

/// Inputs of one workload's `create`.
#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub bundle: &'a Path,
    pub id: &'a str,
    pub install: &'a Install,
    /// The node's state folder (`/var/lib/runcvm`).
    pub state_root: &'a Path,
    /// The node's own namespaces, which no workload container may join.
    pub node: &'a NodeNamespaces,
    /// The runtime's `--log` file and its format, for warnings.
    pub log: Option<&'a Path>,
    pub log_json: bool,
    /// Whose VM the container runs in.
    pub kind: &'a PodKind,
}

/// Prepares a workload container (see the module docs); returns its state
/// folder. On failure nothing is left: no state folder, `config.json` as
/// it was.
pub fn prepare(request: &CreateRequest<'_>, bundle: &BundleConfig) -> Result<PathBuf, CreateError> {
    let config_path = &bundle.path;
    let file = config_path.display().to_string();
    let config = &bundle.config;
    if config.rewritten() {
        return Err(CreateError::AlreadyRewritten(config_path.clone()));
    }
    let process = config
        .process
        .as_ref()
        .ok_or_else(|| CreateError::NoProcess(config_path.clone()))?;
    let entrypoint = process.entrypoint();
    entrypoint.validate().map_err(|source| CreateError::Process {
        path: config_path.clone(),
        source,
    })?;
    let pod_namespaces = namespaces::check(config, request.node, namespaces::identify)?;
    if matches!(request.kind, PodKind::PodVm) && pod_namespaces.network.is_none() {
        return Err(CreateError::PodVmWithoutNetwork);
    }
    let user_namespace = guest_plan::user_namespace(config)?;
    let drop_host_devices = host_devices(config)?;
    if drop_host_devices {
        crate::report::info(
            request.log,
            request.log_json,
            "a privileged container: the node's devices are left out (the VM has its own)",
        );
    }
    if let Some(mount) = config
        .mounts
        .iter()
        .find(|m| m.options.iter().any(|o| o == "rshared" || o == "shared"))
    {
        return Err(CreateError::SharedPropagation(mount.destination.clone()));
    }
    let volumes = match request.kind {
        // The pause container's mounts are nobody's volumes.
        PodKind::PodVm => Vec::new(),
        // The pod's name files come with the network take-over in a VM of
        // one container; in the pod's VM each container brings its own.
        PodKind::OwnVm => guest_volumes(&config.mounts, NameFiles::FromTheNetwork)?,
        PodKind::InPodVm { .. } => guest_volumes(&config.mounts, NameFiles::Copied)?,
    };
    let warn = |message: &str| crate::report::warning(request.log, request.log_json, message);
    let mut plan = guest_plan::plan(config, request.bundle, pod_namespaces, user_namespace.clone(), &warn)?;
    if let (PodKind::InPodVm { sandbox_id, .. }, Some(joined)) = (request.kind, pod_namespaces.pid) {
        let path = namespaces::path_of(config, "pid").unwrap_or_default();
        plan.pid_namespace_of = pod_vm::pid_namespace_owner(
            joined,
            path,
            sandbox_id,
            pod_namespaces.network,
            request.state_root,
            namespaces::identify,
        )?;
    }
    let rootfs = request
        .bundle
        .join(config.root.as_ref().map_or("rootfs", |r| r.path.as_str()));
    let (vm, raised_by) = match request.kind {
        PodKind::InPodVm { sandbox, .. } => {
            say_node_only_env_is_ignored(request, &process.env);
            (pod_vm::the_pods_vm(sandbox), 0)
        }
        PodKind::OwnVm | PodKind::PodVm => the_vm(request, config, &process.env)?,
    };

    let state = state_folder(request.state_root, request.id);
    let made = make_state_folder(&state);
    let result = made.and_then(|()| {
        let launch = ContainerLaunch {
            version: LAUNCH_VERSION,
            process: entrypoint.clone(),
            plan,
            cpus: vm.size.cpus,
            memory_mib: vm.size.memory_mib,
            accel: vm.accel,
            hypervisor: vm.hypervisor,
            kernel_args: vm.kernel_args.clone(),
            vmm_user: vm.vmm_user,
            volumes: volumes.clone(),
            network_namespace: pod_namespaces.network,
            termination_message_path: config.annotations.get(TERMINATION_MESSAGE_PATH_ANNOTATION).cloned(),
            rootfs: match request.kind {
                PodKind::PodVm => None,
                _ => Some(rootfs.display().to_string()),
            },
            boot_disk: vm.boot_disk.display().to_string(),
            role: match request.kind {
                PodKind::OwnVm => LaunchRole::OwnVm,
                PodKind::PodVm => LaunchRole::PodVm,
                PodKind::InPodVm { .. } => LaunchRole::InPodVm {
                    name: request.id.to_owned(),
                },
            },
        };
        write_state(request, &launch, vm.shared_with, &state)?;
        let mut value: serde_json::Value =
            serde_json::from_slice(&bundle.bytes).map_err(|source| runcvm_spec::oci::OciError::Malformed {
                file: file.clone(),
                what: "runtime config",
                source,
            })?;
        let drops = Drops {
            host_devices: drop_host_devices,
            user_namespace: user_namespace.is_some(),
        };
        let rewrite = launcher_rewrite(request, &state, &rootfs, &vm, raised_by, drops);
        rewrite_config(&mut value, &rewrite, &file)?;
        write_replacing(config_path, &serde_json::to_vec(&value).expect("JSON values serialize"))
    });
    if let Err(e) = result {
        // Nothing is left behind: containerd may never call delete.
        let _ = remove_state(request.state_root, request.id);
        return Err(e);
    }
    Ok(state)
}

/// The VM a container runs in, as its launch file names it.
pub(crate) struct TheVm {
    pub size: runcvm_host::resources::VmSize,
    pub accel: runcvm_spec::launch::LaunchAccel,
    pub hypervisor: LaunchHypervisor,
    pub kernel_args: Vec<String>,
    pub vmm_user: runcvm_spec::VmmUser,
    pub boot_disk: PathBuf,
    /// The VMM's user the state folder is shared with; `None` for a
    /// container in its pod's VM, whose launcher runs no VMM.
    pub shared_with: Option<runcvm_spec::VmmUser>,
    /// The pod's CPU weight, for a pod VM's sandbox.
    pub cpu_shares: Option<u64>,
}

/// Decides the VM a launcher boots (a container's own, or its pod's): its
/// size, acceleration, VMM and boot disk; returns it with what the
/// cgroup's memory limit is raised by.
fn the_vm(request: &CreateRequest<'_>, config: &OciConfig, env: &[String]) -> Result<(TheVm, u64), CreateError> {
    // The guest gets the limit (at least the smallest guest), the cgroup
    // the overhead on top.
    let overhead = runcvm_host::resources::MEMORY_OVERHEAD_MIB << 20;
    let sizing = match request.kind {
        PodKind::PodVm => pod_sizing(request, config),
        _ => runcvm_spec::oci::SandboxSizing {
            cpu: config.cpu_quota(),
            cpu_shares: None,
            memory_bytes: config.memory_limit(),
        },
    };
    let guest_bytes = sizing.memory_bytes.map(|limit| limit.max(MIN_GUEST_MIB << 20));
    let limits = Limits {
        millicpus: sizing
            .cpu
            .map(|cpu| u64::from(u32::try_from(cpu.quota_us.div_ceil(cpu.period_us)).unwrap_or(u32::MAX)) * 1000),
        memory_bytes: guest_bytes.map(|bytes| bytes + overhead),
    };
    // What the cgroup limit is raised by: the overhead, and what a limit
    // below the smallest guest lacks.
    let raised_by = overhead
        + guest_bytes
            .zip(config.memory_limit())
            .map_or(0, |(guest, limit)| guest - limit);
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    let size = vm_size(limits, Overrides::default(), host_cpus)?;
    let choice: AccelChoice = env_value(env, runcvm_vmm::accel::ACCEL_ENV).map_or(Ok(AccelChoice::Auto), str::parse)?;
    let qemu = request.install.qemu();
    let (accel, fallback) = runcvm_host::accel::decide(choice, &qemu, &request.install.kernel(), request.state_root)?;
    if let Some(why) = fallback {
        // A node's condition, not the pod's: containerd's log, not the
        // pod's (the runtime's stderr is the container's at create).
        crate::report::warning(request.log, request.log_json, &why);
    }
    let boot = node_boot(request, env, accel)?;
    // The node's, before the container's folder: nothing to undo if it
    // cannot be had.
    let shared_with = runcvm_host::vmm_share::for_euid(effective_uid(), boot.vmm_user);
    let boot_disk = guest_disk::node_boot_disk(
        request.state_root,
        &request.install.guest_init(),
        shared_with.map(|user| user.gid),
    )
    .map_err(|reason| CreateError::BootDisk { reason })?;
    let cpu_shares = matches!(request.kind, PodKind::PodVm).then(|| sizing.cpu_shares.unwrap_or(DEFAULT_CPU_SHARES));
    let vm = TheVm {
        size,
        accel: accel.into(),
        hypervisor: boot.hypervisor,
        kernel_args: boot.kernel_args,
        vmm_user: boot.vmm_user,
        boot_disk,
        shared_with,
        cpu_shares,
    };
    Ok((vm, raised_by))
}

/// The pod VM's sizing: the sandbox's sums; but where the pod's cgroup has
/// no memory limit, a container of the pod has none either and the sum
/// leaves it out, so the VM gets the default memory rather than the other
/// containers' sum.
fn pod_sizing(request: &CreateRequest<'_>, config: &OciConfig) -> runcvm_spec::oci::SandboxSizing {
    let mut sizing = config.sandbox_sizing();
    let limit = pod_vm::pod_memory_limit(config, Path::new("/sys/fs/cgroup"));
    if let (Some(sum), pod_vm::PodMemoryLimit::Unlimited) = (sizing.memory_bytes, limit) {
        crate::report::info(
            request.log,
            request.log_json,
            &format!(
                "the pod's cgroup has no memory limit (a container of the pod has none): its VM gets the default memory, not the other containers' sum of {} MiB",
                sum >> 20
            ),
        );
        sizing.memory_bytes = None;
    }
    sizing
}

/// A cgroup's CPU weight when nothing sets it (cgroup v1's default shares).
const DEFAULT_CPU_SHARES: u64 = 1024;

/// Says, in the container's log, which of `runcvm run`'s knobs that would
/// choose how the guest boots are in the container's env, and so ignored.
fn say_node_only_env_is_ignored(request: &CreateRequest<'_>, env: &[String]) {
    let root = request.install.root();
    for name in runcvm_spec::oci::NODE_ONLY_ENV {
        if env_value(env, name).is_some() {
            let message = format!(
                "{name} in the container's env is ignored: a pod cannot change how its guest boots; the node's settings do ({}, written by runcvm install)",
                root.join(SETTINGS_FILE).display()
            );
            crate::report::pod_warning(request.log, request.log_json, &message);
        }
    }
}

/// How the guest boots, which the node decides alone.
struct NodeBoot {
    hypervisor: LaunchHypervisor,
    kernel_args: Vec<String>,
    vmm_user: runcvm_spec::VmmUser,
}

/// The hypervisor and kernel arguments of the node's settings; the knobs of
/// `runcvm run` that would choose them, found in the container's env, are
/// ignored, said once in the container's log.
fn node_boot(request: &CreateRequest<'_>, env: &[String], accel: runcvm_vmm::Accel) -> Result<NodeBoot, CreateError> {
    let root = request.install.root();
    let settings = NodeSettings::read(root)?;
    say_node_only_env_is_ignored(request, env);
    let by = format!(
        "the node's setting hypervisor = \"{}\" ({})",
        settings.hypervisor.as_str(),
        root.join(SETTINGS_FILE).display()
    );
    let installed = FirecrackerBinary::at(&root.join(FIRECRACKER_IN_ROOT));
    let has_firecracker = installed.is_ok();
    let decision = runcvm_host::hypervisor::decide(settings.hypervisor.into(), &by, installed, accel)?;
    if let (Some(why), true) = (&decision.why_not_firecracker, has_firecracker) {
        crate::report::info(request.log, request.log_json, &format!("{why}; running the VM on QEMU"));
    }
    let hypervisor = match decision.hypervisor {
        runcvm_host::hypervisor::Hypervisor::Qemu => LaunchHypervisor::Qemu,
        runcvm_host::hypervisor::Hypervisor::Firecracker(_) => LaunchHypervisor::Firecracker,
    };
    Ok(NodeBoot {
        hypervisor,
        kernel_args: settings.kernel_args,
        vmm_user: settings.vmm_user,
    })
}

/// The launch file, the mount point of the node's boot disk (bound there
/// read-only by the launcher's config) and the empty folder the container's
/// root is bound to.
fn write_state(
    request: &CreateRequest<'_>,
    launch: &ContainerLaunch,
    vmm_user: Option<runcvm_spec::VmmUser>,
    state: &Path,
) -> Result<(), CreateError> {
    use std::os::unix::fs::OpenOptionsExt;
    // A pod VM's sandbox has no root to serve but the pod's socket's folder.
    let folder = match launch.role {
        LaunchRole::PodVm => POD_FOLDER,
        _ => ROOT_FOLDER,
    };
    let folder = state.join(folder);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&folder)
        .map_err(|source| CreateError::Write {
            path: folder.clone(),
            source,
        })?;
    let run_dir = RunDir::adopt(state);
    let disk = run_dir.disk();
    // The boot disk's mount point, empty on the node: none where no VM is
    // booted.
    if !matches!(launch.role, LaunchRole::InPodVm { .. }) {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&disk)
            .map_err(|source| CreateError::Write { path: disk, source })?;
    }
    // Here on the node, not in the launcher, which runs under the pod's
    // seccomp profile. The boot disk was shared when it was built.
    if let Some(user) = vmm_user {
        runcvm_host::vmm_share::share_run_folder(state, None, user).map_err(|source| CreateError::Write {
            path: state.to_owned(),
            source,
        })?;
    }
    let json = launch.to_json();
    let path = state.join(LAUNCH_FILE);
    guest_disk::write_private(&path, &json).map_err(|reason| CreateError::Launch { reason })?;
    let node_copy = node_launch_file(request.state_root, request.id);
    let _ = std::fs::remove_file(&node_copy);
    guest_disk::write_private(&node_copy, &json).map_err(|reason| CreateError::Launch { reason })
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the container's host devices are to be left out: `Ok(true)` for
/// a privileged container, which containerd gives every device of the node
/// (unless the handler sets `privileged_without_host_devices`, as `runcvm
/// install` does); a VM has devices of its own and cannot use the node's,
/// so they are dropped. Devices asked for one by one (a device plugin's)
/// are refused: the pod would run without what it asked for.
fn host_devices(config: &OciConfig) -> Result<bool, CreateError> {
    let devices = config.linux.as_ref().map_or(&[][..], |l| l.devices.as_slice());
    if devices.is_empty() {
        return Ok(false);
    }
    if config.all_devices_allowed() {
        return Ok(true);
    }
    let paths: Vec<&str> = devices.iter().map(|d| d.path.as_str()).collect();
    Err(CreateError::HostDevices(paths.join(", ")))
}

/// What the launcher's config leaves out of the container's.
#[derive(Debug, Clone, Copy)]
struct Drops {
    host_devices: bool,
    user_namespace: bool,
}

fn launcher_rewrite(
    request: &CreateRequest<'_>,
    state: &Path,
    rootfs: &Path,
    vm: &TheVm,
    memory_raised_by: u64,
    drops: Drops,
) -> LauncherRewrite {
    let boots_a_vm = !matches!(request.kind, PodKind::InPodVm { .. });
    // The network's take-over needs CAP_NET_ADMIN; a container's proxy in
    // its pod's VM only reads the pod network's record and serves on ports
    // of its own.
    let mut capabilities: Vec<String> = boots_a_vm
        .then(|| runcvm_spec::oci::LAUNCHER_CAPABILITY.to_owned())
        .into_iter()
        .collect();
    capabilities.extend(runcvm_spec::oci::IDENTITY_CAPABILITIES.map(str::to_owned));
    let devices = [KVM, TUN]
        .into_iter()
        .filter(|_| boots_a_vm)
        .filter_map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            let rdev = meta.rdev();
            Some(CharDevice {
                path: path.to_owned(),
                major: libc::major(rdev).into(),
                minor: libc::minor(rdev).into(),
            })
        })
        .collect();
    let mut mounts = vec![
        AddedMount {
            source: request.install.root().display().to_string(),
            destination: CONTAINER_INSTALL_ROOT.to_owned(),
            read_only: true,
            exec: true,
            recursive: true,
        },
        AddedMount {
            source: state.display().to_string(),
            destination: CONTAINER_STATE_DIR.to_owned(),
            read_only: false,
            exec: false,
            recursive: true,
        },
    ];
    if boots_a_vm {
        // Every VM of the node boots this disk: read-only here, so not
        // even the pod's root beside the launcher (`kubectl exec --
        // ---`, with CAP_DAC_OVERRIDE) can write what other pods boot.
        mounts.push(AddedMount {
            source: vm.boot_disk.display().to_string(),
            destination: format!("{CONTAINER_STATE_DIR}/{DISK_FILE}"),
            read_only: true,
            exec: false,
            recursive: false,
        });
    }
    if let PodKind::InPodVm { sandbox_id, .. } = request.kind {
        // The pod's socket, and nothing else of the sandbox's.
        mounts.push(AddedMount {
            source: state_folder(request.state_root, sandbox_id)
                .join(POD_FOLDER)
                .display()
                .to_string(),
            destination: CONTAINER_POD_DIR.to_owned(),
            read_only: true,
            exec: false,
            recursive: false,
        });
    }
    if !matches!(request.kind, PodKind::PodVm) {
        // The container's root by itself, without the mounts runc makes
        // on it (the volumes, /proc, the state folder): the launcher
        // serves it to the guest, whose container root it becomes. Not
        // `noexec`: the server answers the guest's execute checks with
        // access(2), which refuses them all on such a mount.
        mounts.push(AddedMount {
            source: rootfs.display().to_string(),
            destination: CONTAINER_ROOT_DIR.to_owned(),
            read_only: false,
            exec: true,
            recursive: false,
        });
    }
    LauncherRewrite {
        args: vec![
            format!("{CONTAINER_INSTALL_ROOT}/bin/runcvm"),
            "launch".to_owned(),
            CONTAINER_STATE_DIR.to_owned(),
        ],
        capabilities,
        devices,
        mounts,
        memory_overhead_bytes: memory_raised_by,
        drop_host_devices: drops.host_devices,
        drop_user_namespace: drops.user_namespace,
        cpu_shares: vm.cpu_shares,
    }
}

/// Where a container in a VM gets the pod's name files (`/etc/hosts`,
/// `/etc/hostname`, `/etc/resolv.conf`) from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFiles {
    /// The network take-over writes them (a VM of one container).
    FromTheNetwork,
    /// Copied in from the container's own mounts, like any single file.
    Copied,
}

/// The container's bind mounts the guest gets at the same paths: folders
/// shared, regular files copied (and, if writable, copied back when the
/// workload ends). The kernel's file systems, the folders under `/dev` and
/// the pod's name files are the guest's own.
pub fn guest_volumes(mounts: &[OciMount], name_files: NameFiles) -> Result<Vec<LaunchVolume>, CreateError> {
    let mut volumes = Vec::new();
    for mount in mounts {
        let is_bind =
            mount.kind.as_deref() == Some("bind") || mount.options.iter().any(|o| o == "bind" || o == "rbind");
        let destination = mount.destination.trim_end_matches('/');
        let under = |tops: &[&str]| {
            tops.iter()
                .any(|top| destination == *top || destination.starts_with(&format!("{top}/")))
        };
        // The kernel's file systems are the guest's own; so are the folders
        // under /dev (its shm, mqueue), but not a file bound there: kubelet
        // puts the termination message file at /dev/termination-log.
        let dev_file = under(&["/dev"])
            && std::fs::metadata(mount.source.as_deref().unwrap_or_default()).is_ok_and(|m| m.is_file());
        let own = under(&["/proc", "/sys"]) || (under(&["/dev"]) && !dev_file);
        let by_the_network = name_files == NameFiles::FromTheNetwork && GIVEN_BY_THE_NETWORK.contains(&destination);
        if !is_bind || own || by_the_network || destination.is_empty() {
            continue;
        }
        // runcvm's own mounts cover these: a volume there would hand the
        // guest the state folder (its disk, its sockets) or the install.
        let reserved = [CONTAINER_STATE_DIR, CONTAINER_INSTALL_ROOT]
            .iter()
            .find(|top| destination == **top || destination.starts_with(&format!("{top}/")));
        if let Some(reserved) = reserved {
            return Err(CreateError::ReservedMount {
                destination: destination.to_owned(),
                reserved,
            });
        }
        let source = mount.source.clone().unwrap_or_default();
        let meta = std::fs::metadata(&source).map_err(|e| CreateError::MountSource {
            destination: destination.to_owned(),
            source_path: source.clone(),
            source: e,
        })?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            VolumeKind::Folder
        } else if file_type.is_file() {
            VolumeKind::File
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_char_device() || file_type.is_block_device() {
                "device"
            } else {
                "special file"
            };
            return Err(CreateError::UnshareableMount {
                destination: destination.to_owned(),
                source_path: source,
                kind,
            });
        };
        volumes.push(LaunchVolume {
            path: destination.to_owned(),
            read_only: mount.options.iter().any(|o| o == "ro"),
            kind,
        });
    }
    Ok(volumes)
}

/// The value of `name` in an OCI env list (the last one wins, as in a shell).
pub(crate) fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|entry| entry.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// Makes the folder, which must not exist: the caller made sure runc has
/// no container of this id, so one left over belongs to a create that died
/// half-way and is replaced.
fn make_state_folder(path: &Path) -> Result<(), CreateError> {
    if path.exists() {
        let _ = crate::state::remove_folder(path);
    }
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| CreateError::StateDir {
                path: path.to_owned(),
                source,
            })?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|source| CreateError::StateDir {
            path: path.to_owned(),
            source,
        })
}

/// Replaces `path` whole or not at all.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), CreateError> {
    let temp = path.with_extension("json.runcvm-tmp");
    let written = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|source| {
        let _ = std::fs::remove_file(&temp);
        CreateError::Write {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests;
