//! `runcvm launch STATE_DIR`: PID 1 of a Kubernetes container that
//! `runcvm-runtime create` rewrote. `launch.json` is in the state folder
//! already, the node's boot disk is bound read-only at `/.runcvm/disk.ext4`
//! and the container's root file system at `/.runcvm/root`; the launcher takes over the pod network, serves the
//! container's root and volumes, runs the VM and exits with the workload's
//! code.
//!
//! In a pod with one VM (`docs/pods.md`) the sandbox's launcher boots the
//! pod's VM with no container and serves the pod's socket until it is told
//! to stop; each container's launcher is its proxy (`attach.rs`).

use crate::failure::{RunError, RunFailure};
use crate::run::{Boot, boot};
use crate::run_dir::RunDir;
use crate::volumes::VolumeSpec;
use crate::{accel, locate};
use runcvm_spec::launch::{ContainerLaunch, LAUNCH_FILE, LaunchHypervisor, LaunchRole};
use runcvm_spec::{LaunchVolume, VolumeKind};
use runcvm_vmm::{Accel, GuestKernel};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Instant;

/// The launcher's name in its log lines with QEMU.
pub const LOG_NAME_QEMU: &str = "runcvm-ctr-qemu-k8s";
/// The launcher's name in its log lines with Firecracker (guide, section 2).
pub const LOG_NAME_FIRECRACKER: &str = "runcvm-ctr-firecracker-k8s";

/// The launcher's name for the VMM the runtime chose: known before logging
/// starts, so every line carries it. (An unreadable launch file gives the
/// QEMU name; the launch then fails and says why.)
pub fn log_name(launch: &ContainerLaunch) -> &'static str {
    match launch.hypervisor {
        LaunchHypervisor::Firecracker => LOG_NAME_FIRECRACKER,
        LaunchHypervisor::Qemu => LOG_NAME_QEMU,
    }
}

/// The launch file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LaunchFileError {
    /// cannot read {path}
    #[error("cannot read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot use {path}
    #[error("cannot use {}", path.display())]
    Use {
        path: std::path::PathBuf,
        #[source]
        source: runcvm_spec::launch::LaunchError,
    },
}

/// The container's launch file, which `runcvm-runtime create` wrote: read
/// once, by `main`, for the log name and the launch.
pub fn load(state_dir: &Path) -> Result<ContainerLaunch, LaunchFileError> {
    let path = state_dir.join(LAUNCH_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(source) => return Err(LaunchFileError::Read { path, source }),
    };
    ContainerLaunch::from_json(&bytes).map_err(|source| LaunchFileError::Use { path, source })
}

pub use runcvm_host::run_dir::LAUNCHER_LOCK;

/// Takes the folder's lock; it is released when the returned file closes,
/// however the launcher ends.
pub(crate) fn hold_the_folder(state_dir: &Path) -> Result<std::fs::File, RunError> {
    use std::os::fd::AsRawFd;
    let path = state_dir.join(LAUNCHER_LOCK);
    let file = match std::fs::File::create(&path) {
        Ok(file) => file,
        Err(source) => return Err(RunError::Create { path, source }),
    };
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let reason = std::io::Error::last_os_error();
        return Err(RunError::Lock { path, reason });
    }
    Ok(file)
}

/// The abstract socket a launcher holds while it owns its pod's network.
/// Abstract sockets belong to a network namespace, and the kernel releases
/// this one when its holder dies, however it dies.
const POD_NETWORK_CLAIM: &[u8] = b"runcvm-pod-network";

/// Runs the container's VM and returns its exit code: the workload's, or
/// the failure's (`RunFailure::exit_code`) after logging it.
pub fn launch(state_dir: &Path, launch: &ContainerLaunch, settings: &crate::settings::Settings) -> i32 {
    if let LaunchRole::InPodVm { name } = &launch.role {
        return crate::attach::in_pod_vm(state_dir, launch, name, settings);
    }
    let pod_log = (launch.role == LaunchRole::PodVm).then(|| {
        // Every line, for the containers at DEBUG (`pod_console.rs`).
        runcvm_log::set_tee(crate::pod_console::record_line);
        PodLog::start(state_dir)
    });
    let code = match try_launch(state_dir, launch, settings) {
        Ok(code) => code,
        Err(e) => {
            runcvm_log::error!("{}", runcvm_log::error_chain(&e));
            e.exit_code()
        }
    };
    // The last lines, why the VM ended among them, reach the file.
    if let Some(Some(pod_log)) = pod_log {
        pod_log.finish();
    }
    code
}

fn try_launch(
    state_dir: &Path,
    launch: &ContainerLaunch,
    settings: &crate::settings::Settings,
) -> Result<i32, RunFailure> {
    let started = Instant::now();
    let pod_vm = launch.role == LaunchRole::PodVm;
    let prepared = prepare(state_dir, launch, settings)?;
    let volumes = &prepared.volumes;
    let run_dir = &prepared.run_dir;
    let (accel, boot_timeout, volumes_optional) = (prepared.accel, prepared.boot_timeout, prepared.volumes_optional);
    let ended = boot(&Boot {
        run_dir,
        plan: &launch.plan,
        // The pause container's process is never run.
        entrypoint: (!pod_vm).then_some(&launch.process),
        shared_boot_disk: true,
        pod_network: Some(prepared.pod_network),
        kubernetes: true,
        volumes,
        served_root: (!pod_vm).then(|| Path::new(runcvm_spec::launch::CONTAINER_ROOT_DIR)),
        volumes_optional,
        volume_ids: crate::run::workload_ids(&launch.process),
        volume_id_map: launch.plan.user_namespace.as_ref().map(crate::volumes::id_map),
        size: crate::resources::VmSize {
            cpus: launch.cpus,
            memory_mib: launch.memory_mib,
            origin: if pod_vm {
                "the pod's limits, read by runcvm-runtime"
            } else {
                "the container's limits, read by runcvm-runtime"
            }
            .to_owned(),
        },
        accel,
        boot_timeout,
        kernel: &prepared.kernel,
        qemu: prepared.qemu,
        hypervisor: prepared.hypervisor,
        kernel_args: launch.kernel_args.clone(),
        vmm_user: crate::vmm_privileges::for_euid(nix::unistd::geteuid().as_raw(), launch.vmm_user),
        // The container's stdin is the workload's: a closed one reaches the
        // guest as end of file, as it would under runc.
        interactive: !pod_vm,
        terminal: !pod_vm && launch.process.terminal,
        started,
        pod_vm,
    })?;
    // The node reports OOMKilled when the kill was mirrored; otherwise (no
    // memory limit to fill) the termination message says it.
    if ended.oom_killed && !ended.oom_reported {
        note_unmirrored_oom_kill(launch);
    }
    Ok(ended.status.container_code())
}

/// A guest OOM kill the node could not be shown (no memory limit to fill):
/// said in the log and in the termination message.
pub(crate) fn note_unmirrored_oom_kill(launch: &ContainerLaunch) {
    runcvm_log::info!("the guest's OOM killer ended the container's process");
    if let Some(path) = termination_message_file(launch) {
        crate::oom::note_in_termination_message(&path);
    }
}

/// What the launcher prepares before the VM: the folder's lock and the pod
/// network's claim (held while the VM runs), and every choice the boot
/// needs.
struct Prepared {
    _held: std::fs::File,
    _claim: UnixListener,
    accel: Accel,
    boot_timeout: std::time::Duration,
    volumes_optional: bool,
    pod_network: runcvm_net::TakeOverOptions,
    kernel: std::path::PathBuf,
    qemu: runcvm_vmm::qemu::QemuBinary,
    hypervisor: crate::hypervisor::Hypervisor,
    volumes: Vec<VolumeSpec>,
    run_dir: RunDir,
}

fn prepare(
    state_dir: &Path,
    launch: &ContainerLaunch,
    settings: &crate::settings::Settings,
) -> Result<Prepared, RunError> {
    let _held = hold_the_folder(state_dir)?;
    let _claim = claim_pod_network()?;
    let accel = Accel::from(launch.accel);
    let boot_timeout = accel::boot_timeout(accel, settings.boot_timeout.as_deref())?;
    let volumes_optional = crate::volumes::failure_is_optional(settings.volume_failure.as_deref())?;
    let pod_network = crate::pod_network::preflight_checked(launch.network_namespace, settings)?;
    let kernel = GuestKernel::locate(settings.kernel())?;
    // Only the install's QEMU: nothing the image or the pod names.
    let install_root = locate::install_root().ok_or(RunError::NoInstallRoot)?;
    let qemu = runcvm_vmm::qemu::QemuBinary::bundled(&install_root)
        .ok_or_else(|| RunError::QemuBundle(install_root.clone()))?;
    // The runtime chose from the node's settings at create; only the
    // install's Firecracker, as only its QEMU.
    let hypervisor = match launch.hypervisor {
        LaunchHypervisor::Qemu => crate::hypervisor::Hypervisor::Qemu,
        LaunchHypervisor::Firecracker => crate::hypervisor::Hypervisor::Firecracker(
            runcvm_vmm::firecracker::FirecrackerBinary::at(
                &install_root.join(runcvm_vmm::firecracker::launch::FIRECRACKER_IN_ROOT),
            )
            .map_err(RunError::Firecracker)?,
        ),
    };
    runcvm_log::debug!("hypervisor {}", hypervisor.name());
    if accel == Accel::Tcg {
        runcvm_log::debug!("the VM runs under TCG, as runcvm-runtime decided at create");
    }
    let volumes: Vec<VolumeSpec> = launch.volumes.iter().map(volume_spec).collect();
    let run_dir = RunDir::adopt(state_dir);
    runcvm_log::debug!(
        "launching container VM: {} vCPUs, {} MiB, {accel}, {} volumes",
        launch.cpus,
        launch.memory_mib,
        volumes.len()
    );
    Ok(Prepared {
        _held,
        _claim,
        accel,
        boot_timeout,
        volumes_optional,
        pod_network,
        kernel: kernel.path,
        qemu,
        hypervisor,
        volumes,
        run_dir,
    })
}

/// The file the pod VM's launcher logs to: a sandbox's output goes nowhere
/// (containerd gives it none), so its lines and the VM's console are kept
/// on the node, in the sandbox's state folder, the latest
/// [`POD_LOG_BYTES`] in it and the ones before in [`POD_LOG_BEFORE`]: the
/// guest may write its console without end, the node's disk is not its.
pub const POD_LOG: &str = "pod.log";
pub const POD_LOG_BEFORE: &str = "pod.log.1";
pub const POD_LOG_BYTES: u64 = 1 << 20;

/// This process's stderr sent to [`POD_LOG`] in the state folder, through a
/// pipe whose reader keeps the file within its bounds.
struct PodLog {
    /// Where stderr went before, put back by [`PodLog::finish`].
    before: OwnedFd,
    reader: std::thread::JoinHandle<()>,
}

impl PodLog {
    /// Starts it; on failure says why, and the lines go where they went.
    fn start(state_dir: &Path) -> Option<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = state_dir.join(POD_LOG);
        let cannot = |e: &dyn std::fmt::Display| runcvm_log::warn!("cannot log to {}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path);
        let file = file.map_err(|e| cannot(&e)).ok()?;
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| cannot(&e))
            .ok()?;
        let before = nix::fcntl::fcntl(std::io::stderr(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .map_err(|e| cannot(&e))
            .ok()?;
        // SAFETY: a descriptor F_DUPFD_CLOEXEC just made, owned by nothing else.
        let before = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(before) };
        let folder = state_dir.to_owned();
        let reader = std::thread::Builder::new()
            .name("pod-log".into())
            .spawn(move || keep_the_pod_log(&mut std::fs::File::from(reader), file, &folder))
            .map_err(|e| cannot(&e))
            .ok()?;
        // SAFETY: dup2 onto stderr of a descriptor this function owns; the
        // pipe's writing end stays open as fd 2 when `writer` closes.
        unsafe {
            libc::dup2(writer.as_raw_fd(), libc::STDERR_FILENO);
        }
        Some(Self { before, reader })
    }

    /// Puts stderr back, which closes the pipe, and waits until what was in
    /// it is in the file.
    fn finish(self) {
        // SAFETY: dup2 onto stderr of a descriptor this struct owns.
        unsafe {
            libc::dup2(self.before.as_raw_fd(), libc::STDERR_FILENO);
        }
        let _ = self.reader.join();
    }
}

/// Appends what `input` brings to [`POD_LOG`], moving a full one to
/// [`POD_LOG_BEFORE`].
fn keep_the_pod_log(input: &mut impl std::io::Read, mut file: std::fs::File, folder: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = folder.join(POD_LOG);
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
    };
    let mut written = file.metadata().map_or(0, |m| m.len());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if written >= POD_LOG_BYTES {
            let _ = std::fs::rename(&path, folder.join(POD_LOG_BEFORE));
            let Ok(fresh) = open() else { return };
            file = fresh;
            written = 0;
        }
        if file.write_all(&buf[..n]).is_err() {
            return;
        }
        written += u64::try_from(n).unwrap_or(u64::MAX);
    }
}

/// The container sees each volume at its path, which is where it is
/// served from. runc made a read-only volume's bind mount read-only in the
/// launcher's view too, and left the mounts under it as they are (a
/// read-only volume is not recursively read-only unless asked): where there
/// are such mounts, the server relies on the kernel's read-only mount
/// rather than refusing every write under the volume, so a writable tmpfs
/// under it stays writable, as under runc.
pub(crate) fn volume_spec(volume: &LaunchVolume) -> VolumeSpec {
    match volume.kind {
        VolumeKind::Folder => VolumeSpec::Shared(runcvm_nfs::Export {
            name: volume.path.clone(),
            path: volume.path.clone().into(),
            read_only: volume.read_only && !crate::volumes::has_mounts_below(std::path::Path::new(&volume.path)),
        }),
        VolumeKind::File => VolumeSpec::Copied {
            host: volume.path.clone().into(),
            path: volume.path.clone(),
            writable: !volume.read_only,
        },
    }
}

/// One VM per pod: `eth0`, the pod's IP and MAC go to a single guest. A
/// second runcvm container in a running pod is refused here rather than
/// taking the network from the first.
fn claim_pod_network() -> Result<UnixListener, RunError> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(POD_NETWORK_CLAIM).map_err(RunError::Claim)?;
    UnixListener::bind_addr(&address).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            RunError::PodNetworkClaimed
        } else {
            RunError::Claim(e)
        }
    })
}

/// The file kubelet reads the termination message from: kubelet's
/// annotation names it when containerd passes it on; otherwise the default
/// path, if the container has a writable file there.
pub(crate) fn termination_message_file(launch: &ContainerLaunch) -> Option<std::path::PathBuf> {
    const DEFAULT: &str = "/dev/termination-log";
    let path = launch.termination_message_path.as_deref().unwrap_or(DEFAULT);
    launch
        .volumes
        .iter()
        .any(|v| v.path == path && v.kind == VolumeKind::File && !v.read_only)
        .then(|| path.into())
}

#[cfg(test)]
mod pod_log_tests {
    use super::*;

    #[test]
    fn the_pod_log_keeps_the_latest_lines_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let line = vec![b'x'; 4096];
        let lines = usize::try_from(3 * POD_LOG_BYTES).unwrap() / line.len();
        let mut input: Vec<u8> = line.repeat(lines);
        input.extend_from_slice(b"last\n");
        let file = std::fs::File::create(dir.path().join(POD_LOG)).unwrap();
        keep_the_pod_log(&mut input.as_slice(), file, dir.path());
        let now = std::fs::read(dir.path().join(POD_LOG)).unwrap();
        let before = std::fs::metadata(dir.path().join(POD_LOG_BEFORE)).unwrap().len();
        assert!(now.ends_with(b"last\n"));
        assert!(u64::try_from(now.len()).unwrap() <= POD_LOG_BYTES + 64 * 1024);
        assert!(before <= POD_LOG_BYTES + 64 * 1024);
    }
}
