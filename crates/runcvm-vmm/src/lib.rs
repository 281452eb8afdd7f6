//! The VMM backends and what they share: the guest kernel command line and the
//! choice of acceleration. `qemu` builds a typed `-M microvm` argv; the
//! Firecracker backend joins it in its own issue.

pub mod accel;
pub mod cmdline;
pub mod firecracker;
pub mod kernel;
pub mod qemu;
pub mod tsc;

pub use accel::{Accel, AccelChoice, UnknownAccelChoice};
pub use cmdline::GuestCmdline;
pub use kernel::{GuestKernel, KernelError};
