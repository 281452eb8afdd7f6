//! rtnetlink: the links, addresses and routes runcvm reads and changes.
//!
//! [`RouteNetlink`] is the narrow interface the network code is written
//! against, so its logic is unit-tested with a fake; [`NetlinkSocket`]
//! implements it for real.

use crate::message::{self, MessageBuilder, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, as_string, as_u32, attributes};
use crate::socket::{CHANGE, DUMP, NETLINK_ROUTE, NetlinkError, NetlinkSocket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_IFALIAS: u16 = 20;
const IFLA_PROTINFO: u16 = 12;
const IFLA_BRPORT_LEARNING: u16 = 8;
const IFLA_BRPORT_FLUSH: u16 = 24;
const AF_BRIDGE: u8 = 7;
const IFF_UP: u32 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// Skip duplicate address detection: the guest's address is the pod's own.
const IFA_F_NODAD: u8 = 0x02;
const IFA_FLAGS: u16 = 8;
/// The kernel adds no prefix route for the address.
const IFA_F_NOPREFIXROUTE: u32 = 0x200;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RTNH_F_ONLINK: u32 = 4;
pub const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_MAIN_U8: u8 = 254;
pub const RTPROT_KERNEL: u8 = 2;
pub const RTPROT_STATIC: u8 = 4;
pub const RTN_UNICAST: u8 = 1;
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_HOST: u8 = 254;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    /// The bridge (or bond) it is a port of.
    pub master: Option<u32>,
    /// `bridge`, `veth`, `tun`, ... (`None` for plain devices).
    pub kind: Option<String>,
    pub alias: Option<String>,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub scope: u8,
    /// Added without the prefix route the kernel would add with it
    /// (`noprefixroute`), as CNI's ptp plugin leaves a pod's address.
    pub no_prefix_route: bool,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Destination and prefix length; prefix 0 is the default route.
    pub dst: IpAddr,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    /// The gateway is reachable on the link even outside every prefix.
    pub onlink: bool,
    pub scope: u8,
    pub metric: Option<u32>,
    /// The interface it leaves by.
    pub oif: u32,
    /// Who made it: [`RTPROT_KERNEL`] for prefix routes the kernel adds
    /// itself with an address, [`RTPROT_STATIC`] for runcvm's.
    pub protocol: u8,
    /// The source address it prefers (`src`).
    pub prefsrc: Option<IpAddr>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst_len == 0
    }
}

/// What to change on a link; `None` leaves a property alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// `Some(0)` takes the link out of its bridge.
    pub master: Option<u32>,
    pub alias: Option<String>,
}

impl LinkChange {
    /// In `ip link set` words, for error messages.
    pub fn describe(&self) -> String {
        let mut words = Vec::new();
        if let Some(mac) = self.mac {
            words.push(format!("address {}", format_mac(&mac)));
        }
        if let Some(mtu) = self.mtu {
            words.push(format!("mtu {mtu}"));
        }
        match self.master {
            Some(0) => words.push("nomaster".to_owned()),
            Some(index) => words.push(format!("master (index {index})")),
            None => {}
        }
        if let Some(alias) = &self.alias {
            words.push(format!("alias {alias:?}"));
        }
        match self.up {
            Some(true) => words.push("up".to_owned()),
            Some(false) => words.push("down".to_owned()),
            None => {}
        }
        words.join(" ")
    }
}

/// The rtnetlink operations runcvm uses.
pub trait RouteNetlink {
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError>;
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// Addresses of one link, both families.
    fn addresses(&mut self, index: u32) -> Result<Vec<Address>, NetlinkError>;
    /// Unicast routes of the main table leaving by one link, both families.
    fn routes(&mut self, index: u32) -> Result<Vec<Route>, NetlinkError>;
    fn create_bridge(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<(), NetlinkError>;
    fn change_link(&mut self, link: &Link, change: &LinkChange) -> Result<(), NetlinkError>;
    fn add_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError>;
    fn delete_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError>;
    fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError>;
    /// Stops a bridge port learning where MACs are, and forgets what it
    /// learned (`bridge link set dev PORT learning off` plus a flush).
    fn stop_port_learning(&mut self, port: &Link) -> Result<(), NetlinkError>;
}

impl NetlinkSocket {
    /// A socket for rtnetlink in the calling thread's network namespace.
    pub fn route() -> Result<Self, NetlinkError> {
        Self::open(NETLINK_ROUTE)
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[4..8].copy_from_slice(&index.to_ne_bytes());
    header[8..12].copy_from_slice(&flags.to_ne_bytes());
    header[12..16].copy_from_slice(&change.to_ne_bytes());
    header
}

fn family_of(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn parse_ip(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes.get(..4)?).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.get(..16)?).ok()?))),
        _ => None,
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = payload.get(..16)?;
    let index = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let flags = u32::from_ne_bytes(header[8..12].try_into().ok()?);
    let mut link = Link {
        index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: flags & IFF_UP != 0,
        master: None,
        kind: None,
        alias: None,
    };
    for (kind, value) in attributes(&payload[16..]) {
        match kind {
            IFLA_IFNAME => link.name = as_string(value),
            IFLA_ADDRESS => link.mac = value.try_into().ok(),
            IFLA_MTU => link.mtu = as_u32(value)?,
            IFLA_MASTER => link.master = as_u32(value).filter(|m| *m != 0),
            IFLA_IFALIAS => link.alias = Some(as_string(value)).filter(|a| !a.is_empty()),
            IFLA_LINKINFO => link.kind = message::find_attribute(value, IFLA_INFO_KIND).map(as_string),
            _ => {}
        }
    }
    Some(link)
}

fn parse_address(payload: &[u8]) -> Option<(u32, Address)> {
    let header = payload.get(..8)?;
    let family = header[0];
    let index = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let attrs = &payload[8..];
    // IFA_LOCAL is the interface's own address on point-to-point links.
    let raw = message::find_attribute(attrs, IFA_LOCAL).or_else(|| message::find_attribute(attrs, IFA_ADDRESS))?;
    let flags = message::find_attribute(attrs, IFA_FLAGS)
        .and_then(as_u32)
        .unwrap_or(u32::from(header[2]));
    Some((
        index,
        Address {
            ip: parse_ip(family, raw)?,
            prefix_len: header[1],
            scope: header[3],
            no_prefix_route: flags & IFA_F_NOPREFIXROUTE != 0,
        },
    ))
}

fn parse_route(payload: &[u8]) -> Option<(u8, u32, Route)> {
    let header = payload.get(..12)?;
    let family = header[0];
    let mut table = u32::from(header[4]);
    let route_type = header[7];
    let flags = u32::from_ne_bytes(header[8..12].try_into().ok()?);
    let unspecified = if family == AF_INET {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let mut route = Route {
        dst: unspecified,
        dst_len: header[1],
        gateway: None,
        onlink: flags & RTNH_F_ONLINK != 0,
        scope: header[6],
        metric: None,
        oif: 0,
        protocol: header[5],
        prefsrc: None,
    };
    for (kind, value) in attributes(&payload[12..]) {
        match kind {
            RTA_DST => route.dst = parse_ip(family, value)?,
            RTA_GATEWAY => route.gateway = parse_ip(family, value),
            RTA_OIF => route.oif = as_u32(value)?,
            RTA_PRIORITY => route.metric = as_u32(value),
            RTA_PREFSRC => route.prefsrc = parse_ip(family, value),
            RTA_TABLE => table = as_u32(value)?,
            _ => {}
        }
    }
    Some((route_type, table, route))
}

impl RouteNetlink for NetlinkSocket {
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let op = format!("read link {name}");
        let request = MessageBuilder::new(RTM_GETLINK, NLM_F_REQUEST)
            .header(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, name);
        match self.get(&op, request) {
            Ok(replies) => Ok(replies.first().and_then(|m| parse_link(&m.payload))),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let request = MessageBuilder::new(RTM_GETLINK, DUMP).header(&ifinfomsg(0, 0, 0));
        let replies = self.dump("list links", request)?;
        Ok(replies
            .iter()
            .filter(|m| m.kind == RTM_NEWLINK)
            .filter_map(|m| parse_link(&m.payload))
            .collect())
    }

    fn addresses(&mut self, index: u32) -> Result<Vec<Address>, NetlinkError> {
        let mut found = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let request = MessageBuilder::new(RTM_GETADDR, DUMP).header(&[family, 0, 0, 0, 0, 0, 0, 0]);
            for reply in self.dump("list addresses", request)? {
                if let Some((owner, address)) = parse_address(&reply.payload) {
                    if owner == index && reply.kind == RTM_NEWADDR {
                        found.push(address);
                    }
                }
            }
        }
        Ok(found)
    }

    fn routes(&mut self, index: u32) -> Result<Vec<Route>, NetlinkError> {
        let mut found = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let request = MessageBuilder::new(RTM_GETROUTE, DUMP).header(&[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for reply in self.dump("list routes", request)? {
                if let Some((route_type, table, route)) = parse_route(&reply.payload) {
                    if route.oif == index && table == RT_TABLE_MAIN && route_type == RTN_UNICAST {
                        found.push(route);
                    }
                }
            }
        }
        Ok(found)
    }

    fn create_bridge(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<(), NetlinkError> {
        let request = MessageBuilder::new(RTM_NEWLINK, CHANGE | NLM_F_CREATE | NLM_F_EXCL)
            .header(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, name)
            .attr(IFLA_ADDRESS, &mac)
            .attr_u32(IFLA_MTU, mtu)
            .begin_nested(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "bridge")
            .end_nested();
        self.change(&format!("create bridge {name}"), request)
    }

    fn change_link(&mut self, link: &Link, change: &LinkChange) -> Result<(), NetlinkError> {
        let (flags, mask) = match change.up {
            Some(true) => (IFF_UP, IFF_UP),
            Some(false) => (0, IFF_UP),
            None => (0, 0),
        };
        let mut request = MessageBuilder::new(RTM_NEWLINK, CHANGE).header(&ifinfomsg(link.index, flags, mask));
        if let Some(mac) = change.mac {
            request = request.attr(IFLA_ADDRESS, &mac);
        }
        if let Some(mtu) = change.mtu {
            request = request.attr_u32(IFLA_MTU, mtu);
        }
        if let Some(master) = change.master {
            request = request.attr_u32(IFLA_MASTER, master);
        }
        if let Some(alias) = &change.alias {
            request = request.attr(IFLA_IFALIAS, alias.as_bytes());
        }
        self.change(&format!("set {} {}", link.name, change.describe()), request)
    }

    fn stop_port_learning(&mut self, port: &Link) -> Result<(), NetlinkError> {
        let request = stop_learning_message(port.index);
        self.change(&format!("set bridge port {} learning off", port.name), request)
    }

    fn add_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError> {
        let request = address_message(RTM_NEWADDR, CHANGE | NLM_F_CREATE | NLM_F_EXCL, index, address);
        self.change(&format!("add address {}/{}", address.ip, address.prefix_len), request)
    }

    fn delete_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError> {
        let request = address_message(RTM_DELADDR, CHANGE, index, address);
        self.change(
            &format!("delete address {}/{}", address.ip, address.prefix_len),
            request,
        )
    }

    fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let family = family_of(&route.dst);
        let flags = if route.onlink { RTNH_F_ONLINK } else { 0 };
        let mut header = vec![
            family,
            route.dst_len,
            0,
            0,
            RT_TABLE_MAIN_U8,
            RTPROT_STATIC,
            route.scope,
            RTN_UNICAST,
        ];
        header.extend_from_slice(&flags.to_ne_bytes());
        let mut request = MessageBuilder::new(RTM_NEWROUTE, CHANGE | NLM_F_CREATE | NLM_F_EXCL).header(&header);
        if route.dst_len > 0 {
            request = request.attr(RTA_DST, &ip_bytes(&route.dst));
        }
        if let Some(gateway) = &route.gateway {
            request = request.attr(RTA_GATEWAY, &ip_bytes(gateway));
        }
        if let Some(metric) = route.metric {
            request = request.attr_u32(RTA_PRIORITY, metric);
        }
        if let Some(source) = &route.prefsrc {
            request = request.attr(RTA_PREFSRC, &ip_bytes(source));
        }
        request = request.attr_u32(RTA_OIF, route.oif);
        let via = route.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.change(&format!("add route {}/{}{via}", route.dst, route.dst_len), request)
    }
}

/// RTM_SETLINK of the bridge family: the port settings travel nested in
/// IFLA_PROTINFO, which the kernel reads only when flagged nested.
fn stop_learning_message(index: u32) -> MessageBuilder {
    let mut header = ifinfomsg(index, 0, 0);
    header[0] = AF_BRIDGE;
    MessageBuilder::new(RTM_SETLINK, CHANGE)
        .header(&header)
        .begin_nested(IFLA_PROTINFO)
        .attr(IFLA_BRPORT_LEARNING, &[0])
        .attr(IFLA_BRPORT_FLUSH, &[])
        .end_nested()
}

fn address_message(kind: u16, flags: u16, index: u32, address: &Address) -> MessageBuilder {
    let family = family_of(&address.ip);
    let nodad = if family == AF_INET6 { IFA_F_NODAD } else { 0 };
    let mut header = vec![family, address.prefix_len, nodad, address.scope];
    header.extend_from_slice(&index.to_ne_bytes());
    let bytes = ip_bytes(&address.ip);
    let message = MessageBuilder::new(kind, flags)
        .header(&header)
        .attr(IFA_LOCAL, &bytes)
        .attr(IFA_ADDRESS, &bytes);
    if address.no_prefix_route {
        // The header's flags byte has no room for it.
        message.attr_u32(IFA_FLAGS, IFA_F_NOPREFIXROUTE | u32::from(nodad))
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_link_reply() {
        let payload = MessageBuilder::new(RTM_NEWLINK, 0)
            .header(&ifinfomsg(7, IFF_UP, 0))
            .attr_str(IFLA_IFNAME, "eth0")
            .attr(IFLA_ADDRESS, &[0x0a, 0x58, 0x0a, 0xf4, 0, 5])
            .attr_u32(IFLA_MTU, 1450)
            .attr_u32(IFLA_MASTER, 3)
            .begin_nested(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end_nested()
            .build(1);
        let link = parse_link(&payload[16..]).unwrap();
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "eth0");
        assert_eq!(format_mac(&link.mac.unwrap()), "0a:58:0a:f4:00:05");
        assert_eq!((link.mtu, link.up, link.master), (1450, true, Some(3)));
        assert_eq!(link.kind.as_deref(), Some("veth"));
    }

    #[test]
    fn parses_routes_with_onlink_gateways() {
        let mut header = vec![AF_INET, 0, 0, 0, 254, 3, RT_SCOPE_UNIVERSE, RTN_UNICAST];
        header.extend_from_slice(&RTNH_F_ONLINK.to_ne_bytes());
        let payload = MessageBuilder::new(RTM_NEWROUTE, 0)
            .header(&header)
            .attr(RTA_GATEWAY, &[169, 254, 1, 1])
            .attr_u32(RTA_OIF, 2)
            .attr_u32(RTA_TABLE, 254)
            .build(1);
        let (kind, table, route) = parse_route(&payload[16..]).unwrap();
        assert_eq!((kind, table), (RTN_UNICAST, RT_TABLE_MAIN));
        assert!(route.is_default() && route.onlink);
        assert_eq!(route.gateway, Some("169.254.1.1".parse().unwrap()));
        assert_eq!(route.oif, 2);
    }

    #[test]
    fn a_port_stops_learning_through_nested_bridge_port_attributes() {
        let msg = stop_learning_message(7).build(1);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), RTM_SETLINK);
        assert_eq!(msg[16], AF_BRIDGE);
        assert_eq!(u32::from_ne_bytes(msg[20..24].try_into().unwrap()), 7);
        let attrs = &msg[32..];
        // IFLA_PROTINFO, flagged nested: 4 + (4 + 1 + 3 padding) + 4 bytes.
        assert_eq!(u16::from_ne_bytes([attrs[0], attrs[1]]), 16);
        assert_eq!(u16::from_ne_bytes([attrs[2], attrs[3]]), IFLA_PROTINFO | 0x8000);
        assert_eq!(&attrs[4..9], &[5, 0, 8, 0, 0], "IFLA_BRPORT_LEARNING = 0");
        assert_eq!(&attrs[12..16], &[4, 0, 24, 0], "IFLA_BRPORT_FLUSH");
    }

    #[test]
    fn v6_addresses_skip_duplicate_detection() {
        let address = Address {
            ip: "fd00::5".parse().unwrap(),
            prefix_len: 64,
            scope: 0,
            no_prefix_route: false,
        };
        let msg = address_message(RTM_NEWADDR, CHANGE, 4, &address).build(1);
        assert_eq!(&msg[16..20], &[AF_INET6, 64, IFA_F_NODAD, 0]);
        let (index, parsed) = parse_address(&msg[16..]).unwrap();
        assert_eq!((index, parsed), (4, address));
    }

    #[test]
    fn an_address_without_its_prefix_route_says_so_in_ifa_flags() {
        let address = Address {
            ip: "10.78.0.5".parse().unwrap(),
            prefix_len: 24,
            scope: 0,
            no_prefix_route: true,
        };
        let msg = address_message(RTM_NEWADDR, CHANGE, 4, &address).build(1);
        let (_, parsed) = parse_address(&msg[16..]).unwrap();
        assert_eq!(parsed, address);
    }
}
