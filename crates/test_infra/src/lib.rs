//! Test harness for runcvm's tiers: a busybox guest rootfs, a `runcvm run`
//! driver, network namespaces and simulated pod networks, a packet capture,
//! `wait_until`, a cleanup registry, and the tier gates that fail
//! loudly (never skip) when a tier's prerequisites are missing.

pub mod capture;
pub mod cgroup;
pub mod cleanup;
pub mod netns;
pub mod pod_net;
pub mod rootfs;
pub mod runner;
pub mod tier;

pub use cleanup::Cleanup;
pub use netns::Netns;
pub use pod_net::{PodNet, PodNetOptions, Style};
pub use rootfs::busybox_rootfs;
pub use runner::{RunOutput, RuncvmRun};
pub use tier::{T2, require_t2};

use std::time::{Duration, Instant};

/// A binary of this workspace's build (`target/<profile>/NAME`, beside the
/// `deps` folder the calling test runs from), such as `forge-frames`;
/// `cargo build --workspace` (which `scripts/test.sh` runs) makes them.
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let binary = profile.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --workspace` first (scripts/test.sh does)",
        binary.display()
    );
    binary
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
