//! `--network pod`: the launcher takes over the `eth0` of the network
//! namespace it runs in, as it will in every Kubernetes pod, and hands the
//! pod's identity and name-resolution files to the guest.

use anyhow::Context;
use runcvm_net::guard::guard_host_identity;
use runcvm_net::{DevNetTun, TakeOverOptions};
use runcvm_netlink::NetlinkSocket;
use runcvm_proto::GuestFile;
use runcvm_spec::GuestNetwork;
use runcvm_spec::net::TAP_NAME;
use runcvm_vmm::qemu::Nic;
use std::time::{Duration, Instant};

/// `on` (default) or `off`: off keeps eth0's MAC and gives the VM a dummy,
/// only to show what the swap is for (guide, section 2).
pub const MAC_SWAP_ENV: &str = "RUNCVM_MAC_SWAP";
/// Seconds to wait for CNI to give `eth0` an address.
pub const NET_WAIT_ENV: &str = "RUNCVM_NET_WAIT";

/// The files a container in the pod sees, which the guest gets too.
const POD_FILES: [&str; 3] = ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

/// What the VM gets from the pod.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub guest: GuestNetwork,
    pub nic: Nic,
    pub files: Vec<GuestFile>,
}

pub fn take_over() -> anyhow::Result<PodNetwork> {
    let started = Instant::now();
    let options = options()?;
    // First, so the pod's neighbours never see an unguarded moment.
    guard_host_identity().context("cannot guard 169.254.1.254 from the pod's neighbours")?;
    let mut netlink = NetlinkSocket::route()?;
    let take = runcvm_net::take_over(&mut netlink, &DevNetTun, options)?;
    runcvm_log::info!("{}", take.swap_line());
    let mut files = Vec::new();
    for path in POD_FILES {
        match std::fs::read(path) {
            Ok(content) => files.push(GuestFile {
                path: path.to_owned(),
                content: content.into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {path} to hand it to the guest")),
        }
    }
    runcvm_log::debug!("pod network taken over in {:.3} s", started.elapsed().as_secs_f64());
    Ok(PodNetwork {
        nic: Nic {
            tap: TAP_NAME.to_owned(),
            mac: take.guest.mac,
        },
        guest: take.guest,
        files,
    })
}

fn options() -> anyhow::Result<TakeOverOptions> {
    let mut options = TakeOverOptions::default();
    match std::env::var(MAC_SWAP_ENV).as_deref() {
        Err(_) | Ok("" | "on") => {}
        Ok("off") => options.swap_macs = false,
        Ok(other) => anyhow::bail!("{MAC_SWAP_ENV}={other:?} is not on or off"),
    }
    if let Ok(wait) = std::env::var(NET_WAIT_ENV) {
        let secs: u64 = wait
            .trim()
            .parse()
            .with_context(|| format!("{NET_WAIT_ENV}={wait:?} is not a number of seconds"))?;
        options.wait = Duration::from_secs(secs);
    }
    Ok(options)
}
