//! The install manifest, `ROOT/install-manifest.json`: exactly what install
//! created or changed, so that uninstall undoes that and nothing else. Paths
//! are the node's (see `--host-root-prefix`), so a node installed from the
//! installer pod can be uninstalled from the node, and back.

use crate::containerd::ConfigRecord;
use crate::{InstallError, io_error};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest's format; a newer one is refused.
pub(crate) const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    /// The install root (node path).
    pub root: PathBuf,
    /// Folders install created, in creation order (outermost first).
    pub created_dirs: Vec<PathBuf>,
    /// Files install created; uninstall removes them.
    pub created_files: Vec<PathBuf>,
    /// Files that existed before install and that install overwrote;
    /// uninstall leaves them.
    pub replaced_files: Vec<PathBuf>,
    /// The edit of containerd's config.
    pub containerd: Option<ConfigRecord>,
}

impl Manifest {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            format: FORMAT,
            root,
            created_dirs: Vec::new(),
            created_files: Vec::new(),
            replaced_files: Vec::new(),
            containerd: None,
        }
    }

    /// The manifest at `path`, `None` if there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, InstallError> {
        let Some(bytes) = crate::files::read_if_exists(path).map_err(io_error("read", path))? else {
            return Ok(None);
        };
        let manifest: Self = serde_json::from_slice(&bytes).map_err(|source| InstallError::Manifest {
            path: path.to_owned(),
            source,
        })?;
        if manifest.format > FORMAT {
            return Err(InstallError::Manifest {
                path: path.to_owned(),
                source: serde::de::Error::custom(format!(
                    "format {} is newer than this runcvm's {FORMAT}: use the runcvm that installed it",
                    manifest.format
                )),
            });
        }
        Ok(Some(manifest))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    pub(crate) fn note_created_dir(&mut self, dir: PathBuf) {
        if !self.created_dirs.contains(&dir) {
            self.created_dirs.push(dir);
        }
    }

    /// Records a file install wrote: created now, or overwritten while it
    /// was not install's own.
    pub(crate) fn note_file(&mut self, file: PathBuf, created: bool) {
        if created {
            self.replaced_files.retain(|f| *f != file);
            if !self.created_files.contains(&file) {
                self.created_files.push(file);
            }
        } else if !self.created_files.contains(&file) && !self.replaced_files.contains(&file) {
            self.replaced_files.push(file);
        }
    }

    pub(crate) fn is_own(&self, file: &Path) -> bool {
        self.created_files.iter().any(|f| f == file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_recorded_once_and_created_wins() {
        let mut manifest = Manifest::new("/opt/runcvm".into());
        manifest.note_file("/opt/runcvm/bin/runcvm".into(), true);
        manifest.note_file("/opt/runcvm/bin/runcvm".into(), false);
        manifest.note_file("/opt/runcvm/kernel/vmlinux".into(), false);
        manifest.note_file("/opt/runcvm/kernel/vmlinux".into(), false);
        assert_eq!(manifest.created_files, [PathBuf::from("/opt/runcvm/bin/runcvm")]);
        assert_eq!(manifest.replaced_files, [PathBuf::from("/opt/runcvm/kernel/vmlinux")]);
        let again: Manifest = serde_json::from_slice(&manifest.to_bytes()).unwrap();
        assert_eq!(again, manifest);
    }

    #[test]
    fn a_newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut manifest = Manifest::new("/opt/runcvm".into());
        manifest.format = FORMAT + 1;
        std::fs::write(&path, manifest.to_bytes()).unwrap();
        let err = Manifest::load(&path).unwrap_err();
        assert!(matches!(err, InstallError::Manifest { .. }), "{err}");
        assert_eq!(Manifest::load(&dir.path().join("none")).unwrap(), None);
    }
}
