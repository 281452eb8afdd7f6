//! Finding `argv[0]` the way runc does (Go's `exec.LookPath`), using the
//! `PATH` of the process's own environment, never init's.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `exec: "NAME": executable file not found in $PATH`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotInPath(pub String);

impl std::fmt::Display for NotInPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exec: {:?}: executable file not found in $PATH", self.0)
    }
}

/// A name with a slash is used as given (exec reports what is wrong with it);
/// otherwise the first regular file with an execute bit in `PATH` wins. An
/// empty `PATH` element means the current directory, as in Go and POSIX.
/// Relative `PATH` elements are taken from `cwd`, where the workload starts.
pub fn find_program(name: &[u8], path_var: Option<&[u8]>, cwd: &Path) -> Result<PathBuf, NotInPath> {
    let name_path = Path::new(OsStr::from_bytes(name));
    if name.contains(&b'/') {
        return Ok(name_path.to_owned());
    }
    let not_found = || NotInPath(String::from_utf8_lossy(name).into_owned());
    if name.is_empty() {
        return Err(not_found());
    }
    for dir in path_var.unwrap_or_default().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(name_path);
        if let Ok(meta) = std::fs::metadata(cwd.join(&candidate)) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(not_found())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(path: &Path, mode: u32) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn first_executable_in_path_wins() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        file(&a.join("tool"), 0o644);
        file(&b.join("tool"), 0o755);
        std::fs::create_dir(a.join("dir")).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(
            find_program(b"tool", Some(path.as_bytes()), Path::new("/")).unwrap(),
            b.join("tool")
        );
        assert!(find_program(b"dir", Some(path.as_bytes()), Path::new("/")).is_err());
    }

    #[test]
    fn missing_program_has_runc_message() {
        let err = find_program(b"nope", Some(b"/nonexistent"), Path::new("/")).unwrap_err();
        assert_eq!(err.to_string(), r#"exec: "nope": executable file not found in $PATH"#);
        assert!(find_program(b"sh", None, Path::new("/")).is_err());
        assert!(find_program(b"", Some(b"/bin"), Path::new("/")).is_err());
    }

    #[test]
    fn relative_path_elements_are_taken_from_the_workload_cwd() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("bin")).unwrap();
        file(&root.path().join("bin/tool"), 0o755);
        assert_eq!(
            find_program(b"tool", Some(b"bin"), root.path()).unwrap(),
            Path::new("bin/tool")
        );
        assert!(find_program(b"tool", Some(b"bin"), Path::new("/")).is_err());
        file(&root.path().join("here"), 0o755);
        assert_eq!(
            find_program(b"here", Some(b"/x::/y"), root.path()).unwrap(),
            Path::new("./here")
        );
    }

    #[test]
    fn names_with_a_slash_are_not_searched() {
        assert_eq!(
            find_program(b"./x", Some(b"/bin"), Path::new("/")).unwrap(),
            Path::new("./x")
        );
        assert_eq!(
            find_program(b"/no/such", None, Path::new("/")).unwrap(),
            Path::new("/no/such")
        );
    }
}
