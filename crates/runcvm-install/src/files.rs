//! File operations install and uninstall are made of: copies that replace a
//! file atomically (a running `runcvm-runtime` or QEMU keeps its old inode),
//! and that leave an identical file alone, so a second install writes nothing.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copied {
    Created,
    /// The destination existed with other bytes or another mode.
    Updated,
    Unchanged,
}

/// Copies `source` to `dest` with permission bits `mode`, unless `dest`
/// already is that file or has those bytes and that mode.
pub(crate) fn install_file(source: &Path, dest: &Path, mode: u32) -> io::Result<Copied> {
    let existing = match fs::symlink_metadata(dest) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &existing {
        if same_inode(meta, &fs::metadata(source)?) {
            return Ok(Copied::Unchanged);
        }
        if meta.is_file() && meta.mode() & 0o7777 == mode && same_content(source, dest)? {
            return Ok(Copied::Unchanged);
        }
    }
    let temp = temp_path(dest);
    let result = fs::copy(source, &temp)
        .and_then(|_| fs::set_permissions(&temp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&temp, dest));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    Ok(if existing.is_some() {
        Copied::Updated
    } else {
        Copied::Created
    })
}

/// Replaces `dest` with `bytes` atomically, keeping the mode and owner of
/// the file it replaces (`0644`, root, for a new file). A symlink is written
/// through, in place, so that it stays a symlink.
pub(crate) fn write_file(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let previous = match fs::symlink_metadata(dest) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    if previous.as_ref().is_some_and(Metadata::is_symlink) {
        let mut file = fs::OpenOptions::new().write(true).truncate(true).open(dest)?;
        return file.write_all(bytes).and_then(|()| file.sync_all());
    }
    let temp = temp_path(dest);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        match &previous {
            Some(meta) => {
                fs::set_permissions(&temp, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
                std::os::unix::fs::chown(&temp, Some(meta.uid()), Some(meta.gid()))?;
            }
            None => fs::set_permissions(&temp, fs::Permissions::from_mode(0o644))?,
        }
        fs::rename(&temp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `dir` and its missing parents; returns those it created,
/// outermost first.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        missing.push(path.to_owned());
        cursor = path.parent();
    }
    missing.reverse();
    for path in &missing {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

/// Reads `path`; `None` when it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a file; `false` when it was already gone.
pub(crate) fn remove_file(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes an empty folder; `false` when it is not empty or already gone.
pub(crate) fn remove_empty_dir(path: &Path) -> io::Result<bool> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `path` starts with the ELF magic.
pub(crate) fn is_elf(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path)?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"\x7fELF"),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut a, mut b) = (File::open(a)?, File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut left, mut right) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut a, &mut left)?;
        let m = read_full(&mut b, &mut right)?;
        if n != m || left[..n] != right[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn temp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.runcvm-install.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_created_then_unchanged_then_updated() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&source, b"one").unwrap();
        assert_eq!(install_file(&source, &dest, 0o755).unwrap(), Copied::Created);
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(install_file(&source, &dest, 0o755).unwrap(), Copied::Unchanged);
        assert_eq!(install_file(&source, &dest, 0o644).unwrap(), Copied::Updated);
        fs::write(&source, b"two").unwrap();
        assert_eq!(install_file(&source, &dest, 0o644).unwrap(), Copied::Updated);
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert_eq!(
            install_file(&dest, &dest, 0o600).unwrap(),
            Copied::Unchanged,
            "same file"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn a_written_file_keeps_its_mode_and_a_symlink_stays_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        fs::write(&file, b"old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        write_file(&file, b"new").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write_file(&link, b"through").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read(&file).unwrap(), b"through");
        let fresh = dir.path().join("fresh.toml");
        write_file(&fresh, b"x").unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o644);
    }

    #[test]
    fn folders_created_are_listed_outermost_first() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        assert_eq!(
            create_dirs(&deep).unwrap(),
            [dir.path().join("a"), dir.path().join("a/b"), deep.clone()]
        );
        assert!(create_dirs(&deep).unwrap().is_empty());
        assert!(!remove_empty_dir(&dir.path().join("a")).unwrap(), "not empty");
        assert!(remove_empty_dir(&deep).unwrap());
    }

    #[test]
    fn elf_magic_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (elf, text, empty) = (dir.path().join("e"), dir.path().join("t"), dir.path().join("z"));
        fs::write(&elf, b"\x7fELF\x02\x01").unwrap();
        fs::write(&text, b"MZ not a kernel").unwrap();
        fs::write(&empty, b"").unwrap();
        assert!(is_elf(&elf).unwrap());
        assert!(!is_elf(&text).unwrap());
        assert!(!is_elf(&empty).unwrap());
    }
}
