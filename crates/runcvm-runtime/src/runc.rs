//! The runc that does the container work: found once, then either becomes
//! this process (every verb the runtime does not change) or runs as its
//! child (where the runtime must clean up after a failure).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides which runc is used.
pub const RUNC_ENV: &str = "RUNCVM_RUNC";
/// Where runc is looked for after `PATH` (a shim's `PATH` may be short).
const FALLBACKS: [&str; 4] = [
    "/usr/sbin/runc",
    "/usr/bin/runc",
    "/usr/local/sbin/runc",
    "/usr/local/bin/runc",
];

/// runc cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// RUNCVM_RUNC names no file
    #[error("{RUNC_ENV}={0} is not a file: point it at a runc binary")]
    Override(PathBuf),
    /// runc not found
    #[error(
        "runc not found in PATH or /usr/sbin, /usr/bin, /usr/local/sbin, /usr/local/bin: install it (apt-get install runc), or set {RUNC_ENV}"
    )]
    NotFound,
    /// runc could not be started
    #[error("cannot run {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Runc {
    path: PathBuf,
}

impl Runc {
    /// `chosen` (`RUNCVM_RUNC`), else `runc` on `PATH` or where runc is
    /// installed.
    pub fn locate(chosen: Option<&Path>) -> Result<Self, RuncError> {
        if let Some(path) = chosen {
            let path = path.to_owned();
            return if path.is_file() {
                Ok(Self { path })
            } else {
                Err(RuncError::Override(path))
            };
        }
        let search = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&search)
            .map(|dir| dir.join("runc"))
            .chain(FALLBACKS.iter().map(PathBuf::from))
            .find(|candidate| candidate.is_file())
            .map(|path| Self { path })
            .ok_or(RuncError::NotFound)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Becomes runc with `args`: returns only if that fails.
    pub fn exec(&self, args: &[OsString]) -> RuncError {
        let source = Command::new(&self.path).arg0("runc").args(args).exec();
        RuncError::Exec {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs runc with `args` and returns its exit code (128 + N for a signal).
    pub fn run(&self, args: &[OsString]) -> Result<i32, RuncError> {
        let status = Command::new(&self.path)
            .arg0("runc")
            .args(args)
            .status()
            .map_err(|source| RuncError::Exec {
                path: self.path.clone(),
                source,
            })?;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}
