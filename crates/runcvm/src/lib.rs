//! runcvm's host side: preparing a guest (root disk, launch plan), choosing
//! the acceleration, and running the VM to the workload's exit status.
//! The `runcvm` binary is a thin command line over this.

pub mod accel;
pub mod console;
pub mod doctor;
pub mod exec;
pub mod guest_disk;
pub mod hub;
pub mod hypervisor;
pub mod inspect;
pub mod launch;
pub mod locate;
pub mod oom;
pub mod pod_network;
pub mod port_forward;
pub mod resources;
pub mod run;
pub mod run_dir;
pub mod terminal;
pub mod vm;
pub mod vmm_privileges;
pub mod volumes;

/// Exit code when runcvm itself fails (not the workload), as `docker run`
/// uses 125.
pub const RUNTIME_FAILURE: i32 = 125;

/// An error and its sources, `: `-separated, each said once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
