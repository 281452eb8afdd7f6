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
            "pci=off".to_owned(),
            "root=/dev/vda".to_owned(),
            "rootfstype=ext4".to_owned(),
            "rw".to_owned(),
            format!("init={INIT_PATH}"),
            // Under TCG about one boot in six hangs calibrating the TSC against
            // the PIT; a stated frequency skips the calibration.
            "tsc_early_khz=2000000".to_owned(),
            // The kernel hands unknown `KEY=value` words to init as its
            // environment, so the guest's first line already has the level.
            format!("{LOG_LEVEL_ENV}={}", self.log_level),
        ];
        if self.log_level < LogLevel::Debug {
            params.push("quiet".to_owned());
        }
        params.extend(self.extra.iter().cloned());
        params.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_quiet_and_debug_is_not() {
        let info = GuestCmdline {
            log_level: LogLevel::Info,
            reboot_method: 't',
            extra: vec![],
        }
        .render();
        assert_eq!(
            info,
            "console=ttyS0 reboot=t panic=-1 pci=off root=/dev/vda rootfstype=ext4 rw \
             init=/.runcvm/init tsc_early_khz=2000000 RUNCVM_LOG_LEVEL=INFO quiet"
        );
        let debug = GuestCmdline {
            log_level: LogLevel::Debug,
            reboot_method: 'k',
            extra: vec!["root=/dev/vdb".into()],
        }
        .render();
        assert!(debug.contains("reboot=k"));
        assert!(debug.contains("RUNCVM_LOG_LEVEL=DEBUG"));
        assert!(!debug.contains("quiet"));
        assert!(debug.ends_with(" root=/dev/vdb"));
    }
}
