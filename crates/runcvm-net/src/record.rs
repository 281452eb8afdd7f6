//! The pod's original network identity, recorded on `br-eth0` as its alias.
//!
//! A restarted container in the same pod starts with a fresh filesystem but
//! the same network namespace, where `eth0` already has the dummy MAC and no
//! address. The namespace itself must remember the identity, and the
//! bridge's alias (at most 255 bytes, shown by `ip -d link show br-eth0`) is
//! where it does, in a line a person can read:
//!
//! ```text
//! runcvm1 mac=0a:58:0a:f4:00:05 mtu=1450 a=10.244.0.5/24 r=0.0.0.0/0,via=10.244.0.1
//! ```
//!
//! An address the pod had without its prefix route says so (`a=10.78.0.5/24,np`,
//! as CNI's ptp plugin leaves it), and a route's preferred source follows
//! it (`r=10.78.0.0/24,via=10.78.0.1,src=10.78.0.5`).

use crate::NetError;
use runcvm_spec::{GuestNetwork, GuestRoute};

const MAGIC: &str = "runcvm1";
/// IFALIASZ - 1: the kernel keeps at most this much of an alias.
pub const MAX_RECORD_LEN: usize = 255;

pub fn encode(network: &GuestNetwork) -> Result<String, NetError> {
    let mut words = vec![
        MAGIC.to_owned(),
        format!("mac={}", network.mac),
        format!("mtu={}", network.mtu),
    ];
    words.extend(network.addresses.iter().map(|a| {
        let bare = if network.without_prefix_route.contains(a) {
            ",np"
        } else {
            ""
        };
        format!("a={a}{bare}")
    }));
    for route in &network.routes {
        let mut word = format!("r={}", route.destination);
        if let Some(gateway) = route.gateway {
            word.push_str(&format!(",via={gateway}"));
        }
        if route.onlink {
            word.push_str(",onlink");
        }
        if let Some(metric) = route.metric {
            word.push_str(&format!(",metric={metric}"));
        }
        if let Some(source) = route.source {
            word.push_str(&format!(",src={source}"));
        }
        words.push(word);
    }
    let record = words.join(" ");
    if record.len() > MAX_RECORD_LEN {
        return Err(NetError::RecordTooLong {
            len: record.len(),
            record,
        });
    }
    Ok(record)
}

pub fn decode(record: &str) -> Result<GuestNetwork, NetError> {
    let bad = |reason: String| NetError::BadRecord { reason };
    let mut words = record.split_whitespace();
    if words.next() != Some(MAGIC) {
        return Err(bad(format!("alias {record:?} is not a runcvm record")));
    }
    let (mut mac, mut mtu) = (None, None);
    let (mut addresses, mut routes) = (Vec::new(), Vec::new());
    let mut without_prefix_route = Vec::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| bad(format!("{word:?} is not key=value")))?;
        match key {
            "mac" => mac = Some(value.parse().map_err(bad)?),
            "mtu" => mtu = Some(value.parse().map_err(|_| bad(format!("mtu {value:?}")))?),
            "a" => {
                let (prefix, bare) = match value.strip_suffix(",np") {
                    Some(prefix) => (prefix, true),
                    None => (value, false),
                };
                let prefix = prefix.parse().map_err(bad)?;
                if bare {
                    without_prefix_route.push(prefix);
                }
                addresses.push(prefix);
            }
            "r" => routes.push(decode_route(value).map_err(bad)?),
            _ => return Err(bad(format!("unknown field {key:?}"))),
        }
    }
    Ok(GuestNetwork {
        mac: mac.ok_or_else(|| bad("no mac".into()))?,
        mtu: mtu.ok_or_else(|| bad("no mtu".into()))?,
        addresses,
        without_prefix_route,
        routes,
    })
}

fn decode_route(value: &str) -> Result<GuestRoute, String> {
    let mut parts = value.split(',');
    let mut route = GuestRoute {
        destination: parts.next().unwrap_or_default().parse()?,
        gateway: None,
        onlink: false,
        metric: None,
        source: None,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("via", gateway)) => {
                route.gateway = Some(gateway.parse().map_err(|_| format!("gateway {gateway:?}"))?)
            }
            Some(("metric", metric)) => route.metric = Some(metric.parse().map_err(|_| format!("metric {metric:?}"))?),
            Some(("src", source)) => route.source = Some(source.parse().map_err(|_| format!("source {source:?}"))?),
            None if part == "onlink" => route.onlink = true,
            _ => return Err(format!("route option {part:?}")),
        }
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_spec::MacAddr;

    #[test]
    fn a_ptp_pod_round_trips_with_its_bare_address_and_route_source() {
        let network = GuestNetwork {
            mac: MacAddr([0x0a, 0x58, 0x0a, 0x4e, 0, 5]),
            mtu: 1500,
            addresses: vec!["10.78.0.5/24".parse().unwrap()],
            without_prefix_route: vec!["10.78.0.5/24".parse().unwrap()],
            routes: vec![GuestRoute {
                destination: "10.78.0.0/24".parse().unwrap(),
                gateway: Some("10.78.0.1".parse().unwrap()),
                onlink: false,
                metric: None,
                source: Some("10.78.0.5".parse().unwrap()),
            }],
        };
        let record = encode(&network).unwrap();
        assert_eq!(
            record,
            "runcvm1 mac=0a:58:0a:4e:00:05 mtu=1500 a=10.78.0.5/24,np r=10.78.0.0/24,via=10.78.0.1,src=10.78.0.5"
        );
        assert_eq!(decode(&record).unwrap(), network);
    }

    fn dual_stack_calico() -> GuestNetwork {
        GuestNetwork {
            mac: MacAddr([0xee; 6]),
            mtu: 1450,
            addresses: vec![
                "10.244.123.45/32".parse().unwrap(),
                "fd00:10:244:0:1234:5678:9abc:def0/128".parse().unwrap(),
            ],
            without_prefix_route: vec![],
            routes: vec![
                GuestRoute {
                    destination: "0.0.0.0/0".parse().unwrap(),
                    gateway: Some("169.254.1.1".parse().unwrap()),
                    onlink: true,
                    metric: None,
                    source: None,
                },
                GuestRoute {
                    destination: "::/0".parse().unwrap(),
                    gateway: Some("fe80::ecee:eeff:feee:eeee".parse().unwrap()),
                    onlink: false,
                    metric: Some(1024),
                    source: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_is_readable() {
        let network = dual_stack_calico();
        let record = encode(&network).unwrap();
        assert!(
            record.starts_with("runcvm1 mac=ee:ee:ee:ee:ee:ee mtu=1450 a=10.244.123.45/32 "),
            "{record}"
        );
        assert!(record.len() <= MAX_RECORD_LEN, "{} bytes", record.len());
        assert_eq!(decode(&record).unwrap(), network);
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        for alias in [
            "",
            "something else",
            "runcvm1 mtu=1500",
            "runcvm1 mac=zz mtu=1",
            "runcvm1 mac=ee:ee:ee:ee:ee:ee mtu=1 x=1",
        ] {
            assert!(matches!(decode(alias), Err(NetError::BadRecord { .. })), "{alias:?}");
        }
    }

    #[test]
    fn too_many_routes_is_a_clear_error() {
        let mut network = dual_stack_calico();
        for i in 0..20 {
            network.routes.push(GuestRoute {
                destination: format!("10.{i}.0.0/16").parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                onlink: true,
                metric: None,
                source: None,
            });
        }
        assert!(matches!(encode(&network), Err(NetError::RecordTooLong { .. })));
    }
}
