//! What install and uninstall did, for the user: each report prints as the
//! lines `runcvm install` / `runcvm uninstall` show.

use crate::{ConfigVersion, Registration};
use std::fmt;
use std::path::{Path, PathBuf};

/// What install did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange {
    /// It did not exist.
    Created,
    /// An earlier install's copy was replaced by a different one.
    Updated,
    /// It existed before any install and was overwritten (uninstall keeps it).
    Replaced,
    /// It already had these bytes and mode.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledFile {
    pub path: PathBuf,
    pub change: FileChange,
}

/// The bundled QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSummary {
    /// The first line of `qemu-system-x86_64 -version`, run through the bundle.
    pub version: String,
    /// Libraries in `qemu/lib`, the loader not counted.
    pub libraries: usize,
    /// Bytes in `qemu/` (binary, libraries, loader, module, firmware).
    pub bytes: u64,
    /// Firmware files in `qemu/share`.
    pub firmware: Vec<String>,
}

/// What install did to containerd's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdChange {
    /// The main config, as this process sees it.
    pub config: PathBuf,
    /// The file that registers the handler: the main config, or the drop-in.
    pub file: PathBuf,
    /// `file` is a drop-in the main config imports (containerd 2.x); the
    /// main config was not changed.
    pub drop_in: bool,
    /// The main config's version, hence the containerd it is for.
    pub version: ConfigVersion,
    /// `options.BinaryName` as written (the node's path).
    pub binary_name: String,
    pub registration: Registration,
    /// The main config did not exist and was created.
    pub created: bool,
    /// `SystemdCgroup = true` was set, as on the default runtime.
    pub systemd_cgroup: bool,
    /// The config named no runtime, so the block restates containerd's
    /// built-in `runc` (containerd 1.x replaces its built-in list with the
    /// config's).
    pub restated_runc: bool,
    /// Where an earlier install had registered the handler, when that is
    /// not `file`: its block was taken out, or its drop-in removed.
    pub moved_from: Option<PathBuf>,
}

impl ContainerdChange {
    /// "config version 3, for containerd 2.x".
    fn version_note(&self) -> String {
        format!(
            "config version {}, for containerd {}",
            self.version.number(),
            self.version.containerd()
        )
    }
}

/// What `runcvm install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub root: PathBuf,
    pub manifest: PathBuf,
    pub files: Vec<InstalledFile>,
    pub qemu: QemuSummary,
    pub containerd: ContainerdChange,
    /// Things about the node that may keep the handler from working.
    pub warnings: Vec<String>,
}

impl InstallReport {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        self.files.iter().any(|f| f.change != FileChange::Unchanged)
            || self.containerd.registration != Registration::Unchanged
    }
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let root = self.root.display();
        if self.changed() {
            writeln!(f, "runcvm installed in {root}")?;
        } else {
            writeln!(f, "runcvm is already installed in {root}: nothing changed")?;
        }
        let libraries = self.root.join(crate::QEMU_DIR).join("lib");
        let verb = |change| match change {
            FileChange::Created => Some("created"),
            FileChange::Updated => Some("updated"),
            FileChange::Replaced => Some("replaced (it was there before install, so uninstall keeps it)"),
            FileChange::Unchanged => None,
        };
        for file in self.files.iter().filter(|file| !file.path.starts_with(&libraries)) {
            if let Some(verb) = verb(file.change) {
                writeln!(f, "  {verb} {}", relative(&file.path, &self.root).display())?;
            }
        }
        for change in [FileChange::Created, FileChange::Updated, FileChange::Replaced] {
            let count = self
                .files
                .iter()
                .filter(|file| file.change == change && file.path.starts_with(&libraries))
                .count();
            if let (Some(verb), true) = (verb(change), count > 0) {
                writeln!(
                    f,
                    "  {verb} {count} files in {}",
                    relative(&libraries, &self.root).display()
                )?;
            }
        }
        let unchanged = self.files.iter().filter(|f| f.change == FileChange::Unchanged).count();
        if unchanged > 0 && self.changed() {
            writeln!(f, "  {unchanged} files unchanged")?;
        }
        writeln!(
            f,
            "  qemu: {}; {} libraries and the loader, {:.1} MiB in {}",
            self.qemu.version,
            self.qemu.libraries,
            mib(self.qemu.bytes),
            self.root.join(crate::QEMU_DIR).display()
        )?;
        let c = &self.containerd;
        let file = c.file.display();
        let systemd = if c.systemd_cgroup {
            ", SystemdCgroup = true like the default runtime"
        } else {
            ""
        };
        let details = format!("{}; BinaryName = {}{systemd}", c.version_note(), c.binary_name);
        match c.registration {
            Registration::Added if c.drop_in => writeln!(
                f,
                "  containerd: wrote {file} registering handler runcvm ({details}); {} imports it and was not changed",
                c.config.display()
            )?,
            Registration::Added if c.created => {
                writeln!(f, "  containerd: created {file} registering handler runcvm ({details})")?
            }
            Registration::Added => writeln!(f, "  containerd: registered handler runcvm in {file} ({details})")?,
            Registration::Updated => writeln!(f, "  containerd: updated handler runcvm in {file} ({details})")?,
            Registration::Unchanged => writeln!(
                f,
                "  containerd: handler runcvm already registered in {file} ({})",
                c.version_note()
            )?,
        }
        if let Some(from) = &c.moved_from {
            writeln!(
                f,
                "  containerd: the handler was registered in {} before; that registration was taken out",
                from.display()
            )?;
        }
        if c.restated_runc && c.registration != Registration::Unchanged {
            writeln!(
                f,
                "  containerd: the block also restates the default runtime runc, because containerd 1.x replaces its built-in runtimes with a config's"
            )?;
        }
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        if c.registration == Registration::Unchanged {
            write!(
                f,
                "if containerd has not restarted since the install: systemctl restart containerd"
            )
        } else {
            write!(
                f,
                "restart containerd for the handler to take effect: systemctl restart containerd"
            )
        }
    }
}

/// What uninstall did to containerd's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unregistered {
    /// The file is back to its bytes from before install.
    Restored,
    /// Install had created the file: it is gone.
    Deleted,
    /// The file changed since install: only the runcvm block was taken out.
    BlockRemoved,
    /// The block is not in the file any more: it was left as it is.
    NotFound,
    /// The file no longer exists.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdRemoval {
    /// The config as this process sees it.
    pub config: PathBuf,
    pub outcome: Unregistered,
}

/// What uninstall did with the drop-in install wrote (containerd 2.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropInRemoved {
    /// It held the bytes install wrote: it is gone.
    Removed,
    /// It was edited since install: it was left as it is.
    KeptEdited,
    /// It no longer exists.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropInRemoval {
    /// The drop-in as this process sees it.
    pub path: PathBuf,
    pub outcome: DropInRemoved,
}

/// What `runcvm uninstall` did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UninstallReport {
    pub root: PathBuf,
    pub removed_files: Vec<PathBuf>,
    /// Files install listed as created that were already gone.
    pub missing_files: Vec<PathBuf>,
    /// Files that were there before install (install overwrote them).
    pub kept_files: Vec<PathBuf>,
    pub removed_dirs: Vec<PathBuf>,
    /// Folders install created that now hold files it did not put there.
    pub kept_dirs: Vec<PathBuf>,
    /// The block in the main config.
    pub containerd: Option<ContainerdRemoval>,
    /// The drop-in.
    pub drop_in: Option<DropInRemoval>,
}

impl fmt::Display for UninstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "runcvm uninstalled from {}: removed {} files and {} folders",
            self.root.display(),
            self.removed_files.len(),
            self.removed_dirs.len()
        )?;
        for file in &self.kept_files {
            writeln!(f, "  kept {} (it was there before install)", file.display())?;
        }
        for dir in &self.kept_dirs {
            writeln!(f, "  kept {} (it holds files install did not put there)", dir.display())?;
        }
        for file in &self.missing_files {
            writeln!(f, "  {} was already gone", file.display())?;
        }
        if self.containerd.is_none() && self.drop_in.is_none() {
            return write!(f, "  containerd: install had not registered the handler");
        }
        let mut lines = Vec::new();
        let mut changed = false;
        if let Some(removal) = &self.containerd {
            let config = removal.config.display();
            changed |= matches!(
                removal.outcome,
                Unregistered::Restored | Unregistered::Deleted | Unregistered::BlockRemoved
            );
            lines.push(match removal.outcome {
                Unregistered::Restored => format!("  containerd: {config} is back to its bytes from before install"),
                Unregistered::Deleted => format!("  containerd: removed {config}, which install had created"),
                Unregistered::BlockRemoved => format!(
                    "  containerd: {config} changed since install, so only the runcvm block was taken out; the rest is as you left it"
                ),
                Unregistered::NotFound => {
                    format!("  containerd: the runcvm block is no longer in {config}; left the file as it is")
                }
                Unregistered::Missing => format!("  containerd: {config} no longer exists"),
            });
        }
        if let Some(removal) = &self.drop_in {
            let path = removal.path.display();
            changed |= removal.outcome == DropInRemoved::Removed;
            lines.push(match removal.outcome {
                DropInRemoved::Removed => format!("  containerd: removed {path}, which install had written"),
                DropInRemoved::KeptEdited => format!(
                    "  containerd: {path} was edited since install, so it was left; it still registers handler runcvm: remove it by hand"
                ),
                DropInRemoved::Missing => format!("  containerd: {path} no longer exists"),
            });
        }
        if changed {
            lines.push("restart containerd to drop the handler: systemctl restart containerd".into());
        }
        write!(f, "{}", lines.join("\n"))
    }
}

fn relative<'a>(path: &'a Path, root: &Path) -> &'a Path {
    path.strip_prefix(root).unwrap_or(path)
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
