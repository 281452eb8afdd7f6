//! The guest's `eth0` takes on the pod's identity: the VMM already gave the
//! NIC the pod's real MAC; init adds the addresses, MTU and routes the pod
//! had, and the route to the host identity 169.254.1.254 (guide, section 3).
//! The routing table comes out as the pod's: an address the pod had
//! without the kernel's prefix route (CNI's ptp) is added without it, so
//! the pod's own route for that subnet, through the gateway, goes in as it
//! was rather than colliding with the kernel's.

use anyhow::Context;
use runcvm_netlink::route::{LinkChange, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RTPROT_STATIC};
use runcvm_netlink::{Address, NetlinkSocket, Route, RouteNetlink};
use runcvm_spec::GuestNetwork;
use runcvm_spec::net::{HOST_IDENTITY_IP, POD_INTERFACE};
use std::net::IpAddr;

pub fn configure(network: &GuestNetwork) -> anyhow::Result<()> {
    let mut netlink = NetlinkSocket::route()?;
    let eth0 = netlink
        .link_by_name(POD_INTERFACE)?
        .with_context(|| format!("the guest has no {POD_INTERFACE}: the VMM did not attach the pod's NIC"))?;
    if eth0.mac != Some(network.mac.0) {
        runcvm_log::warn!(
            "{POD_INTERFACE} has MAC {} instead of the pod's {}: traffic may be dropped where the network filters MACs (troubleshooting.md, Pod network)",
            eth0.mac
                .map(|m| runcvm_spec::MacAddr(m).to_string())
                .unwrap_or_default(),
            network.mac
        );
    }
    netlink.change_link(
        &eth0,
        &LinkChange {
            mtu: Some(network.mtu),
            up: Some(true),
            ..LinkChange::default()
        },
    )?;
    for address in &network.addresses {
        netlink.add_address(
            eth0.index,
            &Address {
                ip: address.ip,
                prefix_len: address.len,
                scope: RT_SCOPE_UNIVERSE,
                no_prefix_route: network.without_prefix_route.contains(address),
            },
        )?;
        runcvm_log::debug!("{POD_INTERFACE}: address {address}");
    }
    // ip route add 169.254.1.254 dev eth0
    let identity = Route {
        dst: IpAddr::V4(HOST_IDENTITY_IP),
        dst_len: 32,
        gateway: None,
        onlink: false,
        scope: RT_SCOPE_LINK,
        metric: None,
        oif: eth0.index,
        protocol: RTPROT_STATIC,
        prefsrc: None,
    };
    netlink.add_route(&identity)?;
    for route in &network.routes {
        netlink.add_route(&Route {
            dst: route.destination.ip,
            dst_len: route.destination.len,
            gateway: route.gateway,
            onlink: route.onlink,
            scope: if route.gateway.is_some() {
                RT_SCOPE_UNIVERSE
            } else {
                RT_SCOPE_LINK
            },
            metric: route.metric,
            oif: eth0.index,
            protocol: RTPROT_STATIC,
            prefsrc: route.source,
        })?;
        runcvm_log::debug!(
            "{POD_INTERFACE}: route {}{}{}{}",
            route.destination,
            route.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
            if route.onlink { " onlink" } else { "" },
            route.source.map(|s| format!(" src {s}")).unwrap_or_default()
        );
    }
    runcvm_log::debug!(
        "{POD_INTERFACE}: mtu {}, MAC {}, route {HOST_IDENTITY_IP} dev {POD_INTERFACE}",
        network.mtu,
        network.mac
    );
    keep_users_off_the_host_identity()
}

/// The services on 169.254.1.254 (the NFS servers of each container's root
/// and volumes) are for the guest's kernel. A server admits only privileged
/// source ports, which no user but root could bind, until a pod's sysctl
/// (`net.ipv4.ip_unprivileged_port_start=0`, containerd 2's default) lets
/// anyone; and root in one container must not reach a sibling's servers.
/// So nothing a container's cgroup sends gets there, nor anything of a uid
/// but 0: the kernel's NFS client (its sockets made by its workers, in the
/// root cgroup) and init remain.
fn keep_users_off_the_host_identity() -> anyhow::Result<()> {
    let containers = crate::container::containers_cgroup_id()?;
    runcvm_netlink::nft::only_the_kernel_sends_to(GUEST_GUARD_TABLE, HOST_IDENTITY_IP, containers)
        .install()
        .context("cannot keep the guest's users off 169.254.1.254")?;
    match containers {
        Some(_) => runcvm_log::debug!("only the kernel and init may send to {HOST_IDENTITY_IP}"),
        None => {
            runcvm_log::warn!("the guest kernel has no cgroup v2: root in any container may send to {HOST_IDENTITY_IP}")
        }
    }
    Ok(())
}

/// The guest's nftables table that guards the host identity.
const GUEST_GUARD_TABLE: &str = "runcvm-guest";
