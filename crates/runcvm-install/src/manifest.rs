//! The install manifest, `ROOT/install-manifest.json`: exactly what install
//! created or changed, so that uninstall undoes that and nothing else. Paths
//! are the node's (see `--host-root-prefix`), so a node installed from the
//! installer pod can be uninstalled from the node, and back.
//!
//! Format 2 adds the containerd 2.x drop-in (`containerd_drop_in`). A
//! manifest without one is still written as format 1, exactly as earlier
//! builds wrote it, and a format 1 manifest reads as one without a drop-in,
//! so installs of earlier builds uninstall as before and the other way
//! round. A runcvm that knows only format 1 refuses format 2 rather than
//! leave a drop-in behind.

use crate::containerd::{ConfigRecord, DropInRecord};
use crate::{InstallError, io_error};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The newest manifest format this runcvm reads and writes; a newer one is
/// refused.
pub(crate) const FORMAT: u32 = 2;
/// The format of a manifest without a drop-in.
const FORMAT_WITHOUT_DROP_IN: u32 = 1;

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
    /// The block in containerd's main config.
    pub containerd: Option<ConfigRecord>,
    /// The drop-in holding the handler (containerd 2.x), instead of a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerd_drop_in: Option<DropInRecord>,
}

impl Manifest {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            format: FORMAT_WITHOUT_DROP_IN,
            root,
            created_dirs: Vec::new(),
            created_files: Vec::new(),
            replaced_files: Vec::new(),
            containerd: None,
            containerd_drop_in: None,
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
        if !(1..=FORMAT).contains(&manifest.format) {
            return Err(InstallError::Manifest {
                path: path.to_owned(),
                source: serde::de::Error::custom(format!(
                    "format {} is not one this runcvm reads (1 to {FORMAT}): use the runcvm that installed it",
                    manifest.format
                )),
            });
        }
        Ok(Some(manifest))
    }

    /// The manifest as written: in the oldest format that holds it.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let written = Self {
            format: if self.containerd_drop_in.is_some() {
                FORMAT
            } else {
                FORMAT_WITHOUT_DROP_IN
            },
            ..self.clone()
        };
        let mut bytes = serde_json::to_vec_pretty(&written).unwrap_or_default();
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
        let text = String::from_utf8(Manifest::new("/opt/runcvm".into()).to_bytes()).unwrap();
        std::fs::write(
            &path,
            text.replace("\"format\": 1", &format!("\"format\": {}", FORMAT + 1)),
        )
        .unwrap();
        let err = Manifest::load(&path).unwrap_err();
        assert!(matches!(err, InstallError::Manifest { .. }), "{err}");
        assert!(format!("{:?}", std::error::Error::source(&err)).contains("not one this runcvm reads"));
        assert_eq!(Manifest::load(&dir.path().join("none")).unwrap(), None);
    }

    /// What the first format looked like, as an earlier build wrote it.
    const FORMAT_1: &str = r#"{
  "format": 1,
  "root": "/opt/runcvm",
  "created_dirs": ["/opt/runcvm"],
  "created_files": ["/opt/runcvm/bin/runcvm"],
  "replaced_files": [],
  "containerd": {
    "path": "/etc/containerd/config.toml",
    "created": false,
    "created_dirs": [],
    "original": "version = 2\n",
    "offset": 12,
    "inserted": "\n# runcvm: end\n"
  }
}
"#;

    #[test]
    fn format_1_is_read_and_written_while_there_is_no_drop_in() {
        let manifest: Manifest = serde_json::from_str(FORMAT_1).unwrap();
        assert_eq!(manifest.containerd_drop_in, None);
        assert_eq!(manifest.containerd.as_ref().unwrap().offset, 12);
        let written = String::from_utf8(manifest.to_bytes()).unwrap();
        assert!(
            written.contains("\"format\": 1") && !written.contains("drop_in"),
            "{written}"
        );
        let with_drop_in = Manifest {
            containerd: None,
            containerd_drop_in: Some(DropInRecord {
                config: "/etc/containerd/config.toml".into(),
                path: "/etc/containerd/conf.d/runcvm.toml".into(),
                created_dirs: vec!["/etc/containerd/conf.d".into()],
                text: "version = 3\n".into(),
            }),
            ..manifest
        };
        let written = String::from_utf8(with_drop_in.to_bytes()).unwrap();
        assert!(written.contains("\"format\": 2"), "{written}");
        let again: Manifest = serde_json::from_str(&written).unwrap();
        assert_eq!(again.containerd_drop_in, with_drop_in.containerd_drop_in);
    }
}
