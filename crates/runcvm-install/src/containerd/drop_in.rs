//! The drop-in file, for containerd 2.x: where the main config's `imports`
//! lets install put the handler in a file of its own, that file's text, and
//! its record in the manifest.
//!
//! containerd 2.x merges each imported file key by key into the main config,
//! so a file holding only the runcvm runtime adds it and changes nothing
//! else, and the main file stays untouched. Only for a main file with
//! `version = 3`: containerd 2.1 merges every file before it migrates the
//! result, and the merged `version` is the last one it saw, so a version 3
//! drop-in would keep a version 2 main file from being migrated. containerd
//! 1.x replaces whole plugin sections with an imported file's instead, which
//! rules a drop-in out there (see the parent module).

use super::{HANDLER, config::ConfigVersion, runtime_tables};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// What install wrote as the drop-in, kept in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DropInRecord {
    /// The main config whose `imports` names the file (node view).
    pub config: PathBuf,
    /// The drop-in (node view).
    pub path: PathBuf,
    /// Folders install created for it, outermost first (node view).
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    /// Exactly the bytes install wrote: uninstall removes the file only if
    /// it still holds them.
    pub text: String,
}

/// Where the drop-in goes for a main config at `config` (node path) with
/// these `imports`: the first entry that names a folder drop-in. An entry is
/// resolved as containerd does (cleaned; relative to the main config's
/// folder); one with `*` in its last component (and no pattern in its
/// folder) takes `runcvm` for its first `*` and nothing for the others
/// (`conf.d/*.toml` gives `conf.d/runcvm.toml`); one without `*` names a
/// drop-in only if its file name is `runcvm.toml`.
pub(crate) fn target(imports: &[String], config: &Path) -> Option<PathBuf> {
    imports.iter().find_map(|import| {
        let named = Path::new(import);
        let path = if named.is_absolute() {
            clean(named)
        } else {
            clean(&config.parent().unwrap_or(Path::new("/")).join(named))
        };
        let name = path.file_name()?.to_str()?;
        let folder = path.parent()?;
        let file = if name.contains('*') {
            if name.contains(['?', '[', '\\']) || folder.to_str()?.contains(['*', '?', '[', '\\']) {
                return None;
            }
            folder.join(name.replacen('*', HANDLER, 1).replace('*', ""))
        } else if name == format!("{HANDLER}.toml") {
            path.clone()
        } else {
            return None;
        };
        (file != config).then_some(file)
    })
}

/// The drop-in's text: a header, `version = 3` (containerd reads a file
/// without a version as version 1) and the handler's tables.
pub(crate) fn text(binary_name: &str, systemd_cgroup: bool) -> String {
    format!(
        "{BEGIN_FILE}\n{NOTE}\nversion = 3\n\n{}",
        runtime_tables(
            ConfigVersion::V3,
            binary_name,
            systemd_cgroup,
            super::HandlerOptions::TerminationMessage,
            "\n",
        )
    )
}

/// The drop-in's first lines.
const BEGIN_FILE: &str =
    "# runcvm: the \"runcvm\" RuntimeClass handler. `runcvm install` wrote this file; `runcvm uninstall` removes it.";
const NOTE: &str = "# containerd 2.x merges it into the main config, whose `imports` names this folder.";

/// `path` with `.` and `..` resolved lexically, as Go's `filepath.Clean`.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "/etc/containerd/config.toml";

    fn target_of(imports: &[&str]) -> Option<PathBuf> {
        let imports: Vec<String> = imports.iter().map(|s| (*s).to_owned()).collect();
        target(&imports, Path::new(CONFIG))
    }

    #[test]
    fn globs_and_paths_name_the_drop_in() {
        for (imports, expected) in [
            (
                &["/etc/containerd/conf.d/*.toml"][..],
                Some("/etc/containerd/conf.d/runcvm.toml"),
            ),
            (&["conf.d/*.toml"], Some("/etc/containerd/conf.d/runcvm.toml")),
            (&["./conf.d/../drop/*"], Some("/etc/containerd/drop/runcvm")),
            (
                &["/etc/containerd/conf.d/10-*.toml"],
                Some("/etc/containerd/conf.d/10-runcvm.toml"),
            ),
            (
                &["/etc/containerd/conf.d//*-*.toml"],
                Some("/etc/containerd/conf.d/runcvm-.toml"),
            ),
            (&["/srv/runcvm.toml"], Some("/srv/runcvm.toml")),
            (
                &["/etc/containerd/extra.toml", "conf.d/*.toml"],
                Some("/etc/containerd/conf.d/runcvm.toml"),
            ),
            (&["/etc/containerd/extra.toml"], None),
            (&["/etc/*/conf.d/*.toml"], None),
            (&["/etc/containerd/conf.d/?.toml"], None),
            (&["/etc/containerd/conf.d/[a-z]*.toml"], None),
            (&[], None),
        ] {
            assert_eq!(target_of(imports), expected.map(PathBuf::from), "{imports:?}");
        }
    }

    #[test]
    fn the_drop_in_is_version_3_with_the_handler() {
        let text = text("/opt/runcvm/bin/runcvm-runtime", true);
        assert_eq!(
            text,
            format!(
                "{BEGIN_FILE}\n{NOTE}\nversion = 3\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runcvm]\n  runtime_type = \"io.containerd.runc.v2\"\n  privileged_without_host_devices = true\n  container_annotations = [\"io.kubernetes.container.terminationMessagePath\"]\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runcvm.options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n  SystemdCgroup = true\n"
            )
        );
        let config = super::super::config::Config::parse(&text).unwrap();
        assert_eq!(config.version(), Ok(ConfigVersion::V3));
        assert!(config.defines_handler());
    }
}
