//! The T3 gate: a test that needs a node fails with everything missing
//! listed (root, containerd, runc, ctr, the CNI plugins, nsenter, a static
//! busybox; with `RUNCVM_T3_CONTAINERD=2`, the conformance kit's containerd
//! 2.x instead of the `containerd` and `ctr` on `PATH`); it never passes by
//! skipping. protoc is needed only to build the CRI bindings, so it is not
//! checked here.

use crate::containerd::ContainerdVersion;
use std::path::{Path, PathBuf};

/// The tools a containerd 1.6 node needs, found on `PATH` (or in
/// `/usr/sbin`, `/sbin`); a 2.x node takes `containerd` and `ctr` from the
/// kit ([`ContainerdVersion::missing`]).
pub const TOOLS: &[(&str, &str)] = &[
    ("containerd", "apt-get install containerd"),
    ("ctr", "apt-get install containerd"),
    ("runc", "apt-get install runc"),
    ("nsenter", "apt-get install util-linux"),
    ("ip", "apt-get install iproute2"),
];

/// The CNI plugins a node needs in [`crate::config::CNI_BIN_DIR`] (`ptp`
/// for a node with [`crate::config::Cni::Ptp`]).
pub const CNI_PLUGINS: &[&str] = &["bridge", "ptp", "host-local", "loopback"];

/// Where `name` is on `PATH` (or `/usr/sbin`, `/sbin`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Everything T3 needs that is missing, each with how to get it, for the
/// containerd `RUNCVM_T3_CONTAINERD` names.
pub fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !runcvm_test_infra::tier::is_root() {
        missing.push("root (containerd, mounts and network namespaces need it)".to_owned());
    }
    let version = match ContainerdVersion::parse(&std::env::var(crate::containerd::SELECT_VAR).unwrap_or_default()) {
        Ok(version) => version,
        Err(e) => {
            missing.push(format!("a containerd version: {e:#}"));
            ContainerdVersion::V1_6
        }
    };
    for (tool, install) in TOOLS {
        let from_the_kit = version == ContainerdVersion::V2 && matches!(*tool, "containerd" | "ctr");
        if !from_the_kit && find_tool(tool).is_none() {
            missing.push(format!("{tool} ({install})"));
        }
    }
    missing.extend(version.missing());
    for plugin in CNI_PLUGINS {
        let path = Path::new(crate::config::CNI_BIN_DIR).join(plugin);
        if !path.is_file() {
            missing.push(format!(
                "{} (apt-get install containernetworking-plugins)",
                path.display()
            ));
        }
    }
    if !Path::new(runcvm_test_infra::rootfs::BUSYBOX).is_file() {
        missing.push(format!(
            "{} (apt-get install busybox-static)",
            runcvm_test_infra::rootfs::BUSYBOX
        ));
    }
    missing
}

/// Panics, naming every missing prerequisite, unless T3 can run.
pub fn require_t3() {
    let missing = missing();
    assert!(
        missing.is_empty(),
        "T3 (a containerd node driven over CRI) cannot run; missing:\n  - {}\nRun scripts/test.sh as root: it installs all of these.",
        missing.join("\n  - ")
    );
}
