//! `kubectl port-forward` to a runcvm pod. containerd dials `localhost:PORT`
//! inside the pod's network namespace (IPv4 first, then IPv6); under runc
//! the workload listens there, but here it runs in the VM, which took the
//! pod's IP with it. So the launcher listens on one port of the namespace's
//! loopback (127.0.0.1 and ::1), an nftables table sends every other TCP
//! connection to the loopback there, and each accepted connection, by the
//! port it was for (`SO_ORIGINAL_DST`), is carried over the control channel
//! to the same port on the guest's own loopback, where the workload
//! listens as it would on a node: on 127.0.0.1, ::1 or any address.
//!
//! runcvm's own services listen on 169.254.1.254, never on the loopback, so
//! nothing in the pod's namespace reaches them this way.

use crate::hub::SessionHub;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

/// The nftables table in the pod's namespace (inet family).
pub const TABLE: &str = "runcvm-port-forward";

/// Why kubectl port-forward's way into the VM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    /// cannot listen on 127.0.0.1 for kubectl port-forward
    #[error("cannot listen on 127.0.0.1 for kubectl port-forward")]
    Listen(#[source] std::io::Error),
    /// the port the IPv4 listener got (the I/O error's own message)
    #[error(transparent)]
    Port(std::io::Error),
    /// cannot install the nftables redirect for kubectl port-forward
    #[error("cannot install the nftables redirect for kubectl port-forward")]
    Redirect(#[source] runcvm_netlink::NetlinkError),
}

/// The listeners, and the redirect to them, in the pod's namespace.
#[derive(Debug)]
pub struct PortForward {
    ipv4: TcpListener,
    ipv6: Option<TcpListener>,
}

impl PortForward {
    /// Listens on the loopback and installs the redirect. Without an IPv6
    /// loopback, IPv4 alone.
    pub fn set_up() -> Result<Self, PortForwardError> {
        let ipv4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(PortForwardError::Listen)?;
        let port = ipv4.local_addr().map_err(PortForwardError::Port)?.port();
        let ipv6 = match TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            Ok(listener) => Some(listener),
            Err(e) => {
                runcvm_log::debug!("port-forward over IPv6 is unavailable: cannot listen on [::1]:{port}: {e}");
                None
            }
        };
        runcvm_netlink::nft::loopback_redirect(TABLE, port)
            .install()
            .map_err(PortForwardError::Redirect)?;
        runcvm_log::debug!("port-forward: loopback connections go to port {port}");
        Ok(Self { ipv4, ipv6 })
    }

    /// Accepts connections from threads of their own, for as long as the
    /// launcher runs.
    pub fn serve(self, hub: &Arc<SessionHub>) {
        for (listener, ipv6) in [(Some(self.ipv4), false), (self.ipv6, true)] {
            let Some(listener) = listener else { continue };
            let hub = Arc::clone(hub);
            std::thread::spawn(move || {
                for stream in listener.incoming().map_while(Result::ok) {
                    match original_port(&stream, ipv6) {
                        Ok(port) => hub.forward(stream, port, ipv6),
                        Err(e) => runcvm_log::warn!("port-forward: a connection without its original port: {e}"),
                    }
                }
            });
        }
    }
}

/// The port a redirected connection was made to (the listener's own when
/// it was made to that port directly).
fn original_port(stream: &TcpStream, ipv6: bool) -> nix::Result<u16> {
    use nix::sys::socket::{getsockopt, sockopt};
    if ipv6 {
        let address = getsockopt(stream, sockopt::Ip6tOriginalDst)?;
        Ok(u16::from_be(address.sin6_port))
    } else {
        let address = getsockopt(stream, sockopt::OriginalDst)?;
        Ok(u16::from_be(address.sin_port))
    }
}
