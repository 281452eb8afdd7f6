//! runcvm's host side: preparing a guest (root disk, launch plan), choosing
//! the acceleration, and running the VM to the workload's exit status.
//! The `runcvm` binary is a thin command line over this.

pub mod attach;
pub mod console;
pub mod doctor;
pub mod exec;
pub mod failure;
pub mod hub;
pub mod inspect;
pub mod launch;
pub mod locate;
pub mod oom;
pub mod pod_console;
pub mod pod_network;
pub mod port_forward;
pub mod run;
pub mod settings;
pub mod terminal;
pub mod vm;
pub mod vmm_privileges;
pub mod volumes;

pub use runcvm_host::{accel, guest_disk, hypervisor, resources, run_dir};
pub use runcvm_log::error_chain;

/// Exit code when runcvm itself fails (not the workload), as `docker run`
/// uses 125.
pub const RUNTIME_FAILURE: i32 = 125;
