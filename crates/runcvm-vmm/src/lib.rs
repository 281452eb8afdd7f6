//! The VMM backends and what they share: the guest kernel command line, the
//! choice of acceleration, and one backend-neutral description of a guest
//! (`vm`: `VmSpec`, and the `Backend` that turns it into a VMM ready to
//! spawn). `qemu` builds a typed `-M microvm` argv; `firecracker` its
//! `--config-file` JSON typed after the official API description.

pub mod accel;
pub mod cmdline;
pub mod firecracker;
pub mod kernel;
pub mod qemu;
pub mod tsc;
pub mod vm;

pub use accel::{Accel, AccelChoice, UnknownAccelChoice};
pub use cmdline::GuestCmdline;
pub use kernel::{GuestKernel, KernelError};
