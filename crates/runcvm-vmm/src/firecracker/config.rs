//! The `--config-file` JSON that Firecracker boots a guest from.
//!
//! The file is one object whose keys are the API's resources, each holding
//! what the matching `PUT` request would carry: `boot-source` (a
//! `BootSource`), `drives` (`Drive`s), `network-interfaces`
//! (`NetworkInterface`s), `machine-config` (`MachineConfiguration`), `vsock`
//! (`Vsock`), `logger` (`Logger`) and `metrics` (`Metrics`). The structs here
//! are named after those definitions of the API description and refuse
//! unknown keys, as Firecracker does; optional fields are left out when
//! unset, so Firecracker's defaults apply. `boot-source` and `drives` must be
//! present (Firecracker's file reader requires them, though the API
//! description's `FullVmConfiguration` does not say so).
//!
//! Paths are carried as strings because JSON can carry nothing else:
//! [`FirecrackerConfig::build`] refuses a path that is not UTF-8.

use crate::GuestCmdline;
use runcvm_log::LogLevel;
use runcvm_spec::MacAddr;
use runcvm_spec::net::POD_INTERFACE;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::vm::Nic;

use super::vsock::{CONTROL_PORT, GUEST_CID, guest_initiated_path};

/// The reboot method the guest must use: on the i8042 reset Firecracker
/// exits (x86_64), which is how the VM ends.
pub const REBOOT_METHOD: char = 'k';
/// Kernel command line words only Firecracker needs, placed before the
/// words of `RUNCVM_KERNEL_ARGS` so those still come last. `pci=off`:
/// Firecracker (without `--enable-pci`) has no PCI bus, and a kernel built
/// with PCI would otherwise probe for one. runcvm's own kernel has no PCI,
/// and passes the word on to init's environment, harmlessly.
pub const FIRECRACKER_BOOT_WORDS: &[&str] = &["pci=off"];
/// Firecracker refuses more vCPUs than this.
pub const MAX_VCPUS: u32 = 32;
/// The root disk's drive id; extra disks are `disk1`, `disk2`, ...
pub const ROOT_DRIVE_ID: &str = "root";
/// The longest path a Unix socket address holds (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// The longest interface name Linux accepts (`IFNAMSIZ` less its NUL).
const MAX_IFNAME: usize = 15;

/// A disk attached after the root disk: `/dev/vdb`, `/dev/vdc`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Where Firecracker writes its own log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerLogs {
    /// Firecracker's log. Always set: without a log file Firecracker writes
    /// its log to its stdout, which is the guest's serial console. The file
    /// must exist before Firecracker starts (it opens it without creating it;
    /// [`super::launch::prepare_host_files`] creates it).
    pub log_path: PathBuf,
    /// runcvm's level; Firecracker logs at the matching level, and at DEBUG
    /// with each line's level and origin.
    pub level: LogLevel,
    /// Firecracker's metrics (JSON lines, flushed every minute and at exit);
    /// the launcher asks for them at DEBUG.
    pub metrics_path: Option<PathBuf>,
}

/// What one Firecracker guest is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerLaunch {
    /// The uncompressed ELF vmlinux.
    pub kernel: PathBuf,
    /// The guest's command line; its reboot method is replaced by
    /// [`REBOOT_METHOD`].
    pub cmdline: GuestCmdline,
    /// Raw ext4 image, `/dev/vda`; read-only when `cmdline.read_only_root`.
    pub root_disk: PathBuf,
    pub extra_disks: Vec<ExtraDisk>,
    /// The VM's NIC: a tap on the host (`tap-eth0`) and the MAC the guest
    /// sees (the pod's real one).
    pub nic: Option<Nic>,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The hybrid vsock's Unix socket, in the container's run folder.
    pub vsock_uds: Option<PathBuf>,
    pub logs: FirecrackerLogs,
}

/// Why a launch cannot be turned into a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// the {what} path {path:?} is not UTF-8, and Firecracker's configuration is JSON
    #[error("the {what} path {path:?} is not UTF-8, and Firecracker's configuration is JSON")]
    NotUtf8 { what: &'static str, path: PathBuf },
    /// Firecracker runs 1 to 32 vCPUs, not {0}
    #[error("Firecracker runs 1 to {MAX_VCPUS} vCPUs, not {0}")]
    VcpuCount(u32),
    /// the VM needs some memory: 0 MiB asked
    #[error("the VM needs some memory: 0 MiB asked")]
    NoMemory,
    /// the vsock socket path {path} is too long: with the control port's suffix it takes {len} bytes, and a Unix socket path holds 107
    #[error(
        "the vsock socket path {path} is too long: with the control port's suffix it takes {len} bytes, and a Unix socket path holds {MAX_SOCKET_PATH}"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    /// {0:?} is not a tap name (1 to 15 bytes, no '/' or blanks)
    #[error("{0:?} is not a tap name (1 to 15 bytes, no '/' or blanks)")]
    TapName(String),
}

/// The whole `--config-file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirecrackerConfig {
    #[serde(rename = "boot-source")]
    pub boot_source: BootSource,
    /// Always written, even empty: Firecracker requires the key.
    pub drives: Vec<Drive>,
    #[serde(rename = "network-interfaces", default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(rename = "machine-config")]
    pub machine_config: MachineConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock: Option<Vsock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logger: Option<Logger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

/// `BootSource`: the kernel and its command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    pub kernel_image_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

/// `Drive`: a virtio-blk device backed by a host file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: String,
    /// Always false, the root disk's too: Firecracker appends `root=/dev/vda
    /// rw` to the command line for a root device, after our words, which
    /// would override a `root=` from `RUNCVM_KERNEL_ARGS`. Our command line
    /// names the root itself, and the root disk, listed first, is `/dev/vda`.
    pub is_root_device: bool,
    pub is_read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<CacheType>,
    /// Left unset: `Sync`. `Async` needs io_uring, which container seccomp
    /// profiles commonly refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_engine: Option<IoEngine>,
}

/// `Drive.cache_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheType {
    /// Flushes are not passed on to the host file.
    Unsafe,
    Writeback,
}

/// `Drive.io_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoEngine {
    Sync,
    Async,
}

/// `NetworkInterface`: a virtio-net device backed by a host tap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<MacAddr>,
}

/// `MachineConfiguration`: vCPUs and memory (SMT off, no CPU template, no
/// huge pages: Firecracker's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfiguration {
    pub vcpu_count: u32,
    pub mem_size_mib: u32,
}

/// `Vsock`: the hybrid vsock device, proxied through Unix sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    pub guest_cid: u32,
    /// Firecracker binds it (it must not exist); guest connections to port P
    /// go to `<uds_path>_P`.
    pub uds_path: String,
}

/// `Logger`: Firecracker's own log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<FirecrackerLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_level: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_log_origin: Option<bool>,
}

/// `Logger.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FirecrackerLevel {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
    Off,
}

impl From<LogLevel> for FirecrackerLevel {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => Self::Error,
            LogLevel::Warn => Self::Warning,
            LogLevel::Info => Self::Info,
            LogLevel::Debug => Self::Debug,
        }
    }
}

/// `Metrics`: Firecracker's metrics file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub metrics_path: String,
}

impl FirecrackerConfig {
    /// The configuration of `launch`. Pure: no file is looked at (see
    /// [`super::launch`] for the checks before Firecracker starts).
    pub fn build(launch: &FirecrackerLaunch) -> Result<Self, ConfigError> {
        if !(1..=MAX_VCPUS).contains(&launch.vcpus) {
            return Err(ConfigError::VcpuCount(launch.vcpus));
        }
        if launch.memory_mib == 0 {
            return Err(ConfigError::NoMemory);
        }
        let mut drives = vec![Drive::disk(
            ROOT_DRIVE_ID.to_owned(),
            &launch.root_disk,
            launch.cmdline.read_only_root,
            "root disk",
        )?];
        for (index, disk) in launch.extra_disks.iter().enumerate() {
            let id = format!("disk{}", index + 1);
            drives.push(Drive::disk(id, &disk.path, disk.read_only, "extra disk")?);
        }
        let network_interfaces = match &launch.nic {
            Some(nic) => vec![NetworkInterface::pod(nic)?],
            None => Vec::new(),
        };
        let vsock = launch.vsock_uds.as_deref().map(Vsock::at).transpose()?;
        let logs = &launch.logs;
        let debug = logs.level == LogLevel::Debug;
        let logger = Logger {
            log_path: Some(utf8("Firecracker log", &logs.log_path)?),
            level: Some(logs.level.into()),
            show_level: Some(true),
            show_log_origin: Some(debug),
        };
        let metrics = logs
            .metrics_path
            .as_deref()
            .map(|path| utf8("Firecracker metrics", path).map(|metrics_path| Metrics { metrics_path }))
            .transpose()?;
        Ok(Self {
            boot_source: BootSource {
                kernel_image_path: utf8("guest kernel", &launch.kernel)?,
                boot_args: Some(boot_args(&launch.cmdline)),
                initrd_path: None,
            },
            drives,
            network_interfaces,
            machine_config: MachineConfiguration {
                vcpu_count: launch.vcpus,
                mem_size_mib: launch.memory_mib,
            },
            vsock,
            logger: Some(logger),
            metrics,
        })
    }

    /// The file's text: pretty JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Every field is a string, a number, a boolean or a unit enum.
            unreachable!("a Firecracker configuration always serializes: {e}")
        });
        text.push('\n');
        text
    }
}

/// The guest command line for Firecracker: [`REBOOT_METHOD`], and
/// [`FIRECRACKER_BOOT_WORDS`] before the caller's extra words.
pub fn boot_args(cmdline: &GuestCmdline) -> String {
    let mut cmdline = cmdline.clone();
    cmdline.reboot_method = REBOOT_METHOD;
    let mut extra: Vec<String> = FIRECRACKER_BOOT_WORDS.iter().map(|w| (*w).to_owned()).collect();
    extra.append(&mut cmdline.extra);
    cmdline.extra = extra;
    cmdline.render()
}

impl Drive {
    fn disk(drive_id: String, path: &Path, read_only: bool, what: &'static str) -> Result<Self, ConfigError> {
        Ok(Self {
            drive_id,
            path_on_host: utf8(what, path)?,
            is_root_device: false,
            is_read_only: read_only,
            // The disk is thrown away when the VM ends, so flushes buy
            // nothing (QEMU: cache=unsafe).
            cache_type: Some(CacheType::Unsafe),
            io_engine: None,
        })
    }
}

impl NetworkInterface {
    fn pod(nic: &Nic) -> Result<Self, ConfigError> {
        let valid = !nic.tap.is_empty()
            && nic.tap.len() <= MAX_IFNAME
            && !nic.tap.bytes().any(|b| b == b'/' || b.is_ascii_whitespace());
        if !valid {
            return Err(ConfigError::TapName(nic.tap.clone()));
        }
        Ok(Self {
            iface_id: POD_INTERFACE.to_owned(),
            host_dev_name: nic.tap.clone(),
            guest_mac: Some(nic.mac),
        })
    }
}

impl Vsock {
    fn at(uds_path: &Path) -> Result<Self, ConfigError> {
        let text = utf8("vsock socket", uds_path)?;
        let len = guest_initiated_path(uds_path, CONTROL_PORT).as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ConfigError::SocketPathTooLong {
                path: uds_path.to_owned(),
                len,
            });
        }
        Ok(Self {
            guest_cid: GUEST_CID,
            uds_path: text,
        })
    }
}

fn utf8(what: &'static str, path: &Path) -> Result<String, ConfigError> {
    path.to_str().map(str::to_owned).ok_or_else(|| ConfigError::NotUtf8 {
        what,
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> FirecrackerLaunch {
        FirecrackerLaunch {
            kernel: "/opt/runcvm/kernel/vmlinux".into(),
            cmdline: GuestCmdline {
                log_level: LogLevel::Info,
                reboot_method: 't',
                tsc_khz: 2_000_000,
                read_only_root: false,
                extra: vec!["loglevel=8".into()],
            },
            root_disk: "/var/lib/runcvm/r1/disk.ext4".into(),
            extra_disks: Vec::new(),
            nic: None,
            vcpus: 1,
            memory_mib: 512,
            vsock_uds: None,
            logs: FirecrackerLogs {
                log_path: "/var/lib/runcvm/r1/firecracker.log".into(),
                level: LogLevel::Info,
                metrics_path: None,
            },
        }
    }

    #[test]
    fn boot_args_reboot_by_keyboard_controller_and_keep_user_words_last() {
        let config = FirecrackerConfig::build(&launch()).unwrap();
        let args = config.boot_source.boot_args.unwrap();
        assert!(
            args.starts_with("console=ttyS0 reboot=k panic=-1 root=/dev/vda "),
            "{args}"
        );
        assert!(args.ends_with(" RUNCVM_LOG_LEVEL=INFO pci=off loglevel=8"), "{args}");
        assert!(!args.contains("reboot=t"));
    }

    #[test]
    fn refuses_what_firecracker_would() {
        let mut bad = launch();
        bad.vcpus = 33;
        assert_eq!(FirecrackerConfig::build(&bad), Err(ConfigError::VcpuCount(33)));
        bad.vcpus = 0;
        assert!(
            FirecrackerConfig::build(&bad)
                .unwrap_err()
                .to_string()
                .contains("1 to 32 vCPUs, not 0")
        );
        let mut bad = launch();
        bad.memory_mib = 0;
        assert_eq!(FirecrackerConfig::build(&bad), Err(ConfigError::NoMemory));
        let mut bad = launch();
        bad.nic = Some(Nic {
            tap: "tap-eth0-far-too-long".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
        });
        assert!(matches!(FirecrackerConfig::build(&bad), Err(ConfigError::TapName(_))));
        let mut bad = launch();
        bad.vsock_uds = Some(PathBuf::from(format!("/{}/v.sock", "x".repeat(96))));
        let message = FirecrackerConfig::build(&bad).unwrap_err().to_string();
        assert!(message.contains("takes 109 bytes"), "{message}");
    }

    #[test]
    fn non_utf8_paths_are_named() {
        use std::os::unix::ffi::OsStrExt;
        let mut bad = launch();
        bad.root_disk = PathBuf::from(std::ffi::OsStr::from_bytes(b"/var/lib/\xffdisk"));
        let message = FirecrackerConfig::build(&bad).unwrap_err().to_string();
        assert!(message.starts_with("the root disk path"), "{message}");
    }

    #[test]
    fn round_trips_and_refuses_unknown_keys() {
        let config = FirecrackerConfig::build(&launch()).unwrap();
        let back: FirecrackerConfig = serde_json::from_str(&config.to_json()).unwrap();
        assert_eq!(back, config);
        let mut value = serde_json::to_value(&config).unwrap();
        value["machine-config"]["ht_enabled"] = true.into();
        let error = serde_json::from_value::<FirecrackerConfig>(value)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `ht_enabled`"), "{error}");
    }
}
