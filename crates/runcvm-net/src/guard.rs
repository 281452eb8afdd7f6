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

/// The nftables table (family netdev, on `tap-eth0`'s ingress) that holds
/// the VM to its own MAC and addresses.
pub const SOURCE_TABLE: &str = "runcvm-vm-source";

/// Frames from the VM leave with its MAC and addresses, as a host's, or are
/// dropped (`vm_filter`): the guest's root (which a non-root pod never has
/// under runc) cannot forge another pod's identity on the pod network, nor
/// speak as its router or DHCP server.
pub fn hold_the_vm_to_its_identity(guest: &runcvm_spec::GuestNetwork) -> Result<(), NetlinkError> {
    source_table(guest).install()
}

/// The table [`hold_the_vm_to_its_identity`] installs.
pub fn source_table(guest: &runcvm_spec::GuestNetwork) -> nft::Table {
    let mut vm = crate::vm_filter::VmIdentity {
        mac: guest.mac.0,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    for address in &guest.addresses {
        match address.ip {
            std::net::IpAddr::V4(ip) => vm.ipv4.push(ip),
            std::net::IpAddr::V6(ip) => vm.ipv6.push(ip),
        }
    }
    crate::vm_filter::vm_source_filter(SOURCE_TABLE, runcvm_spec::net::TAP_NAME, &vm)
}

/// The table [`guard_host_identity`] installs.
pub fn guard_table() -> nft::Table {
    nft::bridge_input_drop(GUARD_TABLE, POD_INTERFACE, HOST_IDENTITY_IP)
}
