//! What the host shows of a node: mounts under a folder (from
//! `/proc/self/mountinfo`), processes by command line, network namespace
//! files and cgroup folders. Used by the teardown and by leftover checks.

use std::path::{Path, PathBuf};

/// Mount points at or under `dir`, in mount order (unmount in reverse).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// The writable layer (overlayfs `upperdir`) of the container `id`'s root
/// file system, which the shim mounts on the node at `.../<id>/rootfs`.
pub fn writable_layer(id: &str) -> Option<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let suffix = format!("/{id}/rootfs");
    table.lines().find_map(|line| {
        let point = unescape(line.split(' ').nth(4)?);
        if !point.ends_with(&suffix) {
            return None;
        }
        // After the " - " separator: type, source, super options.
        let (_, after) = line.split_once(" - ")?;
        let options = after.split(' ').nth(2)?;
        options
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(|upper| PathBuf::from(unescape(upper)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')),
                );
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or under `dir`, deepest (latest) first; a busy
/// mount is detached.
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for point in mounts.iter().rev() {
            let Ok(c_path) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a valid NUL-terminated path.
            if unsafe { libc::umount2(c_path.as_ptr(), 0) } != 0 {
                // SAFETY: as above; MNT_DETACH only changes how it is unmounted.
                unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// A live process: pid and command line (NULs as spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub cmdline: String,
}

/// Live processes whose command line satisfies `matches` (not this one).
pub fn processes(matches: impl Fn(&[String]) -> bool) -> Vec<Process> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).ok() != Some(me))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            matches(&args).then(|| Process {
                pid,
                cmdline: args.join(" "),
            })
        })
        .collect()
}

/// Processes with any argument containing `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<Process> {
    processes(|args| args.iter().any(|a| a.contains(needle)))
}

/// The shims serving containerd at `socket`: `containerd-shim-*` processes
/// whose `-address` is it.
pub fn shims_of(socket: &Path) -> Vec<Process> {
    let socket = socket.to_string_lossy().into_owned();
    processes(|args| {
        args.first().is_some_and(|a| a.contains("containerd-shim"))
            && args.windows(2).any(|w| w[0] == "-address" && w[1] == socket)
    })
}

/// Where containerd (1.6 and 2.x) puts shim sockets, whatever its state
/// folder.
pub const SHIM_SOCKETS: &str = "/run/containerd/s";

/// The sockets a shim of sandbox `id` serving the containerd at `socket`
/// may listen on in [`SHIM_SOCKETS`]: sha256 of `SOCKET/k8s.io/ID`, and,
/// with containerd 2.x, whose shim started with `-debug` (a node logs at
/// debug) also has a debug socket, of `SOCKET/k8s.io/ID/debug`.
pub fn shim_sockets(socket: &Path, id: &str) -> [PathBuf; 2] {
    let key = format!("{}/{}/{id}", socket.display(), crate::config::CRI_NAMESPACE);
    [key.clone(), format!("{key}/debug")].map(|key| {
        let hash = crate::layer::sha256_digest(key.as_bytes());
        Path::new(SHIM_SOCKETS).join(hash.trim_start_matches("sha256:"))
    })
}

/// SIGKILLs `pid`.
pub fn kill(pid: i32) {
    // SAFETY: kill(2) has no memory effects; a stale pid gives ESRCH.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The `cni-*` files in `/var/run/netns` (containerd's pod namespaces).
pub fn cni_netns() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cni-"))
        .map(|e| e.path())
        .collect()
}

/// Whether any live process is in the network namespace bound at `path`.
pub fn netns_in_use(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let wanted = format!("net:[{}]", meta.ino());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path().join("ns/net")).is_ok_and(|link| link.as_os_str() == wanted.as_str())
    })
}

/// Unmounts and removes a network namespace file.
pub fn remove_netns_file(path: &Path) {
    if let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 with a valid NUL-terminated path.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_file(path);
}

/// Cgroup folders (down to three levels in each hierarchy) named after
/// `id` or containing it.
pub fn cgroups_mentioning(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending: Vec<(PathBuf, u32)> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| entries.flatten().map(|e| (e.path(), 0)).collect())
        .unwrap_or_default();
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(id) {
                found.push(path);
            } else if depth < 3 {
                pending.push((path, depth + 1));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape(r"/x\04"), r"/x\04");
    }

    #[test]
    fn this_process_is_not_listed_but_others_are() {
        let me = std::process::id().to_string();
        assert!(processes(|_| true).iter().all(|p| p.pid.to_string() != me));
        assert!(!processes(|_| true).is_empty() || !Path::new("/proc/1").exists());
    }
}
