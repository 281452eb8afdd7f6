//! Rewiring the pod's namespace so the VM owns the pod's identity, or, for a
//! restarted container, finding it already rewired and recovering the
//! identity from the bridge's record.

use crate::observe::observe;
use crate::plan::{self, MacSwap};
use crate::{NetError, TapCreator, record};
use runcvm_netlink::route::{LinkChange, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RTPROT_STATIC};
use runcvm_netlink::{Address, Link, Route, RouteNetlink};
use runcvm_spec::GuestNetwork;
use runcvm_spec::net::{BRIDGE_NAME, HOST_IDENTITY_IP, POD_INTERFACE, TAP_NAME};
use std::net::IpAddr;
use std::time::Duration;

/// What the VM gets, and what was done to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    pub guest: GuestNetwork,
    pub swap: MacSwap,
    /// The namespace was already rewired (a container restart in the pod).
    pub recovered: bool,
}

impl TakeOver {
    /// The one line that records the swap (troubleshooting.md, Pod network).
    pub fn swap_line(&self) -> String {
        let swap = &self.swap;
        let addresses: Vec<String> = self.guest.addresses.iter().map(ToString::to_string).collect();
        let owns = addresses.join(", ");
        if !swap_enabled(self) {
            return format!(
                "MAC swap disabled by RUNCVM_MAC_SWAP=off: {POD_INTERFACE} keeps its MAC, VM eth0 (on {TAP_NAME}) -> {}; \
                 the VM owns {owns}",
                self.guest.mac
            );
        }
        let origin = if self.recovered {
            format!(" (recovered from {BRIDGE_NAME})")
        } else {
            String::new()
        };
        format!(
            "MAC swap{origin}: {POD_INTERFACE} {} -> {}, {BRIDGE_NAME} -> {}, VM eth0 (on {TAP_NAME}) -> {}; the VM owns {owns}",
            swap.real, swap.eth0_dummy, swap.bridge_dummy, swap.real,
        )
    }
}

/// How to take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeOverOptions {
    /// How long to wait for CNI to give `eth0` an address.
    pub wait: Duration,
    /// Off only to show why the swap exists: `eth0` keeps the real MAC and
    /// the VM gets a dummy, which networks that filter MACs then drop.
    pub swap_macs: bool,
}

impl Default for TakeOverOptions {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(10),
            swap_macs: true,
        }
    }
}

fn swap_enabled(take: &TakeOver) -> bool {
    take.guest.mac == take.swap.real
}

/// Takes over `eth0`.
pub fn take_over(
    netlink: &mut impl RouteNetlink,
    taps: &impl TapCreator,
    options: TakeOverOptions,
) -> Result<TakeOver, NetError> {
    let mut take = match netlink.link_by_name(BRIDGE_NAME)? {
        Some(bridge) => recover(netlink, taps, &bridge, options.swap_macs)?,
        None => first_start(netlink, taps, options)?,
    };
    if !options.swap_macs {
        take.guest.mac = plan::dummy_mac(take.swap.real, b"vm");
    }
    Ok(take)
}

/// The guest's network as the launcher that took this namespace over
/// recorded it on `br-eth0`; read, nothing touched: what another container
/// of the pod serves its files to. `None`: nothing was taken over here.
pub fn recorded_guest(netlink: &mut impl RouteNetlink) -> Result<Option<GuestNetwork>, NetError> {
    match netlink.link_by_name(BRIDGE_NAME)? {
        Some(bridge) => record::decode(bridge.alias.as_deref().unwrap_or_default()).map(Some),
        None => Ok(None),
    }
}

fn first_start(
    netlink: &mut impl RouteNetlink,
    taps: &impl TapCreator,
    options: TakeOverOptions,
) -> Result<TakeOver, NetError> {
    let observation = observe(netlink, options.wait)?;
    let guest = plan::guest_network(&observation)?;
    // Recorded before anything changes: whatever happens next, a restart
    // finds the identity on the bridge.
    let record = record::encode(&guest)?;
    let swap = MacSwap::for_pod(guest.mac);
    netlink.create_bridge(BRIDGE_NAME, swap.bridge_dummy.0, guest.mtu)?;
    let bridge = require(netlink, BRIDGE_NAME)?;
    netlink.change_link(
        &bridge,
        &LinkChange {
            alias: Some(record),
            ..LinkChange::default()
        },
    )?;
    wire(netlink, taps, &bridge, &swap, &guest, options.swap_macs)?;
    Ok(TakeOver {
        guest,
        swap,
        recovered: false,
    })
}

fn recover(
    netlink: &mut impl RouteNetlink,
    taps: &impl TapCreator,
    bridge: &Link,
    swap_macs: bool,
) -> Result<TakeOver, NetError> {
    let foreign: Vec<String> = netlink
        .links()?
        .into_iter()
        .filter(|l| l.master == Some(bridge.index) && l.name != POD_INTERFACE && l.name != TAP_NAME)
        .map(|l| l.name)
        .collect();
    if !foreign.is_empty() {
        return Err(NetError::ForeignPorts {
            ports: foreign.join(", "),
        });
    }
    let guest = record::decode(bridge.alias.as_deref().unwrap_or_default())?;
    let swap = MacSwap::for_pod(guest.mac);
    wire(netlink, taps, bridge, &swap, &guest, swap_macs)?;
    Ok(TakeOver {
        guest,
        swap,
        recovered: true,
    })
}

/// Brings the namespace to the target state from wherever it is: every step
/// checks before it changes, so a half-done earlier attempt is completed.
fn wire(
    netlink: &mut impl RouteNetlink,
    taps: &impl TapCreator,
    bridge: &Link,
    swap: &MacSwap,
    guest: &GuestNetwork,
    swap_macs: bool,
) -> Result<(), NetError> {
    let identity = Address {
        ip: IpAddr::V4(HOST_IDENTITY_IP),
        prefix_len: 32,
        scope: RT_SCOPE_UNIVERSE,
        no_prefix_route: false,
    };
    if !netlink.addresses(bridge.index)?.iter().any(|a| a.ip == identity.ip) {
        netlink.add_address(bridge.index, &identity)?;
    }
    let mtu = guest.mtu;
    taps.create_persistent(TAP_NAME)
        .map_err(|reason| NetError::Tap { reason })?;
    let tap = require(netlink, TAP_NAME)?;
    netlink.change_link(
        &tap,
        &LinkChange {
            mtu: Some(mtu),
            master: Some(bridge.index),
            up: Some(true),
            ..LinkChange::default()
        },
    )?;

    let eth0 = netlink.link_by_name(POD_INTERFACE)?.ok_or(NetError::NoPodInterface)?;
    // The pod's addresses now live in the guest; the namespace keeps none.
    for address in netlink.addresses(eth0.index)? {
        if address.scope == RT_SCOPE_UNIVERSE {
            netlink.delete_address(eth0.index, &address)?;
        }
    }
    if swap_macs && eth0.mac != Some(swap.eth0_dummy.0) {
        // Not every driver changes its MAC while up.
        netlink.change_link(
            &eth0,
            &LinkChange {
                up: Some(false),
                ..LinkChange::default()
            },
        )?;
        netlink.change_link(
            &eth0,
            &LinkChange {
                mac: Some(swap.eth0_dummy.0),
                ..LinkChange::default()
            },
        )?;
    }
    netlink.change_link(
        &eth0,
        &LinkChange {
            master: Some(bridge.index),
            up: Some(true),
            ..LinkChange::default()
        },
    )?;
    // A node bridge in hairpin mode (the CNI bridge plugin's hairpinMode) sends
    // the guest's broadcasts back in through eth0. Learned there, the VM's
    // MAC would point the bridge at eth0, and frames for the VM would be
    // dropped until that entry aged out. Only tap-eth0 learns.
    let eth0 = require(netlink, POD_INTERFACE)?;
    netlink.stop_port_learning(&eth0)?;
    netlink.change_link(
        bridge,
        &LinkChange {
            up: Some(true),
            ..LinkChange::default()
        },
    )?;
    // Services on 169.254.1.254 answer the guest at the pod's addresses,
    // which now live behind the bridge.
    let routed = netlink.routes(bridge.index)?;
    for address in &guest.addresses {
        let full = if address.ip.is_ipv4() { 32 } else { 128 };
        if !routed.iter().any(|r| r.dst == address.ip && r.dst_len == full) {
            netlink.add_route(&Route {
                dst: address.ip,
                dst_len: full,
                gateway: None,
                onlink: false,
                scope: RT_SCOPE_LINK,
                metric: None,
                oif: bridge.index,
                protocol: RTPROT_STATIC,
                prefsrc: None,
            })?;
        }
    }

    Ok(())
}

fn require(netlink: &mut impl RouteNetlink, name: &str) -> Result<Link, NetError> {
    netlink
        .link_by_name(name)?
        .ok_or_else(|| NetError::Vanished { name: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_netlink::{NetlinkError, Route};
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    /// An in-memory namespace.
    #[derive(Debug, Default)]
    struct FakeNamespace {
        links: BTreeMap<u32, Link>,
        /// Bridge ports that do not learn MACs.
        not_learning: std::collections::BTreeSet<u32>,
        addresses: Vec<(u32, Address)>,
        routes: Vec<Route>,
        next_index: u32,
        /// Names the fake /dev/net/tun has made.
        taps: Rc<RefCell<Vec<String>>>,
    }

    impl FakeNamespace {
        fn pod(mac: [u8; 6], ip: &str, len: u8, gateway: &str, onlink: bool) -> Self {
            let mut ns = Self {
                next_index: 10,
                ..Self::default()
            };
            let eth0 = ns.add_link("eth0", mac, 1450);
            ns.addresses.push((
                eth0,
                Address {
                    ip: ip.parse().unwrap(),
                    prefix_len: len,
                    scope: 0,
                    no_prefix_route: false,
                },
            ));
            ns.addresses.push((
                eth0,
                Address {
                    ip: "fe80::1".parse().unwrap(),
                    prefix_len: 64,
                    scope: RT_SCOPE_LINK,
                    no_prefix_route: false,
                },
            ));
            ns.routes.push(Route {
                dst: "0.0.0.0".parse().unwrap(),
                dst_len: 0,
                gateway: Some(gateway.parse().unwrap()),
                onlink,
                scope: 0,
                metric: None,
                oif: eth0,
                protocol: 3,
                prefsrc: None,
            });
            ns
        }

        fn add_link(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> u32 {
            self.next_index += 1;
            let index = self.next_index;
            self.links.insert(
                index,
                Link {
                    index,
                    name: name.into(),
                    mac: Some(mac),
                    mtu,
                    up: false,
                    master: None,
                    kind: None,
                    alias: None,
                },
            );
            index
        }

        fn by_name(&self, name: &str) -> Option<&Link> {
            self.links.values().find(|l| l.name == name)
        }
    }

    impl RouteNetlink for FakeNamespace {
        fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
            let made = self.taps.borrow().iter().any(|t| t == name);
            if made && self.by_name(name).is_none() {
                self.add_link(name, [0xfe, 0, 0, 0, 0, 1], 1500);
            }
            Ok(self.by_name(name).cloned())
        }
        fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
            Ok(self.links.values().cloned().collect())
        }
        fn addresses(&mut self, index: u32) -> Result<Vec<Address>, NetlinkError> {
            Ok(self
                .addresses
                .iter()
                .filter(|(i, _)| *i == index)
                .map(|(_, a)| *a)
                .collect())
        }
        fn routes(&mut self, index: u32) -> Result<Vec<Route>, NetlinkError> {
            Ok(self.routes.iter().filter(|r| r.oif == index).cloned().collect())
        }
        fn create_bridge(&mut self, name: &str, mac: [u8; 6], mtu: u32) -> Result<(), NetlinkError> {
            let index = self.add_link(name, mac, mtu);
            self.links.get_mut(&index).unwrap().kind = Some("bridge".into());
            Ok(())
        }
        fn change_link(&mut self, link: &Link, change: &LinkChange) -> Result<(), NetlinkError> {
            let stored = self.links.get_mut(&link.index).unwrap();
            if let Some(mac) = change.mac {
                assert!(!stored.up, "MAC changed while {} is up", stored.name);
                stored.mac = Some(mac);
            }
            stored.up = change.up.unwrap_or(stored.up);
            stored.mtu = change.mtu.unwrap_or(stored.mtu);
            if let Some(master) = change.master {
                stored.master = Some(master).filter(|m| *m != 0);
            }
            if let Some(alias) = &change.alias {
                stored.alias = Some(alias.clone());
            }
            Ok(())
        }
        fn stop_port_learning(&mut self, port: &Link) -> Result<(), NetlinkError> {
            let stored = &self.links[&port.index];
            assert!(stored.master.is_some(), "{} is not a bridge port", stored.name);
            self.not_learning.insert(port.index);
            Ok(())
        }
        fn add_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError> {
            self.addresses.push((index, *address));
            Ok(())
        }
        fn delete_address(&mut self, index: u32, address: &Address) -> Result<(), NetlinkError> {
            self.addresses.retain(|(i, a)| !(*i == index && a == address));
            // As the kernel does: routes through a link with no address go.
            if !self.addresses.iter().any(|(i, a)| *i == index && a.scope == 0) {
                self.routes.retain(|r| r.oif != index);
            }
            Ok(())
        }
        fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
            self.routes.push(route.clone());
            Ok(())
        }
    }

    /// Taps made by the fake /dev/net/tun appear in the fake namespace.
    #[derive(Debug, Default, Clone)]
    struct FakeTaps {
        made: Rc<RefCell<Vec<String>>>,
        fail: Option<&'static str>,
    }

    impl TapCreator for FakeTaps {
        fn create_persistent(&self, name: &str) -> Result<(), String> {
            match self.fail {
                Some(reason) => Err(reason.to_owned()),
                None => {
                    self.made.borrow_mut().push(name.to_owned());
                    Ok(())
                }
            }
        }
    }

    struct Pod {
        ns: FakeNamespace,
        taps: FakeTaps,
    }

    impl Pod {
        fn take_over(&mut self) -> Result<TakeOver, NetError> {
            take_over(
                &mut self.ns,
                &self.taps,
                TakeOverOptions {
                    wait: Duration::ZERO,
                    swap_macs: true,
                },
            )
        }
    }

    fn calico_pod() -> Pod {
        let taps = FakeTaps::default();
        let mut ns = FakeNamespace::pod([0xee; 6], "10.1.2.3", 32, "169.254.1.1", true);
        ns.taps = Rc::clone(&taps.made);
        Pod { ns, taps }
    }

    #[test]
    fn the_recorded_guest_is_read_back_and_nothing_changes() {
        let mut pod = calico_pod();
        assert!(recorded_guest(&mut pod.ns).unwrap().is_none(), "nothing taken over yet");
        let take = pod.take_over().unwrap();
        let links = pod.ns.links().unwrap();
        assert_eq!(recorded_guest(&mut pod.ns).unwrap(), Some(take.guest));
        assert_eq!(pod.ns.links().unwrap(), links);
    }

    fn assert_rewired(ns: &FakeNamespace, take: &TakeOver) {
        let bridge = ns.by_name(BRIDGE_NAME).unwrap();
        let eth0 = ns.by_name(POD_INTERFACE).unwrap();
        let tap = ns.by_name(TAP_NAME).unwrap();
        assert_eq!(eth0.master, Some(bridge.index));
        assert_eq!(tap.master, Some(bridge.index));
        assert!(bridge.up && eth0.up && tap.up);
        assert!(
            ns.not_learning.contains(&eth0.index),
            "eth0 must not learn the VM's MAC"
        );
        assert!(!ns.not_learning.contains(&tap.index));
        assert_eq!(eth0.mac, Some(take.swap.eth0_dummy.0));
        assert_eq!(bridge.mac, Some(take.swap.bridge_dummy.0));
        assert_eq!((tap.mtu, bridge.mtu), (1450, 1450));
        let bridge_ips: Vec<String> = ns
            .addresses
            .iter()
            .filter(|(i, _)| *i == bridge.index)
            .map(|(_, a)| format!("{}/{}", a.ip, a.prefix_len))
            .collect();
        assert_eq!(bridge_ips, ["169.254.1.254/32"]);
        assert!(
            ns.addresses.iter().all(|(i, a)| *i != eth0.index || a.scope != 0),
            "eth0 keeps no pod address"
        );
    }

    #[test]
    fn first_start_swaps_macs_and_moves_the_identity_to_the_guest() {
        let mut pod = calico_pod();
        let take = pod.take_over().unwrap();
        assert!(!take.recovered);
        assert_eq!(take.guest.mac.0, [0xee; 6]);
        assert_eq!(take.guest.addresses[0].to_string(), "10.1.2.3/32");
        assert!(take.guest.routes[0].onlink);
        assert_rewired(&pod.ns, &take);
        let line = take.swap_line();
        assert!(line.starts_with("MAC swap: eth0 ee:ee:ee:ee:ee:ee -> "), "{line}");
    }

    #[test]
    fn a_restart_recovers_the_same_identity_from_the_bridge() {
        let mut pod = calico_pod();
        let first = pod.take_over().unwrap();
        let again = pod.take_over().unwrap();
        assert!(again.recovered);
        assert_eq!(again.guest, first.guest);
        assert_eq!(again.swap, first.swap);
        assert_rewired(&pod.ns, &again);
        assert!(again.swap_line().contains("(recovered from br-eth0)"));
    }

    #[test]
    fn without_the_swap_eth0_keeps_its_mac_and_the_vm_gets_a_dummy() {
        let mut pod = calico_pod();
        let options = TakeOverOptions {
            wait: Duration::ZERO,
            swap_macs: false,
        };
        let take = take_over(&mut pod.ns, &pod.taps, options).unwrap();
        assert_eq!(pod.ns.by_name(POD_INTERFACE).unwrap().mac, Some([0xee; 6]));
        assert_ne!(take.guest.mac, take.swap.real);
        assert!(take.guest.mac.is_locally_administered());
    }

    #[test]
    fn a_bridge_with_foreign_ports_is_refused() {
        let mut pod = calico_pod();
        pod.take_over().unwrap();
        let bridge = pod.ns.by_name(BRIDGE_NAME).unwrap().index;
        let intruder = pod.ns.add_link("veth-x", [2, 0, 0, 0, 0, 9], 1500);
        pod.ns.links.get_mut(&intruder).unwrap().master = Some(bridge);
        let err = pod.take_over().unwrap_err().to_string();
        assert!(
            err.contains("veth-x") && err.contains("troubleshooting.md, Checking the network state"),
            "{err}"
        );
    }

    #[test]
    fn a_bridge_without_a_record_is_refused() {
        let mut pod = calico_pod();
        pod.ns.add_link(BRIDGE_NAME, [2, 0, 0, 0, 0, 7], 1500);
        let err = pod.take_over().unwrap_err();
        assert!(matches!(err, NetError::BadRecord { .. }), "{err}");
    }

    #[test]
    fn missing_eth0_and_missing_address_are_named() {
        let mut pod = calico_pod();
        pod.ns.links.clear();
        let err = pod.take_over().unwrap_err().to_string();
        assert!(
            err.contains("no eth0") && err.contains("troubleshooting.md, Pod network"),
            "{err}"
        );
        let mut pod = calico_pod();
        pod.ns.addresses.retain(|(_, a)| a.scope != 0);
        let err = pod.take_over().unwrap_err().to_string();
        assert!(err.contains("eth0 has no IP address after 0 s"), "{err}");
    }

    #[test]
    fn a_missing_tun_device_is_named() {
        let mut pod = calico_pod();
        pod.taps.fail = Some("/dev/net/tun is missing");
        let err = pod.take_over().unwrap_err().to_string();
        assert!(
            err.contains("cannot create tap-eth0: /dev/net/tun is missing")
                && err.contains("troubleshooting.md, Checking the network state"),
            "{err}"
        );
    }
}
