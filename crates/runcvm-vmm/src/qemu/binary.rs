//! How QEMU is started: a binary of the host, or the self-contained copy an
//! install bundles so that QEMU runs inside any container image.
//!
//! The bundle (`ROOT/qemu/`) holds Debian's `qemu-system-x86_64` with every
//! library it links, the loader, the TCG module and the firmware; it runs as
//! `lib/ld-linux-x86-64.so.2 --library-path lib bin/qemu-system-x86_64 -L
//! share`, with `QEMU_MODULE_DIR=modules`, so nothing is read from the
//! container's own `/lib` or `/usr/share`.

use super::bundle::BundledQemu;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A QEMU that can be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuBinary {
    /// What is executed: QEMU itself, or the bundle's loader.
    program: PathBuf,
    /// Arguments before QEMU's own.
    prefix: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// The QEMU binary proper, which names it in messages and cache keys.
    qemu: PathBuf,
}

impl QemuBinary {
    /// A QEMU binary of the host, run directly.
    pub fn direct(path: PathBuf) -> Self {
        Self {
            program: path.clone(),
            prefix: Vec::new(),
            env: Vec::new(),
            qemu: path,
        }
    }

    /// The bundle under `install_root`, if it is complete.
    pub fn bundled(install_root: &Path) -> Option<Self> {
        let bundle = BundledQemu::at(install_root)?;
        let prefix = bundle.command_prefix();
        Some(Self {
            program: prefix.program,
            prefix: prefix.args,
            env: prefix.env,
            qemu: bundle.program,
        })
    }

    /// The QEMU binary proper.
    pub fn path(&self) -> &Path {
        &self.qemu
    }

    /// A command running this QEMU; QEMU's own arguments follow. Its
    /// environment is only what it needs: nothing of the caller's (in a
    /// container, the pod's) reaches the loader or QEMU.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.prefix)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_bundle_runs_through_its_loader() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(QemuBinary::bundled(root.path()), None);
        let layout = BundledQemu::layout(root.path());
        for dir in [&layout.library_path, &layout.firmware_dir, &layout.module_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(layout.program.parent().unwrap()).unwrap();
        for file in [&layout.program, &layout.loader] {
            std::fs::write(file, b"").unwrap();
        }
        let qemu = QemuBinary::bundled(root.path()).unwrap();
        assert_eq!(qemu.path(), layout.program);
        let command = qemu.command();
        assert_eq!(command.get_program(), layout.loader.as_os_str());
        assert_eq!(command.get_args().nth(3), Some(layout.program.as_os_str()));
        assert_eq!(
            QemuBinary::direct("/usr/bin/qemu".into()).command().get_args().count(),
            0
        );
    }
}
