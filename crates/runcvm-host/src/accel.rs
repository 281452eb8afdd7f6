//! Turns `RUNCVM_ACCEL` into the acceleration a VM runs with.
//!
//! `auto` takes KVM only if KVM can boot the guest kernel on this host, which
//! a real boot decides (see `runcvm_vmm::qemu::probe_kvm`). The verdict is
//! cached per host boot, QEMU and kernel, so only the first run pays for it.

use runcvm_vmm::qemu::{KvmProbe, QemuBinary, probe_kvm};
use runcvm_vmm::{Accel, AccelChoice};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How long the probe boot may take under KVM (a working KVM needs < 1 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_CACHE: &str = "kvm-probe.json";
const KVM_DEVICE: &str = "/dev/kvm";

/// Overrides the boot watchdog, in seconds.
pub const BOOT_TIMEOUT_ENV: &str = "RUNCVM_BOOT_TIMEOUT";

/// KVM was asked for and cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// RUNCVM_ACCEL=kvm without /dev/kvm
    #[error("RUNCVM_ACCEL=kvm, but {KVM_DEVICE} is missing: run on a host with KVM, or use RUNCVM_ACCEL=tcg or auto")]
    NoKvmDevice,
    /// RUNCVM_ACCEL=kvm where KVM cannot boot the guest
    #[error("RUNCVM_ACCEL=kvm, but KVM cannot boot the guest on this host ({0}): use RUNCVM_ACCEL=tcg or auto")]
    KvmCannotBoot(String),
    /// a bad boot timeout
    #[error("{BOOT_TIMEOUT_ENV}={0:?} is not a number of seconds greater than 0")]
    BootTimeout(String),
}

/// The acceleration for this run; `auto` ending on TCG says why in one WARN.
pub fn resolve(choice: AccelChoice, qemu: &QemuBinary, kernel: &Path, state_dir: &Path) -> Result<Accel, AccelError> {
    let (accel, fallback) = decide(choice, qemu, kernel, state_dir)?;
    if let Some(why) = fallback {
        runcvm_log::warn!("{why}");
    }
    Ok(accel)
}

/// [`resolve`] without the log line: the acceleration, and why `auto` fell
/// back to TCG if it did, for the caller to report where it belongs (the
/// runtime writes it to containerd's log, not into every pod's).
pub fn decide(
    choice: AccelChoice,
    qemu: &QemuBinary,
    kernel: &Path,
    state_dir: &Path,
) -> Result<(Accel, Option<String>), AccelError> {
    let decided = match choice {
        AccelChoice::Tcg => (Accel::Tcg, None),
        AccelChoice::Kvm => match kvm_verdict(qemu, kernel, state_dir) {
            None => return Err(AccelError::NoKvmDevice),
            Some(KvmProbe::CannotBoot(reason)) => return Err(AccelError::KvmCannotBoot(reason)),
            Some(KvmProbe::Boots) => (Accel::Kvm, None),
        },
        AccelChoice::Auto => match kvm_verdict(qemu, kernel, state_dir) {
            None => (
                Accel::Tcg,
                Some(format!(
                    "{KVM_DEVICE} is missing; running the VM under TCG (software emulation, slower)"
                )),
            ),
            Some(KvmProbe::CannotBoot(reason)) => (
                Accel::Tcg,
                Some(format!(
                    "KVM cannot boot the guest on this host ({reason}); running the VM under TCG \
                     (software emulation, slower). Set RUNCVM_ACCEL=tcg to skip this check"
                )),
            ),
            Some(KvmProbe::Boots) => (Accel::Kvm, None),
        },
    };
    runcvm_log::debug!("acceleration {} (asked for {choice:?})", decided.0);
    Ok(decided)
}

/// The boot watchdog: `chosen` (a binary's `RUNCVM_BOOT_TIMEOUT`), else
/// 30 s under TCG and 5 s under KVM.
pub fn boot_timeout(accel: Accel, chosen: Option<&str>) -> Result<Duration, AccelError> {
    match chosen {
        Some(value) if !value.trim().is_empty() => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|secs| *secs > 0.0 && secs.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| AccelError::BootTimeout(value.to_owned())),
        _ => Ok(match accel {
            Accel::Tcg => Duration::from_secs(30),
            Accel::Kvm => Duration::from_secs(5),
        }),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedVerdict {
    key: String,
    boots: bool,
    reason: String,
}

/// `None` when there is no KVM device at all.
fn kvm_verdict(qemu: &QemuBinary, kernel: &Path, state_dir: &Path) -> Option<KvmProbe> {
    if !Path::new(KVM_DEVICE).exists() {
        return None;
    }
    let key = cache_key(qemu.path(), kernel);
    let cache = state_dir.join(PROBE_CACHE);
    if let Some(cached) = std::fs::read(&cache)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CachedVerdict>(&bytes).ok())
        .filter(|cached| cached.key == key)
    {
        runcvm_log::debug!("KVM probe verdict from {}", cache.display());
        return Some(if cached.boots {
            KvmProbe::Boots
        } else {
            KvmProbe::CannotBoot(cached.reason)
        });
    }
    runcvm_log::debug!("probing whether KVM boots {}", kernel.display());
    let verdict = probe_kvm(qemu, kernel, PROBE_TIMEOUT);
    let record = CachedVerdict {
        key,
        boots: verdict == KvmProbe::Boots,
        reason: match &verdict {
            KvmProbe::Boots => String::new(),
            KvmProbe::CannotBoot(reason) => reason.clone(),
        },
    };
    // A cache that cannot be written only costs the next run a probe.
    if let Ok(bytes) = serde_json::to_vec(&record) {
        let temp = state_dir.join(format!("{PROBE_CACHE}.{}", std::process::id()));
        if std::fs::create_dir_all(state_dir).is_ok() && std::fs::write(&temp, bytes).is_ok() {
            let _ = std::fs::rename(&temp, &cache);
        }
    }
    Some(verdict)
}

/// The verdict holds for one host boot, one QEMU and one kernel build.
fn cache_key(qemu: &Path, kernel: &Path) -> String {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let identity = |path: &Path| {
        std::fs::metadata(path).map_or_else(
            |_| format!("{}:missing", path.display()),
            |m| format!("{}:{}:{}", path.display(), m.len(), m.mtime()),
        )
    };
    format!("{}|{}|{}", boot_id.trim(), identity(qemu), identity(kernel))
}
