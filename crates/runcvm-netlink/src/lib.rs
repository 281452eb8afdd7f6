//! A small synchronous netlink client, used on both sides of the VM: the
//! launcher (observe and rewire the pod's `eth0`) and guest init (configure
//! the guest's `eth0`). Hand-written rather than a crate so the static guest
//! binary stays small and the host needs no async runtime.
//!
//! `message` builds and parses netlink messages and attributes (pure, unit
//! tested); `socket` sends requests and collects replies; `route` speaks
//! rtnetlink (links, addresses, routes); `nft` builds the nf_tables batch
//! runcvm needs.

pub mod message;
pub mod nft;
pub mod route;
pub mod socket;

pub use route::{Address, Link, Route, RouteNetlink};
pub use socket::{NetlinkError, NetlinkSocket};
