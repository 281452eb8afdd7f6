//! The filter's meaning, checked frame by frame with a small interpreter of
//! the rules as the kernel's netdev ingress runs them (T2 checks the real
//! thing against a neighbour's capture).

use super::*;

const VM_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0x58, 0x00, 0x05];
const OTHER_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0x58, 0x00, 0x06];

fn vm() -> VmIdentity {
    VmIdentity {
        mac: VM_MAC,
        ipv4: vec!["10.88.0.5".parse().unwrap()],
        ipv6: vec!["fd00:88::5".parse().unwrap()],
    }
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Drop,
}

/// What the kernel knows of a frame before the rules run: its network
/// header, and for IP its transport protocol, header and fragment offset.
struct Parsed<'a> {
    frame: &'a [u8],
    ether_type: u16,
    l4: Option<(u8, usize, u16)>,
}

fn parse(frame: &[u8]) -> Parsed<'_> {
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[14..];
    let l4 = match ether_type {
        ETH_P_IP => {
            let header = usize::from(ip[0] & 0x0f) * 4;
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            Some((ip[9], 14 + header, fragment))
        }
        ETH_P_IPV6 => {
            let (mut next, mut at, mut fragment) = (ip[6], 40usize, 0u16);
            loop {
                match next {
                    0 | 43 | 60 => {
                        next = ip[at];
                        at += (usize::from(ip[at + 1]) + 1) * 8;
                    }
                    44 => {
                        fragment = u16::from_be_bytes([ip[at + 2], ip[at + 3]]) >> 3;
                        next = ip[at];
                        at += 8;
                    }
                    _ => break,
                }
            }
            Some((next, 14 + at, fragment))
        }
        _ => None,
    };
    Parsed { frame, ether_type, l4 }
}

/// Runs the rules as nf_tables does: a load that cannot be made breaks the
/// rule; the first verdict wins; the chain's policy is accept.
fn verdict(table: &Table, frame: &[u8]) -> Verdict {
    let packet = parse(frame);
    'rules: for rule in &table.rules {
        let mut register: Vec<u8> = Vec::new();
        for expr in rule {
            let load = |start: usize, len: u32| {
                let len = usize::try_from(len).unwrap();
                packet.frame.get(start..start + len).map(<[u8]>::to_vec)
            };
            let loaded = match expr {
                Expr::MetaProtocol => Some(packet.ether_type.to_be_bytes().to_vec()),
                Expr::MetaL4proto => packet.l4.map(|(proto, _, _)| vec![proto]),
                Expr::LinkPayload { offset, len } => load(usize::try_from(*offset).unwrap(), *len),
                Expr::NetworkPayload { offset, len } => load(14 + usize::try_from(*offset).unwrap(), *len),
                Expr::TransportPayload { offset, len } => match packet.l4 {
                    Some((_, start, 0)) => load(start + usize::try_from(*offset).unwrap(), *len),
                    _ => None,
                },
                Expr::CmpEq(data) if register == *data => continue,
                Expr::CmpNeq(data) if register != *data => continue,
                Expr::CmpEq(_) | Expr::CmpNeq(_) => continue 'rules,
                Expr::Accept => return Verdict::Accept,
                Expr::Drop => return Verdict::Drop,
                other => panic!("the interpreter does not know {other:?}"),
            };
            match loaded {
                Some(bytes) => register = bytes,
                None => continue 'rules,
            }
        }
    }
    Verdict::Accept
}

fn ethernet(source: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x33, 0x33, 0, 0, 0, 1];
    frame.extend(source);
    frame.extend(ether_type.to_be_bytes());
    frame.extend(payload);
    frame
}

/// An IPv6 packet; `extension` goes between the header and `payload`
/// (its first byte, the next header, is set here).
fn ipv6(source: Ipv6Addr, next: u8, extension: Option<Vec<u8>>, payload: &[u8]) -> Vec<u8> {
    let (first_next, extension) = match extension {
        Some(mut header) => {
            let kind = header[0];
            header[0] = next;
            (kind, header)
        }
        None => (next, Vec::new()),
    };
    let mut packet = vec![0x60, 0, 0, 0];
    let len = u16::try_from(extension.len() + payload.len()).unwrap();
    packet.extend(len.to_be_bytes());
    packet.extend([first_next, 255]);
    packet.extend(source.octets());
    packet.extend(v6("ff02::1").octets());
    packet.extend(extension);
    packet.extend(payload);
    packet
}

fn icmpv6(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![kind, 0, 0, 0];
    message.extend(body);
    message
}

/// A Neighbor Solicitation or Advertisement for `target`.
fn nd(kind: u8, target: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![0x20, 0, 0, 0];
    body.extend(target.octets());
    icmpv6(kind, &body)
}

fn from_vm_v6(source: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(VM_MAC, ETH_P_IPV6, &ipv6(source, next, None, payload))
}

fn ipv4(source: &str, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let source: Ipv4Addr = source.parse().unwrap();
    let len = u16::try_from(20 + payload.len()).unwrap();
    let mut packet = vec![0x45, 0];
    packet.extend(len.to_be_bytes());
    packet.extend([0, 0, 0, 0, 64, protocol, 0, 0]);
    packet.extend(source.octets());
    packet.extend([10, 88, 0, 6]);
    packet.extend(payload);
    ethernet(VM_MAC, ETH_P_IP, &packet)
}

fn udp(source_port: u16, destination_port: u16) -> Vec<u8> {
    let mut header = source_port.to_be_bytes().to_vec();
    header.extend(destination_port.to_be_bytes());
    header.extend([0, 8, 0, 0]);
    header
}

fn arp(sender_mac: [u8; 6], sender: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0, 1, 8, 0, 6, 4, 0, 2];
    packet.extend(sender_mac);
    packet.extend(sender);
    packet.extend([0; 6]);
    packet.extend([10, 88, 0, 6]);
    ethernet(VM_MAC, ETH_P_ARP, &packet)
}

fn table() -> Table {
    vm_source_filter("runcvm-vm-source", "tap-eth0", &vm())
}

#[test]
fn the_link_local_address_is_the_eui_64_of_the_mac() {
    assert_eq!(vm().link_local(), v6("fe80::858:aff:fe58:5"));
}

#[test]
fn the_vm_speaks_as_a_host_with_its_own_identity() {
    let table = table();
    let link_local = vm().link_local();
    let own = v6("fd00:88::5");
    let neighbour = v6("fd00:88::6");
    for (what, frame) in [
        ("IPv4 from its address", ipv4("10.88.0.5", IPPROTO_UDP, &udp(5353, 53))),
        ("a DHCP client's request", ipv4("10.88.0.5", IPPROTO_UDP, &udp(68, 67))),
        ("ARP for itself", arp(VM_MAC, [10, 88, 0, 5])),
        (
            "echo from its address",
            from_vm_v6(own, IPPROTO_ICMPV6, &icmpv6(128, &[0; 4])),
        ),
        ("an error", from_vm_v6(own, IPPROTO_ICMPV6, &icmpv6(1, &[0; 4]))),
        (
            "address resolution of a neighbour",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &nd(135, neighbour)),
        ),
        ("an answer for itself", from_vm_v6(own, IPPROTO_ICMPV6, &nd(136, own))),
        (
            "an answer for its link-local address",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &nd(136, link_local)),
        ),
        (
            "duplicate address detection of its own",
            from_vm_v6(Ipv6Addr::UNSPECIFIED, IPPROTO_ICMPV6, &nd(135, own)),
        ),
        (
            "an MLD report",
            from_vm_v6(Ipv6Addr::UNSPECIFIED, IPPROTO_ICMPV6, &icmpv6(143, &[0; 4])),
        ),
        (
            "a Router Solicitation",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &icmpv6(133, &[0; 4])),
        ),
        (
            "a DHCPv6 client's request",
            from_vm_v6(link_local, IPPROTO_UDP, &udp(546, 547)),
        ),
    ] {
        assert_eq!(verdict(&table, &frame), Verdict::Accept, "{what}");
    }
}

#[test]
fn routers_servers_and_other_identities_are_dropped() {
    let table = table();
    let link_local = vm().link_local();
    let own = v6("fd00:88::5");
    let neighbour = v6("fd00:88::6");
    let hop_by_hop = Some(vec![0, 0, 5, 2, 0, 0, 1, 0]);
    let first_fragment = Some(vec![44, 0, 0, 1, 0, 0, 0, 7]);
    let mut other_mac = from_vm_v6(own, IPPROTO_ICMPV6, &icmpv6(128, &[0; 4]));
    other_mac[6..12].copy_from_slice(&OTHER_MAC);
    for (what, frame) in [
        ("another MAC", other_mac),
        (
            "a Router Advertisement",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &icmpv6(134, &[0; 12])),
        ),
        (
            "a Router Advertisement behind a hop-by-hop header",
            ethernet(
                VM_MAC,
                ETH_P_IPV6,
                &ipv6(link_local, IPPROTO_ICMPV6, hop_by_hop, &icmpv6(134, &[0; 12])),
            ),
        ),
        (
            "a Router Advertisement in a first fragment",
            ethernet(
                VM_MAC,
                ETH_P_IPV6,
                &ipv6(link_local, IPPROTO_ICMPV6, first_fragment, &icmpv6(134, &[0; 12])),
            ),
        ),
        (
            "a Redirect",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &icmpv6(137, &[0; 36])),
        ),
        (
            "an MLD query",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &icmpv6(130, &[0; 20])),
        ),
        (
            "an answer for a neighbour's address",
            from_vm_v6(link_local, IPPROTO_ICMPV6, &nd(136, neighbour)),
        ),
        (
            "an answer for a neighbour from its own address",
            from_vm_v6(own, IPPROTO_ICMPV6, &nd(136, neighbour)),
        ),
        (
            "duplicate address detection of a neighbour's address",
            from_vm_v6(Ipv6Addr::UNSPECIFIED, IPPROTO_ICMPV6, &nd(135, neighbour)),
        ),
        (
            "another link-local address",
            from_vm_v6(v6("fe80::bad"), IPPROTO_ICMPV6, &icmpv6(128, &[0; 4])),
        ),
        (
            "another global address",
            from_vm_v6(neighbour, IPPROTO_ICMPV6, &icmpv6(128, &[0; 4])),
        ),
        (
            "a DHCPv6 server's reply",
            from_vm_v6(link_local, IPPROTO_UDP, &udp(547, 546)),
        ),
        ("a DHCP server's reply", ipv4("10.88.0.5", IPPROTO_UDP, &udp(67, 68))),
        (
            "an ICMP Redirect",
            ipv4("10.88.0.5", IPPROTO_ICMP, &[5, 1, 0, 0, 10, 88, 0, 5]),
        ),
        (
            "an ICMP Router Advertisement",
            ipv4("10.88.0.5", IPPROTO_ICMP, &[9, 0, 0, 0, 0, 0, 0, 0]),
        ),
        (
            "IPv4 from another address",
            ipv4("10.88.0.6", IPPROTO_UDP, &udp(5353, 53)),
        ),
        ("ARP for another address", arp(VM_MAC, [10, 88, 0, 6])),
        ("ARP naming another MAC", arp(OTHER_MAC, [10, 88, 0, 5])),
        ("another EtherType", ethernet(VM_MAC, 0x88cc, &[0; 20])),
    ] {
        assert_eq!(verdict(&table, &frame), Verdict::Drop, "{what}");
    }
}

#[test]
fn an_ipv4_only_vm_still_has_its_link_local_address() {
    let vm = VmIdentity { ipv6: vec![], ..vm() };
    let table = vm_source_filter("t", "tap-eth0", &vm);
    let solicitation = from_vm_v6(vm.link_local(), IPPROTO_ICMPV6, &nd(135, v6("fe80::1")));
    assert_eq!(verdict(&table, &solicitation), Verdict::Accept);
    let foreign = from_vm_v6(v6("fe80::1"), IPPROTO_ICMPV6, &icmpv6(128, &[0; 4]));
    assert_eq!(verdict(&table, &foreign), Verdict::Drop);
}

#[test]
fn the_table_hooks_tap_eth0s_ingress_and_drops_what_it_does_not_know_last() {
    let table = table();
    assert_eq!(table.family, Family::Netdev);
    assert_eq!(
        table.hook,
        Hook::Ingress {
            device: "tap-eth0".into()
        }
    );
    assert_eq!(table.rules.last(), Some(&vec![Expr::Drop]));
}
