//! The install root's layout, defined once: where `runcvm install` puts
//! each file and where the runtime, the launcher and the VMM backends look
//! for it. Every path below is relative to the root, `/opt/runcvm` by
//! default (and inside every runcvm container, read-only).

use std::path::{Path, PathBuf};

/// The default install root (also where a container sees it).
pub const DEFAULT_ROOT: &str = "/opt/runcvm";
/// The folder of the static binaries.
pub const BIN_DIR: &str = "bin";
/// The launcher (`runcvm`).
pub const LAUNCHER: &str = "bin/runcvm";
/// The runtime containerd calls (`runcvm-runtime`).
pub const RUNTIME: &str = "bin/runcvm-runtime";
/// Guest init, copied into every root disk.
pub const GUEST_INIT: &str = "bin/runcvm-init";
/// Firecracker, where the node chose it.
pub const FIRECRACKER: &str = "bin/firecracker";
/// The folder of the guest kernel.
pub const KERNEL_DIR: &str = "kernel";
/// The guest kernel.
pub const KERNEL: &str = "kernel/vmlinux";
/// The guest kernel at the default root.
pub const DEFAULT_KERNEL: &str = "/opt/runcvm/kernel/vmlinux";
/// The bundled QEMU (binary, loader, libraries, firmware, modules).
pub const QEMU_DIR: &str = "qemu";
/// The node's settings for its pods, root's alone.
pub const SETTINGS: &str = "etc/runcvm.toml";
/// What `runcvm install` created or replaced, for `runcvm uninstall`.
pub const MANIFEST: &str = "install-manifest.json";

/// `entry` (one of the paths above) under the install root `root`.
pub fn at(root: &Path, entry: &str) -> PathBuf {
    root.join(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_kernel_is_the_kernel_at_the_default_root() {
        assert_eq!(at(Path::new(DEFAULT_ROOT), KERNEL), PathBuf::from(DEFAULT_KERNEL));
        for file in [LAUNCHER, RUNTIME, GUEST_INIT, FIRECRACKER] {
            assert_eq!(Path::new(file).parent(), Some(Path::new(BIN_DIR)));
        }
        assert_eq!(Path::new(KERNEL).parent(), Some(Path::new(KERNEL_DIR)));
    }
}
