//! The guest kernel command line, the same for every backend but for the
//! reboot method.

use runcvm_log::{LOG_LEVEL_ENV, LogLevel};
use runcvm_spec::INIT_PATH;

/// Builds the kernel command line for a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestCmdline {
    pub log_level: LogLevel,
    /// `k` on Firecracker (it exits on the i8042 reset); `t` (triple fault)
    /// on QEMU microvm, which has no i8042 and would first wait for one.
    pub reboot_method: char,
    /// The host's TSC frequency (see [`crate::tsc`]).
    pub tsc_khz: u64,
    /// The root disk is read-only (`ro`): a boot disk that several VMs
    /// share. The backends attach the disk read-only too, so the kernel's
    /// view and the device's agree by construction.
    pub read_only_root: bool,
    /// Appended last, so a word here overrides an earlier one.
    pub extra: Vec<String>,
}

impl GuestCmdline {
    pub fn render(&self) -> String {
        let mut params = vec![
            "console=ttyS0".to_owned(),
            format!("reboot={}", self.reboot_method),
            // Reboot at once on panic: the VMM exits and the launcher reports
            // the console tail instead of a VM that hangs.
            "panic=-1".to_owned(),
            "root=/dev/vda".to_owned(),
            "rootfstype=ext4".to_owned(),
            if self.read_only_root { "ro" } else { "rw" }.to_owned(),
            format!("init={INIT_PATH}"),
            // Skips calibrating the TSC against the PIT, which hangs about
            // one TCG boot in six.
            format!("tsc_early_khz={}", self.tsc_khz),
            // The TSC is the host's (KVM, and TCG reads the host's too): no
            // clocksource watchdog, which on a busy host compares it with
            // late timer ticks, marks it unstable, falls back to jiffies and
            // says so on the console, in the workload's stderr under
            // `runcvm run` (as Kata's guests do).
            "tsc=reliable".to_owned(),
            // The kernel hands unknown `KEY=value` words to init as its
            // environment, so the guest's first line already has the level.
            // No `quiet`: the boot lines reach the launcher, which hides them
            // at INFO but shows the last ones when a boot fails. Guest init
            // quietens the console once it takes it over.
            format!("{LOG_LEVEL_ENV}={}", self.log_level),
        ];
        params.extend(self.extra.iter().cloned());
        params.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_log_level_and_extra_words_last() {
        let info = GuestCmdline {
            log_level: LogLevel::Info,
            reboot_method: 't',
            tsc_khz: 2_596_000,
            read_only_root: false,
            extra: vec![],
        }
        .render();
        assert_eq!(
            info,
            "console=ttyS0 reboot=t panic=-1 root=/dev/vda rootfstype=ext4 rw \
             init=/.runcvm/init tsc_early_khz=2596000 tsc=reliable RUNCVM_LOG_LEVEL=INFO"
        );
        let debug = GuestCmdline {
            log_level: LogLevel::Debug,
            reboot_method: 'k',
            tsc_khz: 2_000_000,
            read_only_root: false,
            extra: vec!["root=/dev/vdb".into()],
        }
        .render();
        assert!(debug.contains("reboot=k"));
        assert!(debug.contains(" rw "));
        assert!(debug.contains("RUNCVM_LOG_LEVEL=DEBUG"));
        assert!(debug.ends_with(" root=/dev/vdb"));
        let shared_boot_disk = GuestCmdline {
            read_only_root: true,
            ..GuestCmdline {
                log_level: LogLevel::Info,
                reboot_method: 't',
                tsc_khz: 1,
                read_only_root: false,
                extra: vec![],
            }
        }
        .render();
        assert!(shared_boot_disk.contains(" rootfstype=ext4 ro init="));
    }
}
