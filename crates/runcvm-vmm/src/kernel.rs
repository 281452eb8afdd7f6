//! Finding and checking the guest kernel before any VMM is started.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where `kernel/build.sh` installs the kernel.
pub const DEFAULT_KERNEL_PATH: &str = runcvm_spec::layout::DEFAULT_KERNEL;
/// Overrides [`DEFAULT_KERNEL_PATH`].
pub const KERNEL_ENV: &str = "RUNCVM_KERNEL";

/// A guest kernel that exists and is an ELF image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    pub path: PathBuf,
}

/// Why the guest kernel cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// guest kernel not found
    #[error(
        "guest kernel not found at {path}{hint}: build it with `kernel/build.sh`, or set {KERNEL_ENV} to a vmlinux"
    )]
    Missing { path: PathBuf, hint: &'static str },
    /// guest kernel cannot be read
    #[error("guest kernel {path} cannot be read")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// guest kernel is not an uncompressed ELF vmlinux
    #[error(
        "guest kernel {path} is not an uncompressed ELF vmlinux (a bzImage will not boot): use the vmlinux from `kernel/build.sh`"
    )]
    NotElf { path: PathBuf },
}

impl GuestKernel {
    /// The kernel `chosen` names (the binary's `RUNCVM_KERNEL`), else the
    /// default location.
    pub fn locate(chosen: Option<&Path>) -> Result<Self, KernelError> {
        match chosen {
            Some(path) => Self::check(path, " (from RUNCVM_KERNEL)"),
            None => Self::check(Path::new(DEFAULT_KERNEL_PATH), ""),
        }
    }

    /// Checks that `path` is an ELF file.
    pub fn at(path: &Path) -> Result<Self, KernelError> {
        Self::check(path, "")
    }

    fn check(path: &Path, hint: &'static str) -> Result<Self, KernelError> {
        let mut magic = [0u8; 4];
        let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
        match read {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KernelError::Missing {
                path: path.to_owned(),
                hint,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(KernelError::NotElf { path: path.to_owned() })
            }
            Err(source) => Err(KernelError::Unreadable {
                path: path.to_owned(),
                source,
            }),
            Ok(()) if &magic != b"\x7fELF" => Err(KernelError::NotElf { path: path.to_owned() }),
            Ok(()) => Ok(Self { path: path.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_elf_kernels_are_named() {
        let dir = std::env::temp_dir().join(format!("runcvm-kernel-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = GuestKernel::at(&dir.join("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("not found at") && missing.contains("kernel/build.sh"),
            "{missing}"
        );
        let bz = dir.join("bzImage");
        std::fs::write(&bz, b"MZ\x00\x00 not elf").unwrap();
        let not_elf = GuestKernel::at(&bz).unwrap_err().to_string();
        assert!(not_elf.contains("not an uncompressed ELF"), "{not_elf}");
        let elf = dir.join("vmlinux");
        std::fs::write(&elf, b"\x7fELF\x02\x01").unwrap();
        assert_eq!(GuestKernel::at(&elf).unwrap().path, elf);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
