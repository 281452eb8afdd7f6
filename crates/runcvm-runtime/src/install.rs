//! The install the runtime belongs to (`/opt/runcvm` for
//! `/opt/runcvm/bin/runcvm-runtime`): what the node side reads from it, and
//! the folder every runcvm container gets read-only at `/opt/runcvm`.

use runcvm_spec::layout;
use runcvm_vmm::qemu::QemuBinary;
use std::path::{Path, PathBuf};

/// Overrides the install root (default: the folder above the runtime's own).
pub const INSTALL_ROOT_ENV: &str = "RUNCVM_INSTALL_ROOT";

/// The install is missing or incomplete.
#[derive(Debug, thiserror::Error)]
#[error(
    "runcvm is not installed completely at {root}: {missing} is missing; run `runcvm install` (or set {INSTALL_ROOT_ENV})"
)]
pub struct InstallError {
    root: PathBuf,
    missing: String,
}

#[derive(Debug, Clone)]
pub struct Install {
    root: PathBuf,
}

impl Install {
    /// The install at `chosen` (`RUNCVM_INSTALL_ROOT`), else around the
    /// running binary.
    pub fn locate(chosen: Option<&Path>) -> Result<Self, InstallError> {
        let root = chosen
            .map(Path::to_owned)
            .or_else(|| {
                let exe = std::env::current_exe().ok()?;
                Some(exe.parent()?.parent()?.to_owned())
            })
            .unwrap_or_else(|| PathBuf::from(layout::DEFAULT_ROOT));
        Self::at(root)
    }

    /// The install at `root`, if everything a container needs is there.
    pub fn at(root: PathBuf) -> Result<Self, InstallError> {
        let install = Self { root };
        let missing = |what: &str| InstallError {
            root: install.root.clone(),
            missing: what.to_owned(),
        };
        for file in [layout::LAUNCHER, layout::GUEST_INIT, layout::KERNEL] {
            if !install.root.join(file).is_file() {
                return Err(missing(file));
            }
        }
        if QemuBinary::bundled(&install.root).is_none() {
            return Err(missing("the QEMU bundle (qemu/)"));
        }
        Ok(install)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn guest_init(&self) -> PathBuf {
        layout::at(&self.root, layout::GUEST_INIT)
    }

    pub fn kernel(&self) -> PathBuf {
        layout::at(&self.root, layout::KERNEL)
    }

    pub fn qemu(&self) -> QemuBinary {
        QemuBinary::bundled(&self.root).expect("checked when the install was located")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_install_names_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let err = Install::at(root.path().to_owned()).unwrap_err().to_string();
        assert!(
            err.contains("bin/runcvm is missing") && err.contains("runcvm install"),
            "{err}"
        );
        for file in ["bin/runcvm", "bin/runcvm-init", "kernel/vmlinux"] {
            let path = root.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let err = Install::at(root.path().to_owned()).unwrap_err().to_string();
        assert!(err.contains("QEMU bundle"), "{err}");
        let bundle = runcvm_vmm::qemu::BundledQemu::layout(root.path());
        for dir in [&bundle.library_path, &bundle.firmware_dir, &bundle.module_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(bundle.program.parent().unwrap()).unwrap();
        std::fs::write(&bundle.program, b"").unwrap();
        std::fs::write(&bundle.loader, b"").unwrap();
        assert!(Install::at(root.path().to_owned()).is_ok());
    }
}
