//! The writable single-file volumes, read back when the workload ends (the
//! termination message among them) for the launcher to write to the node.
//! The workload may have left anything at those paths, so they are read
//! warily: no symlink followed, no FIFO waited on, nothing beyond the limit
//! read, and the whole kept within what one control frame carries.

use runcvm_proto::GuestFile;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

/// The most of one file that is relayed, and of all of them once encoded
/// (non-UTF-8 content travels as hex, control characters escaped): they
/// travel in the `Exit` message, whose frame holds at most 1 MiB.
const MAX_FILE: usize = 256 * 1024;
const MAX_ENCODED: usize = 768 * 1024;

/// The files at their container paths as the workload left them, each read
/// from where init sees it (`(container path, init's path)`).
pub fn read_back(paths: &[(&str, String)]) -> Vec<GuestFile> {
    let mut encoded = 0;
    let mut files = Vec::new();
    for (path, from) in paths {
        let content = match read_regular(from) {
            Ok(content) => content,
            Err(why) => {
                runcvm_log::warn!("{path} is not relayed back to the node: {why}");
                continue;
            }
        };
        let file = GuestFile {
            path: (*path).to_owned(),
            content: content.into(),
            writable: true,
            mode: None,
        };
        let size = serde_json::to_vec(&file).map_or(usize::MAX, |json| json.len());
        if encoded + size > MAX_ENCODED {
            runcvm_log::warn!(
                "{path} is not relayed back to the node: the files to relay take more than {MAX_ENCODED} bytes encoded"
            );
            continue;
        }
        encoded += size;
        files.push(file);
    }
    files
}

/// A regular file's content, at most [`MAX_FILE`] bytes of it.
fn read_regular(path: &str) -> Result<Vec<u8>, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let kind = file.metadata().map_err(|e| e.to_string())?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() { "a FIFO" } else { "not a regular file" };
        return Err(format!("it is {what} now"));
    }
    let mut content = Vec::new();
    file.take(MAX_FILE as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| e.to_string())?;
    if content.len() > MAX_FILE {
        return Err(format!("it holds more than {MAX_FILE} bytes"));
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_warily_and_within_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        std::fs::write(path("message"), b"done: 42 rows\n").unwrap();
        std::fs::write(path("huge"), vec![b'x'; MAX_FILE + 1]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", path("link")).unwrap();
        nix::unistd::mkfifo(path("fifo").as_str(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Control characters cost six bytes each once escaped.
        std::fs::write(path("controls"), vec![1u8; 200 * 1024]).unwrap();
        let names = ["message", "huge", "link", "fifo", "controls", "missing"].map(path);
        // Each under its container path, read from where init sees it.
        let container_path = |name: &str| format!("/dev/{name}");
        let container_paths = names.clone().map(|n| container_path(n.rsplit('/').next().unwrap()));
        let pairs: Vec<(&str, String)> = container_paths.iter().map(String::as_str).zip(names.clone()).collect();
        let files = read_back(&pairs);
        let read: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            read,
            ["/dev/message"],
            "only the plain, small file, named by its container path"
        );
        assert_eq!(files[0].content.as_bytes(), b"done: 42 rows\n");
    }
}
