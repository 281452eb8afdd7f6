//! Which containerd a node runs, chosen per test process by
//! `RUNCVM_T3_CONTAINERD`: `1.6` (the default; Debian 12's, on `PATH`, with
//! a version-2 config) or `2` (containerd 2.x, with a version-3 config, from
//! the CRI conformance kit's cache, which the kit's `setup.sh` fills and
//! never installs). A missing binary fails the tier naming that `setup.sh`;
//! it never falls back to the other version.

use anyhow::{Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable that picks the containerd of a test process.
pub const SELECT_VAR: &str = "RUNCVM_T3_CONTAINERD";
/// The conformance kit's cache folder variable (as its `setup.sh` reads it).
pub const KIT_CACHE_VAR: &str = "RVCONF_CACHE";
/// The conformance kit's cache folder when [`KIT_CACHE_VAR`] is unset.
pub const KIT_CACHE_DEFAULT: &str = "/var/cache/runcvm-conformance";

/// A containerd release line the harness can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerdVersion {
    /// Debian 12's containerd 1.6, version-2 config.
    #[default]
    V1_6,
    /// containerd 2.x (the kit's 2.1), version-3 config.
    V2,
}

impl ContainerdVersion {
    /// `1.6` (or empty) and `2` (also `2.x`, `2.1`, …).
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "" | "1.6" => Ok(Self::V1_6),
            "2" | "2.x" => Ok(Self::V2),
            other if other.len() > 2 && other.starts_with("2.") && other[2..].bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Self::V2)
            }
            other => bail!("{SELECT_VAR}={other:?}: use 1.6 (the default) or 2"),
        }
    }

    /// The version [`SELECT_VAR`] names in this process; panics, naming the
    /// valid values, on any other value.
    pub fn selected() -> Self {
        Self::parse(&std::env::var(SELECT_VAR).unwrap_or_default()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The config `version` this containerd reads.
    pub fn config_version(self) -> u32 {
        match self {
            Self::V1_6 => 2,
            Self::V2 => 3,
        }
    }

    /// How tests and messages name it: `1.6` or `2.x`.
    pub fn label(self) -> &'static str {
        match self {
            Self::V1_6 => "1.6",
            Self::V2 => "2.x",
        }
    }

    /// What CRI `Version` reports as `runtime_version` starts with.
    pub fn runtime_version_prefix(self) -> &'static str {
        match self {
            Self::V1_6 => "1.6.",
            Self::V2 => "2.",
        }
    }

    /// The binaries a node of this version runs.
    pub fn binaries(self) -> Binaries {
        match self {
            // As always: whatever `containerd` and `ctr` are on `PATH`
            // (Debian's package), and the shim beside them.
            Self::V1_6 => Binaries {
                containerd: PathBuf::from("containerd"),
                ctr: PathBuf::from("ctr"),
                shim_dir: None,
            },
            Self::V2 => {
                let dir = kit_bin_dir();
                Binaries {
                    containerd: dir.join("containerd"),
                    ctr: dir.join("ctr"),
                    shim_dir: Some(dir),
                }
            }
        }
    }

    /// What this version needs that is missing, each with how to get it.
    /// (1.6 is checked by [`crate::tier`] on `PATH`.)
    pub fn missing(self) -> Vec<String> {
        match self {
            Self::V1_6 => Vec::new(),
            Self::V2 => {
                let dir = kit_bin_dir();
                KIT_BINARIES
                    .iter()
                    .map(|name| dir.join(name))
                    .filter(|path| !is_executable(path))
                    .map(|path| {
                        format!(
                            "{} ({SELECT_VAR}=2 runs containerd 2.x from the CRI conformance kit's cache: run {} as root)",
                            path.display(),
                            kit_setup_script().display()
                        )
                    })
                    .collect()
            }
        }
    }

    /// Fails naming [`Self::missing`], as a node start does.
    pub fn check(self) -> Result<()> {
        let missing = self.missing();
        if !missing.is_empty() {
            bail!("containerd {} is not available: {}", self.label(), missing.join("; "));
        }
        Ok(())
    }
}

/// The kit's containerd 2.x binaries a node runs.
pub const KIT_BINARIES: &[&str] = &["containerd", "ctr", "containerd-shim-runc-v2"];

/// The programs one node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// containerd itself (a bare name is looked up on `PATH`).
    pub containerd: PathBuf,
    /// Its `ctr`.
    pub ctr: PathBuf,
    /// A folder put first on containerd's `PATH`: containerd starts the
    /// first `containerd-shim-runc-v2` on its `PATH`, which must be its own
    /// release's. `None`: containerd's `PATH` is left as it is.
    pub shim_dir: Option<PathBuf>,
}

impl Binaries {
    /// containerd's `PATH`: [`Self::shim_dir`] first, then this process's.
    pub fn path_env(&self) -> Option<OsString> {
        let dir = self.shim_dir.as_ref()?;
        let rest = std::env::var_os("PATH").unwrap_or_default();
        std::env::join_paths(std::iter::once(dir.clone()).chain(std::env::split_paths(&rest))).ok()
    }
}

/// The kit's cache folder: `RVCONF_CACHE`, else `/var/cache/runcvm-conformance`.
pub fn kit_cache() -> PathBuf {
    std::env::var_os(KIT_CACHE_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(KIT_CACHE_DEFAULT), PathBuf::from)
}

/// Where the kit's `setup.sh` unpacks containerd 2.x.
pub fn kit_bin_dir() -> PathBuf {
    kit_cache().join("containerd-2/usr/bin")
}

/// The kit's `setup.sh`: `shared/conformance/setup.sh` beside the
/// repository this crate is in.
pub fn kit_setup_script() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/setup.sh");
    script.canonicalize().unwrap_or(script)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_pick_a_version_and_others_are_refused() {
        for value in ["", "1.6", " 1.6 "] {
            assert_eq!(ContainerdVersion::parse(value).expect(value), ContainerdVersion::V1_6);
        }
        for value in ["2", "2.x", "2.1"] {
            assert_eq!(ContainerdVersion::parse(value).expect(value), ContainerdVersion::V2);
        }
        for value in ["1.7", "3", "2.", "2.y", "latest"] {
            let err = ContainerdVersion::parse(value).expect_err(value).to_string();
            assert!(err.contains("use 1.6 (the default) or 2"), "{err}");
        }
    }

    #[test]
    fn version_2_runs_the_kits_binaries_with_its_shim_first_on_path() {
        let b = ContainerdVersion::V2.binaries();
        assert!(b.containerd.ends_with("containerd-2/usr/bin/containerd"), "{b:?}");
        assert!(b.ctr.ends_with("containerd-2/usr/bin/ctr"), "{b:?}");
        let path = b.path_env().expect("a PATH");
        let first = std::env::split_paths(&path).next().expect("an entry");
        assert_eq!(Some(first), b.shim_dir);

        let old = ContainerdVersion::V1_6.binaries();
        assert_eq!(old.containerd, Path::new("containerd"));
        assert_eq!(old.path_env(), None);
        assert!(ContainerdVersion::V1_6.missing().is_empty());
    }

    #[test]
    fn the_setup_script_is_named_beside_the_repository() {
        let script = kit_setup_script();
        assert!(script.ends_with("shared/conformance/setup.sh"), "{}", script.display());
    }
}
