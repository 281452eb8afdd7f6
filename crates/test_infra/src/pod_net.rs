//! A simulated Kubernetes node and pod, built as CNI plugins build them:
//! a "node" namespace, a "pod" namespace joined to it by a veth pair whose
//! pod end is `eth0`, and a "neighbour" pod beside it.
//!
//! - [`Style::Bridge`] (bridge, flannel, kindnet): the node holds a bridge
//!   `cni0` with the gateway 10.88.0.1/24; the pod is 10.88.0.5/24.
//! - [`Style::PointToPoint`] (Calico, AWS VPC CNI): the pod holds 10.88.2.3/32
//!   and a default route `via 169.254.1.1 dev eth0 onlink`; the node-side
//!   veth answers ARP by proxy_arp and routes the /32 to the pod. The node
//!   owns 169.254.1.1 (on lo) so the gateway answers pings, and serves on
//!   10.88.255.1.
//! - [`Style::Ptp`] (CNI's `ptp` plugin, which kindnet uses): the pod holds
//!   10.88.3.5/24, but its kernel prefix route is replaced by routes through
//!   the gateway 10.88.3.1 with the pod's address as source; each node-side
//!   veth holds 10.88.3.1/32 and the node routes the pod's /32 to it.
//!
//! Options add IPv6 (dual stack), a lower MTU, and cloud-style anti-spoofing:
//! the node drops frames from the pod whose source MAC is not the pod's.

use crate::Netns;
use runcvm_netlink::nft::{Expr, Family, Hook, Table};
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bridge,
    PointToPoint,
    Ptp,
}

#[derive(Debug, Clone, Copy)]
pub struct PodNetOptions {
    pub style: Style,
    pub mtu: u32,
    pub dual_stack: bool,
    pub anti_spoof: bool,
}

impl PodNetOptions {
    pub fn new(style: Style) -> Self {
        Self {
            style,
            mtu: 1500,
            dual_stack: false,
            anti_spoof: false,
        }
    }
}

/// The pod's MAC, as a CNI plugin would have set it.
pub const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0x58, 0x00, 0x05];
const NEIGHBOUR_MAC: &str = "0a:58:0a:58:00:06";

#[derive(Debug)]
pub struct PodNet {
    pub options: PodNetOptions,
    pub node: Netns,
    pub pod: Netns,
    pub neighbour: Netns,
    pub pod_ip: Ipv4Addr,
    pub pod_prefix_len: u8,
    pub pod_ip6: Option<IpAddr>,
    /// The pod's default gateway.
    pub gateway: Ipv4Addr,
    /// Where servers in the node namespace listen.
    pub node_ip: Ipv4Addr,
    pub node_ip6: Option<IpAddr>,
    /// The node-side end of the pod's veth.
    pub node_port: &'static str,
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

impl PodNet {
    pub fn build(options: PodNetOptions) -> Self {
        let node = Netns::create("node");
        let pod = Netns::create("pod");
        let neighbour = Netns::create("nbr");
        let mtu = options.mtu;
        node.sh_checked("echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding");
        let net = match options.style {
            Style::Bridge => {
                node.ip(&format!("link add cni0 mtu {mtu} type bridge"));
                node.ip("addr add 10.88.0.1/24 dev cni0");
                node.ip("link set cni0 up");
                for (port, ns, ip, mac) in [
                    ("veth-pod", &pod, "10.88.0.5", mac_text(POD_MAC)),
                    ("veth-nbr", &neighbour, "10.88.0.6", NEIGHBOUR_MAC.to_owned()),
                ] {
                    node.ip(&format!(
                        "link add {port} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {}",
                        ns.name()
                    ));
                    node.ip(&format!("link set {port} master cni0 up"));
                    ns.ip(&format!("link set eth0 address {mac}"));
                    ns.ip(&format!("addr add {ip}/24 dev eth0"));
                    ns.ip("link set eth0 up");
                    ns.ip("route add default via 10.88.0.1 dev eth0");
                }
                if options.dual_stack {
                    node.ip("addr add fd00:88::1/64 dev cni0 nodad");
                    for (ns, ip) in [(&pod, "fd00:88::5"), (&neighbour, "fd00:88::6")] {
                        ns.ip(&format!("addr add {ip}/64 dev eth0 nodad"));
                        ns.ip("route add default via fd00:88::1 dev eth0");
                    }
                }
                Self::finish(
                    options,
                    node,
                    pod,
                    neighbour,
                    ("10.88.0.5", 24, "fd00:88::5"),
                    "10.88.0.1",
                    ("10.88.0.1", "fd00:88::1"),
                    "veth-pod",
                )
            }
            Style::PointToPoint => {
                node.ip("addr add 169.254.1.1/32 dev lo");
                node.ip("addr add 10.88.255.1/32 dev lo");
                if options.dual_stack {
                    node.ip("addr add fd00:88:ff::1/128 dev lo");
                }
                for (port, ns, ip, ip6, mac) in [
                    ("cali-pod", &pod, "10.88.2.3", "fd00:88:2::3", mac_text(POD_MAC)),
                    (
                        "cali-nbr",
                        &neighbour,
                        "10.88.2.9",
                        "fd00:88:2::9",
                        NEIGHBOUR_MAC.to_owned(),
                    ),
                ] {
                    node.ip(&format!(
                        "link add {port} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {}",
                        ns.name()
                    ));
                    node.ip(&format!("link set {port} address ee:ee:ee:ee:ee:ee up"));
                    node.sh_checked(&format!("echo 1 > /proc/sys/net/ipv4/conf/{port}/proxy_arp"));
                    node.ip(&format!("route add {ip}/32 dev {port}"));
                    ns.ip(&format!("link set eth0 address {mac}"));
                    ns.ip(&format!("addr add {ip}/32 dev eth0"));
                    ns.ip("link set eth0 up");
                    ns.ip("route add default via 169.254.1.1 dev eth0 onlink");
                    if options.dual_stack {
                        node.ip(&format!("addr add fe80::1/64 dev {port} nodad"));
                        node.ip(&format!("route add {ip6}/128 dev {port}"));
                        ns.ip(&format!("addr add {ip6}/128 dev eth0 nodad"));
                        ns.ip("route add default via fe80::1 dev eth0");
                    }
                }
                Self::finish(
                    options,
                    node,
                    pod,
                    neighbour,
                    ("10.88.2.3", 32, "fd00:88:2::3"),
                    "169.254.1.1",
                    ("10.88.255.1", "fd00:88:ff::1"),
                    "cali-pod",
                )
            }
            Style::Ptp => {
                node.ip("addr add 10.88.255.1/32 dev lo");
                for (port, ns, ip, mac) in [
                    ("ptp-pod", &pod, "10.88.3.5", mac_text(POD_MAC)),
                    ("ptp-nbr", &neighbour, "10.88.3.9", NEIGHBOUR_MAC.to_owned()),
                ] {
                    node.ip(&format!(
                        "link add {port} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {}",
                        ns.name()
                    ));
                    node.ip(&format!("addr add 10.88.3.1/32 dev {port}"));
                    node.ip(&format!("link set {port} up"));
                    node.ip(&format!("route add {ip}/32 dev {port} src 10.88.3.1"));
                    ns.ip(&format!("link set eth0 address {mac}"));
                    ns.ip(&format!("addr add {ip}/24 dev eth0"));
                    ns.ip("link set eth0 up");
                    // As the plugin does: the kernel's prefix route goes,
                    // the subnet is routed through the gateway.
                    ns.ip("route del 10.88.3.0/24 dev eth0");
                    ns.ip(&format!("route add 10.88.3.1/32 dev eth0 scope link src {ip}"));
                    ns.ip(&format!("route add 10.88.3.0/24 via 10.88.3.1 dev eth0 src {ip}"));
                    ns.ip("route add default via 10.88.3.1 dev eth0");
                }
                Self::finish(
                    options,
                    node,
                    pod,
                    neighbour,
                    ("10.88.3.5", 24, "fd00:88:3::5"),
                    "10.88.3.1",
                    ("10.88.255.1", "fd00:88:ff::1"),
                    "ptp-pod",
                )
            }
        };
        if options.anti_spoof {
            let filter = Table {
                family: Family::Netdev,
                name: "antispoof".into(),
                hook: Hook::Ingress {
                    device: net.node_port.to_owned(),
                },
                rules: vec![vec![
                    Expr::LinkPayload { offset: 6, len: 6 },
                    Expr::CmpNeq(POD_MAC.to_vec()),
                    Expr::Drop,
                ]],
            };
            net.node
                .enter(|| filter.install())
                .expect("install the anti-spoofing filter");
        }
        net
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        options: PodNetOptions,
        node: Netns,
        pod: Netns,
        neighbour: Netns,
        (pod_ip, pod_prefix_len, pod_ip6): (&str, u8, &str),
        gateway: &str,
        (node_ip, node_ip6): (&str, &str),
        node_port: &'static str,
    ) -> Self {
        let v6 = |ip: &str| options.dual_stack.then(|| ip.parse().expect("test address"));
        Self {
            options,
            node,
            pod,
            neighbour,
            pod_ip: pod_ip.parse().expect("test address"),
            pod_prefix_len,
            pod_ip6: v6(pod_ip6),
            gateway: gateway.parse().expect("test address"),
            node_ip: node_ip.parse().expect("test address"),
            node_ip6: v6(node_ip6),
            node_port,
        }
    }
}
