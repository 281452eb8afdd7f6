//! Pod networking: the VM takes over the pod's identity on `eth0`.
//!
//! The launcher runs in the pod's network namespace, where CNI configured
//! `eth0`. [`take_over`] reads `eth0` ([`observe`]), turns what it saw into
//! the guest's network and the MAC swap ([`plan`], pure), records the
//! original identity on the bridge ([`record`]) so a restarted container in
//! the same pod can recover it, and rewires the namespace ([`apply`]):
//!
//! ```text
//!   node ── veth ── eth0 (dummy MAC, no address) ─┐
//!                                                 br-eth0 (dummy MAC, 169.254.1.254/32)
//!        VM NIC (pod's real MAC, pod IP) ── tap-eth0 ─┘
//! ```
//!
//! [`guard`] drops what the pod's neighbours send to 169.254.1.254, so only
//! the guest reaches the services there, and holds the VM to its own
//! identity on the pod network ([`vm_filter`]).

pub mod apply;
pub mod error;
pub mod guard;
pub mod observe;
pub mod plan;
pub mod record;
pub mod tap;
pub mod vm_filter;

pub use apply::{TakeOver, TakeOverOptions, recorded_guest, take_over};
pub use error::NetError;
pub use plan::{MacSwap, Observation};
pub use tap::{DevNetTun, TapCreator};
