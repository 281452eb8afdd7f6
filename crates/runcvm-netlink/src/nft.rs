//! nf_tables over netlink, as much as runcvm needs: a table with one base
//! chain of rules, such as the bridge-family table that drops what the
//! pod's neighbours send to the host identity ([`bridge_input_drop`]), and
//! the inet-family NAT table that sends the pod's loopback connections to
//! the port-forward listener ([`loopback_redirect`]).
//!
//! The batch is `add table; delete table; add table; add chain; add rules`,
//! applied atomically, so installing it again (a container restart in the
//! same pod) replaces the table instead of failing or duplicating rules.

use crate::message::{MessageBuilder, NLM_F_CREATE, NLM_F_REQUEST};

/// `NLM_F_APPEND` of a new-object request: at the end of the list.
const NLM_F_APPEND: u16 = 0x800;
use crate::socket::{CHANGE, NETLINK_NETFILTER, NetlinkError, NetlinkSocket};
use std::net::Ipv4Addr;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_BRIDGE: u8 = 7;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_IPV6: u8 = 10;
const NF_BR_LOCAL_IN: u32 = 1;
const NF_NETDEV_INGRESS: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
/// `NF_IP_PRI_NAT_DST`: where destination NAT runs.
const NF_IP_PRI_NAT_DST: i32 = -100;
const NFTA_HOOK_DEV: u16 = 3;
const NFT_PAYLOAD_LL_HEADER: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_PROTOCOL: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_SKUID: u32 = 10;
const NFTA_SOCKET_KEY: u16 = 1;
const NFTA_SOCKET_DREG: u16 = 2;
const NFTA_SOCKET_LEVEL: u16 = 3;
const NFT_SOCKET_CGROUPV2: u32 = 3;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_REDIR_REG_PROTO_MIN: u16 = 1;
const NFTA_REDIR_REG_PROTO_MAX: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const IFNAMSIZ: usize = 16;
pub use header::*;

/// Where rules look in a frame: EtherTypes, protocol numbers and header
/// offsets.
pub mod header {
    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_ARP: u16 = 0x0806;
    pub const ETH_P_IPV6: u16 = 0x86dd;
    pub const IPPROTO_ICMP: u8 = 1;
    pub const IPPROTO_TCP: u8 = 6;
    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_ICMPV6: u8 = 58;
    /// The source MAC in the Ethernet header.
    pub const ETH_SADDR_OFFSET: u32 = 6;
    /// Source addresses: IPv4 header, ARP (sender hardware and protocol
    /// address, Ethernet/IPv4), IPv6 header.
    pub const IPV4_SADDR_OFFSET: u32 = 12;
    pub const ARP_SHA_OFFSET: u32 = 8;
    pub const ARP_SPA_OFFSET: u32 = 14;
    pub const IPV6_SADDR_OFFSET: u32 = 8;
    /// IPv4 destination address in the IP header.
    pub const IPV4_DADDR_OFFSET: u32 = 16;
    /// IPv6 destination address in the IPv6 header.
    pub const IPV6_DADDR_OFFSET: u32 = 24;
    /// Target protocol address in an Ethernet/IPv4 ARP packet.
    pub const ARP_TPA_OFFSET: u32 = 24;
    /// A UDP header's source port.
    pub const UDP_SPORT_OFFSET: u32 = 0;
    /// An ICMP or ICMPv6 message's type.
    pub const ICMP_TYPE_OFFSET: u32 = 0;
    /// The target address of an ICMPv6 Neighbor Solicitation or
    /// Advertisement (RFC 4861, 4.3 and 4.4).
    pub const ND_TARGET_OFFSET: u32 = 8;
}

/// A protocol family's tables: the hook numbers differ per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Hooks on a bridge; `input` is what the bridge device itself receives.
    Bridge,
    /// Hooks on one device; `ingress` sees every frame it receives.
    Netdev,
    /// IPv4 and IPv6 together.
    Inet,
}

impl Family {
    /// As `nft` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Netdev => "netdev",
            Self::Inet => "inet",
        }
    }

    fn number(self) -> u8 {
        match self {
            Self::Bridge => NFPROTO_BRIDGE,
            Self::Netdev => NFPROTO_NETDEV,
            Self::Inet => NFPROTO_INET,
        }
    }
}

/// Where a base chain hooks in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// `bridge ... hook input`.
    BridgeInput,
    /// `netdev ... hook ingress device DEV`.
    Ingress { device: String },
    /// `inet ... type nat hook output priority dstnat`: connections this
    /// namespace makes, before routing.
    NatOutput,
    /// `inet ... type filter hook output`: what this namespace sends.
    FilterOutput,
}

impl Hook {
    /// The hook's number, priority and chain type.
    fn chain(&self) -> (u32, i32, &'static str) {
        match self {
            Self::BridgeInput => (NF_BR_LOCAL_IN, 0, "filter"),
            Self::Ingress { .. } => (NF_NETDEV_INGRESS, 0, "filter"),
            Self::NatOutput => (NF_INET_LOCAL_OUT, NF_IP_PRI_NAT_DST, "nat"),
            Self::FilterOutput => (NF_INET_LOCAL_OUT, 0, "filter"),
        }
    }
}

/// One expression of a rule; registers are implicit (every load goes to
/// register 1, every comparison reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `iifname`, compared as a NUL-padded 16-byte name.
    MetaIifname,
    /// `meta protocol` (the EtherType, network byte order).
    MetaProtocol,
    /// `meta nfproto`: IPv4 or IPv6, in an inet table (one byte).
    MetaNfproto,
    /// `meta l4proto`: the transport protocol (one byte).
    MetaL4proto,
    /// `meta skuid`: the uid owning the sending socket (four bytes, host
    /// order); a packet without a socket matches no comparison.
    MetaSkuid,
    /// `socket cgroupv2 level LEVEL`: the id (eight bytes, host order) of
    /// the sending socket's cgroup v2 ancestor at `level` below the root; a
    /// socket whose cgroup is not that deep (the kernel's own, made in the
    /// root cgroup) breaks the rule: it matches nothing.
    SocketCgroupv2 {
        level: u32,
    },
    /// Bytes of the link-layer header (`ether saddr` is offset 6, length 6).
    LinkPayload {
        offset: u32,
        len: u32,
    },
    /// Bytes of the network header.
    NetworkPayload {
        offset: u32,
        len: u32,
    },
    /// Bytes of the transport header (found past IPv6 extension headers);
    /// a packet without one, or a fragment after the first, breaks the
    /// rule: it matches nothing.
    TransportPayload {
        offset: u32,
        len: u32,
    },
    CmpEq(Vec<u8>),
    CmpNeq(Vec<u8>),
    /// Loads these bytes into register 1.
    Immediate(Vec<u8>),
    /// `redirect to :PORT`, the port (two bytes, network order) in
    /// register 1.
    RedirectToPort,
    Drop,
    Accept,
}

impl Expr {
    /// Compares register 1 with an interface name.
    pub fn ifname_eq(name: &str) -> Self {
        let mut padded = [0u8; IFNAMSIZ];
        let len = name.len().min(IFNAMSIZ - 1);
        padded[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self::CmpEq(padded.to_vec())
    }

    fn append(&self, builder: MessageBuilder) -> MessageBuilder {
        match self {
            Self::MetaIifname => meta(builder, NFT_META_IIFNAME),
            Self::MetaProtocol => meta(builder, NFT_META_PROTOCOL),
            Self::MetaNfproto => meta(builder, NFT_META_NFPROTO),
            Self::MetaL4proto => meta(builder, NFT_META_L4PROTO),
            Self::MetaSkuid => meta(builder, NFT_META_SKUID),
            Self::SocketCgroupv2 { level } => expression(builder, "socket", |b| {
                b.attr_be32(NFTA_SOCKET_KEY, NFT_SOCKET_CGROUPV2)
                    .attr_be32(NFTA_SOCKET_DREG, NFT_REG_1)
                    .attr_be32(NFTA_SOCKET_LEVEL, *level)
            }),
            Self::Immediate(data) => expression(builder, "immediate", |b| {
                b.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_1)
                    .begin_nested(NFTA_IMMEDIATE_DATA)
                    .attr(NFTA_DATA_VALUE, data)
                    .end_nested()
            }),
            Self::RedirectToPort => expression(builder, "redir", |b| {
                b.attr_be32(NFTA_REDIR_REG_PROTO_MIN, NFT_REG_1)
                    .attr_be32(NFTA_REDIR_REG_PROTO_MAX, NFT_REG_1)
            }),
            Self::LinkPayload { offset, len } => payload(builder, NFT_PAYLOAD_LL_HEADER, *offset, *len),
            Self::NetworkPayload { offset, len } => payload(builder, NFT_PAYLOAD_NETWORK_HEADER, *offset, *len),
            Self::TransportPayload { offset, len } => payload(builder, NFT_PAYLOAD_TRANSPORT_HEADER, *offset, *len),
            Self::CmpEq(data) => cmp(builder, NFT_CMP_EQ, data),
            Self::CmpNeq(data) => cmp(builder, NFT_CMP_NEQ, data),
            Self::Drop => verdict(builder, NF_DROP),
            Self::Accept => verdict(builder, NF_ACCEPT),
        }
    }
}

/// One table with one base chain and its rules, installed atomically and
/// replacing any table of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub hook: Hook,
    pub rules: Vec<Vec<Expr>>,
}

const CHAIN: &str = "filter";

impl Table {
    /// The whole batch, in order, each message with whether it wants an ack:
    /// `add table; delete table; add table; add chain; add rule...`.
    pub fn batch(&self) -> Vec<(MessageBuilder, bool)> {
        let family = self.family.number();
        let marker = |kind| MessageBuilder::new(kind, NLM_F_REQUEST).header(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        let table = |kind, flags| nft_message(family, kind, flags).attr_str(NFTA_TABLE_NAME, &self.name);
        let (hooknum, priority, chain_type) = self.hook.chain();
        let mut chain = nft_message(family, NFT_MSG_NEWCHAIN, CHANGE | NLM_F_CREATE)
            .attr_str(NFTA_CHAIN_TABLE, &self.name)
            .attr_str(NFTA_CHAIN_NAME, CHAIN)
            .begin_nested(NFTA_CHAIN_HOOK)
            .attr_be32(NFTA_HOOK_HOOKNUM, hooknum)
            .attr_be32(NFTA_HOOK_PRIORITY, u32::from_be_bytes(priority.to_be_bytes()));
        if let Hook::Ingress { device } = &self.hook {
            chain = chain.attr_str(NFTA_HOOK_DEV, device);
        }
        let chain = chain.end_nested().attr_str(NFTA_CHAIN_TYPE, chain_type);
        let mut messages = vec![
            (marker(NFNL_MSG_BATCH_BEGIN), false),
            (table(NFT_MSG_NEWTABLE, CHANGE | NLM_F_CREATE), true),
            (table(NFT_MSG_DELTABLE, CHANGE), true),
            (table(NFT_MSG_NEWTABLE, CHANGE | NLM_F_CREATE), true),
            (chain, true),
        ];
        for expressions in &self.rules {
            // Appended, so the rules run in the order given (without
            // NLM_F_APPEND each new rule goes first).
            let mut rule = nft_message(family, NFT_MSG_NEWRULE, CHANGE | NLM_F_CREATE | NLM_F_APPEND)
                .attr_str(NFTA_RULE_TABLE, &self.name)
                .attr_str(NFTA_RULE_CHAIN, CHAIN)
                .begin_nested(NFTA_RULE_EXPRESSIONS);
            for expression in expressions {
                rule = expression.append(rule);
            }
            messages.push((rule.end_nested(), true));
        }
        messages.push((marker(NFNL_MSG_BATCH_END), false));
        messages
    }

    /// Installs (or replaces) the table in the calling thread's namespace.
    pub fn install(&self) -> Result<(), NetlinkError> {
        let mut socket = NetlinkSocket::open(NETLINK_NETFILTER)?;
        socket.batch(
            &format!("install nftables table {} {}", self.family.name(), self.name),
            self.batch(),
        )
    }

    /// Removes the table, if it is there.
    pub fn remove(&self) -> Result<(), NetlinkError> {
        let mut socket = NetlinkSocket::open(NETLINK_NETFILTER)?;
        let family = self.family.number();
        let marker = |kind| MessageBuilder::new(kind, NLM_F_REQUEST).header(&nfgenmsg(0, NFNL_SUBSYS_NFTABLES));
        let table = |kind, flags| nft_message(family, kind, flags).attr_str(NFTA_TABLE_NAME, &self.name);
        let batch = vec![
            (marker(NFNL_MSG_BATCH_BEGIN), false),
            (table(NFT_MSG_NEWTABLE, CHANGE | NLM_F_CREATE), true),
            (table(NFT_MSG_DELTABLE, CHANGE), true),
            (marker(NFNL_MSG_BATCH_END), false),
        ];
        socket.batch(
            &format!("remove nftables table {} {}", self.family.name(), self.name),
            batch,
        )
    }
}

/// The rule pair that keeps `port`'s side of a bridge away from `ip`: IPv4
/// packets to it and ARP requests for it are dropped.
pub fn bridge_input_drop(table: &str, port: &str, ip: Ipv4Addr) -> Table {
    let rule = |protocol: u16, offset| {
        vec![
            Expr::MetaIifname,
            Expr::ifname_eq(port),
            Expr::MetaProtocol,
            Expr::CmpEq(protocol.to_be_bytes().to_vec()),
            Expr::NetworkPayload { offset, len: 4 },
            Expr::CmpEq(ip.octets().to_vec()),
            Expr::Drop,
        ]
    };
    Table {
        family: Family::Bridge,
        name: table.to_owned(),
        hook: Hook::BridgeInput,
        rules: vec![rule(ETH_P_IP, IPV4_DADDR_OFFSET), rule(ETH_P_ARP, ARP_TPA_OFFSET)],
    }
}

/// Connections this namespace makes to its loopback (127.0.0.0/8, ::1),
/// over TCP, go to `port` on the loopback instead, where their original
/// destination can still be read (`SO_ORIGINAL_DST`).
pub fn loopback_redirect(table: &str, port: u16) -> Table {
    let rule = |nfproto: u8, offset: u32, address: &[u8]| {
        let len = u32::try_from(address.len()).expect("an address is short");
        vec![
            Expr::MetaNfproto,
            Expr::CmpEq(vec![nfproto]),
            Expr::MetaL4proto,
            Expr::CmpEq(vec![IPPROTO_TCP]),
            Expr::NetworkPayload { offset, len },
            Expr::CmpEq(address.to_vec()),
            Expr::Immediate(port.to_be_bytes().to_vec()),
            Expr::RedirectToPort,
        ]
    };
    Table {
        family: Family::Inet,
        name: table.to_owned(),
        hook: Hook::NatOutput,
        rules: vec![
            // 127.0.0.0/8: the first byte is enough.
            rule(NFPROTO_IPV4, IPV4_DADDR_OFFSET, &[127]),
            rule(NFPROTO_IPV6, IPV6_DADDR_OFFSET, &std::net::Ipv6Addr::LOCALHOST.octets()),
        ],
    }
}

/// Only the guest's kernel and root outside the containers may send to
/// `ip`: inside a guest, the launcher's and the proxies' services on the
/// host identity are for the guest's kernel (its NFS client, whose sockets
/// its workers make in the root cgroup), not for the pod. Two rules: what a
/// socket in `containers_cgroup` (the cgroup v2 id of the folder holding
/// every container's cgroup, one level below the root) sends there is
/// dropped, root's included, so that one container cannot speak NFS to a
/// sibling's servers; and what a socket of any uid but 0 sends there is
/// dropped, whatever source ports a pod's sysctl lets other users bind.
pub fn only_the_kernel_sends_to(table: &str, ip: Ipv4Addr, containers_cgroup: Option<u64>) -> Table {
    let to_ip = || {
        vec![
            Expr::MetaNfproto,
            Expr::CmpEq(vec![NFPROTO_IPV4]),
            Expr::NetworkPayload {
                offset: IPV4_DADDR_OFFSET,
                len: 4,
            },
            Expr::CmpEq(ip.octets().to_vec()),
        ]
    };
    let mut rules = Vec::new();
    if let Some(id) = containers_cgroup {
        let mut rule = to_ip();
        rule.extend([
            Expr::SocketCgroupv2 { level: 1 },
            Expr::CmpEq(id.to_ne_bytes().to_vec()),
            Expr::Drop,
        ]);
        rules.push(rule);
    }
    let mut rule = to_ip();
    rule.extend([Expr::MetaSkuid, Expr::CmpNeq(0u32.to_ne_bytes().to_vec()), Expr::Drop]);
    rules.push(rule);
    Table {
        family: Family::Inet,
        name: table.to_owned(),
        hook: Hook::FilterOutput,
        rules,
    }
}

fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let id = res_id.to_be_bytes();
    [family, 0, id[0], id[1]]
}

fn nft_message(family: u8, kind: u16, flags: u16) -> MessageBuilder {
    MessageBuilder::new((NFNL_SUBSYS_NFTABLES << 8) | kind, flags).header(&nfgenmsg(family, 0))
}

fn expression(
    builder: MessageBuilder,
    name: &str,
    body: impl FnOnce(MessageBuilder) -> MessageBuilder,
) -> MessageBuilder {
    let builder = builder
        .begin_nested(NFTA_LIST_ELEM)
        .attr_str(NFTA_EXPR_NAME, name)
        .begin_nested(NFTA_EXPR_DATA);
    body(builder).end_nested().end_nested()
}

fn meta(builder: MessageBuilder, key: u32) -> MessageBuilder {
    expression(builder, "meta", |b| {
        b.attr_be32(NFTA_META_DREG, NFT_REG_1).attr_be32(NFTA_META_KEY, key)
    })
}

fn payload(builder: MessageBuilder, base: u32, offset: u32, len: u32) -> MessageBuilder {
    expression(builder, "payload", |b| {
        b.attr_be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
            .attr_be32(NFTA_PAYLOAD_BASE, base)
            .attr_be32(NFTA_PAYLOAD_OFFSET, offset)
            .attr_be32(NFTA_PAYLOAD_LEN, len)
    })
}

fn cmp(builder: MessageBuilder, op: u32, data: &[u8]) -> MessageBuilder {
    expression(builder, "cmp", |b| {
        b.attr_be32(NFTA_CMP_SREG, NFT_REG_1)
            .attr_be32(NFTA_CMP_OP, op)
            .begin_nested(NFTA_CMP_DATA)
            .attr(NFTA_DATA_VALUE, data)
            .end_nested()
    })
}

fn verdict(builder: MessageBuilder, code: u32) -> MessageBuilder {
    expression(builder, "immediate", |b| {
        b.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
            .begin_nested(NFTA_IMMEDIATE_DATA)
            .begin_nested(NFTA_DATA_VERDICT)
            .attr_be32(NFTA_VERDICT_CODE, code)
            .end_nested()
            .end_nested()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{attributes, parse_messages};

    #[test]
    fn the_loopback_redirect_is_an_inet_nat_chain_on_output() {
        let table = loopback_redirect("runcvm-port-forward", 40123);
        let batch = table.batch();
        let chain = parse_messages(&batch[4].0.clone().build(1)).unwrap().remove(0);
        assert_eq!(chain.payload[0], NFPROTO_INET);
        let attrs = &chain.payload[4..];
        let kind = crate::message::find_attribute(attrs, NFTA_CHAIN_TYPE).unwrap();
        assert_eq!(crate::message::as_string(kind), "nat");
        let hook = crate::message::find_attribute(attrs, NFTA_CHAIN_HOOK).unwrap();
        let priority = crate::message::find_attribute(hook, NFTA_HOOK_PRIORITY).unwrap();
        assert_eq!(priority, (-100i32).to_be_bytes());
        let rule = parse_messages(&batch[5].0.clone().build(1)).unwrap().remove(0);
        let expressions = attributes(&rule.payload[4..])
            .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
            .unwrap()
            .1;
        let names: Vec<String> = attributes(expressions)
            .map(|(_, elem)| crate::message::as_string(crate::message::find_attribute(elem, NFTA_EXPR_NAME).unwrap()))
            .collect();
        assert_eq!(
            names,
            ["meta", "cmp", "meta", "cmp", "payload", "cmp", "immediate", "redir"]
        );
        assert!(
            rule.payload.windows(2).any(|w| w == 40123u16.to_be_bytes()),
            "the port, in network order"
        );
    }

    #[test]
    fn only_the_kernel_sends_to_the_host_identity_is_a_filter_on_output() {
        let table = only_the_kernel_sends_to("runcvm-guest", Ipv4Addr::new(169, 254, 1, 254), Some(0x1234));
        assert_eq!((table.family, &table.hook), (Family::Inet, &Hook::FilterOutput));
        assert_eq!(table.rules.len(), 2);
        assert!(table.rules.iter().all(|rule| rule.last() == Some(&Expr::Drop)));
        assert!(table.rules[0].contains(&Expr::SocketCgroupv2 { level: 1 }));
        assert!(table.rules[0].contains(&Expr::CmpEq(0x1234u64.to_ne_bytes().to_vec())));
        assert!(table.rules[1].contains(&Expr::MetaSkuid));
        let batch = table.batch();
        let chain = parse_messages(&batch[4].0.clone().build(1)).unwrap().remove(0);
        let kind = crate::message::find_attribute(&chain.payload[4..], NFTA_CHAIN_TYPE).unwrap();
        assert_eq!(crate::message::as_string(kind), "filter");
        let rule = parse_messages(&batch[5].0.clone().build(1)).unwrap().remove(0);
        let expressions = attributes(&rule.payload[4..])
            .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
            .unwrap()
            .1;
        let socket = attributes(expressions)
            .map(|(_, elem)| elem)
            .find(|elem| {
                crate::message::as_string(crate::message::find_attribute(elem, NFTA_EXPR_NAME).unwrap()) == "socket"
            })
            .expect("a socket expression");
        let data = crate::message::find_attribute(socket, NFTA_EXPR_DATA).unwrap();
        assert_eq!(
            crate::message::find_attribute(data, NFTA_SOCKET_KEY).unwrap(),
            3u32.to_be_bytes()
        );
        assert_eq!(
            crate::message::find_attribute(data, NFTA_SOCKET_LEVEL).unwrap(),
            1u32.to_be_bytes()
        );
        assert_eq!(
            crate::message::find_attribute(data, NFTA_SOCKET_DREG).unwrap(),
            NFT_REG_1.to_be_bytes()
        );
        // The cgroup id is compared whole: all eight bytes.
        assert!(
            table.rules[0]
                .iter()
                .any(|e| matches!(e, Expr::CmpEq(bytes) if bytes.len() == 8))
        );
    }

    #[test]
    fn without_cgroups_only_root_sends_to_the_host_identity() {
        let table = only_the_kernel_sends_to("runcvm-guest", Ipv4Addr::new(169, 254, 1, 254), None);
        assert_eq!(table.rules.len(), 1);
        assert!(table.rules[0].contains(&Expr::MetaSkuid));
    }

    #[test]
    fn batch_is_framed_and_replaces_the_table() {
        let batch = bridge_input_drop("runcvm", "eth0", Ipv4Addr::new(169, 254, 1, 254)).batch();
        let kinds: Vec<u16> = batch
            .iter()
            .map(|(m, _)| parse_messages(&m.clone().build(1)).unwrap()[0].kind & 0xff)
            .collect();
        assert_eq!(kinds, vec![0x10, 0, 2, 0, 3, 6, 6, 0x11]);
        assert!(!batch[0].1 && !batch[7].1, "batch markers want no ack");
        let rule_msg = parse_messages(&batch[5].0.clone().build(1)).unwrap().remove(0);
        // An nf_tables message for the bridge family.
        assert_eq!(rule_msg.kind >> 8, NFNL_SUBSYS_NFTABLES);
        assert_eq!(rule_msg.payload[0], NFPROTO_BRIDGE);
        let expressions = attributes(&rule_msg.payload[4..])
            .find(|(k, _)| *k == NFTA_RULE_EXPRESSIONS)
            .unwrap()
            .1;
        let names: Vec<String> = attributes(expressions)
            .map(|(_, elem)| crate::message::as_string(crate::message::find_attribute(elem, NFTA_EXPR_NAME).unwrap()))
            .collect();
        assert_eq!(names, ["meta", "cmp", "meta", "cmp", "payload", "cmp", "immediate"]);
        let raw = rule_msg.payload.windows(4).any(|w| w == [169, 254, 1, 254]);
        assert!(raw, "the address is compared in network order");
    }
}
