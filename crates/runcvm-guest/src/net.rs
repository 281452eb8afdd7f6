//! The guest's `eth0` takes on the pod's identity: the VMM already gave the
//! NIC the pod's real MAC; init adds the addresses, MTU and routes the pod
//! had, and the route to the host identity 169.254.1.254 (guide, section 3).

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
            "{POD_INTERFACE} has MAC {} instead of the pod's {}: traffic may be dropped where the network filters MACs (troubleshooting guide, section 2)",
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
        })?;
        runcvm_log::debug!(
            "{POD_INTERFACE}: route {}{}{}",
            route.destination,
            route.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
            if route.onlink { " onlink" } else { "" }
        );
    }
    runcvm_log::debug!(
        "{POD_INTERFACE}: mtu {}, MAC {}, route {HOST_IDENTITY_IP} dev {POD_INTERFACE}",
        network.mtu,
        network.mac
    );
    Ok(())
}
