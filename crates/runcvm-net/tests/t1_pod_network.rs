//! T1: the pod network plumbing against simulated pods in network namespaces,
//! without a VM. Root only; run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use runcvm_net::guard::{guard_host_identity, guard_table};
use runcvm_net::{DevNetTun, NetError, TakeOver, TakeOverOptions};
use runcvm_netlink::{Link, NetlinkSocket, RouteNetlink};
use runcvm_spec::net::{BRIDGE_NAME, HOST_IDENTITY_IP, POD_INTERFACE, TAP_NAME};
use runcvm_test_infra::pod_net::POD_MAC;
use runcvm_test_infra::{Netns, PodNet, PodNetOptions, Style, tier};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn take_over(ns: &Netns) -> Result<TakeOver, NetError> {
    ns.enter(|| {
        guard_host_identity()?;
        let mut netlink = NetlinkSocket::route()?;
        let options = TakeOverOptions {
            wait: Duration::from_secs(1),
            swap_macs: true,
        };
        runcvm_net::take_over(&mut netlink, &DevNetTun::default(), options)
    })
}

/// The pod namespace as netlink sees it.
#[derive(Debug)]
struct Seen {
    eth0: Link,
    bridge: Link,
    tap: Link,
    eth0_addresses: Vec<String>,
    bridge_addresses: Vec<String>,
}

fn look(ns: &Netns) -> Seen {
    ns.enter(|| {
        let mut netlink = NetlinkSocket::route().unwrap();
        let mut link = |name| {
            netlink
                .link_by_name(name)
                .unwrap()
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let (eth0, bridge, tap) = (link(POD_INTERFACE), link(BRIDGE_NAME), link(TAP_NAME));
        let mut global = |index| -> Vec<String> {
            netlink
                .addresses(index)
                .unwrap()
                .iter()
                .filter(|a| a.scope == 0)
                .map(|a| format!("{}/{}", a.ip, a.prefix_len))
                .collect()
        };
        let eth0_addresses = global(eth0.index);
        let bridge_addresses = global(bridge.index);
        Seen {
            eth0,
            bridge,
            tap,
            eth0_addresses,
            bridge_addresses,
        }
    })
}

fn assert_plumbed(net: &PodNet, take: &TakeOver) {
    let seen = look(&net.pod);
    assert_eq!(
        seen.bridge_addresses,
        ["169.254.1.254/32"],
        "br-eth0 carries only the host identity"
    );
    assert!(
        seen.eth0_addresses.is_empty(),
        "eth0 keeps no pod address: {:?}",
        seen.eth0_addresses
    );
    assert_eq!(seen.eth0.master, Some(seen.bridge.index));
    assert_eq!(seen.tap.master, Some(seen.bridge.index));
    assert_eq!(seen.tap.kind.as_deref(), Some("tun"));
    assert!(seen.eth0.up && seen.bridge.up && seen.tap.up);
    // Hairpinned broadcasts must not teach br-eth0 that the VM is behind eth0.
    let ports = net
        .pod
        .sh_checked("bridge -d link show dev eth0; bridge -d link show dev tap-eth0");
    let learning: Vec<bool> = ports
        .lines()
        .filter(|l| l.contains("learning "))
        .map(|l| !l.contains("learning off"))
        .collect();
    assert_eq!(learning, [false, true], "eth0 does not learn, tap-eth0 does: {ports}");
    assert_eq!(seen.eth0.mac, Some(take.swap.eth0_dummy.0));
    assert_eq!(seen.bridge.mac, Some(take.swap.bridge_dummy.0));
    assert_ne!(seen.eth0.mac, Some(POD_MAC));
    assert_eq!(take.guest.mac.0, POD_MAC, "the VM gets the pod's real MAC");
    assert_eq!(seen.tap.mtu, net.options.mtu);
    assert_eq!(seen.bridge.mtu, net.options.mtu);
    assert_eq!(take.guest.mtu, net.options.mtu);
    let expected = format!("{}/{}", net.pod_ip, net.pod_prefix_len);
    assert!(
        take.guest.addresses.iter().any(|a| a.to_string() == expected),
        "{:?}",
        take.guest.addresses
    );
    if let Some(ip6) = net.pod_ip6 {
        assert!(
            take.guest.addresses.iter().any(|a| a.ip == ip6),
            "{:?}",
            take.guest.addresses
        );
    }
    let default = take
        .guest
        .routes
        .iter()
        .find(|r| r.destination.to_string() == "0.0.0.0/0")
        .expect("a default route");
    assert_eq!(default.gateway, Some(IpAddr::V4(net.gateway)));
    assert_eq!(default.onlink, net.options.style == Style::PointToPoint);
    assert!(
        seen.bridge
            .alias
            .as_deref()
            .unwrap_or_default()
            .starts_with("runcvm1 mac=0a:58:0a:58:00:05")
    );
}

fn pod(options: PodNetOptions) -> PodNet {
    tier::require_root("T1 (network namespaces)");
    PodNet::build(options)
}

#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn bridge_style_pod_is_taken_over() {
    let net = pod(PodNetOptions::new(Style::Bridge));
    let take = take_over(&net.pod).unwrap();
    assert!(!take.recovered);
    assert_plumbed(&net, &take);
    assert!(take.swap_line().starts_with("MAC swap: eth0 0a:58:0a:58:00:05 -> "));
}

#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn point_to_point_pod_keeps_its_onlink_gateway() {
    let net = pod(PodNetOptions::new(Style::PointToPoint));
    let take = take_over(&net.pod).unwrap();
    assert_plumbed(&net, &take);
}

#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn overlay_mtu_and_dual_stack_carry_over() {
    for style in [Style::Bridge, Style::PointToPoint] {
        let net = pod(PodNetOptions {
            mtu: 1450,
            dual_stack: true,
            ..PodNetOptions::new(style)
        });
        let take = take_over(&net.pod).unwrap();
        assert_plumbed(&net, &take);
        assert!(
            take.guest.routes.iter().any(|r| r.destination.to_string() == "::/0"),
            "{:?}",
            take.guest.routes
        );
    }
}

#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn a_restarted_container_recovers_the_same_identity() {
    let net = pod(PodNetOptions {
        dual_stack: true,
        ..PodNetOptions::new(Style::PointToPoint)
    });
    let first = take_over(&net.pod).unwrap();
    let again = take_over(&net.pod).unwrap();
    assert!(again.recovered);
    assert_eq!(again.guest, first.guest);
    assert_eq!(again.swap, first.swap);
    assert_plumbed(&net, &again);
}

/// A neighbour pod that routes 169.254.1.254 into this pod and pins the
/// bridge's MAC with a static ARP entry still cannot connect; with the
/// guard removed, the same attempt does connect (so the guard is what stops
/// it).
#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn neighbours_cannot_reach_the_host_identity() {
    for style in [Style::Bridge, Style::PointToPoint] {
        let net = pod(PodNetOptions::new(style));
        let take = take_over(&net.pod).unwrap();
        let identity = SocketAddr::new(IpAddr::V4(HOST_IDENTITY_IP), 2049);
        let listener: TcpListener = net.pod.enter(|| TcpListener::bind(identity).unwrap());
        let neighbour_ip = if style == Style::Bridge {
            "10.88.0.6"
        } else {
            "10.88.2.9"
        };
        // Give the pod namespace a way back to the neighbour, as a careless
        // configuration might.
        net.pod.ip(&format!("route add {neighbour_ip}/32 dev {BRIDGE_NAME}"));
        let bridge_mac = take.swap.bridge_dummy.to_string();
        match style {
            Style::Bridge => {
                net.neighbour.ip(&format!("route add {HOST_IDENTITY_IP}/32 dev eth0"));
                net.neighbour.ip(&format!(
                    "neigh add {HOST_IDENTITY_IP} lladdr {bridge_mac} dev eth0 nud permanent"
                ));
            }
            // Routed like the point-to-point pod (ptp's node side is the
            // same: a /32 route per pod on its veth).
            Style::PointToPoint | Style::Ptp => {
                net.node
                    .ip(&format!("route add {HOST_IDENTITY_IP}/32 dev {}", net.node_port));
                net.node.ip(&format!(
                    "neigh add {HOST_IDENTITY_IP} lladdr {bridge_mac} dev {} nud permanent",
                    net.node_port
                ));
            }
        }
        let connect = || {
            net.neighbour
                .enter(|| TcpStream::connect_timeout(&identity, Duration::from_secs(2)))
        };
        assert!(connect().is_err(), "{style:?}: a neighbour reached {identity}");
        net.pod.enter(|| guard_table().remove()).unwrap();
        assert!(
            connect().is_ok(),
            "{style:?}: control: without the guard the neighbour should connect"
        );
        drop(listener);
    }
}

#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn bad_pod_networks_are_named() {
    tier::require_root("T1 (network namespaces)");
    let empty = Netns::create("empty");
    let err = take_over(&empty).unwrap_err().to_string();
    assert!(
        err.contains("no eth0") && err.contains("troubleshooting.md, Pod network"),
        "{err}"
    );

    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    net.pod.ip("addr flush dev eth0");
    let err = take_over(&net.pod).unwrap_err().to_string();
    assert!(err.contains("eth0 has no IP address after 1 s"), "{err}");

    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    net.pod.ip(&format!("link add {BRIDGE_NAME} type bridge"));
    net.pod.ip("link add stray type veth peer name stray-peer");
    net.pod.ip(&format!("link set stray master {BRIDGE_NAME}"));
    let err = take_over(&net.pod).unwrap_err().to_string();
    assert!(
        err.contains("stray") && err.contains("troubleshooting.md, Checking the network state"),
        "{err}"
    );
}

/// `kubectl port-forward` in a runcvm pod: a TCP connection to the pod
/// namespace's loopback, IPv4 or IPv6, on any port, reaches the launcher's
/// one listener, which still reads the port it was for (`SO_ORIGINAL_DST`)
/// and so carries it to that port in the guest.
#[test]
#[ignore = "T1: needs root and network namespaces; run scripts/test.sh"]
fn loopback_connections_reach_one_listener_with_their_port() {
    use nix::sys::socket::{getsockopt, sockopt};
    tier::require_root("T1 (network namespaces)");
    let ns = Netns::create("pf");
    ns.ip("link set lo up");
    ns.enter(|| {
        let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = TcpListener::bind(("::1", port)).unwrap();
        runcvm_netlink::nft::loopback_redirect("runcvm-port-forward", port)
            .install()
            .unwrap();
        let _to_v4 = TcpStream::connect("127.0.0.1:8080").unwrap();
        let (accepted, _) = v4.accept().unwrap();
        let original = getsockopt(&accepted, sockopt::OriginalDst).unwrap();
        assert_eq!(u16::from_be(original.sin_port), 8080);
        let _to_v6 = TcpStream::connect("[::1]:9090").unwrap();
        let (accepted, _) = v6.accept().unwrap();
        let original = getsockopt(&accepted, sockopt::Ip6tOriginalDst).unwrap();
        assert_eq!(u16::from_be(original.sin6_port), 9090);
        // Its own port is its own: connected straight, the port reads back.
        let _direct = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = v4.accept().unwrap();
        let original = getsockopt(&accepted, sockopt::OriginalDst).unwrap();
        assert_eq!(u16::from_be(original.sin_port), port);
    });
}
