//! Finding the programs a run needs: guest init and the VMM.

use runcvm_vmm::qemu::QemuBinary;
use std::path::{Path, PathBuf};

/// Overrides where `runcvm-init` is taken from (default: beside `runcvm`).
pub const INIT_ENV: &str = "RUNCVM_INIT";
const INIT_NAME: &str = "runcvm-init";
const QEMU_NAME: &str = "qemu-system-x86_64";

/// A program a run needs is missing.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// guest init missing
    #[error(
        "guest init not found at {0}: build it with `cargo build --workspace` (it must sit beside runcvm, same profile), or set RUNCVM_INIT"
    )]
    Init(PathBuf),
    /// QEMU missing
    #[error(
        "{QEMU_NAME} not found in PATH: install it (apt-get install --no-install-recommends qemu-system-x86), or set RUNCVM_QEMU"
    )]
    Qemu,
    /// RUNCVM_QEMU names nothing
    #[error("RUNCVM_QEMU={0} is not a file: point it at a qemu-system-x86_64 binary")]
    QemuOverride(PathBuf),
}

/// Guest init: `chosen` (`RUNCVM_INIT`), else beside `runcvm`.
pub fn guest_init(chosen: Option<&Path>) -> Result<PathBuf, LocateError> {
    let path = match chosen {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(INIT_NAME)))
            .unwrap_or_else(|| PathBuf::from(INIT_NAME)),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(LocateError::Init(path))
    }
}

/// The install root runcvm runs from (`/opt/runcvm` for `/opt/runcvm/bin/runcvm`).
pub fn install_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.to_owned())
}

/// QEMU: `chosen` (`RUNCVM_QEMU`), else the bundle of the install runcvm
/// runs from (the only QEMU inside a container), else `qemu-system-x86_64`
/// on `PATH`.
pub fn qemu(chosen: Option<&Path>) -> Result<QemuBinary, LocateError> {
    if let Some(path) = chosen {
        let path = path.to_owned();
        return if path.is_file() {
            Ok(QemuBinary::direct(path))
        } else {
            Err(LocateError::QemuOverride(path))
        };
    }
    if let Some(bundled) = install_root().as_deref().and_then(QemuBinary::bundled) {
        return Ok(bundled);
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(QEMU_NAME))
        .find(|candidate| Path::new(candidate).is_file())
        .map(QemuBinary::direct)
        .ok_or(LocateError::Qemu)
}
