//! The node's settings for its pods' VMs, `ROOT/etc/runcvm.toml`: what a
//! pod must not decide for itself because it changes how the guest boots
//! (the VMM, the kernel command line) or what the VMM may do on the node
//! (the user it runs as). `runcvm install` writes the file
//! from its flags, owned by root and readable by root alone;
//! `runcvm-runtime` reads it at every create and refuses to start pods on a
//! file anyone else could have written.
//!
//! Nothing in a pod's env or annotations reaches these: an image's
//! `ENV RUNCVM_KERNEL_ARGS=init=/bin/sh` would otherwise make its shell the
//! guest's PID 1, as root, before any of the pod's restrictions apply.

use runcvm_spec::VmmUser;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The settings file under the install root.
pub const SETTINGS_FILE: &str = runcvm_spec::layout::SETTINGS;

/// Kernel parameters that would take PID 1 away from runcvm's init, which
/// applies the pod's user, capabilities, seccomp profile and namespaces.
const FORBIDDEN_KERNEL_PARAMETERS: [&str; 2] = ["init", "rdinit"];

/// Which VMM the node's pods run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HypervisorSetting {
    /// Firecracker where it is installed and KVM boots guests, else QEMU.
    #[default]
    Auto,
    Firecracker,
    Qemu,
}

impl HypervisorSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Firecracker => "firecracker",
            Self::Qemu => "qemu",
        }
    }
}

impl FromStr for HypervisorSetting {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "firecracker" => Ok(Self::Firecracker),
            "qemu" => Ok(Self::Qemu),
            other => Err(SettingsError::Hypervisor(other.to_owned())),
        }
    }
}

/// The node's settings; [`Default`] is what a node without the file gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSettings {
    pub hypervisor: HypervisorSetting,
    /// Words appended to every guest's kernel command line.
    pub kernel_args: Vec<String>,
    /// The unprivileged user and group every VMM runs as.
    pub vmm_user: VmmUser,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// an unknown hypervisor
    #[error("hypervisor {0:?} is not one: use auto, firecracker or qemu")]
    Hypervisor(String),
    /// a kernel argument that is not one word
    #[error(
        "kernel argument {0:?} is not one word of the kernel's command line (no spaces, quotes or control characters)"
    )]
    KernelArgWord(String),
    /// a kernel argument that replaces runcvm's init
    #[error(
        "kernel argument {0:?} would replace runcvm's init, which applies the pod's user, capabilities and seccomp profile"
    )]
    KernelArgInit(String),
    /// not TOML
    #[error("not TOML: {0}")]
    Toml(String),
    /// a key this build does not know
    #[error("unknown setting `{0}`: runcvm knows `hypervisor`, `kernel_args`, `vmm_uid` and `vmm_gid`")]
    Unknown(String),
    /// the VMM would run as root
    #[error("`{0}` is 0: the VMM must not run as root; give an id no user or group of the node has")]
    RootVmm(&'static str),
    /// a value of the wrong type
    #[error("`{key}` must be {expected}")]
    Type { key: &'static str, expected: &'static str },
}

/// The settings file could not be used: pods are not started on it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsFileError {
    /// unreadable
    #[error("cannot read the node's runcvm settings {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// someone but root could have written it
    #[error(
        "the node's runcvm settings {} could be written by others than root (owner uid {uid}, mode {mode:04o}, or not a file): they decide how every guest boots; rerun `runcvm install`, which writes them as root, mode 0600",
        .path.display()
    )]
    NotRootsAlone { path: PathBuf, uid: u32, mode: u32 },
    /// wrong content
    #[error("the node's runcvm settings {}", .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: SettingsError,
    },
}

impl NodeSettings {
    /// The settings of the install at `root`; the defaults when it has no
    /// settings file (an install older than the file).
    pub fn read(root: &Path) -> Result<Self, SettingsFileError> {
        let path = root.join(SETTINGS_FILE);
        let read = |source| SettingsFileError::Read {
            path: path.clone(),
            source,
        };
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(read(e)),
        };
        let (uid, mode) = (metadata.uid(), metadata.mode() & 0o7777);
        // Root's, or the reader's own (which is root on a node).
        // SAFETY: geteuid has no preconditions and cannot fail.
        let own = unsafe { libc::geteuid() };
        if !metadata.is_file() || (uid != 0 && uid != own) || mode & 0o022 != 0 {
            return Err(SettingsFileError::NotRootsAlone { path, uid, mode });
        }
        let text = std::fs::read_to_string(&path).map_err(read)?;
        Self::parse(&text).map_err(|source| SettingsFileError::Invalid { path, source })
    }

    /// Reads the settings' TOML: unknown keys are refused, as a typo would
    /// otherwise silently leave a default in place.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let document: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| SettingsError::Toml(e.to_string().trim().replace('\n', " ")))?;
        let mut settings = Self::default();
        for (key, item) in document.iter() {
            match key {
                "hypervisor" => {
                    let value = item.as_str().ok_or(SettingsError::Type {
                        key: "hypervisor",
                        expected: "a string",
                    })?;
                    settings.hypervisor = value.parse()?;
                }
                "kernel_args" => {
                    let wrong = SettingsError::Type {
                        key: "kernel_args",
                        expected: "an array of strings",
                    };
                    let array = item.as_array().ok_or(wrong)?;
                    let mut words = Vec::new();
                    for value in array {
                        let word = value.as_str().ok_or(SettingsError::Type {
                            key: "kernel_args",
                            expected: "an array of strings",
                        })?;
                        words.push(word.to_owned());
                    }
                    settings.kernel_args = words;
                }
                "vmm_uid" => settings.vmm_user.uid = id(item, "vmm_uid")?,
                "vmm_gid" => settings.vmm_user.gid = id(item, "vmm_gid")?,
                other => return Err(SettingsError::Unknown(other.to_owned())),
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses kernel arguments that are not single words, or that would
    /// hand PID 1 to something other than runcvm's init, and a VMM of root.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.vmm_user.uid == 0 {
            return Err(SettingsError::RootVmm("vmm_uid"));
        }
        if self.vmm_user.gid == 0 {
            return Err(SettingsError::RootVmm("vmm_gid"));
        }
        for word in &self.kernel_args {
            let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\'';
            if word.is_empty() || word.chars().any(bad_char) {
                return Err(SettingsError::KernelArgWord(word.clone()));
            }
            let name = word.split('=').next().unwrap_or_default();
            if FORBIDDEN_KERNEL_PARAMETERS.contains(&name) {
                return Err(SettingsError::KernelArgInit(word.clone()));
            }
        }
        Ok(())
    }

    /// The file's text, as install writes it.
    pub fn to_toml(&self) -> String {
        let words: Vec<String> = self
            .kernel_args
            .iter()
            .map(|word| format!("\"{}\"", word.replace('\\', "\\\\")))
            .collect();
        format!(
            "# runcvm's settings for this node's pods, read by runcvm-runtime at every create.\n\
             # Written by `runcvm install` from its flags (--hypervisor, --kernel-arg, --vmm-user);\n\
             # rerun it to change them. Pods cannot: their env and annotations never reach these.\n\
             hypervisor = \"{}\"\n\
             kernel_args = [{}]\n\
             vmm_uid = {}\n\
             vmm_gid = {}\n",
            self.hypervisor.as_str(),
            words.join(", "),
            self.vmm_user.uid,
            self.vmm_user.gid
        )
    }
}

/// A user or group id: a whole number a `u32` holds.
fn id(item: &toml_edit::Item, key: &'static str) -> Result<u32, SettingsError> {
    item.as_integer()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(SettingsError::Type {
            key,
            expected: "a user or group id (0 to 4294967295)",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_written_text_reads_back_the_same() {
        let settings = NodeSettings {
            hypervisor: HypervisorSetting::Qemu,
            kernel_args: vec!["loglevel=8".into(), "mitigations=auto,nosmt".into(), "a\\b".into()],
            vmm_user: VmmUser { uid: 70000, gid: 70001 },
        };
        assert_eq!(NodeSettings::parse(&settings.to_toml()).unwrap(), settings);
        assert_eq!(
            NodeSettings::parse(&NodeSettings::default().to_toml()).unwrap(),
            NodeSettings::default()
        );
        assert_eq!(NodeSettings::parse("").unwrap(), NodeSettings::default());
    }

    #[test]
    fn what_would_replace_init_or_is_not_a_word_is_refused() {
        for text in [
            "kernel_args = [\"init=/bin/sh\"]",
            "kernel_args = [\"rdinit=/x\"]",
            "kernel_args = [\"init\"]",
        ] {
            let err = NodeSettings::parse(text).unwrap_err();
            assert!(matches!(err, SettingsError::KernelArgInit(_)), "{text}: {err}");
            assert!(err.to_string().contains("replace runcvm's init"), "{err}");
        }
        for word in ["a b", "", "x\ny", "q\"uote"] {
            let settings = NodeSettings {
                kernel_args: vec![word.to_owned()],
                ..NodeSettings::default()
            };
            assert!(
                matches!(settings.validate(), Err(SettingsError::KernelArgWord(_))),
                "{word:?}"
            );
        }
        // A parameter that merely contains "init" is not init.
        let settings = NodeSettings::parse("kernel_args = [\"initcall_debug\", \"x.init=1\"]").unwrap();
        assert_eq!(settings.kernel_args.len(), 2);
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_toml_are_named() {
        let unknown = NodeSettings::parse("hypervisor = \"qemu\"\nkernel_arg = []").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown setting `kernel_arg`: runcvm knows `hypervisor`, `kernel_args`, `vmm_uid` and `vmm_gid`"
        );
        let root = NodeSettings::parse("vmm_uid = 0").unwrap_err();
        assert!(
            root.to_string()
                .starts_with("`vmm_uid` is 0: the VMM must not run as root"),
            "{root}"
        );
        assert!(matches!(
            NodeSettings::parse("vmm_gid = -1"),
            Err(SettingsError::Type { .. })
        ));
        assert_eq!(
            NodeSettings::parse("vmm_uid = 4000000000\nvmm_gid = 7")
                .unwrap()
                .vmm_user,
            VmmUser {
                uid: 4_000_000_000,
                gid: 7
            }
        );
        let wrong = NodeSettings::parse("kernel_args = \"loglevel=8\"").unwrap_err();
        assert_eq!(wrong.to_string(), "`kernel_args` must be an array of strings");
        let hypervisor = NodeSettings::parse("hypervisor = \"kvmtool\"").unwrap_err();
        assert!(
            hypervisor.to_string().contains("\"kvmtool\" is not one"),
            "{hypervisor}"
        );
        assert!(matches!(
            NodeSettings::parse("hypervisor = "),
            Err(SettingsError::Toml(_))
        ));
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_one_others_could_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(NodeSettings::read(root.path()).unwrap(), NodeSettings::default());
        let path = root.path().join(SETTINGS_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "hypervisor = \"qemu\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            NodeSettings::read(root.path()).unwrap().hypervisor,
            HypervisorSetting::Qemu
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(NodeSettings::read(root.path()).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = NodeSettings::read(root.path()).unwrap_err();
        assert!(
            matches!(err, SettingsFileError::NotRootsAlone { mode: 0o666, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("rerun `runcvm install`"), "{err}");
    }
}
