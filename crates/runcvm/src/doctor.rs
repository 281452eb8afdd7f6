//! `runcvm doctor`: what this host gives runcvm — the guest kernel, QEMU,
//! KVM, Firecracker — and which VMM a run would use, and why.

use crate::{accel, locate};
use runcvm_vmm::{AccelChoice, GuestKernel};
use std::fmt::Write;

/// The report, one `what: finding` per line; the last line is
/// `hypervisor: firecracker` or `hypervisor: qemu (why)`.
pub fn report(settings: &crate::settings::Settings) -> String {
    let mut out = String::new();
    let kernel = GuestKernel::locate(settings.kernel());
    let _ = writeln!(
        out,
        "kernel: {}",
        kernel
            .as_ref()
            .map_or_else(|e| format!("missing ({e})"), |k| k.path.display().to_string())
    );
    let qemu = locate::qemu(settings.qemu.as_deref());
    let _ = writeln!(
        out,
        "qemu: {}",
        qemu.as_ref()
            .map_or_else(|e| format!("missing ({e})"), |q| q.path().display().to_string())
    );
    let install_root = locate::install_root();
    let firecracker = crate::hypervisor::locate_firecracker(settings.firecracker.as_deref(), install_root.as_deref());
    let _ = writeln!(
        out,
        "firecracker: {}",
        firecracker
            .as_ref()
            .map_or_else(|e| format!("missing ({e})"), |f| f.path().display().to_string())
    );
    let choice = match AccelChoice::from_setting(settings.accel.as_deref()) {
        Ok(choice) => choice,
        Err(e) => {
            let _ = writeln!(out, "acceleration: {e}\nhypervisor: none (fix RUNCVM_ACCEL first)");
            return out;
        }
    };
    let accel = match (&qemu, &kernel) {
        (Ok(qemu), Ok(kernel)) => match accel::resolve(choice, qemu, &kernel.path, &settings.state_dir()) {
            Ok(accel) => accel,
            Err(e) => {
                let _ = writeln!(out, "acceleration: {e}\nhypervisor: none (no acceleration can be had)");
                return out;
            }
        },
        _ => {
            let _ = writeln!(
                out,
                "acceleration: unknown (QEMU and the kernel are needed to probe KVM)\nhypervisor: none (QEMU and the kernel are needed first)"
            );
            return out;
        }
    };
    let _ = writeln!(out, "acceleration: {accel}");
    match crate::hypervisor::decide_here(settings.hypervisor_asked(), install_root.as_deref(), accel) {
        Ok(decision) => match decision.why_not_firecracker {
            Some(why) => {
                let _ = writeln!(out, "hypervisor: {} ({why})", decision.hypervisor.name());
            }
            None => {
                let _ = writeln!(out, "hypervisor: {}", decision.hypervisor.name());
            }
        },
        Err(e) => {
            let _ = writeln!(out, "hypervisor: none ({e})");
        }
    }
    out
}
