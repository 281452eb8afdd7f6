//! Host preparation for a runcvm guest, on the node, before any VM runs:
//! what `runcvm-runtime create` does for a Kubernetes container and what
//! `runcvm run` does for itself, so neither binary links the other. The
//! node's settings (`settings`), the VM's size from the container's
//! limits (`resources`), the acceleration and the hypervisor (`accel`,
//! `hypervisor`), the state folder (`run_dir`) and what of it the VMM user
//! may reach (`vmm_share`), and the root disk (`guest_disk`).
//!
//! Data flows one way: runtime → host preparation → launcher → VMM backend
//! → guest init.

pub mod accel;
pub mod guest_disk;
pub mod hypervisor;
pub mod resources;
pub mod run_dir;
pub mod settings;
pub mod vmm_share;
