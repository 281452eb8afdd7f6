//! Reading `eth0` as CNI configured it.

use crate::{NetError, Observation};
use runcvm_netlink::RouteNetlink;
use runcvm_spec::net::POD_INTERFACE;
use std::time::{Duration, Instant};

/// Reads `eth0`, waiting up to `wait` for it to get an address (CNI may
/// still be at work when the container starts).
pub fn observe(netlink: &mut impl RouteNetlink, wait: Duration) -> Result<Observation, NetError> {
    let deadline = Instant::now() + wait;
    loop {
        let link = netlink.link_by_name(POD_INTERFACE)?.ok_or(NetError::NoPodInterface)?;
        let addresses = netlink.addresses(link.index)?;
        if addresses
            .iter()
            .any(|a| a.scope == runcvm_netlink::route::RT_SCOPE_UNIVERSE)
        {
            let routes = netlink.routes(link.index)?;
            return Ok(Observation {
                link,
                addresses,
                routes,
            });
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoAddress {
                waited_secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
