//! Test harness for runcvm's tiers: a busybox guest rootfs, a `runcvm run`
//! driver, network namespaces and simulated pod networks, `wait_until`, a cleanup registry, and the tier gates that fail
//! loudly (never skip) when a tier's prerequisites are missing.

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
