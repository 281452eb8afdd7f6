//! What can go wrong taking over the pod network; each error names the
//! section of runcvm's `docs/troubleshooting.md` that a user would look in.

use runcvm_netlink::NetlinkError;
use runcvm_spec::net::{BRIDGE_NAME, POD_INTERFACE, TAP_NAME};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// no eth0 in the pod's network namespace
    #[error(
        "no {POD_INTERFACE} in this network namespace: runcvm takes over the pod's {POD_INTERFACE}, which the CNI plugin creates \
         (troubleshooting.md, Pod network); check the pod's network setup"
    )]
    NoPodInterface,
    /// eth0 has no address
    #[error(
        "{POD_INTERFACE} has no IP address after {waited_secs} s: the CNI plugin did not configure the pod \
         (troubleshooting.md, Pod network); check the CNI plugin's logs on the node"
    )]
    NoAddress { waited_secs: u64 },
    /// eth0 has no MAC
    #[error(
        "{POD_INTERFACE} has no Ethernet address to hand to the VM (troubleshooting.md, Pod network: MAC swapping needs one)"
    )]
    NoMac,
    /// the tap cannot be created
    #[error(
        "cannot create {TAP_NAME}: {reason} (troubleshooting.md, Checking the network state: `ip link show {TAP_NAME}`); \
         the container needs /dev/net/tun and CAP_NET_ADMIN"
    )]
    Tap { reason: String },
    /// br-eth0 has ports runcvm did not put there
    #[error(
        "{BRIDGE_NAME} already exists with ports other than {POD_INTERFACE} and {TAP_NAME} ({ports}): runcvm will not take over a \
         bridge it did not make (troubleshooting.md, Checking the network state); remove it or use another pod"
    )]
    ForeignPorts { ports: String },
    /// br-eth0 exists without runcvm's record
    #[error(
        "{BRIDGE_NAME} exists but does not carry runcvm's record of the pod's network ({reason}) \
         (troubleshooting.md, Checking the network state): remove {BRIDGE_NAME} and restart the pod"
    )]
    BadRecord { reason: String },
    /// a link disappeared while being set up
    #[error(
        "{name} vanished right after runcvm created it: something else in the pod's network namespace is removing links \
         (troubleshooting.md, Checking the network state)"
    )]
    Vanished { name: String },
    /// the pod's network does not fit the record
    #[error(
        "the pod's network is too large to record on {BRIDGE_NAME} ({len} of at most 255 bytes; troubleshooting.md, \
         Checking the network state): {record}"
    )]
    RecordTooLong { len: usize, record: String },
    /// a netlink request failed
    #[error("pod network set-up failed (troubleshooting.md, Checking the network state)")]
    Netlink(#[from] NetlinkError),
}
