//! One backend-neutral description of a guest (kernel, command line, root
//! disk, NIC, size, where the VMM keeps its files) and the backend that
//! turns it into a VMM ready to spawn. The launcher describes the VM once
//! and supervises what this hands back; how QEMU and Firecracker each want
//! it said lives here, behind [`Backend::prepare`]: the seam the pod VM
//! and later backends use.

use crate::Accel;
use crate::cmdline::GuestCmdline;
use crate::firecracker::{
    ConfigError, FirecrackerBinary, FirecrackerConfig, FirecrackerLaunch, FirecrackerLogs, LaunchError, launch as fc,
    vsock,
};
use crate::qemu::{QemuBinary, QemuConfig};
use runcvm_log::LogLevel;
use runcvm_spec::MacAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A virtio-net NIC backed by an existing tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: String,
    pub mac: MacAddr,
}

/// A guest to run, whatever runs it.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The uncompressed ELF vmlinux.
    pub kernel: PathBuf,
    /// The guest's command line; the backend sets its reboot method.
    pub cmdline: GuestCmdline,
    /// Raw ext4 image, `/dev/vda`; read-only when `cmdline.read_only_root`.
    pub root_disk: PathBuf,
    /// The VM's NIC: a tap on the host and the MAC the guest sees.
    pub nic: Option<Nic>,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    /// Where the VMM opens and makes its files (the state folder's `vmm/`,
    /// shared with the VMM's group): QEMU's control socket, Firecracker's
    /// configuration, sockets, log and metrics.
    pub vmm_dir: PathBuf,
    /// How much the VMM itself logs (Firecracker's log, and its metrics at
    /// DEBUG).
    pub log_level: LogLevel,
}

/// The control socket QEMU connects to, in the VMM's folder.
pub const CONTROL_SOCKET: &str = "control.sock";

impl VmSpec {
    /// The control socket QEMU connects to.
    pub fn control_socket(&self) -> PathBuf {
        self.vmm_dir.join(CONTROL_SOCKET)
    }
}

/// The VMM that runs a guest, with its binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Qemu(QemuBinary),
    Firecracker(FirecrackerBinary),
}

/// A VMM ready to start: its command line, and where the guest's control
/// connection arrives (QEMU connects to the socket; with Firecracker, the
/// guest's vsock connection to the host arrives there).
#[derive(Debug)]
pub struct VmmCommand {
    /// `QEMU` or `Firecracker`, in messages.
    pub name: &'static str,
    pub command: std::process::Command,
    /// The binary proper, in messages.
    pub binary: PathBuf,
    /// What to do when it cannot be started.
    pub spawn_hint: &'static str,
    pub control_socket: Option<PathBuf>,
    pub accel: Accel,
    /// Descriptors the VMM inherits under their own numbers (the tap).
    pub inherited: Vec<OwnedFd>,
}

/// A backend's files could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Firecracker's configuration (its own message)
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Firecracker's files (their own message)
    #[error(transparent)]
    Files(#[from] LaunchError),
}

impl Backend {
    /// `QEMU` or `Firecracker`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Qemu(_) => "QEMU",
            Self::Firecracker(_) => "Firecracker",
        }
    }

    /// The VMM for `vm`, its files prepared in `vm.vmm_dir`. QEMU gets
    /// `tap`, already attached, as a descriptor it inherits (an
    /// unprivileged QEMU need not open `/dev/net/tun`); Firecracker opens
    /// the tap by name as its owner.
    pub fn prepare(&self, vm: &VmSpec, tap: Option<OwnedFd>) -> Result<VmmCommand, PrepareError> {
        match self {
            Self::Qemu(binary) => {
                let config = QemuConfig {
                    binary: binary.clone(),
                    accel: vm.accel,
                    vcpus: vm.vcpus,
                    memory_mib: vm.memory_mib,
                    kernel: vm.kernel.clone(),
                    cmdline: GuestCmdline {
                        reboot_method: QemuConfig::REBOOT_METHOD,
                        ..vm.cmdline.clone()
                    },
                    root_disk: Some(vm.root_disk.clone()),
                    nic: vm.nic.clone(),
                    tap_fd: tap.as_ref().map(AsRawFd::as_raw_fd),
                    control_socket: Some(vm.control_socket()),
                    sandbox: true,
                };
                Ok(VmmCommand::qemu(&config, tap.into_iter().collect()))
            }
            Self::Firecracker(binary) => {
                let launch = FirecrackerLaunch {
                    kernel: vm.kernel.clone(),
                    cmdline: vm.cmdline.clone(),
                    root_disk: vm.root_disk.clone(),
                    extra_disks: Vec::new(),
                    nic: vm.nic.clone(),
                    vcpus: vm.vcpus,
                    memory_mib: vm.memory_mib,
                    vsock_uds: Some(vm.vmm_dir.join("vsock.sock")),
                    logs: FirecrackerLogs {
                        log_path: vm.vmm_dir.join("firecracker.log"),
                        level: vm.log_level,
                        metrics_path: (vm.log_level >= LogLevel::Debug).then(|| vm.vmm_dir.join("firecracker.metrics")),
                    },
                };
                VmmCommand::firecracker(binary, &launch, &vm.vmm_dir)
            }
        }
    }
}

impl VmmCommand {
    /// QEMU for `config`, inheriting `inherited` (`config.tap_fd` among
    /// them).
    pub fn qemu(config: &QemuConfig, inherited: Vec<OwnedFd>) -> Self {
        let mut command = config.binary.command();
        command.args(config.args());
        Self {
            name: "QEMU",
            command,
            binary: config.binary.path().to_owned(),
            spawn_hint: "install qemu-system-x86 or set RUNCVM_QEMU",
            control_socket: config.control_socket.clone(),
            accel: config.accel,
            inherited,
        }
    }

    /// Firecracker for `launch`, with its files in `dir`: the
    /// configuration, the API socket, its log (and metrics at DEBUG), the
    /// hybrid vsock whose guest-initiated connections on the control port
    /// arrive at `vsock.sock_1024`.
    pub fn firecracker(
        binary: &FirecrackerBinary,
        launch: &FirecrackerLaunch,
        dir: &Path,
    ) -> Result<Self, PrepareError> {
        let config = FirecrackerConfig::build(launch)?;
        fc::check_kernel(&config)?;
        let config_file = dir.join("firecracker.json");
        let api_socket = dir.join("firecracker.sock");
        fc::write_config(&config, &config_file)?;
        fc::prepare_host_files(&config, &api_socket)?;
        Ok(Self {
            name: "Firecracker",
            command: binary.command(&config_file, &api_socket),
            binary: binary.path().to_owned(),
            spawn_hint: "check the Firecracker binary (RUNCVM_FIRECRACKER), or use RUNCVM_HYPERVISOR=qemu",
            control_socket: launch
                .vsock_uds
                .as_deref()
                .map(|uds| vsock::guest_initiated_path(uds, vsock::CONTROL_PORT)),
            // Firecracker runs only on KVM.
            accel: Accel::Kvm,
            inherited: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(dir: &Path) -> VmSpec {
        let kernel = dir.join("vmlinux");
        std::fs::write(&kernel, b"\x7fELF a kernel").unwrap();
        VmSpec {
            kernel,
            cmdline: GuestCmdline {
                log_level: LogLevel::Info,
                reboot_method: 'k',
                tsc_khz: 0,
                read_only_root: false,
                extra: vec!["quiet".into()],
            },
            root_disk: dir.join("disk.img"),
            nic: Some(Nic {
                tap: "tap-eth0".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
            }),
            vcpus: 2,
            memory_mib: 256,
            accel: Accel::Kvm,
            vmm_dir: dir.to_owned(),
            log_level: LogLevel::Debug,
        }
    }

    /// One description, two backends: QEMU's argv carries the VM and the
    /// control socket in the VMM's folder, with QEMU's reboot method.
    #[test]
    fn qemu_gets_the_vm_and_its_control_socket() {
        let dir = tempfile::tempdir().unwrap();
        let vm = spec(dir.path());
        let vmm = Backend::Qemu(QemuBinary::direct("/usr/bin/qemu-system-x86_64".into()))
            .prepare(&vm, None)
            .unwrap();
        let argv: Vec<String> = vmm
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let argv = argv.join(" ");
        assert_eq!((vmm.name, vmm.accel), ("QEMU", Accel::Kvm));
        assert_eq!(vmm.control_socket, Some(dir.path().join("control.sock")));
        assert!(argv.contains("reboot=t"), "{argv}");
        assert!(
            argv.contains(&dir.path().join("disk.img").display().to_string()),
            "{argv}"
        );
        assert!(argv.contains("02:00:00:00:00:01"), "{argv}");
    }

    /// Firecracker's configuration, log and vsock go in the VMM's folder;
    /// the control connection arrives at the vsock's port socket.
    #[test]
    fn firecracker_gets_its_files_in_the_vmms_folder() {
        let dir = tempfile::tempdir().unwrap();
        let vm = spec(dir.path());
        let binary = dir.path().join("firecracker");
        std::fs::write(&binary, b"#!/bin/true\n").unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let vmm = Backend::Firecracker(FirecrackerBinary::at(&binary).unwrap())
            .prepare(&vm, None)
            .unwrap();
        assert_eq!((vmm.name, vmm.accel), ("Firecracker", Accel::Kvm));
        let config = std::fs::read_to_string(dir.path().join("firecracker.json")).unwrap();
        assert!(
            config.contains("tap-eth0") && config.contains("firecracker.log"),
            "{config}"
        );
        assert!(config.contains("firecracker.metrics"), "metrics at DEBUG: {config}");
        assert_eq!(
            vmm.control_socket,
            Some(vsock::guest_initiated_path(
                &dir.path().join("vsock.sock"),
                vsock::CONTROL_PORT
            ))
        );
    }
}
