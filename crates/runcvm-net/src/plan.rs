//! From what `eth0` looks like to what the guest gets and which MACs move:
//! pure functions, unit-tested from fixtures.

use crate::NetError;
use runcvm_netlink::route::{RT_SCOPE_UNIVERSE, RTPROT_KERNEL};
use runcvm_netlink::{Address, Link, Route};
use runcvm_spec::{GuestNetwork, GuestRoute, IpPrefix, MacAddr};
use std::net::IpAddr;

/// `eth0` as CNI left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub link: Link,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
}

/// Which device gets which MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacSwap {
    /// The pod's real MAC: the VM's NIC takes it.
    pub real: MacAddr,
    /// What `eth0` carries instead.
    pub eth0_dummy: MacAddr,
    /// What `br-eth0` carries.
    pub bridge_dummy: MacAddr,
}

impl MacSwap {
    pub fn for_pod(real: MacAddr) -> Self {
        Self {
            real,
            eth0_dummy: dummy_mac(real, b"eth0"),
            bridge_dummy: dummy_mac(real, b"br-eth0"),
        }
    }
}

/// A locally administered unicast MAC derived from the pod's real one: the
/// same pod always gets the same dummies, and a dummy never equals the real
/// MAC (a bridge port keeping the real MAC would swallow the VM's frames).
pub fn dummy_mac(real: MacAddr, role: &[u8]) -> MacAddr {
    // FNV-1a over the role and the real MAC: stable across builds.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in role.iter().chain(real.0.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let bytes = hash.to_be_bytes();
    let mut mac = [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
    mac[0] = (mac[0] | 0x02) & !0x01;
    if mac == real.0 {
        mac[5] ^= 0xff;
    }
    MacAddr(mac)
}

/// The guest's network: the pod's global addresses, MTU and every route
/// CNI installed (the kernel's own prefix routes come back by themselves
/// when the guest adds the addresses).
pub fn guest_network(observation: &Observation) -> Result<GuestNetwork, NetError> {
    let mac = observation.link.mac.map(MacAddr).ok_or(NetError::NoMac)?;
    let addresses: Vec<IpPrefix> = observation
        .addresses
        .iter()
        .filter(|a| a.scope == RT_SCOPE_UNIVERSE && !is_link_local(a.ip))
        .map(|a| IpPrefix::new(a.ip, a.prefix_len))
        .collect();
    // The kernel's prefix route for an address, unless the CNI plugin
    // removed it (ptp routes the pod's subnet through the gateway instead):
    // then the guest must add the address without it, or its own route
    // would collide with the pod's.
    let without_prefix_route = addresses
        .iter()
        .filter(|a| {
            let subnet = a.network();
            !observation
                .routes
                .iter()
                .any(|r| r.protocol == RTPROT_KERNEL && r.dst == subnet && r.dst_len == a.len)
        })
        .copied()
        .collect();
    let mut routes: Vec<GuestRoute> = observation
        .routes
        .iter()
        .filter(|r| r.protocol != RTPROT_KERNEL && !is_link_local(r.dst) && !r.dst.is_multicast())
        .map(|r| GuestRoute {
            destination: IpPrefix::new(r.dst, r.dst_len),
            gateway: r.gateway,
            // A gateway outside every prefix is reachable only on-link.
            onlink: r.onlink || r.gateway.is_some_and(|g| needs_onlink(g, &addresses)),
            metric: r.metric,
            source: r.prefsrc,
        })
        .collect();
    // Routes to networks first, so every gateway is reachable when the
    // routes through it are added; default routes last.
    routes.sort_by_key(|r| (r.gateway.is_some(), r.destination.len == 0));
    Ok(GuestNetwork {
        mac,
        mtu: observation.link.mtu,
        addresses,
        without_prefix_route,
        routes,
    })
}

fn needs_onlink(gateway: IpAddr, addresses: &[IpPrefix]) -> bool {
    // IPv6 link-local gateways are always on the link by definition.
    !is_link_local(gateway) && !addresses.iter().any(|a| a.contains(gateway))
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_netlink::route::{RT_SCOPE_LINK, RTPROT_STATIC};

    const BOOT: u8 = 3;

    fn link(mac: [u8; 6], mtu: u32) -> Link {
        Link {
            index: 2,
            name: "eth0".into(),
            mac: Some(mac),
            mtu,
            up: true,
            master: None,
            kind: Some("veth".into()),
            alias: None,
        }
    }

    fn address(ip: &str, len: u8, scope: u8) -> Address {
        Address {
            ip: ip.parse().unwrap(),
            prefix_len: len,
            scope,
            no_prefix_route: false,
        }
    }

    fn route(dst: &str, len: u8, gateway: Option<&str>, onlink: bool, protocol: u8) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            dst_len: len,
            gateway: gateway.map(|g| g.parse().unwrap()),
            onlink,
            scope: if gateway.is_some() {
                RT_SCOPE_UNIVERSE
            } else {
                RT_SCOPE_LINK
            },
            metric: None,
            oif: 2,
            protocol,
            prefsrc: None,
        }
    }

    /// Bridge-style CNI (bridge, flannel, kindnet): a /24 on a node bridge.
    #[test]
    fn bridge_style_pod() {
        let observation = Observation {
            link: link([0x0a, 0x58, 0x0a, 0xf4, 0x00, 0x05], 1500),
            addresses: vec![
                address("10.244.0.5", 24, 0),
                address("fe80::858:aff:fef4:5", 64, RT_SCOPE_LINK),
            ],
            routes: vec![
                route("10.244.0.0", 24, None, false, RTPROT_KERNEL),
                route("0.0.0.0", 0, Some("10.244.0.1"), false, BOOT),
                route("10.96.0.0", 12, Some("10.244.0.1"), false, BOOT),
                route("fe80::", 64, None, false, RTPROT_KERNEL),
            ],
        };
        let guest = guest_network(&observation).unwrap();
        assert_eq!(guest.mac.to_string(), "0a:58:0a:f4:00:05");
        assert_eq!(guest.addresses, vec!["10.244.0.5/24".parse().unwrap()]);
        let routes: Vec<String> = guest
            .routes
            .iter()
            .map(|r| format!("{} {:?} {}", r.destination, r.gateway, r.onlink))
            .collect();
        assert_eq!(
            routes,
            [
                "10.96.0.0/12 Some(10.244.0.1) false".to_owned(),
                "0.0.0.0/0 Some(10.244.0.1) false".to_owned()
            ]
        );
    }

    /// CNI's ptp plugin (kindnet uses it): a /24 whose kernel prefix route
    /// was replaced by one through the gateway, with a preferred source.
    #[test]
    fn ptp_pod_keeps_its_subnet_route_through_the_gateway() {
        let mut via_gateway = route("10.78.0.0", 24, Some("10.78.0.1"), false, BOOT);
        via_gateway.prefsrc = Some("10.78.0.5".parse().unwrap());
        let observation = Observation {
            link: link([0x0a, 0x58, 0x0a, 0x4e, 0x00, 0x05], 1500),
            addresses: vec![address("10.78.0.5", 24, 0)],
            routes: vec![
                route("10.78.0.1", 32, None, false, BOOT),
                via_gateway,
                route("0.0.0.0", 0, Some("10.78.0.1"), false, BOOT),
            ],
        };
        let guest = guest_network(&observation).unwrap();
        assert_eq!(guest.without_prefix_route, vec!["10.78.0.5/24".parse().unwrap()]);
        let routes: Vec<String> = guest
            .routes
            .iter()
            .map(|r| format!("{} {:?} {:?}", r.destination, r.gateway, r.source))
            .collect();
        assert_eq!(
            routes,
            [
                "10.78.0.1/32 None None",
                "10.78.0.0/24 Some(10.78.0.1) Some(10.78.0.5)",
                "0.0.0.0/0 Some(10.78.0.1) None"
            ]
        );
        // A bridge-style pod keeps its prefix route: nothing to leave out.
        let bridged = Observation {
            routes: vec![route("10.78.0.0", 24, None, false, RTPROT_KERNEL)],
            ..observation
        };
        assert!(guest_network(&bridged).unwrap().without_prefix_route.is_empty());
    }

    /// Calico and the AWS VPC CNI: a /32 with an on-link gateway 169.254.1.1.
    #[test]
    fn point_to_point_pod_keeps_the_onlink_gateway() {
        let observation = Observation {
            link: link([0xee, 0xee, 0xee, 0xee, 0xee, 0xee], 1450),
            addresses: vec![address("10.1.2.3", 32, 0), address("fd00:10::3", 128, 0)],
            routes: vec![
                route("169.254.1.1", 32, None, false, BOOT),
                route("0.0.0.0", 0, Some("169.254.1.1"), true, BOOT),
                route("::", 0, Some("fe80::ecee:eeff:feee:eeee"), false, BOOT),
            ],
        };
        let guest = guest_network(&observation).unwrap();
        assert_eq!(guest.mtu, 1450);
        assert_eq!(guest.addresses.len(), 2);
        let default_v4 = guest
            .routes
            .iter()
            .find(|r| r.destination.to_string() == "0.0.0.0/0")
            .unwrap();
        assert!(default_v4.onlink);
        let default_v6 = guest
            .routes
            .iter()
            .find(|r| r.destination.to_string() == "::/0")
            .unwrap();
        assert!(!default_v6.onlink, "a link-local gateway needs no onlink flag");
        assert_eq!(guest.routes[0].destination.to_string(), "169.254.1.1/32");
    }

    #[test]
    fn a_gateway_outside_every_prefix_becomes_onlink() {
        let observation = Observation {
            link: link([2, 0, 0, 0, 0, 1], 1500),
            addresses: vec![address("10.1.2.3", 32, 0)],
            routes: vec![route("0.0.0.0", 0, Some("169.254.1.1"), false, RTPROT_STATIC)],
        };
        assert!(guest_network(&observation).unwrap().routes[0].onlink);
    }

    #[test]
    fn no_mac_is_an_error() {
        let mut observation = Observation {
            link: link([0; 6], 1500),
            addresses: vec![],
            routes: vec![],
        };
        observation.link.mac = None;
        assert!(matches!(guest_network(&observation), Err(NetError::NoMac)));
    }

    #[test]
    fn dummy_macs_are_stable_local_unicast_and_never_the_real_one() {
        for real in [
            [0x0a, 0x58, 0x0a, 0xf4, 0, 5],
            [0xee; 6],
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        ] {
            let real = MacAddr(real);
            let swap = MacSwap::for_pod(real);
            for dummy in [swap.eth0_dummy, swap.bridge_dummy] {
                assert!(dummy.is_locally_administered() && !dummy.is_multicast(), "{dummy}");
                assert_ne!(dummy, real);
            }
            assert_ne!(swap.eth0_dummy, swap.bridge_dummy);
            assert_eq!(swap, MacSwap::for_pod(real));
        }
    }
}
