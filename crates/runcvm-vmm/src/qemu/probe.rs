//! Can KVM boot a standard guest here?
//!
//! Some hosts expose a `/dev/kvm` that only runs paravirtualised guests: a
//! standard kernel stops early (`KVM_EXIT_INTERNAL_ERROR`), QEMU aborts, or it
//! hangs silently. The only reliable test is to boot the real guest kernel with
//! no disk and see it get as far as looking for its root filesystem, which it
//! does in well under a second when KVM works.

use super::QemuConfig;
use crate::{Accel, GuestCmdline};
use runcvm_log::LogLevel;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What the kernel prints once it has booted and looks for a root device.
const REACHED_ROOT_MOUNT: &str = "VFS: Unable to mount root fs";

/// The verdict of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    Boots,
    /// The reason, ready to be shown after "KVM cannot boot the guest: ".
    CannotBoot(String),
}

/// Boots `kernel` under KVM with no disk and waits at most `timeout`.
pub fn probe_kvm(qemu: &super::QemuBinary, kernel: &Path, timeout: Duration) -> KvmProbe {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return KvmProbe::CannotBoot(format!("/dev/kvm cannot be opened ({e})"));
    }
    let config = QemuConfig {
        binary: qemu.clone(),
        accel: Accel::Kvm,
        vcpus: 1,
        memory_mib: 128,
        kernel: kernel.to_owned(),
        cmdline: GuestCmdline {
            log_level: LogLevel::Debug,
            reboot_method: QemuConfig::REBOOT_METHOD,
            tsc_khz: crate::tsc::host_tsc_khz(),
            read_only_root: false,
            extra: Vec::new(),
        },
        root_disk: None,
        nic: None,
        tap_fd: None,
        control_socket: None,
        sandbox: false,
    };
    let child = qemu
        .command()
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return KvmProbe::CannotBoot(format!("{} cannot be started ({e})", qemu.path().display())),
    };
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let exited = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let console = stdout.join().unwrap_or_default();
    let errors = stderr.join().unwrap_or_default();
    if console.contains(REACHED_ROOT_MOUNT) {
        return KvmProbe::Boots;
    }
    let last_error = errors.lines().rev().find(|l| !l.trim().is_empty());
    let last_console = console.lines().rev().find(|l| !l.trim().is_empty());
    KvmProbe::CannotBoot(match (exited, last_error, last_console) {
        (None, _, Some(line)) => format!(
            "the guest kernel stopped making progress within {} s under KVM (last console line: {line:?})",
            timeout.as_secs()
        ),
        (None, _, None) => format!(
            "the guest kernel printed nothing within {} s under KVM",
            timeout.as_secs()
        ),
        (Some(status), Some(line), _) => format!("QEMU stopped ({status}): {line}"),
        (Some(status), None, _) => format!("QEMU stopped ({status}) before the kernel booted"),
    })
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
