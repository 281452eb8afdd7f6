//! One run from a rootfs folder: locate what is needed, build the root disk,
//! pick the acceleration, run the VM, clean up, return the exit code.

use crate::failure::{RunError, RunFailure};
use crate::run_dir::RunDir;
use crate::settings::Settings;
use crate::vm::VmLaunch;
use crate::{accel, guest_disk, locate};
use runcvm_log::LogLevel;
use runcvm_proto::HostMessage;
use runcvm_spec::{Entrypoint, LaunchPlan};
use runcvm_vmm::qemu::QemuConfig;
use runcvm_vmm::vm::{Backend, VmSpec};
use runcvm_vmm::{AccelChoice, GuestCmdline, GuestKernel};
use std::path::PathBuf;
use std::time::Instant;

/// Extra kernel command-line words for `runcvm run`, appended last (so they
/// win): a debugging aid, e.g. `RUNCVM_KERNEL_ARGS="loglevel=8"`. A pod's
/// come from the node's settings alone.
pub const KERNEL_ARGS_ENV: &str = "RUNCVM_KERNEL_ARGS";

/// What to run and with what.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub rootfs: PathBuf,
    /// `None` boots a guest with no `/.runcvm/entrypoint`.
    pub entrypoint: Option<Entrypoint>,
    pub plan: LaunchPlan,
    /// Sizes given on the command line; the rest come from the environment,
    /// the cgroup limits or the defaults.
    pub size: crate::resources::Overrides,
    pub headroom_mib: u64,
    /// Take over the `eth0` of the network namespace runcvm runs in.
    pub pod_network: bool,
    /// Pass runcvm's stdin to the workload.
    pub interactive: bool,
    /// Host folders shared into the guest over NFS, and single files
    /// copied into it at boot.
    pub volumes: Vec<crate::volumes::VolumeSpec>,
}

/// Runs the request and returns the exit code for the process: the
/// workload's, or the failure's after logging it.
pub fn run(request: &RunRequest, settings: &Settings) -> i32 {
    match try_run(request, settings) {
        Ok(code) => code,
        Err(e) => {
            runcvm_log::error!("{}", runcvm_log::error_chain(&e));
            e.exit_code()
        }
    }
}

fn try_run(request: &RunRequest, settings: &Settings) -> Result<i32, RunFailure> {
    let started = Instant::now();
    let prepared = prepare(request, settings)?;
    let ended = boot(&Boot {
        run_dir: &prepared.run_dir,
        plan: &request.plan,
        entrypoint: request.entrypoint.as_ref(),
        shared_boot_disk: false,
        pod_network: prepared.pod_options,
        kubernetes: false,
        volumes: &request.volumes,
        served_root: None,
        volumes_optional: prepared.volumes_optional,
        volume_ids: request.entrypoint.as_ref().and_then(workload_ids),
        volume_id_map: None,
        size: prepared.size,
        accel: prepared.accel,
        boot_timeout: prepared.boot_timeout,
        kernel: &prepared.kernel,
        qemu: prepared.qemu,
        hypervisor: prepared.hypervisor,
        kernel_args: settings
            .kernel_args
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        vmm_user: prepared.vmm_user,
        interactive: request.interactive,
        terminal: request.entrypoint.as_ref().is_some_and(|e| e.terminal),
        started,
        pod_vm: false,
    })?;
    Ok(ended.status.container_code())
}

/// What `runcvm run` prepares on the host before the VM: its folder and
/// root disk, and every choice the boot needs.
struct Prepared {
    run_dir: RunDir,
    pod_options: Option<runcvm_net::TakeOverOptions>,
    volumes_optional: bool,
    size: crate::resources::VmSize,
    accel: runcvm_vmm::Accel,
    boot_timeout: std::time::Duration,
    kernel: std::path::PathBuf,
    qemu: runcvm_vmm::qemu::QemuBinary,
    hypervisor: crate::hypervisor::Hypervisor,
    vmm_user: Option<runcvm_spec::VmmUser>,
}

fn prepare(request: &RunRequest, settings: &Settings) -> Result<Prepared, RunError> {
    let choice = AccelChoice::from_setting(settings.accel.as_deref())?;
    let volumes_optional = crate::volumes::failure_is_optional(settings.volume_failure.as_deref())?;
    let shares = request
        .volumes
        .iter()
        .any(|v| matches!(v, crate::volumes::VolumeSpec::Shared(_)));
    if shares && !request.pod_network {
        return Err(RunError::VolumesNeedThePodNetwork);
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1));
    let size = crate::resources::vm_size(
        crate::resources::current_limits(),
        request.size.or(crate::resources::Overrides::from_settings(
            settings.cpus.as_deref(),
            settings.memory_mib.as_deref(),
        )?),
        host_cpus,
    )?;
    runcvm_log::debug!(
        "VM size: {} vCPUs, {} MiB ({})",
        size.cpus,
        size.memory_mib,
        size.origin
    );
    let pod_options = if request.pod_network {
        Some(crate::pod_network::preflight(settings)?)
    } else {
        None
    };
    let kernel = GuestKernel::locate(settings.kernel())?;
    let init = locate::guest_init(settings.init.as_deref())?;
    let qemu_binary = locate::qemu(settings.qemu.as_deref())?;
    let state_dir = settings.state_dir();
    // Before any work that a refused acceleration would waste.
    let accel = accel::resolve(choice, &qemu_binary, &kernel.path, &state_dir)?;
    let boot_timeout = accel::boot_timeout(accel, settings.boot_timeout.as_deref())?;
    let hypervisor = crate::hypervisor::resolve(settings.hypervisor_asked(), locate::install_root().as_deref(), accel)?;
    RunDir::sweep_stale(&state_dir);
    let run_dir = RunDir::create(&state_dir)?;
    let vmm_user = crate::vmm_privileges::for_euid(nix::unistd::geteuid().as_raw(), node_vmm_user());
    if vmm_user.is_some() {
        let runs = state_dir.join("runs");
        crate::vmm_privileges::open_for_passage(&[&state_dir, &runs]).map_err(|source| RunError::Passage {
            path: runs.clone(),
            source,
        })?;
    }
    runcvm_log::debug!("run folder {}", run_dir.path().display());

    let files = guest_disk::GuestFiles {
        init: &init,
        entrypoint: request.entrypoint.as_ref(),
        plan: &request.plan,
    };
    guest_disk::build(&run_dir, &request.rootfs, &files, request.headroom_mib).map_err(RunError::Disk)?;
    Ok(Prepared {
        run_dir,
        pod_options,
        volumes_optional,
        size,
        accel,
        boot_timeout,
        kernel: kernel.path,
        qemu: qemu_binary,
        hypervisor,
        vmm_user,
    })
}

/// The VMM user of the node's settings (`runcvm install --vmm-user`), else
/// the default: `runcvm run` on a node uses the node's.
fn node_vmm_user() -> runcvm_spec::VmmUser {
    locate::install_root()
        .and_then(|root| runcvm_install::settings::NodeSettings::read(&root).ok())
        .map(|settings| settings.vmm_user)
        .unwrap_or_default()
}

/// The ids a non-root workload's volumes serve: its uid, its gid and its
/// groups (`fsGroup` among them in Kubernetes). `None` for root.
pub(crate) fn workload_ids(process: &Entrypoint) -> Option<runcvm_nfs::KnownIds> {
    (process.uid != 0).then(|| runcvm_nfs::KnownIds {
        uids: vec![process.uid],
        gids: std::iter::once(process.gid)
            .chain(process.additional_gids.iter().copied())
            .collect(),
    })
}

/// What booting needs once the root disk exists: shared by `runcvm run`
/// and the Kubernetes launcher.
pub(crate) struct Boot<'a> {
    pub run_dir: &'a RunDir,
    /// The container: its plan, and its process (`None`: the guest sleeps),
    /// sent to the guest in `Start`.
    pub plan: &'a LaunchPlan,
    pub entrypoint: Option<&'a Entrypoint>,
    /// The run folder's disk is the node's boot disk, which every VM
    /// shares: attached read-only.
    pub shared_boot_disk: bool,
    /// Take over the pod network, with these options.
    pub pod_network: Option<runcvm_net::TakeOverOptions>,
    /// A Kubernetes container: `kubectl port-forward` connections are
    /// carried into the guest (with the pod network), and a guest OOM kill
    /// is mirrored in the container's cgroup for the node (`oom.rs`).
    pub kubernetes: bool,
    pub volumes: &'a [crate::volumes::VolumeSpec],
    /// The folder served as the container's root (a Kubernetes container's
    /// own rootfs); `None`: the root disk holds the container's root.
    pub served_root: Option<&'a std::path::Path>,
    pub volumes_optional: bool,
    /// The workload's ids when it is not root: the only ones its volumes
    /// serve (see `runcvm_nfs::KnownIds`).
    pub volume_ids: Option<runcvm_nfs::KnownIds>,
    /// A pod's user namespace mappings, for its volumes' ids.
    pub volume_id_map: Option<runcvm_nfs::IdMap>,
    pub size: crate::resources::VmSize,
    pub accel: runcvm_vmm::Accel,
    pub boot_timeout: std::time::Duration,
    pub kernel: &'a std::path::Path,
    pub qemu: runcvm_vmm::qemu::QemuBinary,
    pub hypervisor: crate::hypervisor::Hypervisor,
    /// Appended last to the guest's kernel command line.
    pub kernel_args: Vec<String>,
    /// Who the VMM runs as (`vmm_privileges::for_euid`).
    pub vmm_user: Option<runcvm_spec::VmmUser>,
    pub interactive: bool,
    pub terminal: bool,
    pub started: Instant,
    /// The pod's VM: no container of its own (`plan` gives the pod's
    /// hostname, sysctls and user namespace), its socket in the run
    /// folder's `pod/`, where its containers' launchers reach it.
    pub pod_vm: bool,
}

/// Takes over the pod network, serves the volumes, runs the VM and returns
/// how the workload ended.
pub(crate) fn boot(boot: &Boot<'_>) -> Result<crate::vm::WorkloadEnd, RunFailure> {
    let level = runcvm_log::level();
    let pod = match boot.pod_network {
        // A pod's log is the workload's: the swap line is there at DEBUG.
        Some(options) => Some(crate::pod_network::take_over(
            options,
            if boot.kubernetes {
                LogLevel::Debug
            } else {
                LogLevel::Info
            },
            boot.vmm_user,
        )?),
        None => None,
    };
    let port_forward = if boot.kubernetes && pod.is_some() {
        Some(crate::port_forward::PortForward::set_up()?)
    } else {
        None
    };
    let (exports, copies) = crate::volumes::split(boot.volumes)?;
    let mut served = crate::volumes::serve(
        &exports,
        boot.volumes_optional,
        pod.as_ref().map(|p| &p.guest),
        boot.volume_ids.clone(),
        boot.volume_id_map.clone(),
    )?;
    let root = match (boot.served_root, &pod) {
        (Some(folder), Some(pod)) => Some(crate::volumes::serve_root(folder, &pod.guest, &mut served)?),
        (Some(_), None) => return Err(RunError::ServedRootNeedsThePodNetwork.into()),
        (None, _) => None,
    };
    let tsc_khz = runcvm_vmm::tsc::host_tsc_khz();
    runcvm_log::debug!("host TSC {tsc_khz} kHz");
    let nic = pod.as_ref().map(|p| p.nic.clone());
    // A container's folder was shared with the VMM's group at create.
    match boot.vmm_user {
        Some(user) if !boot.kubernetes => {
            crate::vmm_privileges::share_run_folder(boot.run_dir.path(), Some(&boot.run_dir.disk()), user).map_err(
                |source| RunError::Share {
                    path: boot.run_dir.path().to_owned(),
                    source,
                },
            )?;
        }
        Some(_) => {}
        None => std::fs::create_dir_all(boot.run_dir.vmm_dir()).map_err(|source| RunError::Create {
            path: boot.run_dir.vmm_dir(),
            source,
        })?,
    }
    if let Some(user) = boot.vmm_user {
        crate::vmm_privileges::prepare_launcher(user).map_err(RunError::JoinGroup)?;
    }
    let vm = VmSpec {
        kernel: boot.kernel.to_owned(),
        cmdline: GuestCmdline {
            log_level: level,
            reboot_method: QemuConfig::REBOOT_METHOD,
            tsc_khz,
            read_only_root: boot.shared_boot_disk,
            extra: boot.kernel_args.clone(),
        },
        root_disk: boot.run_dir.disk(),
        nic,
        vcpus: boot.size.cpus,
        memory_mib: boot.size.memory_mib,
        accel: boot.accel,
        vmm_dir: boot.run_dir.vmm_dir(),
        log_level: level,
    };
    let backend = match &boot.hypervisor {
        crate::hypervisor::Hypervisor::Qemu => Backend::Qemu(boot.qemu.clone()),
        crate::hypervisor::Hypervisor::Firecracker(binary) => Backend::Firecracker(binary.clone()),
    };
    // QEMU gets the tap attached: it need not open /dev/net/tun.
    let tap = match (&backend, &vm.nic) {
        (Backend::Qemu(_), Some(nic)) => {
            Some(runcvm_net::tap::attach(&nic.tap).map_err(|reason| RunError::AttachTap {
                tap: nic.tap.clone(),
                reason,
            })?)
        }
        _ => None,
    };
    let vmm = backend.prepare(&vm, tap).map_err(|source| RunError::PrepareVmm {
        vmm: backend.name(),
        source,
    })?;
    runcvm_log::debug!("host preparation took {:.3} s", boot.started.elapsed().as_secs_f64());
    // Keys reach the guest's terminal as typed while it runs.
    let _raw = (boot.interactive && boot.terminal)
        .then(crate::terminal::RawMode::on_stdin)
        .flatten();
    let start = HostMessage::Start {
        pod: boot.plan.pod_plan(),
        network: pod.as_ref().map(|p| p.guest.clone()),
    };
    let answer = if boot.pod_vm {
        vec![start]
    } else {
        vec![
            start,
            HostMessage::CreateContainer {
                container: runcvm_proto::WORKLOAD_SESSION,
                name: None,
                plan: Box::new(boot.plan.clone()),
                entrypoint: boot.entrypoint.cloned(),
                files: pod
                    .map(|p| p.files)
                    .unwrap_or_default()
                    .into_iter()
                    .chain(copies)
                    .collect(),
                root,
                volumes: served.volumes,
                stdin: boot.interactive,
                terminal_size: boot.terminal.then(crate::terminal::current_size),
            },
        ]
    };
    let exec_socket = if boot.pod_vm {
        boot.run_dir
            .path()
            .join(runcvm_spec::launch::POD_FOLDER)
            .join(crate::run_dir::EXEC_SOCKET)
    } else {
        boot.run_dir.exec_socket()
    };
    let ended = crate::vm::run(VmLaunch {
        vmm,
        boot_timeout: boot.boot_timeout,
        show_boot: level >= LogLevel::Debug,
        answer,
        pod_vm: boot.pod_vm,
        volume_server: served.stopped,
        exec_socket: Some(exec_socket),
        forward_stdin: boot.interactive,
        terminal: boot.terminal,
        port_forward,
        mirror_oom_limit: if boot.kubernetes {
            crate::resources::current_limits().memory_bytes
        } else {
            None
        },
        on_exit: Some(crate::vm::ExitHook(Box::new({
            let volumes = boot.volumes.to_vec();
            move |ended| crate::volumes::write_back(&volumes, &ended.files)
        }))),
        vmm_user: boot.vmm_user,
        vmm_groups: match boot.accel {
            runcvm_vmm::Accel::Kvm => std::fs::metadata("/dev/kvm")
                .ok()
                .and_then(|m| {
                    use std::os::unix::fs::MetadataExt;
                    crate::vmm_privileges::kvm_group(m.mode(), m.gid())
                })
                .into_iter()
                .collect(),
            runcvm_vmm::Accel::Tcg => Vec::new(),
        },
    })?;
    runcvm_log::debug!(
        "workload {:?}; run took {:.3} s in all",
        ended.status,
        boot.started.elapsed().as_secs_f64()
    );
    Ok(ended)
}
