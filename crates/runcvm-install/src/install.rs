//! `runcvm install`: find and check every source first, then copy, check
//! that the bundled QEMU starts, register the handler, and write the
//! manifest (also when a step failed, so uninstall can undo the rest).

use crate::containerd::{self, ConfigVersion, Facts, RegisterPlan, RegisterRequest};
use crate::files::{self, Copied};
use crate::manifest::Manifest;
use crate::qemu::{self, QemuSources};
use crate::report::{ContainerdChange, FileChange, InstallReport, InstalledFile, QemuSummary};
use crate::settings::SETTINGS_FILE;
use crate::{BINARIES, BundledQemu, InstallError, InstallOptions, MANIFEST_NAME, View, absolute, io_error};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Installs runcvm as `options` say; see the crate docs for the layout.
pub fn install(options: &InstallOptions) -> Result<InstallReport, InstallError> {
    let view = View::new(options.host_root_prefix.as_deref())?;
    let root = absolute(&options.root)?;
    let config = absolute(&options.containerd_config)?;
    let node_root = view.node(&root)?;
    let node_config = view.node(&config)?;
    let runtime = node_root.join(runcvm_spec::layout::RUNTIME);
    let binary_name = runtime
        .to_str()
        .ok_or_else(|| InstallError::PathNotUtf8(runtime.clone()))?
        .to_owned();

    let sources = Sources::find(options)?;
    let manifest_path = root.join(MANIFEST_NAME);
    let previous = Manifest::load(&manifest_path)?;
    let mut manifest = previous.clone().unwrap_or_else(|| Manifest::new(node_root.clone()));
    manifest.root = node_root;
    let recorded =
        (manifest.containerd.as_ref().map(|r| &r.path)).or(manifest.containerd_drop_in.as_ref().map(|r| &r.config));
    if let Some(recorded) = recorded {
        if *recorded != node_config {
            return Err(InstallError::ConfigElsewhere {
                recorded: recorded.clone(),
                requested: node_config,
            });
        }
    }
    let current = read_config(&config)?;
    let request = RegisterRequest {
        current: current.as_deref(),
        previous: manifest.containerd.as_ref(),
        previous_drop_in: manifest.containerd_drop_in.as_ref(),
        binary_name: &binary_name,
        config: &node_config,
    };
    let config_error = |source| InstallError::Config {
        path: config.clone(),
        source,
    };
    let drop_in_current = match containerd::drop_in_target(&request).map_err(config_error)? {
        Some(drop_in) => read_config(&view.local(&drop_in))?,
        None => None,
    };
    let plan = containerd::plan_register(&request, drop_in_current.as_deref()).map_err(config_error)?;
    let drop_in = plan.drop_in.as_ref().map(|d| d.record.path.clone());
    let mut warnings = warnings(&plan.facts, &config, &node_config, drop_in.as_deref(), &view);

    let mut files = Vec::new();
    let result = copy_all(&sources, &root, &view, &mut manifest, &mut files)
        .and_then(|()| check_bundle(&root))
        .and_then(|version| {
            register(&config, &view, &plan, &mut manifest, &mut warnings).map(|moved| (version, moved))
        });
    let saved = save_manifest(&manifest_path, &manifest, previous.as_ref());
    let (version, moved_from) = result?;
    saved?;

    Ok(InstallReport {
        manifest: manifest_path,
        files,
        qemu: QemuSummary {
            version,
            libraries: sources.qemu.libraries.len(),
            bytes: sources.qemu_bytes(),
            firmware: sources.qemu.firmware.iter().map(|(name, _)| name.clone()).collect(),
        },
        containerd: ContainerdChange {
            file: drop_in.as_ref().map_or_else(|| config.clone(), |path| view.local(path)),
            drop_in: drop_in.is_some(),
            config,
            version: plan.facts.version,
            binary_name,
            registration: plan.outcome,
            created: current.is_none(),
            systemd_cgroup: plan.facts.systemd_cgroup,
            restated_runc: plan.facts.restates_runc,
            moved_from,
        },
        warnings,
        root,
    })
}

/// What install copies, found and checked before anything is written.
struct Sources {
    binaries: Vec<(&'static str, PathBuf)>,
    /// Firecracker's static release binary, if given.
    firecracker: Option<PathBuf>,
    /// Holds the hardened loader and the settings file until they are
    /// installed.
    _staging: tempfile::TempDir,
    settings: PathBuf,
    kernel: PathBuf,
    qemu: QemuSources,
}

impl Sources {
    fn find(options: &InstallOptions) -> Result<Self, InstallError> {
        options.settings.validate().map_err(InstallError::Settings)?;
        let dir = match &options.binaries_from {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()
                .map_err(InstallError::NoSourceDir)?
                .parent()
                .map(Path::to_owned)
                .unwrap_or_default(),
        };
        let mut binaries = Vec::new();
        for name in BINARIES {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(InstallError::BinaryMissing { name, dir });
            }
            binaries.push((name, path));
        }
        let firecracker = match &options.firecracker {
            Some(path) => Some(
                runcvm_vmm::firecracker::FirecrackerBinary::at(path)
                    .map_err(InstallError::Firecracker)?
                    .path()
                    .to_owned(),
            ),
            None => None,
        };
        let kernel = options.kernel.clone();
        if !kernel.is_file() {
            return Err(InstallError::KernelMissing(kernel));
        }
        if !files::is_elf(&kernel).map_err(io_error("read", &kernel))? {
            return Err(InstallError::KernelNotElf(kernel));
        }
        let qemu_path = match &options.qemu {
            Some(path) => path.clone(),
            None => qemu::find_on_path().ok_or_else(|| InstallError::QemuMissing {
                searched: "not on PATH".into(),
            })?,
        };
        let mut qemu = qemu::gather(&qemu_path, &options.qemu_module_dir, &options.firmware_dirs)?;
        // The loader is installed hardened (see `qemu::harden_loader`).
        let staging = tempfile::Builder::new()
            .prefix("runcvm-install-")
            .tempdir()
            .map_err(io_error("create a staging folder in", &std::env::temp_dir()))?;
        let original = std::fs::read(&qemu.loader).map_err(io_error("read", &qemu.loader))?;
        let hardened = qemu::harden_loader(original).map_err(|reason| InstallError::Loader {
            path: qemu.loader.clone(),
            reason,
        })?;
        let staged = staging.path().join(runcvm_vmm::qemu::bundle::LOADER_NAME);
        std::fs::write(&staged, hardened).map_err(io_error("write", &staged))?;
        qemu.loader = staged;
        let settings = staging.path().join("runcvm.toml");
        std::fs::write(&settings, options.settings.to_toml()).map_err(io_error("write", &settings))?;
        Ok(Self {
            binaries,
            firecracker,
            _staging: staging,
            settings,
            kernel,
            qemu,
        })
    }

    /// (source, destination, mode) of every file, binaries first.
    fn copies(&self, root: &Path) -> Vec<(PathBuf, PathBuf, u32)> {
        let bundle = BundledQemu::layout(root);
        let mut copies: Vec<_> = self
            .binaries
            .iter()
            .map(|(name, source)| {
                (
                    source.clone(),
                    root.join(runcvm_spec::layout::BIN_DIR).join(name),
                    0o755,
                )
            })
            .collect();
        if let Some(firecracker) = &self.firecracker {
            copies.push((
                firecracker.clone(),
                root.join(runcvm_vmm::firecracker::launch::FIRECRACKER_IN_ROOT),
                0o755,
            ));
        }
        copies.push((
            self.kernel.clone(),
            runcvm_spec::layout::at(root, runcvm_spec::layout::KERNEL),
            0o644,
        ));
        // Root's alone: the settings decide how every guest boots.
        copies.push((self.settings.clone(), root.join(SETTINGS_FILE), 0o600));
        copies.push((self.qemu.program.clone(), bundle.program.clone(), 0o755));
        copies.push((self.qemu.loader.clone(), bundle.loader.clone(), 0o755));
        let in_dir = |dir: &Path, list: &[(String, PathBuf)]| {
            list.iter()
                .map(|(name, source)| (source.clone(), dir.join(name), 0o644))
                .collect::<Vec<_>>()
        };
        copies.extend(in_dir(&bundle.library_path, &self.qemu.libraries));
        copies.extend(in_dir(&bundle.module_dir, &self.qemu.modules));
        copies.extend(in_dir(&bundle.firmware_dir, &self.qemu.firmware));
        copies
    }

    fn qemu_bytes(&self) -> u64 {
        let q = &self.qemu;
        std::iter::once(&q.program)
            .chain([&q.loader])
            .chain(q.libraries.iter().chain(&q.modules).chain(&q.firmware).map(|(_, p)| p))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

fn copy_all(
    sources: &Sources,
    root: &Path,
    view: &View,
    manifest: &mut Manifest,
    report: &mut Vec<InstalledFile>,
) -> Result<(), InstallError> {
    let bundle = BundledQemu::layout(root);
    let dirs = [
        root.join(runcvm_spec::layout::BIN_DIR),
        root.join(runcvm_spec::layout::KERNEL_DIR),
        root.join(SETTINGS_FILE)
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
        bundle.program.parent().map(Path::to_owned).unwrap_or_default(),
        bundle.library_path.clone(),
        bundle.module_dir.clone(),
        bundle.firmware_dir.clone(),
    ];
    for dir in &dirs {
        for created in files::create_dirs(dir).map_err(io_error("create", dir))? {
            manifest.note_created_dir(view.node(&created)?);
        }
    }
    for (source, dest, mode) in sources.copies(root) {
        let copied = files::install_file(&source, &dest, mode).map_err(io_error("install", &dest))?;
        let node = view.node(&dest)?;
        let change = match copied {
            Copied::Unchanged => FileChange::Unchanged,
            Copied::Created => {
                manifest.note_file(node, true);
                FileChange::Created
            }
            Copied::Updated if manifest.is_own(&node) => FileChange::Updated,
            Copied::Updated => {
                manifest.note_file(node, false);
                FileChange::Replaced
            }
        };
        report.push(InstalledFile { path: dest, change });
    }
    Ok(())
}

/// Runs `qemu-system-x86_64 -version` through the bundle with an empty
/// environment; returns the version line.
fn check_bundle(root: &Path) -> Result<String, InstallError> {
    let broken = |detail: String| InstallError::BundleBroken {
        root: root.to_owned(),
        detail,
    };
    let bundle = BundledQemu::at(root).ok_or_else(|| broken("files are missing".into()))?;
    let prefix = bundle.command_prefix();
    let output = Command::new(&prefix.program)
        .args(&prefix.args)
        .arg("-version")
        .env_clear()
        .envs(prefix.env)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| broken(format!("cannot run {}: {e}", prefix.program.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(broken(format!("{} ({})", stderr.trim(), output.status)));
    }
    Ok(stdout.lines().next().unwrap_or_default().trim().to_owned())
}

fn read_config(config: &Path) -> Result<Option<String>, InstallError> {
    match files::read_if_exists(config).map_err(io_error("read", config))? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| InstallError::ConfigNotText(config.to_owned())),
    }
}

/// Writes what the plan says: the drop-in first, then the main config, then
/// the removal of a drop-in that no longer holds the handler, each recorded
/// in the manifest as soon as it is on disk. Returns the file an earlier
/// registration was taken out of, if the handler moved.
fn register(
    config: &Path,
    view: &View,
    plan: &RegisterPlan,
    manifest: &mut Manifest,
    warnings: &mut Vec<String>,
) -> Result<Option<PathBuf>, InstallError> {
    let mut moved_from = None;
    if let Some(drop_in) = &plan.drop_in {
        let mut record = drop_in.record.clone();
        if drop_in.write {
            let local = view.local(&record.path);
            if let Some(parent) = local.parent() {
                for created in files::create_dirs(parent).map_err(io_error("create", parent))? {
                    record.created_dirs.push(view.node(&created)?);
                }
            }
            files::write_file(&local, record.text.as_bytes()).map_err(io_error("write", &local))?;
        }
        manifest.containerd_drop_in = Some(record);
    }
    let mut record = plan.record.clone();
    if plan.write_main {
        if let (Some(parent), Some(record)) = (config.parent(), record.as_mut()) {
            for created in files::create_dirs(parent).map_err(io_error("create", parent))? {
                record.created_dirs.push(view.node(&created)?);
            }
        }
        files::write_file(config, plan.text.as_bytes()).map_err(io_error("write", config))?;
        if plan.drop_in.is_some() {
            moved_from = Some(config.to_owned());
        }
    }
    manifest.containerd = record;
    if let Some(stale) = &plan.stale_drop_in {
        let local = view.local(&stale.path);
        match files::read_if_exists(&local).map_err(io_error("read", &local))? {
            Some(text) if text == stale.text.as_bytes() => {
                files::remove_file(&local).map_err(io_error("remove", &local))?;
                for dir in stale.created_dirs.iter().rev() {
                    let dir = view.local(dir);
                    files::remove_empty_dir(&dir).map_err(io_error("remove", &dir))?;
                }
                moved_from = Some(local);
            }
            Some(_) => warnings.push(format!(
                "{} held the runcvm handler before and was edited since, so it was left: remove it, or containerd reads its runcvm runtime too",
                local.display()
            )),
            None => {}
        }
        if plan.drop_in.is_none() {
            manifest.containerd_drop_in = None;
        }
    }
    Ok(moved_from)
}

fn save_manifest(path: &Path, manifest: &Manifest, previous: Option<&Manifest>) -> Result<(), InstallError> {
    let empty = Manifest::new(manifest.root.clone());
    if previous == Some(manifest) || (previous.is_none() && *manifest == empty) {
        return Ok(());
    }
    files::write_file(path, &manifest.to_bytes()).map_err(io_error("write", path))
}

/// Conditions of the node that keep the handler from working.
fn warnings(facts: &Facts, config: &Path, node_config: &Path, drop_in: Option<&Path>, view: &View) -> Vec<String> {
    let mut warnings = Vec::new();
    let shown = config.display();
    if facts.cri_disabled {
        warnings.push(format!(
            "{shown} disables the CRI plugin (disabled_plugins): the kubelet cannot use this containerd until it is enabled"
        ));
    }
    let containerd_2 = facts.version == ConfigVersion::V3;
    for import in &facts.imports {
        let named = Path::new(import);
        let node_path = if named.is_absolute() {
            named.to_owned()
        } else {
            node_config.parent().unwrap_or(Path::new("/")).join(named)
        };
        let Some(candidates) = expand(&view.local(&node_path)) else {
            if !containerd_2 {
                warnings.push(format!(
                    "cannot check the import {import:?} of {shown}: a file it names that configures the CRI plugin would hide the runcvm handler"
                ));
            }
            continue;
        };
        for file in candidates {
            if drop_in.is_some_and(|d| view.local(d) == file) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if containerd_2 && containerd::defines_handler(&text) {
                warnings.push(format!(
                    "{} (imported by {shown}) also defines a runtime named runcvm, which containerd 2.x merges with runcvm's: remove it there",
                    file.display()
                ));
            } else if !containerd_2 && containerd::configures_cri(&text) {
                warnings.push(format!(
                    "{} (imported by {shown}) configures the CRI plugin, and containerd 1.x lets an imported file replace the main file's whole CRI section, runcvm handler included: move those settings into {shown}",
                    file.display()
                ));
            }
        }
    }
    warnings
}

/// The files a path names: itself, or the matches of `*` and `?` in its
/// last component. `None` for patterns it cannot expand.
fn expand(path: &Path) -> Option<Vec<PathBuf>> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?;
    let wild = |s: &str| s.contains(['*', '?', '[']);
    if parent.to_str().is_none_or(wild) || name.contains('[') {
        return None;
    }
    if !wild(name) {
        return Some(vec![path.to_owned()]);
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Some(Vec::new());
    };
    let mut matches: Vec<_> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard(name.as_bytes(), n.as_bytes()))
        })
        .map(|e| e.path())
        .collect();
    matches.sort();
    Some(matches)
}

fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_filepath_glob_in_one_component() {
        assert!(wildcard(b"*.toml", b"runcvm.toml"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"*.toml", b"runcvm.conf"));
        assert!(wildcard(b"*", b""));
    }

    #[test]
    fn imports_that_configure_cri_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        std::fs::write(
            conf_d.join("mirrors.toml"),
            "[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"\n",
        )
        .unwrap();
        std::fs::write(conf_d.join("debug.toml"), "[debug]\nlevel = \"debug\"\n").unwrap();
        let config = dir.path().join("config.toml");
        let facts = Facts {
            imports: vec![format!("{}/*.toml", conf_d.display()), "missing.toml".into()],
            ..Facts::default()
        };
        let warnings = warnings(&facts, &config, &config, None, &View::new(None).unwrap());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("mirrors.toml"), "{warnings:?}");
    }

    #[test]
    fn containerd_2_imports_that_define_runcvm_are_warned_about_not_the_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let conf_d = dir.path().join("conf.d");
        std::fs::create_dir(&conf_d).unwrap();
        let handler = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runcvm]\n";
        std::fs::write(conf_d.join("old.toml"), handler).unwrap();
        std::fs::write(conf_d.join("runcvm.toml"), handler).unwrap();
        // Configuring CRI is fine on containerd 2.x: imports are merged.
        std::fs::write(
            conf_d.join("mirrors.toml"),
            "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/x'\n",
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        let facts = Facts {
            version: ConfigVersion::V3,
            imports: vec!["conf.d/*.toml".into()],
            ..Facts::default()
        };
        let drop_in = conf_d.join("runcvm.toml");
        let warnings = warnings(&facts, &config, &config, Some(&drop_in), &View::new(None).unwrap());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("old.toml") && warnings[0].contains("containerd 2.x merges"),
            "{warnings:?}"
        );
    }
}
