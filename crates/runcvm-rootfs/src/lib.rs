//! The guest's root disk: an ext4 image built with `mkfs.ext4 -d` from the
//! container's rootfs folder, with runcvm's files added under `/.runcvm` by
//! `debugfs`, so the rootfs folder itself is never written to.
//!
//! The image is sparse and sized to its content plus headroom for the
//! workload's writes. It has no journal: it lives exactly as long as one VM.

mod size;
mod tools;

pub use size::{ContentSize, DiskSize, measure_tree};
pub use tools::{GuestEntry, find_tool};

use runcvm_spec::GUEST_DIR;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One file to place under `/.runcvm` in the image.
#[derive(Debug, Clone)]
pub struct GuestFile {
    /// Name inside `/.runcvm` (no slashes).
    pub name: String,
    /// Where the bytes come from on the host.
    pub source: PathBuf,
    /// Permission bits (the file is owned by root).
    pub mode: u32,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct DiskSpec<'a> {
    pub rootfs: &'a Path,
    pub guest_files: &'a [GuestFile],
    pub output: &'a Path,
    /// Free space for the workload beyond what the content needs.
    pub headroom_mib: u64,
}

/// What was built.
#[derive(Debug, Clone, Copy)]
pub struct BuiltDisk {
    pub size: DiskSize,
    pub build_secs: f64,
}

/// Why the root disk could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// rootfs folder cannot be used
    #[error("rootfs {path} is not a readable folder: pass the folder that holds the container's files")]
    NotAFolder {
        path: PathBuf,
        #[source]
        source: Option<std::io::Error>,
    },
    /// rootfs already has /.runcvm
    #[error("rootfs {0} already has {GUEST_DIR}, which runcvm reserves for its own files: remove it from the image")]
    Reserved(PathBuf),
    /// rootfs could not be measured
    #[error("cannot measure the rootfs at {path}")]
    Measure {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the e2fsprogs tool is missing
    #[error("{tool} not found in PATH, /usr/sbin or /sbin: install e2fsprogs (apt-get install e2fsprogs)")]
    ToolMissing { tool: &'static str },
    /// the image file cannot be created
    #[error(
        "cannot create the root disk image {path}: make its folder writable, or point RUNCVM_STATE_DIR at one that is"
    )]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// a tool failed
    #[error("{tool} failed on {image} ({status}): {stderr}")]
    ToolFailed {
        tool: &'static str,
        image: PathBuf,
        status: String,
        stderr: String,
    },
    /// the guest files did not land in the image
    #[error("{image} lacks {GUEST_DIR}/{name} after debugfs wrote it: {detail}")]
    Verify {
        image: PathBuf,
        name: String,
        detail: String,
    },
}

/// Builds the image at `spec.output`; on any error nothing is left there.
pub fn build_disk(spec: &DiskSpec<'_>) -> Result<BuiltDisk, DiskError> {
    let started = Instant::now();
    check_rootfs(spec.rootfs)?;
    let mkfs = find_tool("mkfs.ext4").ok_or(DiskError::ToolMissing { tool: "mkfs.ext4" })?;
    let debugfs = find_tool("debugfs").ok_or(DiskError::ToolMissing { tool: "debugfs" })?;
    let mut content = measure_tree(spec.rootfs).map_err(|source| DiskError::Measure {
        path: spec.rootfs.to_owned(),
        source,
    })?;
    for file in spec.guest_files {
        let len = std::fs::metadata(&file.source)
            .map_err(|source| DiskError::Measure {
                path: file.source.clone(),
                source,
            })?
            .len();
        content.add_file(len);
    }
    let size = DiskSize::for_content(content, spec.headroom_mib);

    let image = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(spec.output)
        .map_err(|source| DiskError::Create {
            path: spec.output.to_owned(),
            source,
        })?;
    let result = image
        .set_len(size.bytes())
        .map_err(|source| DiskError::Create {
            path: spec.output.to_owned(),
            source,
        })
        .and_then(|()| populate(&mkfs, &debugfs, spec, size));
    drop(image);
    if let Err(e) = result {
        let _ = std::fs::remove_file(spec.output);
        return Err(e);
    }
    Ok(BuiltDisk {
        size,
        build_secs: started.elapsed().as_secs_f64(),
    })
}

fn check_rootfs(rootfs: &Path) -> Result<(), DiskError> {
    match std::fs::metadata(rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DiskError::NotAFolder {
                path: rootfs.to_owned(),
                source: None,
            });
        }
        Err(source) => {
            return Err(DiskError::NotAFolder {
                path: rootfs.to_owned(),
                source: Some(source),
            });
        }
    }
    let reserved = rootfs.join(GUEST_DIR.trim_start_matches('/'));
    if reserved.symlink_metadata().is_ok() {
        return Err(DiskError::Reserved(rootfs.to_owned()));
    }
    Ok(())
}

fn populate(mkfs: &Path, debugfs: &Path, spec: &DiskSpec<'_>, size: DiskSize) -> Result<(), DiskError> {
    let mut command = Command::new(mkfs);
    command
        .args(["-q", "-F", "-t", "ext4", "-L", "runcvm-root", "-O", "^has_journal"])
        .args(["-E", "lazy_itable_init=1,nodiscard", "-N"])
        .arg(size.inodes.to_string())
        .arg("-d")
        .arg(spec.rootfs)
        .arg(spec.output);
    runcvm_log::debug!("building root disk: {command:?}");
    tools::run("mkfs.ext4", command, spec.output)?;
    tools::add_guest_files(debugfs, spec.output, spec.guest_files)?;
    tools::verify_guest_files(debugfs, spec.output, spec.guest_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_file(dir: &Path, name: &str, mode: u32) -> GuestFile {
        let source = dir.join(name);
        std::fs::write(&source, format!("{name} contents")).unwrap();
        GuestFile {
            name: name.to_owned(),
            source,
            mode,
        }
    }

    /// Runs the real e2fsprogs (part of every Debian system).
    #[test]
    fn builds_an_image_with_guest_files_listable_without_booting() {
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::write(rootfs.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        let files = [
            guest_file(work.path(), "init", 0o755),
            guest_file(work.path(), "entrypoint", 0o600),
        ];
        let image = work.path().join("disk.ext4");
        let built = build_disk(&DiskSpec {
            rootfs: &rootfs,
            guest_files: &files,
            output: &image,
            headroom_mib: 8,
        })
        .unwrap();
        assert_eq!(std::fs::metadata(&image).unwrap().len(), built.size.bytes());
        let debugfs = find_tool("debugfs").unwrap();
        let listing = GuestEntry::list(&debugfs, &image, GUEST_DIR).unwrap();
        let init = listing.iter().find(|e| e.name == "init").unwrap();
        assert_eq!((init.mode, init.uid, init.size), (0o100755, 0, 13));
        let entrypoint = listing.iter().find(|e| e.name == "entrypoint").unwrap();
        assert_eq!(entrypoint.mode, 0o100600);
        let bin = GuestEntry::list(&debugfs, &image, "/bin").unwrap();
        assert!(bin.iter().any(|e| e.name == "tool"));
        assert_eq!(GuestEntry::read(&debugfs, &image, "/bin/tool").unwrap(), "#!/bin/sh\n");
    }

    #[test]
    fn refuses_a_rootfs_that_has_runcvm_files_and_leaves_nothing() {
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join(".runcvm")).unwrap();
        let image = work.path().join("disk.ext4");
        let spec = DiskSpec {
            rootfs: &rootfs,
            guest_files: &[],
            output: &image,
            headroom_mib: 8,
        };
        let err = build_disk(&spec).unwrap_err().to_string();
        assert!(err.contains("already has /.runcvm"), "{err}");
        assert!(!image.exists());
    }

    #[test]
    fn a_missing_guest_file_fails_before_an_image_exists() {
        let work = tempfile::tempdir().unwrap();
        let image = work.path().join("disk.ext4");
        let missing = GuestFile {
            name: "init".into(),
            source: work.path().join("nope"),
            mode: 0o755,
        };
        let err = build_disk(&DiskSpec {
            rootfs: work.path(),
            guest_files: &[missing],
            output: &image,
            headroom_mib: 8,
        })
        .unwrap_err();
        assert!(matches!(err, DiskError::Measure { .. }), "{err}");
        assert!(!image.exists());
    }
}
