//! `runcvm uninstall`: undo what the manifest lists. The containerd config
//! goes first, so that no new container is handed to a runtime being
//! removed; then the files install created, the manifest, and the folders
//! install created that are empty by then.

use crate::containerd::{self, UnregisterPlan};
use crate::files;
use crate::manifest::Manifest;
use crate::report::{ContainerdRemoval, UninstallReport, Unregistered};
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
