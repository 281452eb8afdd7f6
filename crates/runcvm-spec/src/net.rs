//! The pod network as handed to the guest, and the names the troubleshooting
//! guide fixes for it (sections 2, 3 and 5).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// The pod's interface, set up by CNI, whose identity the VM takes over.
pub const POD_INTERFACE: &str = "eth0";
/// The host-side bridge joining `eth0` and the VM's tap.
pub const BRIDGE_NAME: &str = "br-eth0";
/// The VM's tap, a port of [`BRIDGE_NAME`].
pub const TAP_NAME: &str = "tap-eth0";
/// The host identity on the bridge: the only address it carries, where the
/// guest finds runcvm's services (NFS). Never 169.254.1.1, a real pod
/// gateway on Calico and AWS.
pub const HOST_IDENTITY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 254);

/// An Ethernet address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Set by whoever assigned it locally, not by a manufacturer.
    pub fn is_locally_administered(self) -> bool {
        self.0[0] & 0x02 != 0
    }

    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let mut mac = [0u8; 6];
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"));
        }
        for (byte, part) in mac.iter_mut().zip(parts) {
            *byte = u8::from_str_radix(part, 16)
                .ok()
                .filter(|_| part.len() == 2)
                .ok_or_else(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        Ok(Self(mac))
    }
}

/// An address with its prefix length, written `10.0.0.5/24`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub ip: IpAddr,
    pub len: u8,
}

impl IpPrefix {
    pub fn new(ip: IpAddr, len: u8) -> Self {
        Self { ip, len }
    }

    /// The prefix's first address (`10.0.0.0` of `10.0.0.5/24`).
    pub fn network(&self) -> IpAddr {
        match self.ip {
            IpAddr::V4(ip) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len.min(32))).unwrap_or(0);
                IpAddr::V4((u32::from(ip) & mask).into())
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len.min(128))).unwrap_or(0);
                IpAddr::V6((u128::from(ip) & mask).into())
            }
        }
    }

    /// Whether `other` lies in this prefix.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.ip, other) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len.min(32))).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.len.min(128))).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.len)
    }
}

impl fmt::Debug for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an address with a prefix length (10.0.0.5/24, fd00::5/64)");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(bad());
        }
        Ok(Self { ip, len })
    }
}

macro_rules! serde_as_string {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(MacAddr);
serde_as_string!(IpPrefix);

/// A shared mount of the container (a volume) that the guest mounts over
/// NFS from [`HOST_IDENTITY_IP`]. The export is named by the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestVolume {
    /// Absolute path in the container, and the export's name.
    pub path: String,
    #[serde(default)]
    pub read_only: bool,
    /// The launcher's NFS port (MOUNT and NFS share it).
    pub port: u16,
    /// Start the workload even if this mount fails (`RUNCVM_VOLUME_FAILURE=continue`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The container's root file system, served over NFS from
/// [`HOST_IDENTITY_IP`] by its launcher (the export `/`): the guest mounts
/// it and makes it the root of everything after, so nothing of the image is
/// copied and the container's writes land in its writable layer on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRoot {
    /// The port of the root's server (MOUNT and NFS share it).
    pub port: u16,
}

/// One route the guest installs on its `eth0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRoute {
    /// `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpPrefix,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The gateway is on the link though outside every prefix (Calico, AWS).
    #[serde(default)]
    pub onlink: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// The source address it prefers (`src`), as CNI's ptp plugin sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
}

/// The pod's network identity, which the guest's `eth0` takes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestNetwork {
    /// The pod's real MAC; the VMM already gives it to the guest's NIC.
    pub mac: MacAddr,
    pub mtu: u32,
    pub addresses: Vec<IpPrefix>,
    /// Those of `addresses` the pod had without the prefix route the
    /// kernel adds with an address: CNI's ptp plugin replaces it with a
    /// route through the gateway. The guest adds them the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_prefix_route: Vec<IpPrefix>,
    pub routes: Vec<GuestRoute>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_prefix_round_trip_as_strings() {
        let mac: MacAddr = "0a:58:0A:f4:00:05".parse().unwrap();
        assert_eq!(mac.to_string(), "0a:58:0a:f4:00:05");
        assert!(mac.is_locally_administered() && !mac.is_multicast());
        assert!("0a:58:0a:f4:00".parse::<MacAddr>().is_err());
        assert!("0a:58:0a:f4:00:5".parse::<MacAddr>().is_err());
        let prefix: IpPrefix = "fd00::5/64".parse().unwrap();
        assert_eq!(serde_json::to_string(&prefix).unwrap(), "\"fd00::5/64\"");
        assert!("10.0.0.1/33".parse::<IpPrefix>().is_err());
    }

    #[test]
    fn prefix_containment() {
        let net: IpPrefix = "10.244.0.5/24".parse().unwrap();
        assert!(net.contains("10.244.0.1".parse().unwrap()));
        assert!(!net.contains("10.244.1.1".parse().unwrap()));
        let host: IpPrefix = "10.1.2.3/32".parse().unwrap();
        assert!(!host.contains("169.254.1.1".parse().unwrap()));
        let all: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: IpPrefix = "fd00:1::5/64".parse().unwrap();
        assert!(v6.contains("fd00:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }
}
