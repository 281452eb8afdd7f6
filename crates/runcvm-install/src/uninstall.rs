//! `runcvm uninstall`: undo what the manifest lists. The containerd
//! registration goes first (the block in the main config, the drop-in), so
//! that no new container is handed to a runtime being removed; then the
//! files install created, the manifest, and the folders install created
//! that are empty by then.

use crate::containerd::{self, UnregisterPlan};
use crate::files;
use crate::manifest::Manifest;
use crate::report::{ContainerdRemoval, DropInRemoval, DropInRemoved, UninstallReport, Unregistered};
use crate::{InstallError, MANIFEST_NAME, UninstallOptions, View, absolute, io_error};

/// Uninstalls the install recorded under `options.root`.
pub fn uninstall(options: &UninstallOptions) -> Result<UninstallReport, InstallError> {
    let view = View::new(options.host_root_prefix.as_deref())?;
    let root = absolute(&options.root)?;
    let manifest_path = root.join(MANIFEST_NAME);
    let manifest = Manifest::load(&manifest_path)?.ok_or_else(|| InstallError::NotInstalled(manifest_path.clone()))?;
    let mut report = UninstallReport {
        root,
        ..UninstallReport::default()
    };

    if let Some(record) = &manifest.containerd {
        let config = view.local(&record.path);
        let current = files::read_if_exists(&config).map_err(io_error("read", &config))?;
        let current = current
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| InstallError::ConfigNotText(config.clone()))?;
        let outcome = match containerd::plan_unregister(current.as_deref(), record) {
            UnregisterPlan::Delete => {
                files::remove_file(&config).map_err(io_error("remove", &config))?;
                for dir in record.created_dirs.iter().rev() {
                    let dir = view.local(dir);
                    files::remove_empty_dir(&dir).map_err(io_error("remove", &dir))?;
                }
                Unregistered::Deleted
            }
            UnregisterPlan::Write { text, exact } => {
                files::write_file(&config, text.as_bytes()).map_err(io_error("write", &config))?;
                if exact {
                    Unregistered::Restored
                } else {
                    Unregistered::BlockRemoved
                }
            }
            UnregisterPlan::NotFound => Unregistered::NotFound,
            UnregisterPlan::Missing => Unregistered::Missing,
        };
        report.containerd = Some(ContainerdRemoval { config, outcome });
    }

    if let Some(record) = &manifest.containerd_drop_in {
        let path = view.local(&record.path);
        let outcome = match files::read_if_exists(&path).map_err(io_error("read", &path))? {
            None => DropInRemoved::Missing,
            Some(text) if text == record.text.as_bytes() => {
                files::remove_file(&path).map_err(io_error("remove", &path))?;
                DropInRemoved::Removed
            }
            Some(_) => DropInRemoved::KeptEdited,
        };
        // Its folders go if empty, whatever became of the file.
        for dir in record.created_dirs.iter().rev() {
            let dir = view.local(dir);
            if files::remove_empty_dir(&dir).map_err(io_error("remove", &dir))? {
                report.removed_dirs.push(dir);
            } else if dir.exists() {
                report.kept_dirs.push(dir);
            }
        }
        report.drop_in = Some(DropInRemoval { path, outcome });
    }

    for file in &manifest.created_files {
        let local = view.local(file);
        if files::remove_file(&local).map_err(io_error("remove", &local))? {
            report.removed_files.push(local);
        } else {
            report.missing_files.push(local);
        }
    }
    report.kept_files = manifest.replaced_files.iter().map(|f| view.local(f)).collect();
    files::remove_file(&manifest_path).map_err(io_error("remove", &manifest_path))?;
    let mut dirs = manifest.created_dirs.clone();
    dirs.sort_by_key(|dir| std::cmp::Reverse(dir.components().count()));
    for dir in &dirs {
        let local = view.local(dir);
        if files::remove_empty_dir(&local).map_err(io_error("remove", &local))? {
            report.removed_dirs.push(local);
        } else if local.exists() {
            report.kept_dirs.push(local);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::DropInRecord;
    use std::path::Path;

    /// A manifest as the builds before containerd 2.x support wrote it
    /// (format 1, the block without the handler options), for a config at
    /// CONFIG whose text was `version = 2\n`.
    const EARLIER_BUILD: &str = r#"{
  "format": 1,
  "root": "ROOT",
  "created_dirs": [],
  "created_files": [],
  "replaced_files": [],
  "containerd": {
    "path": "CONFIG",
    "created": false,
    "created_dirs": [],
    "original": "version = 2\r\n",
    "offset": 13,
    "inserted": "\r\n# runcvm: the \"runcvm\" RuntimeClass handler. `runcvm install` added this block; `runcvm uninstall` removes it.\r\n# runcvm: containerd's default runtime, restated: naming any runtime replaces containerd's built-in list.\r\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\r\n  runtime_type = \"io.containerd.runc.v2\"\r\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm]\r\n  runtime_type = \"io.containerd.runc.v2\"\r\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm.options]\r\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\r\n# runcvm: end\r\n"
  }
}
"#;

    fn options(root: &Path) -> UninstallOptions {
        UninstallOptions {
            root: root.to_owned(),
            host_root_prefix: None,
        }
    }

    #[test]
    fn an_earlier_builds_manifest_still_restores_the_config_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("opt/runcvm");
        let config = dir.path().join("config.toml");
        std::fs::create_dir_all(&root).unwrap();
        let json = EARLIER_BUILD
            .replace("ROOT", root.to_str().unwrap())
            .replace("CONFIG", config.to_str().unwrap());
        std::fs::write(root.join(MANIFEST_NAME), &json).unwrap();
        let manifest: Manifest = serde_json::from_str(&json).unwrap();
        let record = manifest.containerd.unwrap();
        std::fs::write(&config, format!("version = 2\r\n{}", record.inserted)).unwrap();

        let report = uninstall(&options(&root)).unwrap();
        assert_eq!(report.containerd.unwrap().outcome, Unregistered::Restored);
        assert_eq!(report.drop_in, None);
        assert_eq!(std::fs::read(&config).unwrap(), b"version = 2\r\n");
        assert!(!root.join(MANIFEST_NAME).exists());
    }

    #[test]
    fn the_drop_in_goes_with_the_folders_install_created_for_it_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("opt/runcvm");
        let config = dir.path().join("etc/config.toml");
        let conf_d = dir.path().join("etc/conf.d");
        let drop_in = conf_d.join("runcvm.toml");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&conf_d).unwrap();
        let main = "version = 3\nimports = ['conf.d/*.toml']\n";
        std::fs::write(&config, main).unwrap();
        std::fs::write(&drop_in, "version = 3\n# ours\n").unwrap();
        std::fs::write(conf_d.join("mirrors.toml"), "version = 3\n").unwrap();
        let mut manifest = Manifest::new(root.clone());
        manifest.containerd_drop_in = Some(DropInRecord {
            config: config.clone(),
            path: drop_in.clone(),
            created_dirs: vec![conf_d.clone()],
            text: "version = 3\n# ours\n".into(),
        });
        std::fs::write(root.join(MANIFEST_NAME), manifest.to_bytes()).unwrap();

        let report = uninstall(&options(&root)).unwrap();
        let shown = report.to_string();
        assert_eq!(
            report.drop_in,
            Some(DropInRemoval {
                path: drop_in.clone(),
                outcome: DropInRemoved::Removed
            })
        );
        assert!(shown.contains("removed"), "{shown}");
        assert!(!drop_in.exists());
        // conf.d holds another file now: it stays, and so does the main config.
        assert!(conf_d.join("mirrors.toml").is_file());
        assert_eq!(report.kept_dirs, std::slice::from_ref(&conf_d));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), main);
    }

    #[test]
    fn an_edited_drop_in_is_kept_and_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("opt/runcvm");
        let drop_in = dir.path().join("conf.d/runcvm.toml");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
        std::fs::write(&drop_in, "version = 3\n# edited\n").unwrap();
        let mut manifest = Manifest::new(root.clone());
        manifest.containerd_drop_in = Some(DropInRecord {
            config: dir.path().join("config.toml"),
            path: drop_in.clone(),
            created_dirs: Vec::new(),
            text: "version = 3\n".into(),
        });
        std::fs::write(root.join(MANIFEST_NAME), manifest.to_bytes()).unwrap();
        let report = uninstall(&options(&root)).unwrap();
        assert_eq!(report.drop_in.as_ref().unwrap().outcome, DropInRemoved::KeptEdited);
        assert!(report.to_string().contains("remove it by hand"), "{report}");
        assert!(!report.to_string().contains("restart containerd"), "{report}");
        assert!(drop_in.is_file());
    }
}
