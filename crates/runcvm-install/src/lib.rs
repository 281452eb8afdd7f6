//! `runcvm install` and `runcvm uninstall`: put runcvm on a node and take it
//! off again, exactly.
//!
//! Install lays out `ROOT` (default `/opt/runcvm`):
//!
//! ```text
//! ROOT/bin/{runcvm,runcvm-runtime,runcvm-init}   static binaries, from a build
//! ROOT/kernel/vmlinux                            the guest kernel (kernel/build.sh)
//! ROOT/qemu/{bin,lib,modules,share}              QEMU that runs in any image (see BundledQemu)
//! ROOT/etc/runcvm.toml                           the node's settings for its pods (settings.rs)
//! ROOT/install-manifest.json                     what install created or changed
//! ```
//!
//! and registers the handler `runcvm` with containerd: for containerd 1.x
//! (config version 1 or 2) by appending one block to the main config (not a
//! drop-in named by `imports`: containerd 1.x lets an imported file replace
//! the main file's whole CRI section); for containerd 2.x (version 3) by
//! writing a drop-in where the main config's `imports` names a folder for
//! one, else by the same block. Nothing needs containerd running; containerd
//! reads the handler when it restarts.
//! Uninstall removes what the manifest lists and puts the config back byte
//! for byte (or, if it was edited since, takes out only the block). Files
//! that were there before install stay. docs/install.md has the details.

mod containerd;
mod files;
mod install;
mod manifest;
mod qemu;
mod report;
pub use runcvm_host::settings;
mod uninstall;

pub use containerd::{ConfigError, ConfigVersion, HANDLER, RUNTIME_TYPE, Registration, TERMINATION_MESSAGE_ANNOTATION};
pub use install::install;
pub use qemu::{DEFAULT_FIRMWARE_DIRS, DEFAULT_MODULE_DIR, FIRMWARE, TCG_MODULE};
pub use report::{
    ContainerdChange, ContainerdRemoval, DropInRemoval, DropInRemoved, FileChange, InstallReport, InstalledFile,
    QemuSummary, UninstallReport, Unregistered,
};
pub use runcvm_vmm::qemu::bundle::{BundledQemu, CommandPrefix, LOADER_NAME, MODULE_DIR_ENV, QEMU_DIR, QEMU_NAME};
pub use uninstall::uninstall;

use std::path::{Path, PathBuf};

/// The default install root.
pub const DEFAULT_ROOT: &str = runcvm_spec::layout::DEFAULT_ROOT;
/// containerd's default main config.
pub const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// Where `kernel/build.sh` installs the guest kernel, and install takes it from.
pub const DEFAULT_KERNEL: &str = runcvm_spec::layout::DEFAULT_KERNEL;
/// The manifest's file name in the install root.
pub const MANIFEST_NAME: &str = runcvm_spec::layout::MANIFEST;
/// The binaries installed to `ROOT/bin`.
pub const BINARIES: [&str; 3] = ["runcvm", "runcvm-runtime", "runcvm-init"];
/// The binary containerd's shim calls (`options.BinaryName`).
pub const RUNTIME_BINARY: &str = "runcvm-runtime";

/// What `runcvm install` does; [`Default`] is a node install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// The install root as this process sees it (`--root`, default `/opt/runcvm`).
    pub root: PathBuf,
    /// containerd's main config (`--containerd-config`, default
    /// `/etc/containerd/config.toml`); created if missing.
    pub containerd_config: PathBuf,
    /// The folder holding `runcvm`, `runcvm-runtime` and `runcvm-init`
    /// (`--from`; default: the folder of the running executable).
    pub binaries_from: Option<PathBuf>,
    /// The guest kernel (`--kernel`, default `/opt/runcvm/kernel/vmlinux`);
    /// left alone when it already is `ROOT/kernel/vmlinux`.
    pub kernel: PathBuf,
    /// Debian's full `qemu-system-x86_64` (`--qemu`; default: on `PATH`).
    pub qemu: Option<PathBuf>,
    /// Firecracker's static release binary (`--firecracker`), installed as
    /// `bin/firecracker`; none: runcvm uses QEMU.
    pub firecracker: Option<PathBuf>,
    /// Where QEMU's modules are (default `/usr/lib/x86_64-linux-gnu/qemu`).
    pub qemu_module_dir: PathBuf,
    /// Where QEMU's firmware is, searched in order (default `/usr/share/qemu`,
    /// `/usr/share/seabios`).
    pub firmware_dirs: Vec<PathBuf>,
    /// Where the node's `/` is mounted for this process
    /// (`--host-root-prefix`, e.g. `/host` in the installer pod). `root` and
    /// `containerd_config` must lie under it; the paths written to
    /// containerd's config and the manifest are the node's (prefix removed).
    pub host_root_prefix: Option<PathBuf>,
    /// The node's settings for its pods (`--hypervisor`, `--kernel-arg`),
    /// written to `ROOT/etc/runcvm.toml`.
    pub settings: settings::NodeSettings,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            root: DEFAULT_ROOT.into(),
            containerd_config: DEFAULT_CONTAINERD_CONFIG.into(),
            binaries_from: None,
            kernel: DEFAULT_KERNEL.into(),
            qemu: None,
            firecracker: None,
            qemu_module_dir: DEFAULT_MODULE_DIR.into(),
            firmware_dirs: DEFAULT_FIRMWARE_DIRS.iter().map(PathBuf::from).collect(),
            host_root_prefix: None,
            settings: settings::NodeSettings::default(),
        }
    }
}

/// What `runcvm uninstall` does; the rest comes from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallOptions {
    /// The install root as this process sees it (`--root`, default `/opt/runcvm`).
    pub root: PathBuf,
    /// As for install: where the node's `/` is mounted for this process.
    pub host_root_prefix: Option<PathBuf>,
}

impl Default for UninstallOptions {
    fn default() -> Self {
        Self {
            root: DEFAULT_ROOT.into(),
            host_root_prefix: None,
        }
    }
}

/// Why install or uninstall failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// a binary to install is missing
    #[error(
        "{name} not found in {}: build it with `cargo build --release` (or `cargo build --workspace`) and run install from that build's folder, or pass --from DIR",
        dir.display()
    )]
    BinaryMissing { name: &'static str, dir: PathBuf },
    /// the running executable's folder is unknown
    #[error("cannot tell the folder of the running executable: pass --from DIR")]
    NoSourceDir(#[source] std::io::Error),
    /// the guest kernel is missing
    #[error("guest kernel not found at {}: build it with kernel/build.sh, or pass --kernel PATH", .0.display())]
    KernelMissing(PathBuf),
    /// the guest kernel is not an ELF file
    #[error(
        "{} is not an ELF vmlinux (no ELF magic): pass the uncompressed vmlinux kernel/build.sh builds, not a bzImage",
        .0.display()
    )]
    KernelNotElf(PathBuf),
    /// the host's loader cannot be hardened
    #[error("cannot bundle the loader {path}: {reason}")]
    Loader { path: PathBuf, reason: String },
    /// the node's settings cannot be used
    #[error("cannot use the settings given")]
    Settings(#[source] settings::SettingsError),
    /// the Firecracker binary given cannot be used
    #[error("--firecracker: {0}")]
    Firecracker(#[source] runcvm_vmm::firecracker::LaunchError),
    /// QEMU is missing
    #[error(
        "qemu-system-x86_64 not found ({searched}): apt-get install --no-install-recommends qemu-system-x86, or pass --qemu PATH"
    )]
    QemuMissing { searched: String },
    /// Debian's TCG module is missing
    #[error(
        "{TCG_MODULE} not found in {}: Debian's qemu-system-x86 ships TCG as this module; reinstall qemu-system-x86",
        dir.display()
    )]
    TcgModuleMissing { dir: PathBuf },
    /// ldd failed
    #[error("ldd cannot list the libraries of {}: {detail}", program.display())]
    Ldd { program: PathBuf, detail: String },
    /// a library QEMU needs is missing
    #[error("{} needs {soname}, which ldd cannot find: install the package that provides it", program.display())]
    LibraryNotFound { program: PathBuf, soname: String },
    /// QEMU has no dynamic loader
    #[error(
        "ldd names no dynamic loader for {}: pass Debian's dynamically linked qemu-system-x86_64",
        program.display()
    )]
    NoLoader { program: PathBuf },
    /// firmware is missing
    #[error(
        "firmware {name} not found in {}: apt-get install qemu-system-data",
        display_list(searched)
    )]
    FirmwareMissing { name: &'static str, searched: Vec<PathBuf> },
    /// the bundle does not run
    #[error("the bundled QEMU in {} does not start: {detail}", root.display())]
    BundleBroken { root: PathBuf, detail: String },
    /// a file operation failed
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the containerd config cannot be edited
    #[error("cannot register the runcvm handler in {}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    /// the containerd config is not text
    #[error("{} is not UTF-8 text, so not a containerd config: fix or remove it", .0.display())]
    ConfigNotText(PathBuf),
    /// an earlier install used another config
    #[error(
        "an earlier install registered runcvm in {}, not {}: run runcvm uninstall first",
        recorded.display(),
        requested.display()
    )]
    ConfigElsewhere { recorded: PathBuf, requested: PathBuf },
    /// a path is outside the host root prefix
    #[error("{} is not under the host root prefix {}", path.display(), prefix.display())]
    OutsidePrefix { path: PathBuf, prefix: PathBuf },
    /// a path cannot be written into containerd's config
    #[error("{} is not UTF-8, so containerd's config cannot name it", .0.display())]
    PathNotUtf8(PathBuf),
    /// there is no manifest
    #[error("nothing to uninstall: {} does not exist (runcvm install writes it)", .0.display())]
    NotInstalled(PathBuf),
    /// the manifest is unreadable
    #[error("cannot read the install manifest {}", path.display())]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Maps between the paths this process uses and the node's, when the node's
/// `/` is mounted at a prefix.
#[derive(Debug, Clone)]
pub(crate) struct View {
    prefix: Option<PathBuf>,
}

impl View {
    pub(crate) fn new(prefix: Option<&Path>) -> Result<Self, InstallError> {
        let prefix = prefix.map(absolute).transpose()?;
        Ok(Self { prefix })
    }

    /// The node's path for a path of this process.
    pub(crate) fn node(&self, local: &Path) -> Result<PathBuf, InstallError> {
        match &self.prefix {
            None => Ok(local.to_owned()),
            Some(prefix) => local
                .strip_prefix(prefix)
                .map(|rest| Path::new("/").join(rest))
                .map_err(|_| InstallError::OutsidePrefix {
                    path: local.to_owned(),
                    prefix: prefix.clone(),
                }),
        }
    }

    /// This process's path for a node path.
    pub(crate) fn local(&self, node: &Path) -> PathBuf {
        match &self.prefix {
            None => node.to_owned(),
            Some(prefix) => prefix.join(node.strip_prefix("/").unwrap_or(node)),
        }
    }
}

/// `path` made absolute against the current folder (not resolving symlinks).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, InstallError> {
    std::path::absolute(path).map_err(|source| InstallError::Io {
        action: "resolve",
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    move |source| InstallError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_drop_the_host_prefix() {
        let view = View::new(Some(Path::new("/host"))).unwrap();
        assert_eq!(
            view.node(Path::new("/host/opt/runcvm/bin/runcvm-runtime")).unwrap(),
            Path::new("/opt/runcvm/bin/runcvm-runtime")
        );
        assert_eq!(
            view.local(Path::new("/etc/containerd/config.toml")),
            Path::new("/host/etc/containerd/config.toml")
        );
        let err = view.node(Path::new("/opt/runcvm")).unwrap_err();
        assert!(
            err.to_string().contains("not under the host root prefix /host"),
            "{err}"
        );
        let plain = View::new(None).unwrap();
        assert_eq!(plain.node(Path::new("/opt/runcvm")).unwrap(), Path::new("/opt/runcvm"));
    }
}
