//! Where an install keeps its bundled QEMU, and how to start it: the one
//! definition of the layout, for `runcvm install` (which writes it) and
//! [`super::QemuBinary`] (which runs it).
//!
//! The bundle (`ROOT/qemu/`) is Debian's full `qemu-system-x86_64` made
//! independent of the file system it runs on: the binary is started through
//! the dynamic loader copied beside its libraries, and QEMU finds its TCG
//! module and firmware through `QEMU_MODULE_DIR` and `-L`:
//!
//! ```text
//! ROOT/qemu/lib/ld-linux-x86-64.so.2 --library-path ROOT/qemu/lib \
//!     ROOT/qemu/bin/qemu-system-x86_64 -L ROOT/qemu/share  QEMU-ARGS...
//! env: QEMU_MODULE_DIR=ROOT/qemu/modules
//! ```
//!
//! So it runs inside any container image (busybox, distroless) with `ROOT`
//! bind-mounted, and reads nothing from the image's `/lib` or `/usr/share`.
//! Running the loader explicitly matters: the binary's own `PT_INTERP`
//! (`/lib64/ld-linux-x86-64.so.2`) does not exist in most images.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundle's folder in an install root.
pub const QEMU_DIR: &str = runcvm_spec::layout::QEMU_DIR;
/// The dynamic loader's file name in the bundle's library folder.
pub const LOADER_NAME: &str = "ld-linux-x86-64.so.2";
/// QEMU's file name in the bundle's `bin` folder.
pub const QEMU_NAME: &str = "qemu-system-x86_64";
/// The variable that points QEMU at its loadable modules (TCG is one in
/// Debian's build).
pub const MODULE_DIR_ENV: &str = "QEMU_MODULE_DIR";

/// The bundled QEMU's files under an install root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledQemu {
    /// `ROOT/qemu/lib/ld-linux-x86-64.so.2`: what is executed.
    pub loader: PathBuf,
    /// `ROOT/qemu/lib`: every library QEMU and its modules link.
    pub library_path: PathBuf,
    /// `ROOT/qemu/bin/qemu-system-x86_64`.
    pub program: PathBuf,
    /// `ROOT/qemu/share`: firmware (`qboot.rom`, `bios-microvm.bin`, ...), for `-L`.
    pub firmware_dir: PathBuf,
    /// `ROOT/qemu/modules`: `accel-tcg-x86_64.so`, for `QEMU_MODULE_DIR`.
    pub module_dir: PathBuf,
}

/// How to start a program: what to execute, the arguments that come before
/// the program's own, and the environment to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPrefix {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl BundledQemu {
    /// The bundle's paths under `root`, whether or not they exist.
    pub fn layout(root: &Path) -> Self {
        let bundle = root.join(QEMU_DIR);
        let library_path = bundle.join("lib");
        Self {
            loader: library_path.join(LOADER_NAME),
            program: bundle.join("bin").join(QEMU_NAME),
            firmware_dir: bundle.join("share"),
            module_dir: bundle.join("modules"),
            library_path,
        }
    }

    /// The bundle under `root` (e.g. `/opt/runcvm`), if its loader and QEMU
    /// are files and its library, firmware and module folders exist.
    pub fn at(root: &Path) -> Option<Self> {
        let bundle = Self::layout(root);
        let complete = bundle.loader.is_file()
            && bundle.program.is_file()
            && [&bundle.library_path, &bundle.firmware_dir, &bundle.module_dir]
                .iter()
                .all(|dir| dir.is_dir());
        complete.then_some(bundle)
    }

    /// The loader, then `--library-path LIB QEMU -L FIRMWARE`, with
    /// `QEMU_MODULE_DIR`; QEMU's own arguments follow.
    pub fn command_prefix(&self) -> CommandPrefix {
        CommandPrefix {
            program: self.loader.clone(),
            args: vec![
                // Not the image's /etc/ld.so.cache: only the bundle's libraries.
                "--inhibit-cache".into(),
                "--library-path".into(),
                self.library_path.clone().into(),
                self.program.clone().into(),
                "-L".into(),
                self.firmware_dir.clone().into(),
            ],
            env: vec![(MODULE_DIR_ENV.into(), self.module_dir.clone().into())],
        }
    }

    /// A command running the bundled QEMU (environment inherited, plus
    /// `QEMU_MODULE_DIR`); QEMU's own arguments follow.
    pub fn command(&self) -> Command {
        let prefix = self.command_prefix();
        let mut command = Command::new(prefix.program);
        command.args(prefix.args).envs(prefix.env);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_and_the_command_follow_the_convention() {
        let bundle = BundledQemu::layout(Path::new("/opt/runcvm"));
        assert_eq!(bundle.loader, Path::new("/opt/runcvm/qemu/lib/ld-linux-x86-64.so.2"));
        assert_eq!(bundle.program, Path::new("/opt/runcvm/qemu/bin/qemu-system-x86_64"));
        let command = bundle.command();
        assert_eq!(command.get_program(), bundle.loader.as_os_str());
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(
            args,
            [
                "--inhibit-cache",
                "--library-path",
                "/opt/runcvm/qemu/lib",
                "/opt/runcvm/qemu/bin/qemu-system-x86_64",
                "-L",
                "/opt/runcvm/qemu/share"
            ]
        );
        let env: Vec<_> = command.get_envs().collect();
        assert_eq!(
            env,
            [(
                std::ffi::OsStr::new("QEMU_MODULE_DIR"),
                Some(std::ffi::OsStr::new("/opt/runcvm/qemu/modules"))
            )]
        );
    }

    #[test]
    fn at_needs_every_part() {
        let root = tempfile::tempdir().unwrap();
        let bundle = BundledQemu::layout(root.path());
        assert_eq!(BundledQemu::at(root.path()), None);
        for dir in [&bundle.library_path, &bundle.firmware_dir, &bundle.module_dir] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::create_dir_all(bundle.program.parent().unwrap()).unwrap();
        std::fs::write(&bundle.program, b"").unwrap();
        assert_eq!(BundledQemu::at(root.path()), None, "no loader yet");
        std::fs::write(&bundle.loader, b"").unwrap();
        assert_eq!(BundledQemu::at(root.path()), Some(bundle));
    }
}
