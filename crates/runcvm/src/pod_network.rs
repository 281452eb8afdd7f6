//! `--network pod`: the launcher takes over the `eth0` of the network
//! namespace it runs in, as it will in every Kubernetes pod, and hands the
//! pod's identity and name-resolution files to the guest.

use runcvm_net::guard::guard_host_identity;
use runcvm_net::{DevNetTun, NetError, TakeOverOptions};
use runcvm_netlink::{NetlinkError, NetlinkSocket};
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

/// Why the pod's network cannot be taken over: a setting, the namespace
/// the launcher runs in, or the take-over itself. The causes follow the
/// message on the log line (`runcvm_log::error_chain`).
#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    /// RUNCVM_MAC_SWAP={value:?} is not on or off
    #[error("{MAC_SWAP_ENV}={value:?} is not on or off")]
    MacSwapSetting { value: String },
    /// RUNCVM_NET_WAIT={value:?} is not a number of seconds
    #[error("{NET_WAIT_ENV}={value:?} is not a number of seconds")]
    NetWaitSetting { value: String },
    /// --network pod takes over eth0 of the network namespace it runs in,
    /// and this is the host's: run it inside a pod's network namespace (for
    /// example with nsenter --net=/run/netns/NAME)
    #[error(
        "--network pod takes over eth0 of the network namespace it runs in, and this is the host's: \
         run it inside a pod's network namespace (for example with nsenter --net=/run/netns/NAME)"
    )]
    HostNamespace,
    /// cannot tell which network namespace the launcher runs in
    #[error("cannot tell which network namespace the launcher runs in")]
    OwnNamespace(#[source] std::io::Error),
    /// the launcher runs in network namespace DEV:INO, not in the pod's
    /// (DEV:INO) that runcvm-runtime checked at create: refusing to take over
    /// its eth0
    #[error(
        "the launcher runs in network namespace {}:{}, not in the pod's ({}:{}) that runcvm-runtime checked at create: \
         refusing to take over its eth0",
        .mine.dev,
        .mine.ino,
        .checked.dev,
        .checked.ino
    )]
    NotThePodsNamespace { mine: NamespaceId, checked: NamespaceId },
    /// cannot guard 169.254.1.254 from the pod's neighbours
    #[error("cannot guard 169.254.1.254 from the pod's neighbours")]
    Guard(#[source] NetlinkError),
    /// the route netlink socket could not be opened (its own message)
    #[error(transparent)]
    Netlink(NetlinkError),
    /// eth0 could not be taken over (its own message)
    #[error(transparent)]
    TakeOver(#[from] NetError),
    /// cannot hold the VM to its own MAC and addresses on tap-eth0
    #[error("cannot hold the VM to its own MAC and addresses on tap-eth0")]
    HoldIdentity(#[source] NetlinkError),
    /// cannot read {path} to hand it to the guest
    #[error("cannot read {path} to hand it to the guest")]
    ReadPodFile {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

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
) -> Result<PodNetwork, PodNetworkError> {
    let started = Instant::now();
    // First, so the pod's neighbours never see an unguarded moment.
    guard_host_identity().map_err(PodNetworkError::Guard)?;
    let mut netlink = NetlinkSocket::route().map_err(PodNetworkError::Netlink)?;
    let taps = DevNetTun {
        owner: vmm_user.map(|user| (user.uid, user.gid)),
    };
    let take = runcvm_net::take_over(&mut netlink, &taps, options)?;
    runcvm_net::guard::hold_the_vm_to_its_identity(&take.guest).map_err(PodNetworkError::HoldIdentity)?;
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
            Err(source) => return Err(PodNetworkError::ReadPodFile { path, source }),
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
fn refuse_the_hosts_namespace() -> Result<(), PodNetworkError> {
    if shares_init_namespace(
        Path::new("/proc/self/ns/net"),
        Path::new("/proc/1/ns/net"),
        std::process::id(),
    ) {
        return Err(PodNetworkError::HostNamespace);
    }
    Ok(())
}

fn shares_init_namespace(mine: &Path, init: &Path, pid: u32) -> bool {
    let mine = namespace_identity(mine).ok();
    pid != 1 && mine.is_some() && mine == namespace_identity(init).ok()
}

fn parse_mac_swap(value: Option<&str>) -> Result<bool, PodNetworkError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err(PodNetworkError::MacSwapSetting {
            value: value.unwrap_or_default().to_owned(),
        }),
    }
}

fn parse_net_wait(value: Option<&str>) -> Result<Duration, PodNetworkError> {
    match value.map(str::trim) {
        None | Some("") => Ok(TakeOverOptions::default().wait),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|secs| *secs >= 0.0 && secs.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| PodNetworkError::NetWaitSetting { value: text.to_owned() }),
    }
}

/// Checks what can be checked before any work is done: the settings, and
/// that this is not the host's own namespace.
pub fn preflight(settings: &crate::settings::Settings) -> Result<TakeOverOptions, PodNetworkError> {
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
) -> Result<TakeOverOptions, PodNetworkError> {
    let Some(checked) = checked else {
        return preflight(settings);
    };
    let options = options(settings)?;
    let mine = namespace_identity(Path::new("/proc/self/ns/net")).map_err(PodNetworkError::OwnNamespace)?;
    if mine != checked {
        return Err(PodNetworkError::NotThePodsNamespace { mine, checked });
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

fn options(settings: &crate::settings::Settings) -> Result<TakeOverOptions, PodNetworkError> {
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
        assert_eq!(
            runcvm_log::error_chain(&parse_net_wait(Some(" soon ")).unwrap_err()),
            "RUNCVM_NET_WAIT=\"soon\" is not a number of seconds"
        );
    }

    #[test]
    fn errors_read_as_the_log_line_says_them() {
        let other = PodNetworkError::NotThePodsNamespace {
            mine: NamespaceId {
                dev: 4,
                ino: 4026531840,
            },
            checked: NamespaceId {
                dev: 4,
                ino: 4026532999,
            },
        };
        assert_eq!(
            runcvm_log::error_chain(&other),
            "the launcher runs in network namespace 4:4026531840, not in the pod's (4:4026532999) that runcvm-runtime \
             checked at create: refusing to take over its eth0"
        );
        let unreadable = PodNetworkError::ReadPodFile {
            path: "/etc/hosts",
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            runcvm_log::error_chain(&unreadable),
            format!(
                "cannot read /etc/hosts to hand it to the guest: {}",
                std::io::Error::from_raw_os_error(libc::EACCES)
            )
        );
        let guard = PodNetworkError::Guard(NetlinkError::Open(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(
            runcvm_log::error_chain(&guard),
            format!(
                "cannot guard 169.254.1.254 from the pod's neighbours: cannot open a netlink socket: {}",
                std::io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        let take = PodNetworkError::from(NetError::Netlink(NetlinkError::Malformed {
            op: "list links".into(),
        }));
        assert_eq!(
            runcvm_log::error_chain(&take),
            "pod network set-up failed (troubleshooting.md, Checking the network state): \
             cannot list links: the kernel's reply is malformed"
        );
    }
}
