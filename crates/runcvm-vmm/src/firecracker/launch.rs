//! Finding Firecracker, checking what it will boot, preparing the files it
//! expects, and its command line.
//!
//! Firecracker is started as `firecracker --config-file FILE --api-sock
//! SOCK`: it reads the whole configuration ([`super::config`]) and boots at
//! once, and serves its API on `SOCK` (used to ask for a shutdown or the
//! instance's state). Its log goes to the file the configuration names;
//! until it has read the file, its first line (`Running Firecracker
//! vX.Y.Z`) goes to its stdout, the serial console, where the launcher's
//! console filter treats it as a boot line.
//!
//! # No jailer
//!
//! Firecracker's jailer is not used: what it sets up around Firecracker, the
//! container already is. runcvm runs Firecracker inside the pod container's
//! own sandbox, whose mount, PID, IPC and network namespaces, cgroup (the
//! pod's limits and accounting), seccomp profile, capability set and user
//! are runc's work for the container; Firecracker adds its own seccomp
//! filters on top. The jailer would also need what a container is denied:
//! new namespaces, mounts and `pivot_root` into its chroot (`CAP_SYS_ADMIN`,
//! refused by the default seccomp profile too), device nodes for
//! `/dev/kvm` and `/dev/net/tun` made inside that chroot, and cgroups of its
//! own (the container's cgroup file system is read-only).

use super::config::FirecrackerConfig;
use crate::kernel::{GuestKernel, KernelError};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Overrides the install's Firecracker binary.
pub const FIRECRACKER_ENV: &str = "RUNCVM_FIRECRACKER";
/// Firecracker's place in an install root (e.g. `/opt/runcvm/bin/firecracker`).
pub const FIRECRACKER_IN_ROOT: &str = runcvm_spec::layout::FIRECRACKER;

/// Why Firecracker cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Firecracker not found at {path}{hint}
    #[error(
        "Firecracker not found at {path}{hint}: install its release binary with `runcvm install --firecracker PATH`, or set {FIRECRACKER_ENV} to a firecracker binary"
    )]
    Missing { path: PathBuf, hint: &'static str },
    /// Firecracker at {path}{hint} is not a file
    #[error("Firecracker at {path}{hint} is not a file")]
    NotAFile { path: PathBuf, hint: &'static str },
    /// Firecracker at {path}{hint} is not executable (mode {mode:o})
    #[error("Firecracker at {path}{hint} is not executable (mode {mode:o}): `chmod +x` it")]
    NotExecutable {
        path: PathBuf,
        hint: &'static str,
        mode: u32,
    },
    /// Firecracker at {path} cannot be checked
    #[error("Firecracker at {path} cannot be checked")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the guest kernel (its own message)
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// cannot write Firecracker's configuration {path}
    #[error("cannot write Firecracker's configuration {path}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// cannot prepare {path} for Firecracker
    #[error("cannot prepare {path} for Firecracker")]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A Firecracker binary that exists and is executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerBinary {
    path: PathBuf,
}

impl FirecrackerBinary {
    /// The binary `chosen` names (the binary's `RUNCVM_FIRECRACKER`), else
    /// `<install_root>/bin/firecracker`.
    pub fn locate(chosen: Option<&Path>, install_root: &Path) -> Result<Self, LaunchError> {
        match chosen {
            Some(path) => Self::check(path.to_owned(), " (from RUNCVM_FIRECRACKER)"),
            None => Self::check(install_root.join(FIRECRACKER_IN_ROOT), ""),
        }
    }

    /// Checks that `path` is an executable file.
    pub fn at(path: &Path) -> Result<Self, LaunchError> {
        Self::check(path.to_owned(), "")
    }

    fn check(path: PathBuf, hint: &'static str) -> Result<Self, LaunchError> {
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LaunchError::Missing { path, hint }),
            Err(source) => return Err(LaunchError::Unreadable { path, source }),
        };
        if !meta.is_file() {
            return Err(LaunchError::NotAFile { path, hint });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o111 == 0 {
            return Err(LaunchError::NotExecutable { path, hint, mode });
        }
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `firecracker --config-file CONFIG --api-sock SOCK`, stdin `/dev/null`.
    ///
    /// Stdin is not the launcher's: Firecracker feeds its stdin to the
    /// guest's serial port and puts a terminal there into raw mode. The
    /// workload's stdin travels on the control channel instead.
    pub fn command(&self, config_file: &Path, api_sock: &Path) -> Command {
        let mut command = Command::new(&self.path);
        // Nothing of the caller's environment: Firecracker needs none.
        command
            .env_clear()
            .arg("--config-file")
            .arg(config_file)
            .arg("--api-sock")
            .arg(api_sock)
            .stdin(Stdio::null());
        command
    }
}

/// Checks the kernel the configuration boots: it must exist and be an ELF
/// vmlinux (Firecracker on x86_64 boots nothing else).
pub fn check_kernel(config: &FirecrackerConfig) -> Result<GuestKernel, LaunchError> {
    Ok(GuestKernel::at(Path::new(&config.boot_source.kernel_image_path))?)
}

/// Writes the configuration for `--config-file` (mode 0640: the VMM's
/// group reads it, in a folder shared with that group alone).
pub fn write_config(config: &FirecrackerConfig, path: &Path) -> Result<(), LaunchError> {
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(path)?;
        file.write_all(config.to_json().as_bytes())
    };
    write().map_err(|source| LaunchError::WriteConfig {
        path: path.to_owned(),
        source,
    })
}

/// Prepares the host files Firecracker expects: it binds the API socket and
/// the vsock socket itself and fails if they exist, so sockets left by an
/// earlier run go; it opens its log and metrics files without creating them,
/// so they are created (empty).
pub fn prepare_host_files(config: &FirecrackerConfig, api_sock: &Path) -> Result<(), LaunchError> {
    let prepare_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LaunchError::Prepare { path, source }
    };
    let mut sockets = vec![api_sock.to_owned()];
    sockets.extend(config.vsock.as_ref().map(|v| PathBuf::from(&v.uds_path)));
    for socket in &sockets {
        match std::fs::symlink_metadata(socket) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(socket).map_err(prepare_error(socket))?,
            Ok(_) => {
                return Err(prepare_error(socket)(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(prepare_error(socket)(e)),
        }
    }
    let mut files = Vec::new();
    files.extend(config.logger.as_ref().and_then(|l| l.log_path.as_deref()));
    files.extend(config.metrics.as_ref().map(|m| m.metrics_path.as_str()));
    for file in files.into_iter().map(Path::new) {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o660)
            .open(file)
            .map_err(prepare_error(file))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_config_and_the_socket() {
        let binary = FirecrackerBinary {
            path: "/opt/runcvm/bin/firecracker".into(),
        };
        let command = binary.command(Path::new("/run/r1/firecracker.json"), Path::new("/run/r1/api.sock"));
        assert_eq!(command.get_program(), "/opt/runcvm/bin/firecracker");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            [
                "--config-file",
                "/run/r1/firecracker.json",
                "--api-sock",
                "/run/r1/api.sock"
            ]
        );
    }
}
