//! What the VM may send onto the pod network: the nftables rules on
//! `tap-eth0`'s ingress. The guest's root can craft any frame; under runc a
//! restricted pod could not (no `CAP_NET_RAW`). So every frame must carry
//! the VM's MAC and one of its addresses, and the VM may not speak as a
//! router or a DHCP server, nor claim a neighbour's address in neighbour
//! discovery (the CVE-2020-10749 class: rogue Router Advertisements make
//! bridge-style neighbours route through the VM).
//!
//! The rules, in order (the first verdict wins):
//!
//! 1. a source MAC other than the VM's: drop;
//! 2. IPv4: DHCP server replies (UDP from port 67), ICMP Redirects and
//!    Router Advertisements: drop; from one of the VM's addresses: accept;
//!    the rest: drop;
//! 3. ARP naming another MAC or another address as its sender: drop; the
//!    VM's own: accept; the rest: drop;
//! 4. IPv6: DHCPv6 server and relay traffic (UDP from port 547): drop;
//!    ICMPv6 other than errors, echo, MLD reports, Router Solicitations and
//!    neighbour discovery: drop (Router Advertisements, Redirects, MLD
//!    queries, router renumbering and the rest); a Neighbor Advertisement
//!    for an address not the VM's: drop; a Neighbor Solicitation from `::`
//!    (duplicate address detection) for an address not the VM's: drop;
//!    from one of the VM's addresses, its own link-local address (EUI-64
//!    of its MAC, as the guest kernel forms it) or `::`: accept; the rest:
//!    drop;
//! 5. any other EtherType: drop.
//!
//! A fragment after the first carries no transport header, so the ICMPv6
//! type rules cannot see it; receivers ignore fragmented neighbour
//! discovery (RFC 6980), and a first fragment is judged by its type.

use runcvm_netlink::nft::header::{
    ARP_SHA_OFFSET, ARP_SPA_OFFSET, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_SADDR_OFFSET, ICMP_TYPE_OFFSET, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_UDP, IPV4_SADDR_OFFSET, IPV6_SADDR_OFFSET, ND_TARGET_OFFSET, UDP_SPORT_OFFSET,
};
use runcvm_netlink::nft::{Expr, Family, Hook, Table};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The DHCP server's port: what it answers from.
const DHCP_SERVER_PORT: u16 = 67;
/// The DHCPv6 servers' and relay agents' port.
const DHCPV6_SERVER_PORT: u16 = 547;
/// ICMP types a VM has no business sending: Redirect, Router Advertisement.
const ICMP_REDIRECT: u8 = 5;
const ICMP_ROUTER_ADVERTISEMENT: u8 = 9;
const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// The ICMPv6 a host sends: errors (1-4), echo (128, 129), MLD reports
/// (131, 132, 143), Router Solicitation (133) and neighbour discovery (135,
/// 136). Routers' messages (Router Advertisement 134, Redirect 137,
/// renumbering 138) and MLD queries (130) are not among them.
const ICMPV6_HOST_TYPES: [u8; 12] = [1, 2, 3, 4, 128, 129, 131, 132, 133, 135, 136, 143];

/// Who the VM is on the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmIdentity {
    pub mac: [u8; 6],
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

impl VmIdentity {
    /// The link-local address the guest kernel forms from its MAC (EUI-64,
    /// `addr_gen_mode` 0, the default).
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }

    /// Every IPv6 address the VM may speak for: its own and its link-local.
    fn own_ipv6(&self) -> Vec<Ipv6Addr> {
        let mut own = self.ipv6.clone();
        own.push(self.link_local());
        own
    }
}

/// The table on `device`'s ingress (see the module docs).
pub fn vm_source_filter(table: &str, device: &str, vm: &VmIdentity) -> Table {
    let mut rules = vec![vec![
        Expr::LinkPayload {
            offset: ETH_SADDR_OFFSET,
            len: 6,
        },
        Expr::CmpNeq(vm.mac.to_vec()),
        Expr::Drop,
    ]];
    rules.extend(ipv4_rules(vm));
    rules.extend(arp_rules(vm));
    rules.extend(ipv6_rules(vm));
    rules.push(vec![Expr::Drop]);
    Table {
        family: Family::Netdev,
        name: table.to_owned(),
        hook: Hook::Ingress {
            device: device.to_owned(),
        },
        rules,
    }
}

fn protocol(ether_type: u16) -> Vec<Expr> {
    vec![Expr::MetaProtocol, Expr::CmpEq(ether_type.to_be_bytes().to_vec())]
}

/// `ether_type` and the transport protocol `l4`.
fn transport(ether_type: u16, l4: u8) -> Vec<Expr> {
    let mut rule = protocol(ether_type);
    rule.extend([Expr::MetaL4proto, Expr::CmpEq(vec![l4])]);
    rule
}

fn with(mut rule: Vec<Expr>, more: impl IntoIterator<Item = Expr>) -> Vec<Expr> {
    rule.extend(more);
    rule
}

/// Accepts `ether_type` from each address at `offset`, then drops the rest
/// of it.
fn only_from(ether_type: u16, offset: u32, addresses: &[Vec<u8>]) -> Vec<Vec<Expr>> {
    let mut rules: Vec<Vec<Expr>> = addresses
        .iter()
        .map(|address| {
            let len = u32::try_from(address.len()).expect("an address is short");
            with(
                protocol(ether_type),
                [
                    Expr::NetworkPayload { offset, len },
                    Expr::CmpEq(address.clone()),
                    Expr::Accept,
                ],
            )
        })
        .collect();
    rules.push(with(protocol(ether_type), [Expr::Drop]));
    rules
}

fn icmp_type() -> Expr {
    Expr::TransportPayload {
        offset: ICMP_TYPE_OFFSET,
        len: 1,
    }
}

fn ipv4_rules(vm: &VmIdentity) -> Vec<Vec<Expr>> {
    let mut rules = vec![with(
        transport(ETH_P_IP, IPPROTO_UDP),
        [
            Expr::TransportPayload {
                offset: UDP_SPORT_OFFSET,
                len: 2,
            },
            Expr::CmpEq(DHCP_SERVER_PORT.to_be_bytes().to_vec()),
            Expr::Drop,
        ],
    )];
    for kind in [ICMP_REDIRECT, ICMP_ROUTER_ADVERTISEMENT] {
        rules.push(with(
            transport(ETH_P_IP, IPPROTO_ICMP),
            [icmp_type(), Expr::CmpEq(vec![kind]), Expr::Drop],
        ));
    }
    let own: Vec<Vec<u8>> = vm.ipv4.iter().map(|a| a.octets().to_vec()).collect();
    rules.extend(only_from(ETH_P_IP, IPV4_SADDR_OFFSET, &own));
    rules
}

fn arp_rules(vm: &VmIdentity) -> Vec<Vec<Expr>> {
    let mut rules = vec![with(
        protocol(ETH_P_ARP),
        [
            Expr::NetworkPayload {
                offset: ARP_SHA_OFFSET,
                len: 6,
            },
            Expr::CmpNeq(vm.mac.to_vec()),
            Expr::Drop,
        ],
    )];
    let own: Vec<Vec<u8>> = vm.ipv4.iter().map(|a| a.octets().to_vec()).collect();
    rules.extend(only_from(ETH_P_ARP, ARP_SPA_OFFSET, &own));
    rules
}

fn ipv6_rules(vm: &VmIdentity) -> Vec<Vec<Expr>> {
    let own = vm.own_ipv6();
    let not_own_target = || {
        let mut exprs = vec![Expr::TransportPayload {
            offset: ND_TARGET_OFFSET,
            len: 16,
        }];
        exprs.extend(own.iter().map(|a| Expr::CmpNeq(a.octets().to_vec())));
        exprs.push(Expr::Drop);
        exprs
    };
    let mut host_types = vec![icmp_type()];
    host_types.extend(ICMPV6_HOST_TYPES.iter().map(|t| Expr::CmpNeq(vec![*t])));
    host_types.push(Expr::Drop);
    let mut rules = vec![
        with(
            transport(ETH_P_IPV6, IPPROTO_UDP),
            [
                Expr::TransportPayload {
                    offset: UDP_SPORT_OFFSET,
                    len: 2,
                },
                Expr::CmpEq(DHCPV6_SERVER_PORT.to_be_bytes().to_vec()),
                Expr::Drop,
            ],
        ),
        with(transport(ETH_P_IPV6, IPPROTO_ICMPV6), host_types),
        with(
            with(
                transport(ETH_P_IPV6, IPPROTO_ICMPV6),
                [icmp_type(), Expr::CmpEq(vec![ICMPV6_NEIGHBOR_ADVERTISEMENT])],
            ),
            not_own_target(),
        ),
        with(
            with(
                transport(ETH_P_IPV6, IPPROTO_ICMPV6),
                [
                    Expr::NetworkPayload {
                        offset: IPV6_SADDR_OFFSET,
                        len: 16,
                    },
                    Expr::CmpEq(Ipv6Addr::UNSPECIFIED.octets().to_vec()),
                    icmp_type(),
                    Expr::CmpEq(vec![ICMPV6_NEIGHBOR_SOLICITATION]),
                ],
            ),
            not_own_target(),
        ),
    ];
    let mut sources: Vec<Vec<u8>> = own.iter().map(|a| a.octets().to_vec()).collect();
    sources.push(Ipv6Addr::UNSPECIFIED.octets().to_vec());
    rules.extend(only_from(ETH_P_IPV6, IPV6_SADDR_OFFSET, &sources));
    rules
}

#[cfg(test)]
mod tests;
