//! Only the guest may reach 169.254.1.254: frames entering `br-eth0` from
//! `eth0` (the pod's neighbours' side) addressed to it, IPv4 and ARP, are
//! dropped by an nftables table in the pod's namespace. The rule matches the
//! port by name, so it holds from before the bridge exists.

use runcvm_netlink::NetlinkError;
use runcvm_netlink::nft;
use runcvm_spec::net::{HOST_IDENTITY_IP, POD_INTERFACE};

/// The nftables table (family bridge) that holds the rule.
pub const GUARD_TABLE: &str = "runcvm";

pub fn guard_host_identity() -> Result<(), NetlinkError> {
    guard_table().install()
}

/// The table [`guard_host_identity`] installs.
pub fn guard_table() -> nft::Table {
    nft::bridge_input_drop(GUARD_TABLE, POD_INTERFACE, HOST_IDENTITY_IP)
}
