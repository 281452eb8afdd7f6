//! Tier gates. A tier whose prerequisites are missing fails with a list of
//! what is missing and how to get it; it never passes by skipping.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What a T2 (real VM) test needs, checked once per test binary.
#[derive(Debug, Clone)]
pub struct T2 {
    /// The `runcvm` binary under test.
    pub runcvm: PathBuf,
    /// A shared busybox rootfs; tests must not write to it.
    pub rootfs: PathBuf,
}

/// Checks the T2 prerequisites; panics naming every missing one. The
/// busybox rootfs is built once per test binary under `scratch` (the test's
/// `CARGO_TARGET_TMPDIR`), so nothing is left in /tmp.
pub fn require_t2(runcvm: &str, scratch: &str) -> T2 {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let runcvm = PathBuf::from(runcvm);
    let mut missing = Vec::new();
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .any(|dir| dir.join(name).is_file())
    };
    if std::env::var_os("RUNCVM_QEMU").is_none() && !on_path("qemu-system-x86_64") {
        missing.push("qemu-system-x86_64 (apt-get install qemu-system-x86)".to_owned());
    }
    let kernel =
        std::env::var_os("RUNCVM_KERNEL").map_or_else(|| PathBuf::from("/opt/runcvm/kernel/vmlinux"), PathBuf::from);
    if !kernel.is_file() {
        missing.push(format!("the guest kernel at {} (kernel/build.sh)", kernel.display()));
    }
    let init = runcvm.with_file_name("runcvm-init");
    if !init.is_file() {
        missing.push(format!("{} (cargo build --workspace)", init.display()));
    }
    if !on_path("mkfs.ext4") || !on_path("debugfs") {
        missing.push("mkfs.ext4 and debugfs (apt-get install e2fsprogs)".to_owned());
    }
    let rootfs = ROOTFS.get_or_init(|| {
        let dir = Path::new(scratch).join("busybox-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        crate::busybox_rootfs(&dir).map_err(|e| e.to_string())
    });
    match rootfs {
        Ok(_) => {}
        Err(e) => missing.push(format!("a busybox rootfs ({e})")),
    }
    assert!(
        missing.is_empty(),
        "T2 (real VMs) cannot run; missing:\n  - {}\nRun scripts/test.sh as root: it installs and builds all of these.",
        missing.join("\n  - ")
    );
    T2 {
        runcvm,
        rootfs: rootfs.clone().unwrap_or_default(),
    }
}

/// [`require_t2`] for the benchmarks: the release `runcvm` (or
/// `RUNCVM_BIN`), with the rootfs under `scratch`.
pub fn require_t2_for_bench(scratch: &Path) -> T2 {
    let runcvm = std::env::var("RUNCVM_BIN").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/x86_64-unknown-linux-gnu/release/runcvm"
        )
        .to_owned()
    });
    require_t2(&runcvm, scratch.to_str().expect("a UTF-8 scratch path"))
}

/// Whether this process is root (T1 and parts of T2 need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Panics unless root, naming the test's need.
pub fn require_root(what: &str) {
    assert!(is_root(), "{what} needs root: run scripts/test.sh as root");
}

/// Whether any live process's command line mentions `needle`.
pub fn process_mentioning(needle: &Path) -> Option<String> {
    let needle = needle.as_os_str().as_encoded_bytes();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            return Some(format!(
                "pid {}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    None
}
