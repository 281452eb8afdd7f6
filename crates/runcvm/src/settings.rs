//! Every setting the launcher takes from its environment, read once when
//! it starts (`main`) and passed down as plain values, so no library reads
//! the environment. In a Kubernetes container these are the few knobs a
//! pod may set (`runcvm-runtime` passes only those to the launcher; what
//! changes the boot comes from the node's settings, in `launch.json`); for
//! `runcvm run` they are the user's. Each is read as the code that uses it
//! always read it: a path set to nothing is unset.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `RUNCVM_ACCEL`
    pub accel: Option<String>,
    /// `RUNCVM_BOOT_TIMEOUT`
    pub boot_timeout: Option<String>,
    /// `RUNCVM_KERNEL`
    pub kernel: Option<PathBuf>,
    /// `RUNCVM_FIRECRACKER`
    pub firecracker: Option<PathBuf>,
    /// `RUNCVM_HYPERVISOR`
    pub hypervisor: Option<String>,
    /// `RUNCVM_STATE_DIR`
    pub state_dir: Option<PathBuf>,
    /// `RUNCVM_CPUS`
    pub cpus: Option<String>,
    /// `RUNCVM_MEMORY_MIB`
    pub memory_mib: Option<String>,
    /// `RUNCVM_INIT`
    pub init: Option<PathBuf>,
    /// `RUNCVM_QEMU`
    pub qemu: Option<PathBuf>,
    /// `RUNCVM_VOLUME_FAILURE`
    pub volume_failure: Option<String>,
    /// `RUNCVM_KERNEL_ARGS` (`runcvm run` only)
    pub kernel_args: Option<String>,
    /// `RUNCVM_MAC_SWAP`
    pub mac_swap: Option<String>,
    /// `RUNCVM_NET_WAIT`
    pub net_wait: Option<String>,
}

impl Settings {
    /// The settings in this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The settings `lookup` gives for each variable's name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let text = |name: &str| lookup(name).and_then(|v| v.into_string().ok());
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            accel: text(runcvm_vmm::accel::ACCEL_ENV),
            boot_timeout: text(runcvm_host::accel::BOOT_TIMEOUT_ENV),
            kernel: path(runcvm_vmm::kernel::KERNEL_ENV),
            firecracker: path(runcvm_vmm::firecracker::launch::FIRECRACKER_ENV),
            hypervisor: text(runcvm_host::hypervisor::HYPERVISOR_ENV),
            state_dir: path(runcvm_host::run_dir::STATE_DIR_ENV),
            cpus: text(runcvm_host::resources::CPUS_ENV),
            memory_mib: text(runcvm_host::resources::MEMORY_ENV),
            init: path(crate::locate::INIT_ENV),
            qemu: path(runcvm_vmm::qemu::QEMU_ENV),
            volume_failure: text(crate::volumes::VOLUME_FAILURE_ENV),
            kernel_args: text(crate::run::KERNEL_ARGS_ENV),
            mac_swap: text(crate::pod_network::MAC_SWAP_ENV),
            net_wait: text(crate::pod_network::NET_WAIT_ENV),
        }
    }

    /// The state folder in force.
    pub fn state_dir(&self) -> PathBuf {
        runcvm_host::run_dir::RunDir::state_dir(self.state_dir.as_deref())
    }

    /// What `runcvm run` asks of the hypervisor.
    pub fn hypervisor_asked(&self) -> runcvm_host::hypervisor::Asked<'_> {
        runcvm_host::hypervisor::Asked {
            hypervisor: self.hypervisor.as_deref(),
            firecracker: self.firecracker.as_deref(),
        }
    }

    pub fn kernel(&self) -> Option<&Path> {
        self.kernel.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_set_to_nothing_are_unset_and_texts_are_kept_as_given() {
        let settings = Settings::from_lookup(|name| match name {
            "RUNCVM_KERNEL" => Some(OsString::new()),
            "RUNCVM_INIT" => Some("/x/runcvm-init".into()),
            "RUNCVM_ACCEL" => Some(" tcg ".into()),
            "RUNCVM_NET_WAIT" => Some(String::new().into()),
            _ => None,
        });
        assert_eq!(settings.kernel, None);
        assert_eq!(settings.init, Some(PathBuf::from("/x/runcvm-init")));
        assert_eq!(settings.accel.as_deref(), Some(" tcg "));
        assert_eq!(settings.net_wait.as_deref(), Some(""));
        assert_eq!(settings.state_dir(), runcvm_host::run_dir::RunDir::state_dir(None));
    }
}
