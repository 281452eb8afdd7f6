//! `runcvm-init`: PID 1 in the guest.
//!
//! It makes the guest look like a pod's world (mounts, hostname, lo,
//! sysctls, the pod's network and user namespace) with what arrives in
//! `Start`; then the launcher creates the pod's containers
//! (`CreateContainer`): each gets a mount namespace over its served root
//! (init stays on the boot disk) and its `/.runcvm/entrypoint`, which the
//! `[VM-START]` runner starts in the container's own namespaces and cgroup.
//! Init's main thread reaps every zombie for the VM's life; each container
//! reports its exit status over the control channel; the VM powers off
//! when the launcher says (a reboot, which ends the VMM).
//!
//! Module graph, one way: `main` owns the control port and the pod;
//! `control` feeds the pod; `pod` owns the containers and the sessions;
//! `sessions` and `entry` start processes through `spawn`, a leaf that
//! knows `container` (the namespaces and mounts a process is put into) and
//! `caps`; `reaper` hands statuses to their waiters; `root` makes a
//! container's mount namespace on a thread of `container`'s; `pause` is
//! what init's program does when `container` runs it again as the pod's
//! pause process.

mod caps;
mod console;
mod container;
mod control;
mod entry;
mod forward;
mod lookup;
mod mounts;
mod net;
mod outbound;
mod output;
mod pause;
mod pod;
mod reaper;
mod relay;
mod root;
mod sessions;
mod spawn;
mod system;
mod volumes;

use runcvm_log::{Epoch, LogLevel};
use runcvm_proto::{GuestMessage, HostMessage};
use std::convert::Infallible;

fn main() {
    if pause::is_pause() {
        pause::run();
    }
    let level = LogLevel::from_env();
    runcvm_log::init_with_epoch("runcvm-init", level.clone().unwrap_or_default(), Epoch::Boot);
    if std::process::id() != 1 {
        runcvm_log::error!("runcvm-init runs only as PID 1 inside a runcvm guest");
        std::process::exit(2);
    }
    // The console needs /dev; nothing can be logged before both exist.
    let dev_mounted = mounts::mount_dev();
    console::take_over();
    console::hand_over(runcvm_log::level());
    if let Err(e) = level {
        runcvm_log::warn!("{e}; using INFO");
    }
    if let Err(e) = dev_mounted {
        runcvm_log::error!("{e:#}");
    }
    let Err(e) = boot();
    runcvm_log::error!("{e:#}");
    system::power_off(None);
}

/// Sets the pod up, serves the launcher and reaps for ever; returns only
/// if the pod could not be set up.
fn boot() -> anyhow::Result<Infallible> {
    mounts::mount_container_filesystems()?;
    runcvm_log::debug!(
        "kernel command line: {}",
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim()
    );
    system::bring_up_loopback()?;
    let mut control = control::ControlPort::open()?;
    control.send(&GuestMessage::Ready {
        version: runcvm_proto::PROTOCOL_VERSION,
    })?;
    // Everything of the pod arrives here, after boot: the boot disk is the
    // same for every VM.
    let HostMessage::Start { pod, network } = control.receive()? else {
        anyhow::bail!("the launcher did not answer Ready with Start");
    };
    if pod.quiet_kernel {
        console::quiet_kernel(runcvm_log::level());
    }
    if let Some(hostname) = &pod.hostname {
        system::set_hostname(hostname)?;
    }
    mounts::mount_guest_dir()?;
    if let Some(network) = &network {
        net::configure(network)?;
    }
    // As on a node, where CNI has set the namespace up before the sandbox's
    // sysctls apply (a sysctl may turn off what the network needs).
    system::set_sysctls(&pod.sysctls)?;
    let pod = pod::Pod::new(control.writer(), &pod)?;
    control.serve_launcher(std::sync::Arc::clone(&pod))?;
    reaper::serve(pod.waiters())
}
