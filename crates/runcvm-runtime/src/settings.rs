//! Every setting `runcvm-runtime` takes from its environment (containerd's
//! shim passes its own), read once in `main` and passed down: which runc,
//! which install, which state folder. A path set to nothing is unset.

use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `RUNCVM_RUNC`: the runc to run (else `runc` on `PATH`).
    pub runc: Option<PathBuf>,
    /// `RUNCVM_INSTALL_ROOT`: the install (else the folder above the
    /// runtime's own).
    pub install_root: Option<PathBuf>,
    /// `RUNCVM_STATE_DIR`: the node's state folder (else `/var/lib/runcvm`).
    pub state_dir: Option<PathBuf>,
}

impl Settings {
    /// The settings in this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The settings `lookup` gives for each variable's name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            runc: path(crate::runc::RUNC_ENV),
            install_root: path(crate::install::INSTALL_ROOT_ENV),
            state_dir: path(runcvm_host::run_dir::STATE_DIR_ENV),
        }
    }

    /// The state folder in force.
    pub fn state_dir(&self) -> PathBuf {
        runcvm_host::run_dir::RunDir::state_dir(self.state_dir.as_deref())
    }
}
