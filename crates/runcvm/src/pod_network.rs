//! `--network pod`: the launcher takes over the `eth0` of the network
//! namespace it runs in, as it will in every Kubernetes pod, and hands the
//! pod's identity and name-resolution files to the guest.

use anyhow::Context;
use runcvm_net::guard::guard_host_identity;
use runcvm_net::{DevNetTun, TakeOverOptions};
use runcvm_netlink::NetlinkSocket;
use runcvm_proto::GuestFile;
use runcvm_spec::GuestNetwork;
use runcvm_spec::launch::NamespaceId;
use runcvm_spec::net::TAP_NAME;
use runcvm_vmm::qemu::Nic;
use std::path::Path;
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

/// Takes over the pod's network with options from [`preflight`]; the swap
/// line is logged at `notice`; the tap belongs to `vmm_user`, if given.
pub fn take_over(
    options: TakeOverOptions,
    notice: runcvm_log::LogLevel,
    vmm_user: Option<runcvm_spec::VmmUser>,
) -> anyhow::Result<PodNetwork> {
    let started = Instant::now();
    // First, so the pod's neighbours never see an unguarded moment.
    guard_host_identity().context("cannot guard 169.254.1.254 from the pod's neighbours")?;
    let mut netlink = NetlinkSocket::route()?;
    let taps = DevNetTun {
        owner: vmm_user.map(|user| (user.uid, user.gid)),
    };
    let take = runcvm_net::take_over(&mut netlink, &taps, options)?;
    runcvm_net::guard::hold_the_vm_to_its_identity(&take.guest)
        .context("cannot hold the VM to its own MAC and addresses on tap-eth0")?;
    runcvm_log::write(notice, format_args!("{}", take.swap_line()));
    let mut files = Vec::new();
    for path in POD_FILES {
        match std::fs::read(path) {
            Ok(content) => files.push(GuestFile {
                path: path.to_owned(),
                content: content.into(),
                writable: false,
                mode: None,
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

/// Taking over eth0 removes its addresses: in the host's own namespace that
/// would cut the machine off. That namespace is told apart as the one PID 1
/// is in, unless runcvm is PID 1 itself (a container's entrypoint). This
/// catches a mistaken `--network pod` on a node; it cannot recognise every
/// namespace that is not a pod's, so the flag stays an explicit choice.
fn refuse_the_hosts_namespace() -> anyhow::Result<()> {
    if shares_init_namespace(
        Path::new("/proc/self/ns/net"),
        Path::new("/proc/1/ns/net"),
        std::process::id(),
    ) {
        anyhow::bail!(
            "--network pod takes over eth0 of the network namespace it runs in, and this is the host's: \
             run it inside a pod's network namespace (for example with nsenter --net=/run/netns/NAME)"
        );
    }
    Ok(())
}

fn shares_init_namespace(mine: &Path, init: &Path, pid: u32) -> bool {
    let mine = namespace_identity(mine).ok();
    pid != 1 && mine.is_some() && mine == namespace_identity(init).ok()
}

fn parse_mac_swap(value: Option<&str>) -> anyhow::Result<bool> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => anyhow::bail!("{MAC_SWAP_ENV}={:?} is not on or off", value.unwrap_or_default()),
    }
}

fn parse_net_wait(value: Option<&str>) -> anyhow::Result<Duration> {
    match value.map(str::trim) {
        None | Some("") => Ok(TakeOverOptions::default().wait),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|secs| *secs >= 0.0 && secs.is_finite())
            .map(Duration::from_secs_f64)
            .with_context(|| format!("{NET_WAIT_ENV}={text:?} is not a number of seconds")),
    }
}

/// Checks what can be checked before any work is done: the settings, and
/// that this is not the host's own namespace.
pub fn preflight(settings: &crate::settings::Settings) -> anyhow::Result<TakeOverOptions> {
    let options = options(settings)?;
    refuse_the_hosts_namespace()?;
    Ok(options)
}

/// [`preflight`] for a Kubernetes container: the namespace must be the one
/// `runcvm-runtime` proved on the node to be the pod's own (it compared it
/// with the node's before anything was touched). PID 1's namespace says
/// nothing here: in a pod that shares its PID namespace, PID 1 is the pause
/// container, which is in the pod's network namespace too. A launch file
/// without the record (runc made a fresh namespace for the container, or an
/// earlier build wrote it) falls back to [`preflight`]'s check.
pub fn preflight_checked(
    checked: Option<NamespaceId>,
    settings: &crate::settings::Settings,
) -> anyhow::Result<TakeOverOptions> {
    let Some(checked) = checked else {
        return preflight(settings);
    };
    let options = options(settings)?;
    let mine = namespace_identity(Path::new("/proc/self/ns/net"))
        .context("cannot tell which network namespace the launcher runs in")?;
    if mine != checked {
        anyhow::bail!(
            "the launcher runs in network namespace {}:{}, not in the pod's ({}:{}) that runcvm-runtime checked at create: \
             refusing to take over its eth0",
            mine.dev,
            mine.ino,
            checked.dev,
            checked.ino
        );
    }
    Ok(options)
}

fn namespace_identity(path: &Path) -> std::io::Result<NamespaceId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| NamespaceId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

fn options(settings: &crate::settings::Settings) -> anyhow::Result<TakeOverOptions> {
    Ok(TakeOverOptions {
        swap_macs: parse_mac_swap(settings.mac_swap.as_deref())?,
        wait: parse_net_wait(settings.net_wait.as_deref())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_namespace_is_recognised_unless_runcvm_is_pid_1() {
        let ns = Path::new("/proc/self/ns/net");
        assert!(shares_init_namespace(ns, ns, 4242));
        assert!(
            !shares_init_namespace(ns, ns, 1),
            "a container's entrypoint is PID 1 in its pod's namespace"
        );
        assert!(!shares_init_namespace(ns, Path::new("/nonexistent"), 4242));
    }

    #[test]
    fn a_container_takes_over_only_the_namespace_the_runtime_checked() {
        let here = namespace_identity(Path::new("/proc/self/ns/net")).unwrap();
        assert!(preflight_checked(Some(here), &crate::settings::Settings::default()).is_ok());
        let elsewhere = NamespaceId {
            dev: here.dev,
            ino: here.ino + 1,
        };
        let error = preflight_checked(Some(elsewhere), &crate::settings::Settings::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("not in the pod's"), "{error}");
    }

    #[test]
    fn mac_swap_knob_accepts_on_and_off_only() {
        assert!(parse_mac_swap(None).unwrap());
        assert!(parse_mac_swap(Some("on")).unwrap());
        assert!(!parse_mac_swap(Some("off")).unwrap());
        let err = parse_mac_swap(Some("maybe")).unwrap_err().to_string();
        assert_eq!(err, "RUNCVM_MAC_SWAP=\"maybe\" is not on or off");
        assert!(!parse_mac_swap(Some("OFF")).unwrap());
    }

    #[test]
    fn net_wait_takes_seconds_and_defaults_when_empty() {
        assert_eq!(parse_net_wait(None).unwrap(), Duration::from_secs(10));
        assert_eq!(parse_net_wait(Some(" ")).unwrap(), Duration::from_secs(10));
        assert_eq!(parse_net_wait(Some("2.5")).unwrap(), Duration::from_millis(2500));
        assert!(parse_net_wait(Some("-1")).is_err());
        assert!(parse_net_wait(Some("soon")).is_err());
    }
}
