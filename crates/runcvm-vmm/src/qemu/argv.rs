//! The QEMU command line for one guest.

use crate::{Accel, GuestCmdline};
use runcvm_spec::CONTROL_PORT_NAME;
use std::ffi::OsString;
use std::path::PathBuf;

/// Overrides the QEMU binary (default: `qemu-system-x86_64` from `PATH`).
pub const QEMU_ENV: &str = "RUNCVM_QEMU";

/// QEMU's `-sandbox` value: every optional deny on.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

pub use crate::vm::Nic;

/// Everything QEMU needs to run one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    pub binary: super::QemuBinary,
    pub accel: Accel,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub cmdline: GuestCmdline,
    /// Raw ext4 image attached as `/dev/vda`; `None` boots without a disk
    /// (the KVM probe).
    pub root_disk: Option<PathBuf>,
    /// The VM's NIC: a tap on the host and the MAC the guest sees.
    pub nic: Option<Nic>,
    /// The tap, already attached, as a descriptor QEMU inherits: an
    /// unprivileged QEMU need not open `/dev/net/tun` (which a node may
    /// keep to root) nor be the tap's owner.
    pub tap_fd: Option<i32>,
    /// Unix socket the launcher listens on; QEMU connects to it and exposes
    /// it to the guest as the virtio-serial port `runcvm.ctl`.
    pub control_socket: Option<PathBuf>,
    /// Run under QEMU's seccomp filter ([`SANDBOX`]): every VM does; the
    /// KVM probe does not, so a QEMU without seccomp is not taken for a
    /// KVM that cannot boot.
    pub sandbox: bool,
}

impl QemuConfig {
    /// The reboot method the guest must use under QEMU microvm.
    pub const REBOOT_METHOD: char = 't';

    /// The arguments after the binary name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let push = |args: &mut Vec<OsString>, words: &[&str]| {
            args.extend(words.iter().map(OsString::from));
        };
        // No ACPI and no option ROMs: devices come from the command line,
        // which also makes the guest's view match Firecracker's.
        push(&mut args, &["-M", "microvm,acpi=off,x-option-roms=off"]);
        match self.accel {
            Accel::Kvm => push(&mut args, &["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => push(&mut args, &["-accel", "tcg", "-cpu", "max"]),
        }
        push(
            &mut args,
            &["-smp", &self.vcpus.to_string(), "-m", &self.memory_mib.to_string()],
        );
        push(
            &mut args,
            &["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
        );
        // QEMU's own seccomp filter: no obsolete system calls, no
        // privilege changes, no new processes, no scheduler or NUMA
        // changes. The guest attacks QEMU; this narrows what a QEMU it took
        // over could ask the kernel for.
        if self.sandbox {
            push(&mut args, &["-sandbox", SANDBOX]);
        }
        // The console is QEMU's stdout; stdin is not read (signal=off keeps
        // Ctrl-C from killing QEMU behind the launcher's back).
        push(
            &mut args,
            &["-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"],
        );
        push(&mut args, &["-kernel"]);
        args.push(self.kernel.clone().into());
        push(&mut args, &["-append", &self.cmdline.render()]);
        if let Some(disk) = &self.root_disk {
            let mut drive = OsString::from("id=root,format=raw,if=none,cache=unsafe,");
            if self.cmdline.read_only_root {
                // A boot disk other VMs share: the device refuses writes.
                drive.push("readonly=on,");
            }
            drive.push("file=");
            // The disk is thrown away when the VM ends, so flushes buy nothing.
            drive.push(escape_option(disk.as_os_str()));
            args.push("-drive".into());
            args.push(drive);
            args.extend(["-device", "virtio-blk-device,drive=root"].map(OsString::from));
        }
        if let Some(nic) = &self.nic {
            // The tap exists already (the launcher made it persistent), so
            // QEMU needs no scripts; vhost needs /dev/vhost-net, which a
            // container may lack.
            let netdev = match self.tap_fd {
                Some(fd) => format!("tap,id=net0,fd={fd},vhost=off"),
                None => format!("tap,id=net0,ifname={},script=no,downscript=no,vhost=off", nic.tap),
            };
            let device = format!("virtio-net-device,netdev=net0,mac={}", nic.mac);
            args.extend(["-netdev", &netdev, "-device", &device].map(OsString::from));
        }
        if let Some(socket) = &self.control_socket {
            let mut chardev = OsString::from("socket,id=control,path=");
            chardev.push(escape_option(socket.as_os_str()));
            args.extend(["-device", "virtio-serial-device", "-chardev"].map(OsString::from));
            args.push(chardev);
            args.push("-device".into());
            args.push(format!("virtserialport,chardev=control,name={CONTROL_PORT_NAME}").into());
        }
        args
    }
}

/// QEMU option values are comma-separated; a comma inside a value is doubled.
fn escape_option(value: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_log::LogLevel;

    fn config() -> QemuConfig {
        QemuConfig {
            binary: crate::qemu::QemuBinary::direct("qemu-system-x86_64".into()),
            accel: Accel::Tcg,
            vcpus: 2,
            memory_mib: 512,
            kernel: "/opt/runcvm/kernel/vmlinux".into(),
            cmdline: GuestCmdline {
                log_level: LogLevel::Info,
                reboot_method: QemuConfig::REBOOT_METHOD,
                tsc_khz: 2_000_000,
                read_only_root: false,
                extra: Vec::new(),
            },
            root_disk: Some("/var/lib/runcvm/r,1/disk.ext4".into()),
            nic: Some(Nic {
                tap: "tap-eth0".into(),
                mac: "0a:58:0a:58:00:05".parse().unwrap(),
            }),
            tap_fd: None,
            control_socket: Some("/var/lib/runcvm/r1/control.sock".into()),
            sandbox: true,
        }
    }

    fn joined(config: &QemuConfig) -> String {
        config
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tcg_guest_with_disk_and_control_port() {
        let argv = joined(&config());
        assert!(argv.starts_with("-M microvm,acpi=off,x-option-roms=off -accel tcg -cpu max -smp 2 -m 512 "));
        assert!(argv.contains("-no-reboot"));
        assert!(argv.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
        assert!(argv.contains("-serial chardev:console"));
        assert!(argv.contains("-append console=ttyS0 reboot=t "));
        assert!(!argv.contains("pci=off"), "the kernel has no PCI to turn off");
        assert!(argv.contains("file=/var/lib/runcvm/r,,1/disk.ext4 -device virtio-blk-device,drive=root"));
        assert!(argv.contains(
            "-netdev tap,id=net0,ifname=tap-eth0,script=no,downscript=no,vhost=off \
             -device virtio-net-device,netdev=net0,mac=0a:58:0a:58:00:05"
        ));
        assert!(argv.contains(
            "-chardev socket,id=control,path=/var/lib/runcvm/r1/control.sock \
             -device virtserialport,chardev=control,name=runcvm.ctl"
        ));
    }

    #[test]
    fn a_shared_boot_disk_is_attached_read_only() {
        let mut config = config();
        assert!(!joined(&config).contains("readonly"));
        config.cmdline.read_only_root = true;
        let argv = joined(&config);
        assert!(argv.contains("cache=unsafe,readonly=on,file=/var/lib/runcvm/r,,1/disk.ext4"));
        assert!(argv.contains(" rootfstype=ext4 ro "));
    }

    #[test]
    fn an_inherited_tap_is_named_by_its_descriptor() {
        let mut config = config();
        config.tap_fd = Some(7);
        let argv = joined(&config);
        assert!(argv.contains(
            "-netdev tap,id=net0,fd=7,vhost=off -device virtio-net-device,netdev=net0,mac=0a:58:0a:58:00:05"
        ));
        assert!(!argv.contains("ifname="));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_the_probe_has_no_devices() {
        let mut probe = config();
        probe.accel = Accel::Kvm;
        probe.root_disk = None;
        probe.control_socket = None;
        probe.nic = None;
        probe.sandbox = false;
        let argv = joined(&probe);
        assert!(argv.contains("-accel kvm -cpu host"));
        assert!(!argv.contains("virtio"));
        assert!(!argv.contains("-sandbox"), "the probe asks about KVM alone");
    }
}
