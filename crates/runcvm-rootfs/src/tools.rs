//! Driving e2fsprogs: `mkfs.ext4` builds, `debugfs` adds and lists files
//! without mounting (no root, no loop device).

use crate::{DiskError, GuestFile};
use runcvm_spec::GUEST_DIR;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Finds an e2fsprogs tool: `PATH` first, then the sbin folders that a
/// non-root `PATH` often lacks.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

pub(crate) fn run(tool: &'static str, mut command: Command, image: &Path) -> Result<String, DiskError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| DiskError::ToolFailed {
            tool,
            image: image.to_owned(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(DiskError::ToolFailed {
            tool,
            image: image.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Quotes a host path for debugfs's command parser.
fn quote(path: &Path, image: &Path) -> Result<String, DiskError> {
    let text = path.to_str().filter(|t| !t.contains(['"', '\n']));
    text.map(|t| format!("\"{t}\"")).ok_or_else(|| DiskError::ToolFailed {
        tool: "debugfs",
        image: image.to_owned(),
        status: "not started".into(),
        stderr: format!(
            "{} cannot be passed to debugfs (quote, newline or non-UTF-8 in the path)",
            path.display()
        ),
    })
}

pub(crate) fn add_guest_files(debugfs: &Path, image: &Path, files: &[GuestFile]) -> Result<(), DiskError> {
    let mut script =
        format!("mkdir {GUEST_DIR}\nsif {GUEST_DIR} mode 040711\nsif {GUEST_DIR} uid 0\nsif {GUEST_DIR} gid 0\n");
    for file in files {
        let target = format!("{GUEST_DIR}/{}", file.name);
        script.push_str(&format!(
            "write {} {target}\nsif {target} mode 0{:o}\nsif {target} uid 0\nsif {target} gid 0\n",
            quote(&file.source, image)?,
            0o100_000 | (file.mode & 0o7777),
        ));
    }
    let mut child = Command::new(debugfs)
        .args(["-w", "-f", "-"])
        .arg(image)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DiskError::ToolFailed {
            tool: "debugfs",
            image: image.to_owned(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child.wait_with_output().map_err(|e| DiskError::ToolFailed {
        tool: "debugfs",
        image: image.to_owned(),
        status: "lost".into(),
        stderr: e.to_string(),
    })?;
    // debugfs exits 0 even when a command fails; the listing below is the
    // real check, and its stderr explains a failure.
    if !output.status.success() {
        return Err(DiskError::ToolFailed {
            tool: "debugfs",
            image: image.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// One entry of a directory listing read from an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEntry {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

impl GuestEntry {
    /// Lists `dir` inside `image` with `debugfs -R "ls -p"`, without booting.
    pub fn list(debugfs: &Path, image: &Path, dir: &str) -> Result<Vec<Self>, DiskError> {
        let mut command = Command::new(debugfs);
        command.arg("-R").arg(format!("ls -p {dir}")).arg(image);
        let listing = run("debugfs", command, image)?;
        Ok(listing.lines().filter_map(Self::parse).collect())
    }

    /// Reads one file of `image` (`debugfs -R "cat PATH"`), without booting.
    pub fn read(debugfs: &Path, image: &Path, path: &str) -> Result<String, DiskError> {
        let mut command = Command::new(debugfs);
        command.arg("-R").arg(format!("cat {path}")).arg(image);
        run("debugfs", command, image)
    }

    /// Parses `/inode/mode/uid/gid/name/size/` (a folder's size is empty).
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.trim().strip_prefix('/')?.strip_suffix('/')?.split('/').collect();
        let [_, mode, uid, gid, name, size] = fields.as_slice() else {
            return None;
        };
        Some(Self {
            name: (*name).to_owned(),
            mode: u32::from_str_radix(mode, 8).ok()?,
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            size: size.parse().unwrap_or(0),
        })
    }
}

pub(crate) fn verify_guest_files(debugfs: &Path, image: &Path, files: &[GuestFile]) -> Result<(), DiskError> {
    let listing = GuestEntry::list(debugfs, image, GUEST_DIR)?;
    for file in files {
        let expected_len = std::fs::metadata(&file.source).map(|m| m.len()).unwrap_or(0);
        let problem = match listing.iter().find(|e| e.name == file.name) {
            None => Some("it is not listed".to_owned()),
            Some(e) if e.size != expected_len => Some(format!("{} bytes instead of {expected_len}", e.size)),
            Some(e) if e.mode & 0o7777 != file.mode & 0o7777 || e.uid != 0 => Some(format!(
                "mode {:o} uid {} instead of {:o} uid 0",
                e.mode, e.uid, file.mode
            )),
            Some(_) => None,
        };
        if let Some(detail) = problem {
            return Err(DiskError::Verify {
                image: image.to_owned(),
                name: file.name.clone(),
                detail,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debugfs_parseable_listing() {
        let entry = GuestEntry::parse("/12/100755/0/0/init/1234/").unwrap();
        assert_eq!(
            entry,
            GuestEntry {
                name: "init".into(),
                mode: 0o100755,
                uid: 0,
                gid: 0,
                size: 1234
            }
        );
        assert!(GuestEntry::parse("debugfs 1.47.0").is_none());
        let folder = GuestEntry::parse("/13/040755/0/0/dev//").unwrap();
        assert_eq!((folder.name.as_str(), folder.mode, folder.size), ("dev", 0o40755, 0));
    }
}
