//! QEMU `-M microvm`: a typed configuration turned into an argv, and the probe
//! that tells whether KVM can boot the guest on this host.

mod argv;
mod binary;
pub mod bundle;
mod probe;

pub use argv::{Nic, QEMU_ENV, QemuConfig, SANDBOX};
pub use binary::QemuBinary;
pub use bundle::BundledQemu;
pub use probe::{KvmProbe, probe_kvm};
