//! Linux capabilities for runcvm's host and guest: OCI's names and sets and
//! their bit masks (`sets`), and the few system calls that apply them
//! (`sys`), written to be safe between fork and exec: no allocation, no
//! locks, errors as plain errno values.

pub mod sets;
pub mod sys;

pub use sets::{CapabilityMasks, ProcessCapabilities, capability_number};
